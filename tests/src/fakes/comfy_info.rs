//! The fake ComfyUI's check of a prompt against ComfyUI's own node
//! shapes (`tests/fixtures/comfyui/object_info.json`, its `GET
//! /object_info` for the classes our backend sends): every class known,
//! every required input there and no unknown one, links into an output of
//! the input's type, numbers within their bounds, choices among ComfyUI's.

use serde_json::Value;

static OBJECT_INFO: &str = include_str!("../../fixtures/comfyui/object_info.json");

/// Why ComfyUI would refuse `prompt` (an API-format graph), if it would;
/// `files` are the images uploaded to it.
pub fn check_prompt(prompt: &Value, files: &[String]) -> Result<(), String> {
    let info: Value = serde_json::from_str(OBJECT_INFO).expect("the object_info fixture");
    let nodes = prompt.as_object().ok_or("the prompt is not an object")?;
    for (id, node) in nodes {
        let class = node["class_type"]
            .as_str()
            .ok_or(format!("{id}: no class_type"))?;
        let shape = info
            .get(class)
            .ok_or(format!("{id}: ComfyUI has no node {class}"))?;
        let inputs = node["inputs"]
            .as_object()
            .ok_or(format!("{id}: no inputs"))?;
        let required = shape["input"]["required"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let optional = shape["input"]["optional"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for name in required.keys() {
            if !inputs.contains_key(name) {
                return Err(format!("{id} ({class}): required input {name} missing"));
            }
        }
        for (name, value) in inputs {
            let spec = required
                .get(name)
                .or(optional.get(name))
                .ok_or(format!("{id} ({class}): no input {name}"))?;
            check_input(nodes, &info, files, spec, value)
                .map_err(|e| format!("{id} ({class}).{name}: {e}"))?;
        }
    }
    Ok(())
}

/// One input against its spec: `[TYPE, {options}]` or `[[choices], {…}]`.
fn check_input(
    nodes: &serde_json::Map<String, Value>,
    info: &Value,
    files: &[String],
    spec: &Value,
    value: &Value,
) -> Result<(), String> {
    let options = &spec[1];
    // A link: [node id, output slot].
    if let Some([from, slot]) = value.as_array().map(Vec::as_slice)
        && let (Some(from), Some(slot)) = (from.as_str(), slot.as_u64())
    {
        let source = nodes
            .get(from)
            .ok_or(format!("link from missing node {from}"))?;
        let class = source["class_type"].as_str().unwrap_or_default();
        let out = info[class]["output"][slot as usize]
            .as_str()
            .unwrap_or("nothing");
        let want = spec[0].as_str().ok_or("a link into a choice")?;
        return if out == want {
            Ok(())
        } else {
            Err(format!("{class} output {slot} is {out}, not {want}"))
        };
    }
    match &spec[0] {
        Value::Array(choices) => {
            let text = value
                .as_str()
                .ok_or(format!("{value} is not one of the choices"))?;
            // An image input names an uploaded file.
            if options["image_upload"] == true || choices.is_empty() {
                return if files.iter().any(|f| f == text) {
                    Ok(())
                } else {
                    Err(format!("{text} was never uploaded"))
                };
            }
            if choices.iter().any(|c| c == text) {
                Ok(())
            } else {
                Err(format!("{text} is not one of {choices:?}"))
            }
        }
        Value::String(kind) if kind == "INT" || kind == "FLOAT" => {
            let n = value.as_f64().ok_or(format!("{value} is not a number"))?;
            if kind == "INT" && value.as_i64().is_none() && value.as_u64().is_none() {
                return Err(format!("{value} is not an integer"));
            }
            let below = options["min"].as_f64().is_some_and(|min| n < min);
            let above = options["max"].as_f64().is_some_and(|max| n > max);
            if below || above {
                return Err(format!(
                    "{n} outside {}..{}",
                    options["min"], options["max"]
                ));
            }
            Ok(())
        }
        Value::String(kind) if kind == "STRING" => value
            .as_str()
            .map(|_| ())
            .ok_or(format!("{value} is not a string")),
        Value::String(kind) if kind == "BOOLEAN" => value
            .as_bool()
            .map(|_| ())
            .ok_or(format!("{value} is not a boolean")),
        Value::String(kind) => Err(format!("a {kind} must be a link, not {value}")),
        other => Err(format!("unknown spec {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_prompt_is_checked_against_comfyuis_shapes() {
        let good = json!({
            "ckpt": { "class_type": "CheckpointLoaderSimple",
                      "inputs": { "ckpt_name": "stable-diffusion-1.5.safetensors" } },
            "lora": { "class_type": "LoraLoader", "inputs": { "model": ["ckpt", 0], "clip": ["ckpt", 1],
                      "lora_name": "add_detail.safetensors", "strength_model": 0.8, "strength_clip": 0.8 } },
            "text": { "class_type": "CLIPTextEncode", "inputs": { "text": "a", "clip": ["lora", 1] } },
        });
        assert_eq!(check_prompt(&good, &[]), Ok(()));
        let mut wrong_slot = good.clone();
        wrong_slot["text"]["inputs"]["clip"] = json!(["lora", 0]);
        assert!(
            check_prompt(&wrong_slot, &[])
                .unwrap_err()
                .contains("MODEL, not CLIP")
        );
        let mut missing = good.clone();
        missing["lora"]["inputs"]
            .as_object_mut()
            .unwrap()
            .remove("strength_clip");
        assert!(
            check_prompt(&missing, &[])
                .unwrap_err()
                .contains("strength_clip missing")
        );
        let mut unknown = good.clone();
        unknown["lora"]["inputs"]["weight"] = json!(1);
        assert!(
            check_prompt(&unknown, &[])
                .unwrap_err()
                .contains("no input weight")
        );
        let mut file = good;
        file["ckpt"]["inputs"]["ckpt_name"] = json!("nope.safetensors");
        assert!(check_prompt(&file, &[]).is_err());
        let image =
            json!({ "load": { "class_type": "LoadImage", "inputs": { "image": "a.png" } } });
        assert!(check_prompt(&image, &[]).is_err());
        assert_eq!(check_prompt(&image, &["a.png".into()]), Ok(()));
    }
}
