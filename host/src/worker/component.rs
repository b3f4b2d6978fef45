//! The worker's side of a workflow component (`plugins::host::workflow`):
//! its inference calls run on the worker's backend within the job's
//! reservation, its node calls run nodes the job's owner may use, its
//! progress goes out as the job's, and its image inputs are the job's.
//!
//! Every inference call is checked like a request (model among those the
//! workflow declared, LoRAs among those it declared for that model, sizes, steps, guidance, sampler, prompt length) and
//! priced before it runs at the catalogue's expected cost — the terms the
//! reservation was made on: a call that would take the calls' expected
//! total past the reservation is refused and ends the job (a slow backend
//! never does; what it measures is charged, capped at settle). Its measured
//! GPU time is booked to the first declared step of its model, so the host
//! charges each model's rate (`queue::job::workflow_charge`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::FutureExt;
use futures::future::BoxFuture;
use image::RgbaImage;
use rand::Rng;

use super::{JobSource, Worker, pipeline};
use crate::generation::validate::MAX_SOURCE_SIDE;
use crate::inference::{Generation, InferenceError};
use crate::models::Model;
use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::types::{
    GenerationParams, PluginError,
};
use crate::plugins::host::workflow::{CallError, Inference, WorkflowHost};
use crate::plugins::image_handle::ImageHandle;
use crate::plugins::limits;
use crate::plugins::world::PluginKind;
use crate::queue::job::{
    JobSpec, JobType, LoraSpec, MAX_LORAS, MAX_PROMPT_CHARS, SAMPLERS, Work, credits_for,
};
use crate::queue::{Lease, StepProgress};
use crate::workflows::plan::Declared;

/// What the calls so far were priced at, and their GPU time.
#[derive(Debug, Default)]
struct Account {
    /// The calls' expected cost, in credits.
    committed: i64,
    /// GPU seconds per declared step.
    seconds: Vec<f64>,
    gpu_seconds: f64,
}

pub(super) struct ComponentHost<S: JobSource> {
    pub worker: Arc<Worker<S>>,
    pub lease: Lease,
    pub stop: tokio_util::sync::CancellationToken,
    pub progress: tokio::sync::watch::Sender<super::keeper::JobProgress>,
    pub inputs: HashMap<String, ImageHandle>,
    pub declared: Vec<Declared>,
    pub reserved: i64,
    /// When it started, and its own reserved time (its clock stops
    /// during inference calls): the nodes it calls get no more than what
    /// is left of it.
    pub started: Instant,
    pub budget: std::time::Duration,
    account: Mutex<Account>,
}

fn guest(reason: impl Into<String>) -> CallError {
    CallError::Guest(PluginError::InvalidInput(reason.into()))
}

impl<S: JobSource> ComponentHost<S> {
    pub fn new(
        worker: Arc<Worker<S>>,
        lease: Lease,
        stop: tokio_util::sync::CancellationToken,
        progress: tokio::sync::watch::Sender<super::keeper::JobProgress>,
        inputs: HashMap<String, ImageHandle>,
        declared: Vec<Declared>,
        (started, budget): (Instant, std::time::Duration),
    ) -> Self {
        let reserved = declared
            .iter()
            .map(|d| {
                worker
                    .catalogue
                    .get(&d.model)
                    .map_or(0, |m| credits_for(d.expected_gpu_seconds, m))
            })
            .sum();
        let account = Account {
            seconds: vec![0.0; declared.len()],
            ..Account::default()
        };
        Self {
            worker,
            lease,
            stop,
            progress,
            inputs,
            declared,
            reserved,
            started,
            budget,
            account: Mutex::new(account),
        }
    }

    /// GPU seconds per declared step, and in all.
    pub fn gpu_time(&self) -> (Vec<f64>, f64) {
        let a = self.account.lock().expect("account");
        (a.seconds.clone(), a.gpu_seconds)
    }

    /// The catalogue model of a call, which the workflow must have declared.
    fn model(&self, name: &str) -> Result<(usize, Model), CallError> {
        let at = self
            .declared
            .iter()
            .position(|d| d.model == name)
            .ok_or_else(|| guest(format!("model {name} is not one the workflow declared")))?;
        let m = self
            .worker
            .catalogue
            .get(name)
            .ok_or_else(|| guest(format!("unknown model {name}")))?;
        Ok((at, m.clone()))
    }

