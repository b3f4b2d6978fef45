//! The model catalogue: which models exist, of what type and base, and the
//! lowest tier allowed to use each. Built in (`models.default.toml`) and
//! replaceable by an operator file without recompiling.

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::billing::plans::Catalogue as Plans;

const DEFAULT_MODELS: &str = include_str!("models.default.toml");

pub const MODEL_TYPES: [&str; 5] = ["main", "vae", "lora", "controlnet", "upscaler"];
pub const MODEL_BASES: [&str; 4] = ["sd-1", "sd-2", "sdxl", "flux"];

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Model {
    pub id: String,
    pub name: String,
    pub display_name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub base: Option<String>,
    #[serde(default)]
    pub description: String,
    pub thumbnail_url: Option<String>,
    pub min_tier: String,
    /// Identifies the weights (image metadata `model_hash`).
    #[serde(default)]
    pub hash: String,
    /// Price of one GPU second on this model.
    #[serde(default = "default_rate")]
    pub credits_per_gpu_second: f64,
    /// Expected GPU seconds per megapixel per step (per output megapixel
    /// for upscalers): the basis of the up-front estimate.
    #[serde(default = "default_speed")]
    pub gpu_seconds_per_megapixel_step: f64,
    /// A plan feature (`[plans.features]` of the plan catalogue) a user's
    /// plan must have to use it, besides `min_tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
}

fn default_rate() -> f64 {
    1.0
}

fn default_speed() -> f64 {
    0.05
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    models: Vec<Model>,
}

#[derive(Debug, Clone)]
pub struct ModelCatalogue {
    models: Vec<Model>,
}

impl ModelCatalogue {
    /// Loads the operator's file (or the built-in catalogue) and checks it
    /// against the plan catalogue.
    pub fn load(path: Option<&Path>, plans: &Plans) -> anyhow::Result<Self> {
        let text = match path {
            None => DEFAULT_MODELS.to_owned(),
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("reading model catalogue {}", p.display()))?,
        };
        Self::parse(&text, plans)
    }

    pub fn parse(text: &str, plans: &Plans) -> anyhow::Result<Self> {
        let file: ModelsFile = toml::from_str(text)?;
        let mut seen = std::collections::HashSet::new();
        for m in &file.models {
            if !seen.insert(m.name.as_str()) {
                bail!("model {} appears twice", m.name);
            }
            if !MODEL_TYPES.contains(&m.kind.as_str()) {
                bail!("model {}: unknown type {}", m.name, m.kind);
            }
            if let Some(base) = &m.base
                && !MODEL_BASES.contains(&base.as_str())
            {
                bail!("model {}: unknown base {base}", m.name);
            }
            if !(m.credits_per_gpu_second > 0.0 && m.gpu_seconds_per_megapixel_step > 0.0) {
                bail!("model {}: rate and speed must be positive", m.name);
            }
            if plans.get(&m.min_tier).is_none() {
                bail!("model {}: min_tier {} is not a plan", m.name, m.min_tier);
            }
            if let Some(f) = &m.feature
                && !plans.knows_feature(f)
            {
                bail!("model {}: feature {f} is not a feature of any plan", m.name);
            }
        }
        Ok(Self {
            models: file.models,
        })
    }

    pub fn all(&self) -> &[Model] {
        &self.models
    }

    pub fn get(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Models of `kind` and `base` (either may be left open), in catalogue
    /// order.
    pub fn filter<'a>(
        &'a self,
        kind: Option<&'a str>,
        base: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Model> {
        self.models.iter().filter(move |m| {
            kind.is_none_or(|k| m.kind == k) && base.is_none_or(|b| m.base.as_deref() == Some(b))
        })
    }

    /// Whether a user on `tier` may use `model`: their tier ranks at least
    /// as high as the model's `min_tier`, and their plan has its feature.
    pub fn allows(&self, plans: &Plans, tier: &str, model: &Model) -> bool {
        self.ranks(plans, tier, model)
            && model
                .feature
                .as_deref()
                .is_none_or(|f| plans.tier(tier).features.has(f))
    }

    /// Whether `tier` ranks at least as high as the model's `min_tier`
    /// (its plan feature aside).
    pub fn ranks(&self, plans: &Plans, tier: &str, model: &Model) -> bool {
        plans.tier(tier).rank >= plans.tier(&model.min_tier).rank
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalogue_and_tier_gating() {
        let plans = Plans::builtin();
        let c = ModelCatalogue::load(None, &plans).unwrap();
        let flux = c.get("flux-dev").unwrap();
        assert!(!c.allows(&plans, "starter", flux));
        assert!(c.allows(&plans, "pro", flux));
        assert!(c.allows(&plans, "enterprise", flux));
        let main: Vec<_> = c
            .filter(Some("main"), Some("sdxl"))
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(main, ["stable-diffusion-xl"]);
    }

    #[test]
    fn rejects_unknown_tiers_and_types() {
        let plans = Plans::builtin();
        let bad_tier = DEFAULT_MODELS.replacen("min_tier = \"pro\"", "min_tier = \"platinum\"", 1);
        assert!(ModelCatalogue::parse(&bad_tier, &plans).is_err());
        let bad_type = DEFAULT_MODELS.replacen("type = \"vae\"", "type = \"gan\"", 1);
        assert!(ModelCatalogue::parse(&bad_type, &plans).is_err());
    }
}
