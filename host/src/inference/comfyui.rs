//! `comfyui`: drives a ComfyUI server through its HTTP and WebSocket API:
//!
//! 1. open `GET /ws?clientId=…` first, so no event is missed;
//! 2. input images go up with `POST /upload/image` (multipart `image`);
//! 3. `POST /prompt` with an API-format graph (checkpoint loader, CLIP text
//!    encoders, empty/encoded latent, KSampler, VAE decode, SaveImage) and
//!    our `client_id` answers a `prompt_id`;
//! 4. `progress` events ({value, max}) become step progress; `executing`
//!    with `node: null` (or `execution_success`) ends the run,
//!    `execution_error` fails it;
//! 5. `GET /history/{prompt_id}` names the saved images, `GET /view` serves
//!    them.
//!
//! Checkpoints, LoRAs and ControlNets are looked up as
//! `<model name>.safetensors`. A stopped job calls `POST /interrupt`.

use futures::StreamExt;
use image::RgbaImage;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::gpu_server::{GpuServer, gpu_server_backend, unavailable};
use super::{Generation, InferenceError, Operation, Progress, ProgressSink, decimal};
use crate::models::ModelCatalogue;

pub const NAME: &str = "comfyui";
const SAVE: &str = "save";

pub struct ComfyUi {
    server: GpuServer,
}

/// ComfyUI's sampler for one of our sampler names.
fn sampler_name(sampler: &str) -> &str {
    match sampler {
        "euler_a" => "euler_ancestral",
        "dpm_2_a" => "dpm_2_ancestral",
        "dpmpp_2m_karras" => "dpmpp_2m",
        other => other,
    }
}

fn scheduler_of(sampler: &str) -> &str {
    if sampler.ends_with("_karras") {
        "karras"
    } else {
        "normal"
    }
}

/// A ControlNet as the prompt takes it: the model's file stem, the
/// uploaded guide image's name, its weight.
struct ControlNet<'a> {
    model: &'a str,
    image: &'a str,
    weight: f32,
}

/// The API-format graph of a denoising job. `source`/`mask` are uploaded
/// image names. The generation's LoRAs are a `LoraLoader` chain between
/// the checkpoint and its users (model and CLIP at the LoRA's weight); a
/// ControlNet conditions both prompts through `ControlNetApplyAdvanced`.
fn denoise_prompt(
    g: &Generation,
    source: Option<&str>,
    mask: Option<&str>,
    strength: f32,
    control: Option<ControlNet<'_>>,
) -> Value {
    let mut p = json!({
        "ckpt": { "class_type": "CheckpointLoaderSimple",
                  "inputs": { "ckpt_name": format!("{}.safetensors", g.model) } },
        "positive": { "class_type": "CLIPTextEncode", "inputs": { "text": g.prompt, "clip": ["ckpt", 1] } },
        "negative": { "class_type": "CLIPTextEncode", "inputs": { "text": g.negative_prompt, "clip": ["ckpt", 1] } },
        "sampler": { "class_type": "KSampler", "inputs": {
            "seed": g.seed, "steps": g.steps, "cfg": g.cfg_scale,
            "sampler_name": sampler_name(&g.sampler), "scheduler": scheduler_of(&g.sampler),
            "denoise": 1.0, "model": ["ckpt", 0], "positive": ["positive", 0],
            "negative": ["negative", 0], "latent_image": ["latent", 0] } },
        "decode": { "class_type": "VAEDecode", "inputs": { "samples": ["sampler", 0], "vae": ["ckpt", 2] } },
        SAVE: { "class_type": "SaveImage", "inputs": { "filename_prefix": "pingvas", "images": ["decode", 0] } },
    });
    let (mut model, mut clip) = (json!(["ckpt", 0]), json!(["ckpt", 1]));
    for (i, l) in g.loras.iter().enumerate() {
        let id = format!("lora{i}");
        p[&id] = json!({ "class_type": "LoraLoader", "inputs": {
            "model": model, "clip": clip, "lora_name": format!("{}.safetensors", l.name),
            "strength_model": decimal(l.weight), "strength_clip": decimal(l.weight) } });
        (model, clip) = (json!([id, 0]), json!([id, 1]));
    }
    p["sampler"]["inputs"]["model"] = model;
    p["positive"]["inputs"]["clip"] = clip.clone();
    p["negative"]["inputs"]["clip"] = clip;
    if let Some(c) = control {
        p["control_model"] = json!({ "class_type": "ControlNetLoader",
            "inputs": { "control_net_name": format!("{}.safetensors", c.model) } });
        p["control_image"] = json!({ "class_type": "LoadImage", "inputs": { "image": c.image } });
        p["control"] = json!({ "class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["positive", 0], "negative": ["negative", 0],
            "control_net": ["control_model", 0], "image": ["control_image", 0],
            "strength": decimal(c.weight), "start_percent": 0.0, "end_percent": 1.0 } });
        p["sampler"]["inputs"]["positive"] = json!(["control", 0]);
        p["sampler"]["inputs"]["negative"] = json!(["control", 1]);
    }
    match (source, mask) {
        (None, _) => {
            p["latent"] = json!({ "class_type": "EmptyLatentImage",
                "inputs": { "width": g.width, "height": g.height, "batch_size": g.batch_size.max(1) } });
        }
        (Some(src), None) => {
            p["load"] = json!({ "class_type": "LoadImage", "inputs": { "image": src } });
            p["encoded"] = json!({ "class_type": "VAEEncode", "inputs": { "pixels": ["load", 0], "vae": ["ckpt", 2] } });
            p["latent"] = json!({ "class_type": "RepeatLatentBatch",
                "inputs": { "samples": ["encoded", 0], "amount": g.batch_size.max(1) } });
            p["sampler"]["inputs"]["denoise"] = json!(strength.clamp(0.0, 1.0));
        }
        (Some(src), Some(mask)) => {
            p["load"] = json!({ "class_type": "LoadImage", "inputs": { "image": src } });
            p["mask"] = json!({ "class_type": "LoadImageMask", "inputs": { "image": mask, "channel": "red" } });
            p["latent"] = json!({ "class_type": "VAEEncodeForInpaint", "inputs": {
                "pixels": ["load", 0], "vae": ["ckpt", 2], "mask": ["mask", 0], "grow_mask_by": 6 } });
        }
    }
    p
}

