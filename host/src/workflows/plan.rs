//! A workflow run as the queue stores it and a worker executes it: the
//! graph compiled at enqueue with the run's inputs — parameters validated
//! into job specs, plugins pinned, image inputs stored — as steps in run
//! order, each taking from earlier steps by index.

use serde::{Deserialize, Serialize};

use crate::queue::job::{JobSpec, JobType, NodeSpec};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowPlan {
    pub workflow_id: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The node's id in the definition (named in errors and metadata).
    pub node: String,
    #[serde(flatten)]
    pub op: StepOp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum StepOp {
    /// Validated generation parameters.
    Params { spec: Box<JobSpec> },
    /// An image input, stored at enqueue (blob key).
    Image { key: String },
    /// A pre-node plugin: params → params.
    Pre { plugin: NodeSpec, params: usize },
    /// A post-node plugin: images (+ params) → images.
    Post {
        plugin: NodeSpec,
        images: usize,
        params: Option<usize>,
    },
    /// One inference operation, run for each source image (upscale,
    /// image-to-image) or once.
    Infer {
        job_type: JobType,
        params: Option<usize>,
        source: Option<usize>,
        mask: Option<usize>,
        /// Upscale factor and model (upscale only).
        scale: Option<u32>,
        /// The model it runs on.
        model: String,
        /// GPU seconds expected at enqueue from the images it will get
        /// (what the reservation prices); a worker refuses to run it on
        /// inputs that would take more.
        expected_gpu_seconds: f64,
    },
    /// A workflow component's `run`, with the job's scalar inputs as JSON
    /// and its image inputs by name (steps), priced by the inference steps
    /// it declared.
    Component {
        plugin: NodeSpec,
        inputs: String,
        images: Vec<(String, usize)>,
        declared: Vec<Declared>,
    },
    /// Its images become the run's gallery images.
    Output { images: usize },
}

/// An inference step a component declared, priced at enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Declared {
    pub model: String,
    pub expected_gpu_seconds: f64,
    /// The LoRAs its calls may apply (priced in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<String>,
}

impl WorkflowPlan {
    /// Each inference step's model and expected GPU seconds.
    /// (A component's declared steps count as its inference steps.)
    pub fn inferences(&self) -> impl Iterator<Item = (&str, f64)> {
        self.steps.iter().flat_map(|s| {
            let steps: Vec<(&str, f64)> = match &s.op {
                StepOp::Infer {
                    model,
                    expected_gpu_seconds,
                    ..
                } => vec![(model.as_str(), *expected_gpu_seconds)],
                StepOp::Component { declared, .. } => declared
                    .iter()
                    .map(|d| (d.model.as_str(), d.expected_gpu_seconds))
                    .collect(),
                _ => Vec::new(),
            };
            steps
        })
    }

    /// The models it runs on, sorted, once each.
    pub fn models(&self) -> Vec<String> {
        let mut m: Vec<String> = self.inferences().map(|(m, _)| m.to_owned()).collect();
        m.sort();
        m.dedup();
        m
    }

    /// Blob keys of its image inputs.
    pub fn input_keys(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match &s.op {
            StepOp::Image { key } => Some(key.as_str()),
            _ => None,
        })
    }

    /// Whether `node` is one of its output nodes.
    pub fn is_output(&self, node: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.node == node && matches!(s.op, StepOp::Output { .. }))
    }

    /// Its plugins (nodes and a component), as pinned.
    pub fn plugins(&self) -> impl Iterator<Item = &NodeSpec> {
        self.steps.iter().filter_map(|s| match &s.op {
            StepOp::Pre { plugin, .. }
            | StepOp::Post { plugin, .. }
            | StepOp::Component { plugin, .. } => Some(plugin),
            _ => None,
        })
    }

    pub fn plugins_mut(&mut self) -> impl Iterator<Item = &mut NodeSpec> {
        self.steps.iter_mut().filter_map(|s| match &mut s.op {
            StepOp::Pre { plugin, .. }
            | StepOp::Post { plugin, .. }
            | StepOp::Component { plugin, .. } => Some(plugin),
            _ => None,
        })
    }
}

impl StepOp {
    /// What the step does, in a word (progress messages).
    pub fn kind(&self) -> &'static str {
        match self {
            StepOp::Params { .. } => "params",
            StepOp::Image { .. } => "image input",
            StepOp::Pre { .. } => "pre-node",
            StepOp::Post { .. } => "post-node",
            StepOp::Infer { job_type, .. } => job_type.as_str(),
            StepOp::Component { .. } => "workflow component",
            StepOp::Output { .. } => "output",
        }
    }
}

impl Step {
    /// Whether this step takes from step `at`.
    pub fn reads(&self, at: usize) -> bool {
        match &self.op {
            StepOp::Params { .. } | StepOp::Image { .. } => false,
            StepOp::Pre { params, .. } => *params == at,
            StepOp::Post { images, params, .. } => *images == at || *params == Some(at),
            StepOp::Infer {
                params,
                source,
                mask,
                ..
            } => [*params, *source, *mask].contains(&Some(at)),
            StepOp::Component { images, .. } => images.iter().any(|(_, s)| *s == at),
            StepOp::Output { images } => *images == at,
        }
    }
}

/// How the queue lists a job's models in `jobs.model`: one name, or a
/// workflow's sorted names joined by commas (a worker must serve all).
pub fn joined_models(models: &[String]) -> String {
    models.join(",")
}