    /// A diffusion call's parameters as a job spec, checked as a request.
    fn spec(&self, job_type: JobType, p: GenerationParams) -> Result<JobSpec, CallError> {
        let size_ok = |v: u32| (64..=2048).contains(&v) && v.is_multiple_of(8);
        if !size_ok(p.width) || !size_ok(p.height) {
            return Err(guest("width and height: 64 to 2048, multiples of 8"));
        }
        if !(1..=150).contains(&p.steps) || !(1..=8).contains(&p.batch_size) {
            return Err(guest("steps 1 to 150, batch_size 1 to 8"));
        }
        if !(p.cfg_scale.is_finite() && (0.0..=30.0).contains(&p.cfg_scale)) {
            return Err(guest("cfg_scale between 0 and 30"));
        }
        if !SAMPLERS.contains(&p.sampler.as_str()) {
            return Err(guest(format!("sampler: one of {}", SAMPLERS.join(", "))));
        }
        if p.prompt.chars().count() > MAX_PROMPT_CHARS
            || p.negative_prompt.chars().count() > MAX_PROMPT_CHARS
        {
            return Err(guest(format!(
                "prompts of at most {MAX_PROMPT_CHARS} characters"
            )));
        }
        if p.strength
            .is_some_and(|s| !(s.is_finite() && (0.0..=1.0).contains(&s)))
        {
            return Err(guest("strength between 0 and 1"));
        }
        if p.loras.len() > MAX_LORAS
            || p.loras
                .iter()
                .any(|l| !(l.weight.is_finite() && (-2.0..=2.0).contains(&l.weight)))
        {
            return Err(guest(format!(
                "at most {MAX_LORAS} LoRAs, weights between -2 and 2"
            )));
        }
        let seed = match u64::try_from(p.seed) {
            Ok(s) if s <= u64::from(u32::MAX) => s,
            _ if p.seed < 0 => rand::rng().random_range(0..=u64::from(u32::MAX)),
            _ => return Err(guest("seed: -1 (random) or 0 to 4294967295")),
        };
        Ok(JobSpec {
            job_type,
            generation: Generation {
                prompt: p.prompt,
                negative_prompt: p.negative_prompt,
                model: p.model,
                width: p.width,
                height: p.height,
                steps: p.steps,
                cfg_scale: p.cfg_scale,
                sampler: p.sampler,
                seed,
                batch_size: p.batch_size,
                loras: p
                    .loras
                    .into_iter()
                    .map(|l| LoraSpec {
                        name: l.name,
                        weight: l.weight,
                    })
                    .collect(),
            },
            strength: p.strength,
            ..JobSpec::default()
        })
    }

    async fn run_inference(&self, call: Inference) -> Result<Vec<ImageHandle>, CallError> {
        let image = |h: &ImageHandle| -> Result<RgbaImage, CallError> {
            pipeline::from_handle(h).map_err(CallError::Abort)
        };
        let (spec, source, mask) = match call {
            Inference::TextToImage(p) => (self.spec(JobType::TextToImage, p)?, None, None),
            Inference::ImageToImage(p, src) => {
                let s = image(&src)?;
                let mut spec = self.spec(JobType::ImageToImage, p)?;
                spec.strength = spec.strength.or(Some(0.75));
                (spec, Some(s), None)
            }
            Inference::Inpaint(p, src, m) => {
                // It runs at its source's size, whatever the call says.
                let side = 64..=MAX_SOURCE_SIDE;
                if !side.contains(&src.width) || !side.contains(&src.height) {
                    return Err(guest(format!(
                        "inpaint sources are 64 to {MAX_SOURCE_SIDE} pixels a side"
                    )));
                }
                if (m.width, m.height) != (src.width, src.height) {
                    return Err(guest("the mask must have the source's size"));
                }
                let spec = self.spec(JobType::Inpaint, p)?;
                (spec, Some(image(&src)?), Some(image(&m)?))
            }
            Inference::Upscale {
                source,
                scale,
                model,
            } => {
                if !(2..=4).contains(&scale) {
                    return Err(guest("scale 2, 3 or 4"));
                }
                let (w, h) = (source.width * scale, source.height * scale);
                if w > 8192 || h > 8192 {
                    return Err(guest("at most 8192 pixels a side after upscaling"));
                }
                let spec = JobSpec {
                    job_type: JobType::Upscale,
                    generation: Generation {
                        model,
                        width: w,
                        height: h,
                        steps: 1,
                        batch_size: 1,
                        ..Generation::default()
                    },
                    scale: Some(scale),
                    ..JobSpec::default()
                };
                (spec, Some(image(&source)?), None)
            }
        };
        let (bucket, model) = self.model(spec.model())?;
        // Only LoRAs the workflow declared for the model: those were
        // checked for the owner's tier and base, and priced.
        let declared = |l: &str| {
            self.declared
                .iter()
                .any(|d| d.model == model.name && d.loras.iter().any(|x| x == l))
        };
        if let Some(l) = spec.generation.loras.iter().find(|l| !declared(&l.name)) {
            return Err(guest(format!(
                "LoRA {} is not one the workflow declared for {}",
                l.name, model.name
            )));
        }
        let kinds_ok = match spec.job_type {
            JobType::Upscale => model.kind == "upscaler",
            _ => model.kind == "main",
        };
        if !kinds_ok {
            return Err(guest(format!(
                "{} is not a model for this call",
                model.name
            )));
        }
        // Priced before it runs from what it really processes (an
        // inpaint at its source's size): the calls never ask for more than
        // the run was priced at.
        let sizes: Vec<(u32, u32)> = source.iter().map(RgbaImage::dimensions).collect();
        let work = Work {
            job_type: spec.job_type,
            generation: &spec.generation,
            controlnet: None,
            sources: &sizes,
            scale: spec.scale.unwrap_or(1),
        };
        let cost = credits_for(work.gpu_seconds(&model, &self.worker.catalogue), &model);
        {
            let mut a = self.account.lock().expect("account");
            if a.committed + cost > self.reserved {
                return Err(CallError::Abort(format!(
                    "an inference call past the reservation ({} of {} credits used by earlier calls, this call {cost})",
                    a.committed, self.reserved
                )));
            }
            a.committed += cost;
        }
        let op = pipeline::operation(&spec, source, mask, None).map_err(guest)?;
        let stop = self.stop.clone();
        let sink = Arc::new(move |_: crate::inference::Progress| !stop.is_cancelled());
        let started = Instant::now();
        let out = tokio::select! {
            r = self.worker.backend.run(op, sink) => r,
            _ = self.stop.cancelled() => Err(InferenceError::Cancelled),
        };
        let secs = started.elapsed().as_secs_f64();
        {
            let mut a = self.account.lock().expect("account");
            a.seconds[bucket] += secs;
            a.gpu_seconds += secs;
        }
        match out {
            Ok(images) => images
                .into_iter()
                .map(|i| pipeline::to_handle(i).map_err(CallError::Abort))
                .collect(),
            Err(InferenceError::Cancelled) => Err(CallError::Abort("stopped".into())),
            Err(InferenceError::InvalidInput(m)) => Err(guest(m)),
            Err(e) => Err(CallError::Abort(e.to_string())),
        }
    }