impl ComfyUi {
    /// The catalogue's models this server has: files named
    /// `<catalogue name>.<extension>` in `GET /models/checkpoints` (main
    /// models), `/models/loras` and `/models/controlnet`.
    async fn models_of(&self, catalogue: &ModelCatalogue) -> Result<Vec<String>, InferenceError> {
        let mut files = Vec::new();
        for (folder, kind) in [
            ("checkpoints", "main"),
            ("loras", "lora"),
            ("controlnet", "controlnet"),
        ] {
            let resp = self
                .server
                .http
                .get(self.server.url(&format!("/models/{folder}")))
                .send()
                .await
                .map_err(unavailable)?;
            if !resp.status().is_success() {
                return Err(InferenceError::Unavailable(format!(
                    "listing {folder}: {}",
                    resp.status()
                )));
            }
            let listed: Vec<String> = resp.json().await.map_err(unavailable)?;
            files.extend(listed.into_iter().map(|f| (kind, f)));
        }
        Ok(GpuServer::matched(catalogue, |m| {
            files.iter().any(|(kind, f)| {
                *kind == m.kind && f.rsplit_once('.').is_some_and(|(stem, _)| stem == m.name)
            })
        }))
    }

    pub fn new(base: &str) -> anyhow::Result<Self> {
        Ok(Self {
            server: GpuServer::new(base)?,
        })
    }

    async fn upload(&self, img: &RgbaImage) -> Result<String, InferenceError> {
        let name = format!("pingvas-{}.png", uuid::Uuid::now_v7().simple());
        let part = GpuServer::png_part(img, name)?;
        let form = reqwest::multipart::Form::new()
            .part("image", part)
            .text("overwrite", "true");
        let resp = self
            .server
            .http
            .post(self.server.url("/upload/image"))
            .multipart(form)
            .send()
            .await
            .map_err(unavailable)?;
        if !resp.status().is_success() {
            return Err(InferenceError::Failed(format!(
                "upload answered {}",
                resp.status()
            )));
        }
        let v: Value = resp.json().await.map_err(unavailable)?;
        let name = v["name"]
            .as_str()
            .ok_or_else(|| InferenceError::Failed("upload answered no name".into()))?;
        Ok(match v["subfolder"].as_str() {
            Some(sub) if !sub.is_empty() => format!("{sub}/{name}"),
            _ => name.to_owned(),
        })
    }

