//! A workflow job on the worker: its compiled steps in order — parameters,
//! image inputs, plugin nodes, inference operations on the backend —
//! passing parameters and images between them. Each inference step's GPU
//! time is measured on its own (charged at its model's rate, the total
//! capped by the reservation at settle). A graph's inference steps are
//! exactly the ones its reservation priced, so none is refused here; a
//! component's calls are priced one by one (`component`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use image::RgbaImage;

use super::component::ComponentHost;
use super::keeper::Running;
use super::nodes::JobFailure;
use super::{JobSource, Worker, pipeline};
use crate::imaging;
use crate::inference::{InferenceError, Operation, Progress};
use crate::plugins::limits;
use crate::plugins::world::PluginKind;
use crate::queue::job::{JobSpec, JobType, Work, credits_for};
use crate::queue::{FailureCode, StepProgress};
use crate::workflows::plan::{StepOp, WorkflowPlan};

/// What flows out of a step.
#[derive(Clone)]
enum Flow {
    Params(Box<JobSpec>),
    Images(Vec<RgbaImage>),
    Nothing,
}

/// A finished workflow run, before encoding.
pub(super) struct WorkflowDone {
    pub images: Vec<RgbaImage>,
    /// The output node of each image.
    pub image_nodes: Vec<String>,
    pub step_seconds: Vec<f64>,
    pub gpu_seconds: f64,
    pub node_seconds: f64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

impl<S: JobSource> Worker<S> {
    pub(super) async fn run_workflow(
        self: &Arc<Self>,
        job: &Running,
        plan: &WorkflowPlan,
    ) -> Result<WorkflowDone, JobFailure> {
        let lease = &job.item.lease;
        let started_at = Utc::now();
        job.progress.send_modify(|v| v.1 = Some(started_at));
        let total = plan.steps.len() as u32;
        let mut flows: Vec<Flow> = Vec::with_capacity(plan.steps.len());
        let mut step_seconds = Vec::new();
        let (mut gpu_seconds, mut node_seconds) = (0.0, 0.0);
        let mut out = (Vec::new(), Vec::new());
        // Worker time used so far, for a failure's charge.
        let used = |gpu: f64, nodes: f64| gpu + nodes;
        for (i, step) in plan.steps.iter().enumerate() {
            // Steps done so far, and the node now at work.
            job.progress.send_modify(|v| {
                v.0 = Some(StepProgress {
                    step: i as u32,
                    total_steps: total,
                    node: Some(step.node.clone()),
                    message: Some(step.op.kind().to_owned()),
                })
            });
            let failed = |f: JobFailure| f.after(used(gpu_seconds, node_seconds));
            let params = |at: usize| match flows.get(at) {
                Some(Flow::Params(p)) => Ok((**p).clone()),
                _ => Err(JobFailure::new(
                    FailureCode::InvalidInput,
                    format!("{}: no parameters at step {at}", step.node),
                )),
            };
            let images = |at: usize| match flows.get(at) {
                Some(Flow::Images(v)) => Ok(v.clone()),
                _ => Err(JobFailure::new(
                    FailureCode::InvalidInput,
                    format!("{}: no images at step {at}", step.node),
                )),
            };
            let flow = match &step.op {
                StepOp::Params { spec } => Flow::Params(spec.clone()),
                StepOp::Image { key } => {
                    let bytes = job.item.inputs.get(key).ok_or_else(|| {
                        JobFailure::new(FailureCode::InvalidInput, format!("input {key} missing"))
                    })?;
                    let img = imaging::decode(bytes)
                        .map_err(|e| JobFailure::new(FailureCode::InvalidInput, e))?;
                    Flow::Images(vec![img])
                }
                StepOp::Pre { plugin, params: p } => {
                    let t = Instant::now();
                    let spec = params(*p).map_err(failed)?;
                    let r = self.run_pre_node(lease, plugin, &spec).await;
                    node_seconds += t.elapsed().as_secs_f64();
                    Flow::Params(Box::new(
                        r.map_err(|f| f.after(used(gpu_seconds, node_seconds)))?,
                    ))
                }
                StepOp::Post {
                    plugin,
                    images: from,
                    params: p,
                } => {
                    let t = Instant::now();
                    let spec = match p {
                        Some(p) => params(*p).map_err(failed)?,
                        None => JobSpec::default(),
                    };
                    let imgs = images(*from).map_err(failed)?;
                    let r = self.run_post_node(lease, plugin, &spec, imgs).await;
                    node_seconds += t.elapsed().as_secs_f64();
                    Flow::Images(r.map_err(|f| f.after(used(gpu_seconds, node_seconds)))?)
                }
                StepOp::Infer {
                    job_type,
                    params: p,
                    source,
                    mask,
                    scale,
                    model,
                    expected_gpu_seconds,
                } => {
                    let mut spec = match p {
                        Some(p) => params(*p).map_err(failed)?,
                        None => JobSpec::default(),
                    };
                    spec.job_type = *job_type;
                    spec.scale = *scale;
                    if *job_type == JobType::Upscale {
                        spec.generation.model = model.clone();
                    }
                    let sources = match source {
                        Some(s) => images(*s).map_err(failed)?,
                        None => Vec::new(),
                    };
                    let mask_img = match mask {
                        Some(m) => images(*m).map_err(failed)?.into_iter().next(),
                        None => None,
                    };
                    // Upscale and image-to-image run once per source image.
                    let runs: Vec<Option<RgbaImage>> = match job_type {
                        JobType::Upscale | JobType::ImageToImage => {
                            sources.into_iter().map(Some).collect()
                        }
                        _ => vec![sources.into_iter().next()],
                    };
                    // Priced again from what it really got: more than the
                    // reservation priced (images a node enlarged or added)
                    // is refused before it runs.
                    self.within_price(&step.node, &spec, &runs, model, *expected_gpu_seconds)
                        .map_err(failed)?;
                    let t = Instant::now();
                    let mut made = Vec::new();
                    for src in runs {
                        let op = pipeline::operation(&spec, src, mask_img.clone(), None).map_err(
                            |e| {
                                failed(JobFailure::new(
                                    FailureCode::InvalidInput,
                                    format!("{}: {e}", step.node),
                                ))
                            },
                        )?;
                        let r = self.infer(job, op).await;
                        let secs = t.elapsed().as_secs_f64();
                        match r {
                            Ok(imgs) => made.extend(imgs),
                            Err(f) => {
                                return Err(f.after(used(gpu_seconds + secs, node_seconds)));
                            }
                        }
                    }
                    let secs = t.elapsed().as_secs_f64();
                    gpu_seconds += secs;
                    step_seconds.push(secs);
                    Flow::Images(made)
                }
                StepOp::Component {
                    plugin,
                    inputs,
                    images: named,
                    declared,
                } => {
                    let t = Instant::now();
                    let loaded = self
                        .source
                        .plugin(&self.runtime, lease, plugin, PluginKind::Workflow)
                        .await
                        .map_err(|e| {
                            failed(JobFailure::new(
                                FailureCode::HostFailed,
                                format!("loading {}@{}: {e}", plugin.name, plugin.version),
                            ))
                        })?;
                    let mut given = HashMap::new();
                    for (name, at) in named {
                        if let Some(img) = images(*at).map_err(failed)?.into_iter().next() {
                            let handle = pipeline::to_handle(img)
                                .map_err(|e| failed(JobFailure::new(FailureCode::HostFailed, e)))?;
                            given.insert(name.clone(), handle);
                        }
                    }
                    // Its own time is what the job reserved, at most.
                    let limits = limits::resolve(PluginKind::Workflow, &plugin.name, &self.limits)
                        .within(plugin.reserved_ms);
                    let host = Arc::new(ComponentHost::new(
                        self.clone(),
                        lease.clone(),
                        job.stop.clone(),
                        job.progress.clone(),
                        given,
                        declared.clone(),
                        (t, limits.timeout),
                    ));
                    let run = self
                        .runtime
                        .run_workflow(&plugin.name, &loaded, limits, host.clone(), inputs)
                        .await;
                    let (buckets, gpu) = host.gpu_time();
                    gpu_seconds += gpu;
                    node_seconds += (t.elapsed().as_secs_f64() - gpu).max(0.0);
                    step_seconds.extend(buckets);
                    let used_now = used(gpu_seconds, node_seconds);
                    if job.stop.is_cancelled() {
                        return Err(JobFailure::new(FailureCode::Cancelled, "stopped"));
                    }
                    let out = run.map_err(|e| JobFailure::plugin(&e).after(used_now))?;
                    let made = out
                        .output
                        .images
                        .iter()
                        .map(pipeline::from_handle)
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            JobFailure::plugin(&super::nodes::bad_output(&plugin.name, &e))
                                .after(used_now)
                        })?;
                    if made.is_empty() {
                        return Err(JobFailure::plugin(&super::nodes::bad_output(
                            &plugin.name,
                            "the workflow returned no images",
                        ))
                        .after(used_now));
                    }
                    Flow::Images(made)
                }
                StepOp::Output { images: from } => {
                    let imgs = images(*from).map_err(failed)?;
                    out.1
                        .extend(std::iter::repeat_n(step.node.clone(), imgs.len()));
                    out.0.extend(imgs);
                    // Nodes may have enlarged what the plan bounded.
                    pipeline::check_outputs(&out.0).map_err(|e| {
                        failed(JobFailure::new(FailureCode::PluginFailed, e.clone()).because(&e))
                    })?;
                    Flow::Nothing
                }
            };
            flows.push(flow);
            // Let go of what no later step reads.
            for (j, f) in flows.iter_mut().enumerate() {
                if !plan.steps[i + 1..].iter().any(|s| s.reads(j)) {
                    *f = Flow::Nothing;
                }
            }
        }
        job.progress
            .send_modify(|v| v.0 = Some(StepProgress::steps(total, total)));
        let finished_at = started_at
            + chrono::Duration::from_std(std::time::Duration::from_secs_f64(
                gpu_seconds + node_seconds,
            ))
            .unwrap_or_default();
        Ok(WorkflowDone {
            images: out.0,
            image_nodes: out.1,
            step_seconds,
            gpu_seconds,
            node_seconds,
            started_at,
            finished_at,
        })
    }

    /// Whether an inference step's real inputs stay within what the
    /// reservation priced it at.
    fn within_price(
        &self,
        node: &str,
        spec: &JobSpec,
        runs: &[Option<RgbaImage>],
        model: &str,
        expected_gpu_seconds: f64,
    ) -> Result<(), JobFailure> {
        let m = self.catalogue.get(model).ok_or_else(|| {
            JobFailure::new(
                FailureCode::InferenceFailed,
                format!("unknown model {model}"),
            )
        })?;
        let sizes: Vec<(u32, u32)> = runs.iter().flatten().map(RgbaImage::dimensions).collect();
        let real = Work {
            job_type: spec.job_type,
            generation: &spec.generation,
            controlnet: spec.controlnet.as_ref().map(|c| c.model.as_str()),
            sources: &sizes,
            scale: spec.scale.unwrap_or(1),
        }
        .gpu_seconds(m, &self.catalogue);
        // Float sums of the same terms: allow for rounding only.
        if real <= expected_gpu_seconds * (1.0 + 1e-9) + 1e-9 {
            return Ok(());
        }
        let (need, have) = (credits_for(real, m), credits_for(expected_gpu_seconds, m));
        let reason = format!(
            "step {node} needs {need} credits for the images it got; {have} were reserved for it"
        );
        Err(JobFailure::new(FailureCode::InsufficientCredits, reason.clone()).because(&reason))
    }

    /// One operation on the backend, stoppable by the job's cancel.
    async fn infer(&self, job: &Running, op: Operation) -> Result<Vec<RgbaImage>, JobFailure> {
        let stop = job.stop.clone();
        let sink = Arc::new(move |_: Progress| !stop.is_cancelled());
        let out = tokio::select! {
            r = self.backend.run(op, sink) => r,
            _ = job.stop.cancelled() => Err(InferenceError::Cancelled),
        };
        out.map_err(|e| match e {
            InferenceError::Cancelled => JobFailure::new(FailureCode::Cancelled, "stopped"),
            InferenceError::InvalidInput(m) => JobFailure::new(FailureCode::InvalidInput, m),
            e => JobFailure::new(FailureCode::InferenceFailed, e.to_string()),
        })
    }
}
