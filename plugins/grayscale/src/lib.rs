//! `grayscale`: a post-node that converts every image to grayscale.

mod algo;

wit_bindgen::generate!({ path: "../../wit/plugin@0.2.0", world: "node" });

use pingvas::plugin::images::{self, Image};
use pingvas::plugin::node_types::NodeKind;

struct Grayscale;

impl Guest for Grayscale {
    fn describe() -> Descriptor {
        Descriptor {
            name: "grayscale".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: NodeKind::Post,
            description: "Converts images to grayscale (BT.601 luma), keeping alpha.".into(),
            parameters_schema: r#"{"type":"object","properties":{},"additionalProperties":false}"#
                .into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Post(input) = input else {
            return Err(PluginError::InvalidInput("grayscale is a post-node".into()));
        };
        let mut out: Vec<Image> = Vec::with_capacity(input.images.len());
        for image in input.images {
            let mut pixels = image.read_rgba();
            algo::grayscale_rgba(&mut pixels);
            let gray = images::create(image.width(), image.height(), &pixels)
                .map_err(PluginError::Failed)?;
            for (k, v) in image.metadata() {
                gray.set_metadata(&k, &v);
            }
            gray.set_metadata("postprocess.grayscale", "bt601");
            out.push(gray);
        }
        Ok(NodeOutput::Post(out))
    }
}

export!(Grayscale);
