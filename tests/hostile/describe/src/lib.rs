//! A node whose `describe()` creates 2048×2048 images until the host
//! stops it: publishing it must fail cleanly.

wit_bindgen::generate!({ path: "../../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::images::create;
use pingvas::plugin::node_types::NodeKind;

struct HostileDescribe;

impl Guest for HostileDescribe {
    fn describe() -> Descriptor {
        let side = 2048u32;
        let pixels = vec![7u8; (side * side * 4) as usize];
        let mut kept = Vec::new();
        while let Ok(img) = create(side, side, &pixels) {
            kept.push(img);
        }
        Descriptor {
            name: "hostile-describe".into(),
            version: "0.1.0".into(),
            kind: NodeKind::Post,
            description: format!("kept {} images", kept.len()),
            parameters_schema: "{}".into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        match input {
            NodeInput::Post(p) => Ok(NodeOutput::Post(p.images)),
            NodeInput::Pre(p) => Ok(NodeOutput::Pre(p.params)),
        }
    }
}

export!(HostileDescribe);
