//! A pre-node that misbehaves in the way its config names:
//! `loop`, `memory`, `recursion`, `huge-output`, `file`, `socket`, `panic`,
//! `stdout-flood`; `ok` returns the params unchanged. The config is the mode
//! as a JSON string or `{"mode": "…"}`.

wit_bindgen::generate!({ path: "../../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::node_types::NodeKind;

struct Hostile;

/// Unbounded recursion the optimiser cannot fold into a loop, with small
/// frames so the engine's call stack overflows before the guest's own
/// stack in linear memory does.
#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let below = std::hint::black_box(recurse(std::hint::black_box(depth + 1)));
    below.wrapping_mul(3).wrapping_sub(depth)
}

impl Guest for Hostile {
    fn describe() -> Descriptor {
        Descriptor {
            name: "hostile".into(),
            version: "0.1.0".into(),
            kind: NodeKind::Pre,
            description: "misbehaves on purpose".into(),
            parameters_schema: "{}".into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Pre(input) = input else {
            return Err(PluginError::InvalidInput("pre only".into()));
        };
        let mut params = input.params;
        // The mode as a bare or quoted string, or as {"mode": "…"} (the
        // shape job parameters have).
        let mode = input
            .config
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .trim_matches(|c: char| c == '"' || c == '}' || c.is_whitespace());
        match mode {
            "loop" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "memory" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 8 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "recursion" => {
                params.seed = recurse(0) as i64;
            }
            "huge-output" => params.prompt = "x".repeat(16 << 20),
            "file" => {
                let text = std::fs::read_to_string("/etc/passwd")
                    .map_err(|e| PluginError::Failed(format!("file: {e}")))?;
                params.prompt = text;
            }
            "socket" => {
                let s = std::net::TcpStream::connect("127.0.0.1:5432")
                    .map_err(|e| PluginError::Failed(format!("socket: {e}")))?;
                drop(s);
            }
            "panic" => panic!("hostile node panics on purpose"),
            "stdout-flood" => {
                for i in 0..20_000 {
                    println!("line {i} of a flood of output that the host must cap");
                }
            }
            _ => {}
        }
        Ok(NodeOutput::Pre(params))
    }
}

export!(Hostile);