    async fn run_op(
        &self,
        op: Operation,
        progress: ProgressSink,
    ) -> Result<Vec<RgbaImage>, InferenceError> {
        let client_id = uuid::Uuid::now_v7().to_string();
        let ws_url = format!(
            "{}/ws?clientId={client_id}",
            self.server.base().replacen("http", "ws", 1)
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .map_err(unavailable)?;
        let prompt = match &op {
            Operation::TextToImage {
                generation,
                control,
            } => match control {
                Some(c) => {
                    let guide = self.upload(&c.image).await?;
                    let control = ControlNet {
                        model: &c.model,
                        image: &guide,
                        weight: c.weight,
                    };
                    denoise_prompt(generation, None, None, 1.0, Some(control))
                }
                None => denoise_prompt(generation, None, None, 1.0, None),
            },
            Operation::ImageToImage {
                generation,
                source,
                strength,
            } => {
                let src = self.upload(source).await?;
                denoise_prompt(generation, Some(&src), None, *strength, None)
            }
            Operation::Inpaint {
                generation,
                source,
                mask,
            } => {
                let src = self.upload(source).await?;
                let mask = self.upload(mask).await?;
                denoise_prompt(generation, Some(&src), Some(&mask), 1.0, None)
            }
            Operation::Upscale { source, scale } => {
                let src = self.upload(source).await?;
                json!({
                    "load": { "class_type": "LoadImage", "inputs": { "image": src } },
                    "scaled": { "class_type": "ImageScaleBy", "inputs": {
                        "image": ["load", 0], "upscale_method": "lanczos", "scale_by": scale } },
                    SAVE: { "class_type": "SaveImage", "inputs": { "filename_prefix": "pingvas", "images": ["scaled", 0] } },
                })
            }
        };
        let resp = self
            .server
            .http
            .post(self.server.url("/prompt"))
            .json(&json!({ "prompt": prompt, "client_id": client_id }))
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(InferenceError::Failed(format!(
                "ComfyUI refused the prompt: {body}"
            )));
        }
        let prompt_id = body["prompt_id"]
            .as_str()
            .ok_or_else(|| InferenceError::Failed("no prompt_id".into()))?
            .to_owned();

        loop {
            let msg = ws
                .next()
                .await
                .ok_or_else(|| unavailable("websocket closed before the prompt finished"))?
                .map_err(unavailable)?;
            let Message::Text(text) = msg else { continue };
            let Ok(ev) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let data = &ev["data"];
            if data["prompt_id"].as_str().is_some_and(|p| p != prompt_id) {
                continue;
            }
            match ev["type"].as_str() {
                Some("progress") => {
                    let step = data["value"].as_u64().unwrap_or(0) as u32;
                    let total = data["max"].as_u64().unwrap_or(1) as u32;
                    if !progress(Progress {
                        step,
                        total_steps: total,
                    }) {
                        let _ = self
                            .server
                            .http
                            .post(self.server.url("/interrupt"))
                            .json(&json!({ "prompt_id": prompt_id }))
                            .send()
                            .await;
                        return Err(InferenceError::Cancelled);
                    }
                }
                Some("executing") if data["node"].is_null() => break,
                Some("execution_success") => break,
                Some("execution_error") => {
                    return Err(InferenceError::Failed(format!(
                        "{}: {}",
                        data["exception_type"].as_str().unwrap_or("error"),
                        data["exception_message"].as_str().unwrap_or("")
                    )));
                }
                Some("execution_interrupted") => {
                    return Err(InferenceError::Failed("interrupted on ComfyUI".into()));
                }
                _ => {}
            }
        }
        let _ = ws.close(None).await;

        let history: Value = self
            .server
            .http
            .get(self.server.url(&format!("/history/{prompt_id}")))
            .send()
            .await
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let files = history[&prompt_id]["outputs"][SAVE]["images"]
            .as_array()
            .cloned()
            .ok_or_else(|| InferenceError::Failed("no saved images in the history".into()))?;
        let mut images = Vec::with_capacity(files.len());
        for f in files {
            let view = self.server.http.get(self.server.url("/view")).query(&[
                ("filename", f["filename"].as_str().unwrap_or_default()),
                ("subfolder", f["subfolder"].as_str().unwrap_or_default()),
                ("type", f["type"].as_str().unwrap_or("output")),
            ]);
            images.push(self.server.fetch_image(view).await?);
        }
        Ok(images)
    }
}

gpu_server_backend!(ComfyUi, NAME);
