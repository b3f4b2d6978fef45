//! Host bindings of `pingvas:plugin@0.1.0`, one `bindgen!` per world
//! (billing adapters speak 0.2.0 only: see `v0_2_0`).
//! Interfaces shared between worlds are generated once (in `node`) and
//! reused, so one host implementation serves them all. The conversions
//! between this version's types and the host's live here too, so a later
//! version maps its own types without touching the host.

use crate::queue::job::{JobSpec, LoraSpec};

/// The version of the `pingvas:plugin` package these bindings speak.
pub const VERSION: &str = "0.1.0";

pub mod node {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "node",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/images.image": crate::plugins::image_handle::ImageHandle,
        },
    });
}

pub mod workflow {
    wasmtime::component::bindgen!({
        path: "../wit/plugin@0.1.0",
        world: "workflow",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "pingvas:plugin/types": super::node::pingvas::plugin::types,
            "pingvas:plugin/log": super::node::pingvas::plugin::log,
            "pingvas:plugin/images": super::node::pingvas::plugin::images,
        },
    });
}

// Interfaces that only define types still get a (method-less) host trait.
impl node::pingvas::plugin::types::Host for crate::plugins::state::PluginState {}
impl node::pingvas::plugin::node_types::Host for crate::plugins::state::PluginState {}

use node::pingvas::plugin::types::{GenerationParams, Lora};

/// The parameters a node sees of a job.
impl From<&JobSpec> for GenerationParams {
    fn from(spec: &JobSpec) -> Self {
        let g = &spec.generation;
        GenerationParams {
            prompt: g.prompt.clone(),
            negative_prompt: g.negative_prompt.clone(),
            model: g.model.clone(),
            width: g.width,
            height: g.height,
            steps: g.steps,
            cfg_scale: g.cfg_scale,
            sampler: g.sampler.clone(),
            seed: i64::try_from(g.seed).unwrap_or(i64::MAX),
            batch_size: g.batch_size,
            loras: spec
                .generation
                .loras
                .iter()
                .map(|l| Lora {
                    name: l.name.clone(),
                    weight: l.weight,
                })
                .collect(),
            strength: spec.strength,
        }
    }
}

impl GenerationParams {
    /// Folds a pre-node's answer back into `spec`. What sets the price —
    /// model, size, steps, batch — was paid for at enqueue and stays; the
    /// node may rewrite prompts, sampler, guidance, seed, strength and the
    /// weights of the request's LoRAs, within the rules of a request
    /// (`JobSpec::check_rewrite_of`); anything else is its bad output.
    pub fn apply_to(self, spec: &JobSpec) -> Result<JobSpec, String> {
        let mut out = spec.clone();
        let g = &mut out.generation;
        g.prompt = self.prompt;
        g.negative_prompt = self.negative_prompt;
        g.cfg_scale = self.cfg_scale;
        g.sampler = self.sampler;
        g.seed = u64::try_from(self.seed).map_err(|_| "seed: 0 to 4294967295".to_owned())?;
        g.loras = self
            .loras
            .into_iter()
            .map(|l| LoraSpec {
                name: l.name,
                weight: l.weight,
            })
            .collect();
        out.strength = self.strength.or(spec.strength);
        out.check_rewrite_of(spec)?;
        Ok(out)
    }
}

/// Sample parameters: what `plugin check`, tests and benchmarks start from.
impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            prompt: "a lighthouse on a cliff at dusk".into(),
            negative_prompt: String::new(),
            model: "stable-diffusion-xl".into(),
            width: 1024,
            height: 1024,
            steps: 30,
            cfg_scale: 7.5,
            sampler: "euler_a".into(),
            seed: 42,
            batch_size: 1,
            loras: Vec::new(),
            strength: None,
        }
    }
}

use node::pingvas::plugin::node_types::NodeKind;

impl NodeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKind::Pre => "pre",
            NodeKind::Post => "post",
        }
    }
}
