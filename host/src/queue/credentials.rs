//! A completed job's images get their content credentials
//! (`provenance`) before they are stored: the generation record comes from
//! the job (what the worker says it really ran, else the request), the
//! catalogue (model hash) and the plugin registry (each node's sha256).

use super::settle::{Finished, ran_spec};
use super::{Queue, QueueResult};
use crate::provenance::{GenerationRecord, PluginUse};
use crate::store::jobs::JobRow;
use crate::store::plugins as plugin_store;
use crate::workflows::plan::StepOp;

impl Queue {
    /// The record of how a job's images were made (sizes filled per image).
    pub(super) async fn generation_record(
        &self,
        row: &JobRow,
        done: &Finished,
    ) -> QueueResult<GenerationRecord> {
        let spec = ran_spec(row, Some(done));
        let model = self.first_model(row)?;
        let mut nodes = Vec::new();
        let mut models = Vec::new();
        if let Some(s) = &spec {
            nodes.extend(s.pre_nodes.iter().map(|n| (n, "pre")));
            nodes.extend(s.post_nodes.iter().map(|n| (n, "post")));
            if let Some(plan) = &s.workflow {
                models = plan.models();
                for step in &plan.steps {
                    match &step.op {
                        StepOp::Pre { plugin, .. } => nodes.push((plugin, "pre")),
                        StepOp::Post { plugin, .. } => nodes.push((plugin, "post")),
                        StepOp::Component { plugin, .. } => nodes.push((plugin, "workflow")),
                        _ => {}
                    }
                }
            }
        }
        let mut plugins = Vec::with_capacity(nodes.len());
        for (node, stage) in nodes {
            let sha256 = plugin_store::pinned(&self.parts.db, &node.name, &node.version)
                .await?
                .map(|(_, v)| v.sha256)
                .unwrap_or_default();
            plugins.push(PluginUse {
                name: node.name.clone(),
                version: node.version.clone(),
                sha256,
                stage: stage.to_owned(),
            });
        }
        let g = spec.as_ref().map(|s| &s.generation);
        Ok(GenerationRecord {
            job_id: row.id.clone(),
            job_type: row.job_type.as_str().to_owned(),
            model: model.name.clone(),
            model_hash: model.hash.clone(),
            models,
            seed: g.map(|g| g.seed),
            sampler: g.map(|g| g.sampler.clone()),
            steps: g.map(|g| g.steps),
            cfg_scale: g.map(|g| g.cfg_scale),
            width: 0,
            height: 0,
            backend: Some(done.backend.clone()).filter(|b| !b.is_empty()),
            plugins,
        })
    }

    /// An image with its credentials, signed on the blocking pool; an
    /// image that is no PNG is refused.
    pub(super) async fn with_credentials(
        &self,
        record: &GenerationRecord,
        png: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let (width, height) = crate::imaging::dimensions(&png)?;
        let record = GenerationRecord {
            width,
            height,
            ..record.clone()
        };
        let creds = self.parts.credentials.clone();
        tokio::task::spawn_blocking(move || creds.sign_png(&png, &record))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("{e:#}"))
    }
}
