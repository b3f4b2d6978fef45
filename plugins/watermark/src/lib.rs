//! `watermark`: a post-node that blends a text mark into a corner of each
//! image.

mod font;

wit_bindgen::generate!({ path: "../../wit/plugin@0.1.0", world: "node" });

use pingvas::plugin::images::{self, Image};
use pingvas::plugin::node_types::NodeKind;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    text: String,
    corner: String,
    /// 0..1: how strongly the mark covers the image.
    opacity: f32,
    /// Pixels per font dot; 0 picks one from the image size.
    scale: u32,
    /// RGB of the mark.
    color: [u8; 3],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            text: "PINGVAS".into(),
            corner: "bottom-right".into(),
            opacity: 0.5,
            scale: 0,
            color: [255, 255, 255],
        }
    }
}

/// Blends `cfg.text` into `pixels` (RGBA8, `w`×`h`).
fn stamp(pixels: &mut [u8], w: u32, h: u32, cfg: &Config) {
    let scale = if cfg.scale > 0 {
        cfg.scale
    } else {
        (w.min(h) / 200).max(1)
    };
    let chars: Vec<char> = cfg.text.chars().collect();
    let text_w = chars.len() as u32 * (font::WIDTH + 1) * scale;
    let text_h = font::HEIGHT * scale;
    let margin = 4 * scale;
    if text_w + 2 * margin > w || text_h + 2 * margin > h {
        return; // the mark does not fit; leave the image as it is
    }
    let (x0, y0) = match cfg.corner.as_str() {
        "top-left" => (margin, margin),
        "top-right" => (w - text_w - margin, margin),
        "bottom-left" => (margin, h - text_h - margin),
        _ => (w - text_w - margin, h - text_h - margin),
    };
    let a = cfg.opacity.clamp(0.0, 1.0);
    for (i, c) in chars.iter().enumerate() {
        let rows = font::glyph(*c);
        for (gy, row) in rows.iter().enumerate() {
            for gx in 0..font::WIDTH {
                if row & (0x10 >> gx) == 0 {
                    continue;
                }
                let px = x0 + (i as u32 * (font::WIDTH + 1) + gx) * scale;
                let py = y0 + gy as u32 * scale;
                for dy in 0..scale {
                    for dx in 0..scale {
                        let idx = (((py + dy) * w + px + dx) * 4) as usize;
                        for ch in 0..3 {
                            let under = f32::from(pixels[idx + ch]);
                            pixels[idx + ch] =
                                (under + (f32::from(cfg.color[ch]) - under) * a).round() as u8;
                        }
                    }
                }
            }
        }
    }
}

struct Watermark;

impl Guest for Watermark {
    fn describe() -> Descriptor {
        Descriptor {
            name: "watermark".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: NodeKind::Post,
            description: "Blends a text mark into a corner of each image.".into(),
            parameters_schema: r#"{"type":"object","properties":{"text":{"type":"string","maxLength":64},"corner":{"enum":["top-left","top-right","bottom-left","bottom-right"]},"opacity":{"type":"number","minimum":0,"maximum":1},"scale":{"type":"integer","minimum":0,"maximum":64},"color":{"type":"array","items":{"type":"integer","minimum":0,"maximum":255},"minItems":3,"maxItems":3}},"additionalProperties":false}"#.into(),
        }
    }

    fn process(input: NodeInput) -> Result<NodeOutput, PluginError> {
        let NodeInput::Post(input) = input else {
            return Err(PluginError::InvalidInput("watermark is a post-node".into()));
        };
        let cfg: Config = if input.config.trim().is_empty() {
            Config::default()
        } else {
            serde_json::from_str(&input.config)
                .map_err(|e| PluginError::InvalidInput(format!("config: {e}")))?
        };
        if cfg.text.chars().count() > 64 || cfg.scale > 64 {
            return Err(PluginError::InvalidInput(
                "text at most 64 characters, scale at most 64".into(),
            ));
        }
        let mut out: Vec<Image> = Vec::with_capacity(input.images.len());
        for image in input.images {
            let (w, h) = (image.width(), image.height());
            let mut pixels = image.read_rgba();
            stamp(&mut pixels, w, h, &cfg);
            let marked = images::create(w, h, &pixels).map_err(PluginError::Failed)?;
            for (k, v) in image.metadata() {
                marked.set_metadata(&k, &v);
            }
            marked.set_metadata("postprocess.watermark", &cfg.text);
            out.push(marked);
        }
        Ok(NodeOutput::Post(out))
    }
}

export!(Watermark);
