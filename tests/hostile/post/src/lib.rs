//! A post-node that abuses the host in the way its config names:
//! `hoard` (creates 2048×2048 images and keeps every handle), `handles`
//! (a flood of tiny images), `outputs` (returns 64 images for one),
//! `log-flood` (logs 1 MiB lines in a loop), `panic-pixels` (panics with
//! the image's pixels in its message), `spin` (busy for 80 ms, then returns
//! its input), `enlarge` (returns each image four times as wide and high);
//! `ok` returns its input. The config is `{"mode": "…"}`.

wit_bindgen::generate!({ path: "../../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::images::create;
use pingvas::plugin::log::{Level, log};
use pingvas::plugin::node_types::NodeKind;

struct HostilePost;

fn mode_of(config: &str) -> &str {
    config
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .trim_matches(|c: char| c == '"' || c == '}' || c.is_whitespace())
}

impl Guest for HostilePost {
    fn describe() -> Descriptor {
        Descriptor {
            name: "hostile-post".into(),
            version: "0.1.0".into(),
            kind: NodeKind::Post,
            description: "abuses the host on purpose".into(),
            parameters_schema: "{}".into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Post(input) = input else {
            return Err(PluginError::InvalidInput("post only".into()));
        };
        let mut images = input.images;
        match mode_of(&input.config) {
            "hoard" => {
                let mut kept = Vec::new();
                let side = 2048u32;
                let pixels = vec![7u8; (side * side * 4) as usize];
                loop {
                    match create(side, side, &pixels) {
                        Ok(img) => kept.push(img),
                        Err(e) => return Err(PluginError::Failed(e)),
                    }
                }
            }
            "handles" => {
                let mut kept = Vec::new();
                loop {
                    match create(1, 1, &[0, 0, 0, 255]) {
                        Ok(img) => kept.push(img),
                        Err(e) => return Err(PluginError::Failed(e)),
                    }
                }
            }
            "outputs" => {
                for _ in 0..63 {
                    images.push(create(8, 8, &[9u8; 8 * 8 * 4]).map_err(PluginError::Failed)?);
                }
            }
            // Busy for 80 ms of wall time, then returns its input: a slow
            // node that succeeds.
            "spin" => {
                let t = std::time::Instant::now();
                while t.elapsed() < std::time::Duration::from_millis(80) {
                    std::hint::spin_loop();
                }
            }
            // Every image comes back four times as wide and high.
            "enlarge" => {
                images = images
                    .iter()
                    .map(|i| {
                        let (w, h) = (i.width() * 4, i.height() * 4);
                        create(w, h, &vec![200u8; (w * h * 4) as usize])
                    })
                    .collect::<Result<_, _>>()
                    .map_err(PluginError::Failed)?;
            }
            "log-flood" => {
                let line = "x".repeat(1 << 20);
                for _ in 0..10_000 {
                    log(Level::Error, &format!("\n[fake] {line}"));
                }
            }
            "panic-pixels" => {
                let pixels = images[0].read_rgba();
                panic!("pixels: {pixels:?}");
            }
            _ => {}
        }
        Ok(NodeOutput::Post(images))
    }
}

export!(HostilePost);