    async fn node(&self, node: &str) -> Result<Arc<crate::plugins::LoadedPlugin>, CallError> {
        let (name, version) = node
            .split_once('@')
            .ok_or_else(|| guest("a node is named name@version"))?;
        self.worker
            .source
            .component_node(&self.worker.runtime, &self.lease, name, version)
            .await
            .map_err(|e| guest(format!("node {node}: {e}")))
    }

    /// A node's limits, its time cut to what is left of the component's.
    fn node_limits(&self, node: &str) -> Result<limits::Limits, CallError> {
        let name = node.split('@').next().unwrap_or(node);
        let gpu = self.account.lock().expect("account").gpu_seconds;
        let own = (self.started.elapsed().as_secs_f64() - gpu).max(0.0);
        let left = self
            .budget
            .saturating_sub(std::time::Duration::from_secs_f64(own));
        if left.is_zero() {
            return Err(CallError::Abort(
                "the workflow's reserved time is used up".into(),
            ));
        }
        let left_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        Ok(limits::resolve(PluginKind::Node, name, &self.worker.limits).within(Some(left_ms)))
    }
}

fn node_failed(e: &crate::plugins::PluginError) -> CallError {
    CallError::Guest(PluginError::Failed(e.user_reason()))
}

impl<S: JobSource> WorkflowHost for ComponentHost<S> {
    fn infer(&self, call: Inference) -> BoxFuture<'_, Result<Vec<ImageHandle>, CallError>> {
        self.run_inference(call).boxed()
    }

    fn run_pre(
        &self,
        node: String,
        params: GenerationParams,
        config: String,
    ) -> BoxFuture<'_, Result<GenerationParams, CallError>> {
        async move {
            let plugin = self.node(&node).await?;
            let run = self
                .worker
                .runtime
                .run_pre(&node, &plugin, self.node_limits(&node)?, params, &config)
                .await
                .map_err(|e| node_failed(&e))?;
            Ok(run.output)
        }
        .boxed()
    }

    fn run_post(
        &self,
        node: String,
        params: GenerationParams,
        images: Vec<ImageHandle>,
        config: String,
    ) -> BoxFuture<'_, Result<Vec<ImageHandle>, CallError>> {
        async move {
            let plugin = self.node(&node).await?;
            let run = self
                .worker
                .runtime
                .run_post(
                    &node,
                    &plugin,
                    self.node_limits(&node)?,
                    params,
                    images,
                    &config,
                )
                .await
                .map_err(|e| node_failed(&e))?;
            Ok(run.output)
        }
        .boxed()
    }

    fn progress(&self, percent: u8, message: String) {
        let message: String = message
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        self.progress.send_modify(|v| {
            v.0 = Some(StepProgress {
                step: u32::from(percent),
                total_steps: 100,
                node: Some("component".into()),
                message: Some(message),
            })
        });
    }

    fn input(&self, name: &str) -> Option<ImageHandle> {
        self.inputs.get(name).cloned()
    }
}
