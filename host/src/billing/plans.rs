//! The plan and tier catalogue: prices, monthly credits, storage, queue
//! concurrency, feature flags and rate limits. Built in (`plans.default.toml`)
//! and replaceable by an operator file without recompiling.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

const DEFAULT_CATALOGUE: &str = include_str!("plans.default.toml");

/// The tier every new account starts on.
pub const DEFAULT_TIER: &str = "free";

/// What a plan may use: the spec's four features, and any an operator
/// names for models of the model catalogue to require (a model's
/// `feature`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Features {
    pub sd_models: bool,
    pub flux_model: bool,
    pub nano_banana_api: bool,
    pub lora_training: bool,
    /// The operator's own features (e.g. `controlnet = false`).
    #[serde(flatten)]
    pub more: BTreeMap<String, bool>,
}

impl Features {
    /// Whether the plan has feature `name` (one it does not name: no).
    pub fn has(&self, name: &str) -> bool {
        match name {
            "sd_models" => self.sd_models,
            "flux_model" => self.flux_model,
            "nano_banana_api" => self.nano_banana_api,
            "lora_training" => self.lora_training,
            other => self.more.get(other).copied().unwrap_or(false),
        }
    }

    /// Whether `name` is a feature at all (named by this plan).
    pub fn names(&self, name: &str) -> bool {
        [
            "sd_models",
            "flux_model",
            "nano_banana_api",
            "lora_training",
        ]
        .contains(&name)
            || self.more.contains_key(name)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    pub display_name: String,
    pub rank: u32,
    /// `None` for plans sold by contract.
    pub monthly_price: Option<f64>,
    pub yearly_price: Option<f64>,
    pub credits: i64,
    pub storage_gb: u64,
    pub queue_count: u32,
    /// Jobs a user may have waiting in the queue.
    pub max_queued: u32,
    pub requests_per_min: u32,
    pub generations_per_min: u32,
    pub features: Features,
}

impl Plan {
    pub fn storage_quota_bytes(&self) -> u64 {
        self.storage_gb * 1024 * 1024 * 1024
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    plans: Vec<Plan>,
}

#[derive(Debug, Clone)]
pub struct Catalogue {
    plans: BTreeMap<String, Plan>,
}

impl Catalogue {
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_CATALOGUE).expect("built-in plan catalogue is valid")
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            None => Ok(Self::builtin()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading plan catalogue {}", p.display()))?;
                Self::parse(&text).with_context(|| format!("in plan catalogue {}", p.display()))
            }
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: CatalogueFile = toml::from_str(text)?;
        let mut plans = BTreeMap::new();
        for plan in file.plans {
            if plan.credits < 0 {
                bail!("plan {}: credits must not be negative", plan.name);
            }
            if plan.queue_count == 0 {
                bail!("plan {}: queue_count must be at least 1", plan.name);
            }
            if plans.insert(plan.name.clone(), plan).is_some() {
                bail!("a plan name appears twice");
            }
        }
        if !plans.contains_key(DEFAULT_TIER) {
            bail!("the catalogue must define the `{DEFAULT_TIER}` plan");
        }
        Ok(Self { plans })
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// The lowest-ranked plan of at least `min_rank` with feature `name`,
    /// if any has it (a plan below a model's tier could not use it either).
    pub fn lowest_with(&self, name: &str, min_rank: u32) -> Option<&Plan> {
        self.plans
            .values()
            .filter(|p| p.rank >= min_rank && p.features.has(name))
            .min_by_key(|p| p.rank)
    }

    /// Whether some plan names feature `name`.
    pub fn knows_feature(&self, name: &str) -> bool {
        self.plans.values().any(|p| p.features.names(name))
    }

    /// The plan of a tier name, falling back to the default tier when an
    /// operator removed a tier that users still have.
    pub fn tier(&self, name: &str) -> &Plan {
        self.plans
            .get(name)
            .unwrap_or_else(|| &self.plans[DEFAULT_TIER])
    }

    /// The highest rank of the catalogue.
    pub fn top_rank(&self) -> u32 {
        self.plans.values().map(|p| p.rank).max().unwrap_or(0)
    }

    /// Plans ordered by rank.
    pub fn all(&self) -> Vec<&Plan> {
        let mut v: Vec<&Plan> = self.plans.values().collect();
        v.sort_by_key(|p| p.rank);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_matches_spec() {
        let c = Catalogue::builtin();
        let names: Vec<_> = c.all().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["free", "starter", "pro", "studio", "enterprise"]);
        let starter = c.get("starter").unwrap();
        assert_eq!(
            (starter.monthly_price, starter.yearly_price, starter.credits),
            (Some(25.0), Some(250.0), 5000)
        );
        assert_eq!(starter.storage_gb, 20);
        let pro = c.get("pro").unwrap();
        assert_eq!(
            (pro.monthly_price, pro.credits, pro.storage_quota_bytes()),
            (Some(75.0), 15000, 107374182400)
        );
        assert!(pro.features.flux_model && !pro.features.lora_training);
        assert_eq!(c.get("studio").unwrap().credits, 30000);
        let limits: Vec<_> = c
            .all()
            .iter()
            .map(|p| (p.requests_per_min, p.generations_per_min))
            .take(4)
            .collect();
        assert_eq!(limits, [(30, 2), (60, 5), (120, 10), (240, 20)]);
    }

    #[test]
    fn rejects_catalogue_without_free() {
        let text = DEFAULT_CATALOGUE.replace("name = \"free\"", "name = \"gratis\"");
        assert!(Catalogue::parse(&text).is_err());
    }
}
