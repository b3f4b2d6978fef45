//! Workflows: what a user builds once and runs many times. Stored
//! definitions (CRUD, visibility, copies, tags, counted in storage), the
//! checks a definition passes at save, and the compilation of a run — the
//! definition with the run's inputs — into a job the queue runs. Free of
//! HTTP.

pub mod definition;
pub mod invokeai;
pub mod plan;
mod run;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::{Map, Value};

use crate::generation::{GenerationError, Generator};
use crate::plugins::registry::RegistryError;
use crate::store::workflows::{self as q, ListFilter, WorkflowRow};
use crate::store::{Db, Page, StoreError, new_id};
use crate::users::Caller;
use definition::{Component, Definition, DefinitionError, Graph, NodeOp, PluginSide};

/// Workflows one user may keep.
pub const MAX_WORKFLOWS: usize = 200;
pub const MAX_TAGS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// Missing, or another user's private one (the same answer).
    #[error("not found")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Invalid { field: String, reason: String },
    /// The definition breaks a rule (named node and port).
    #[error(transparent)]
    Definition(#[from] DefinitionError),
    #[error("at most {max} workflows")]
    TooMany { max: usize },
    #[error(transparent)]
    Generation(#[from] GenerationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type WorkflowResult<T> = Result<T, WorkflowError>;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> WorkflowError {
    WorkflowError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A stored workflow with its tags.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub row: WorkflowRow,
    pub tags: Vec<String>,
    /// How an InvokeAI export was converted, when it was just imported.
    pub imported: Option<ImportReport>,
}

/// What an InvokeAI import mapped and approximated.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    #[schema(value_type = Vec<Object>)]
    pub models: Vec<invokeai::ModelMapping>,
    pub notes: Vec<String>,
}

/// What `create` takes.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub name: String,
    pub description: String,
    pub definition: Value,
    pub is_public: bool,
    pub tags: Vec<String>,
}

/// What `update` changes; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct WorkflowPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub definition: Option<Value>,
    pub is_public: Option<bool>,
    pub tags: Option<Vec<String>>,
}

pub struct Workflows {
    db: Db,
    generator: Arc<Generator>,
}

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Counted as sent (the API document's rule), stored trimmed.
fn check_name(raw: &str) -> WorkflowResult<String> {
    let name = raw.trim();
    if name.is_empty() || raw.chars().count() > MAX_NAME_CHARS {
        return Err(invalid("name", "1 to 100 characters"));
    }
    Ok(name.to_owned())
}

fn check_description(d: &str) -> WorkflowResult<String> {
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid("description", "at most 2000 characters"));
    }
    Ok(d.to_owned())
}

fn check_tags(tags: &[String]) -> WorkflowResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS}")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = t.trim().to_lowercase();
        let ok = !t.is_empty()
            && t.chars().count() <= 32
            && t.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(invalid("tags", "each 1 to 32 letters, digits, - or _"));
        }
        out.push(t);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// A plugin as resolved for a user.
struct ResolvedPlugin {
    name: String,
    version: String,
    /// `node`, `workflow` or `billing`.
    kind: String,
    /// A node plugin's side.
    side: Option<PluginSide>,
}

/// `name@version`, or a bare name (the newest version, pinned at save).
fn plugin_ref(s: &str) -> (&str, Option<&str>) {
    match s.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    }
}

impl Workflows {
    pub fn new(db: Db, generator: Arc<Generator>) -> Self {
        Self { db, generator }
    }

    /// A workflow the viewer may see: their own or a public one.
    pub async fn get(&self, viewer: &str, id: &str) -> WorkflowResult<Workflow> {
        let row = q::get(&self.db, id)
            .await?
            .filter(|w| w.user_id == viewer || w.is_public)
            .ok_or(WorkflowError::NotFound)?;
        let tags = q::tags_of(&self.db, id).await?;
        Ok(Workflow {
            row,
            tags,
            imported: None,
        })
    }

    pub async fn list(
        &self,
        viewer: &str,
        mine_only: bool,
        tag: Option<&str>,
        page: Page,
    ) -> WorkflowResult<(Vec<Workflow>, i64)> {
        let filter = ListFilter {
            viewer,
            mine_only,
            tag,
        };
        let (rows, total) = q::list(&self.db, &filter, page).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let tags = q::tags_of(&self.db, &row.id).await?;
            out.push(Workflow {
                row,
                tags,
                imported: None,
            });
        }
        Ok((out, total))
    }

    /// Stores a new workflow; a definition in InvokeAI's export format is
    /// converted first (`invokeai`), and the answer says how.
    pub async fn create(&self, caller: &Caller, mut new: NewWorkflow) -> WorkflowResult<Workflow> {
        if !invokeai::is_export(&new.definition) {
            return self.insert(caller, new, None).await;
        }
        let imported = self.convert(std::mem::take(&mut new.definition)).await?;
        new.definition = imported.definition.clone();
        self.insert_imported(caller, new, imported).await
    }

    /// Stores a converted export, the answer saying how it was converted.
    async fn insert_imported(
        &self,
        caller: &Caller,
        new: NewWorkflow,
        imported: invokeai::Imported,
    ) -> WorkflowResult<Workflow> {
        let mut w = self.insert(caller, new, None).await?;
        w.imported = Some(ImportReport {
            models: imported.models,
            notes: imported.notes,
        });
        Ok(w)
    }

    /// Imports an InvokeAI workflow export as a new private workflow named
    /// as the export is.
    pub async fn import_invokeai(
        &self,
        caller: &Caller,
        export: Value,
    ) -> WorkflowResult<Workflow> {
        if !invokeai::is_export(&export) {
            return Err(DefinitionError::whole(
                "not an InvokeAI workflow export (nodes with data, edges)",
            )
            .into());
        }
        let imported = self.convert(export).await?;
        let new = NewWorkflow {
            name: imported.name.chars().take(100).collect(),
            description: imported.description.chars().take(2000).collect(),
            definition: imported.definition.clone(),
            is_public: false,
            tags: imported.tags.clone(),
        };
        self.insert_imported(caller, new, imported).await
    }

    /// Converts an InvokeAI export on the blocking pool: CPU-bound work,
    /// bounded in time by `invokeai::IMPORT_TIME_LIMIT`, that must not hold
    /// up the async runtime (or `/healthz`) while it runs.
    async fn convert(&self, export: Value) -> WorkflowResult<invokeai::Imported> {
        let generator = Arc::clone(&self.generator);
        let imported =
            tokio::task::spawn_blocking(move || invokeai::import(&export, &generator.models))
                .await
                .map_err(|e| {
                    GenerationError::Internal(anyhow::anyhow!("InvokeAI import: {e}"))
                })??;
        Ok(imported)
    }

    async fn insert(
        &self,
        caller: &Caller,
        new: NewWorkflow,
        copied_from: Option<String>,
    ) -> WorkflowResult<Workflow> {
        let name = check_name(&new.name)?;
        let description = check_description(&new.description)?;
        let tags = check_tags(&new.tags)?;
        if q::count_of_user(&self.db, &caller.id).await? >= MAX_WORKFLOWS as i64 {
            return Err(WorkflowError::TooMany { max: MAX_WORKFLOWS });
        }
        let (kind, definition) = self.check_definition(caller, &new.definition).await?;
        self.check_storage(caller, definition.len() as i64).await?;
        let now = Utc::now();
        let row = WorkflowRow {
            id: new_id(),
            user_id: caller.id.clone(),
            name,
            description,
            kind: kind.into(),
            definition_bytes: definition.len() as i64,
            definition,
            is_public: new.is_public,
            copied_from,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.db.begin().await?;
        q::insert(&mut tx, &row, &tags).await?;
        tx.commit().await?;
        Ok(Workflow {
            row,
            tags,
            imported: None,
        })
    }

    /// Only the owner edits; another user's workflow is `NotFound`.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        patch: WorkflowPatch,
    ) -> WorkflowResult<Workflow> {
        let before = self.own(&caller.id, id).await?;
        let mut row = before.clone();
        if let Some(n) = &patch.name {
            row.name = check_name(n)?;
        }
        if let Some(d) = &patch.description {
            row.description = check_description(d)?;
        }
        if let Some(p) = patch.is_public {
            row.is_public = p;
        }
        let tags = patch.tags.as_deref().map(check_tags).transpose()?;
        if let Some(def) = patch.definition {
            let def = if invokeai::is_export(&def) {
                self.convert(def).await?.definition
            } else {
                def
            };
            (row.kind, row.definition) = self
                .check_definition(caller, &def)
                .await
                .map(|(k, d)| (k.to_owned(), d))?;
            row.definition_bytes = row.definition.len() as i64;
            let growth = row.definition_bytes - before.definition_bytes;
            if growth > 0 {
                self.check_storage(caller, growth).await?;
            }
        }
        row.updated_at = Utc::now();
        let mut tx = self.db.begin().await?;
        // Read again under the lock: the counter moves by what is stored.
        let stored = q::get_in(&mut tx, id)
            .await?
            .filter(|w| w.user_id == caller.id)
            .ok_or(WorkflowError::NotFound)?;
        q::update(&mut tx, &stored, &row, tags.as_deref()).await?;
        tx.commit().await?;
        let tags = match tags {
            Some(t) => t,
            None => q::tags_of(&self.db, id).await?,
        };
        Ok(Workflow {
            row,
            tags,
            imported: None,
        })
    }

    pub async fn delete(&self, user_id: &str, id: &str) -> WorkflowResult<()> {
        let mut tx = self.db.begin().await?;
        let row = q::get_in(&mut tx, id)
            .await?
            .filter(|w| w.user_id == user_id)
            .ok_or(WorkflowError::NotFound)?;
        q::delete(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies a workflow the caller may see (a public one, or their own)
    /// into a private one of theirs; its plugins are checked for the
    /// caller as at save.
    pub async fn copy(&self, caller: &Caller, id: &str) -> WorkflowResult<Workflow> {
        let source = self.get(&caller.id, id).await?;
        let definition: Value = serde_json::from_str(&source.row.definition)
            .map_err(|e| GenerationError::Internal(anyhow::anyhow!("stored definition: {e}")))?;
        self.insert(
            caller,
            NewWorkflow {
                name: source.row.name,
                description: source.row.description,
                definition,
                is_public: false,
                tags: source.tags,
            },
            Some(source.row.id),
        )
        .await
    }

    async fn own(&self, user_id: &str, id: &str) -> WorkflowResult<WorkflowRow> {
        q::get(&self.db, id)
            .await?
            .filter(|w| w.user_id == user_id)
            .ok_or(WorkflowError::NotFound)
    }

    async fn check_storage(&self, caller: &Caller, _adding: i64) -> WorkflowResult<()> {
        crate::gallery::storage::check_quota(
            &self.db,
            &self.generator.plans,
            &caller.id,
            &caller.tier,
        )
        .await
        .map_err(|e| match e {
            crate::gallery::GalleryError::StorageExceeded { used, quota } => {
                GenerationError::StorageExceeded { used, quota }.into()
            }
            other => GenerationError::Internal(other.into()).into(),
        })
    }

    /// The checks at save: structure, plugins (pinned to the version they
    /// resolve to for the owner), models and parameters. Returns the kind
    /// and the definition to store.
    async fn check_definition(
        &self,
        caller: &Caller,
        v: &Value,
    ) -> WorkflowResult<(&'static str, String)> {
        let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX);
        if size > definition::MAX_DEFINITION_BYTES {
            return Err(invalid(
                "definition",
                format!("at most {} bytes", definition::MAX_DEFINITION_BYTES),
            ));
        }
        let mut def = definition::parse_any(v)?;
        match &mut def {
            Definition::Graph(graph) => self.check_graph(caller, graph).await?,
            Definition::Component(c) => self.check_component(caller, c).await?,
        }
        Ok((def.kind(), def.to_json()))
    }

    async fn check_graph(&self, caller: &Caller, graph: &mut Graph) -> WorkflowResult<()> {
        let sides = self.pin_plugins(caller, graph).await?;
        let checked = definition::check(graph, &sides)?;
        for (i, node) in graph.nodes.iter().enumerate() {
            match &node.op {
                NodeOp::Params { values } => {
                    let with_defaults = self::run::params_body(graph, &checked, i, values, None)?;
                    self.validate_params(caller, &node.id, with_defaults)
                        .await?;
                }
                NodeOp::Upscale { scale, model } => {
                    self.upscale_model(caller, &node.id, *scale, model.as_deref())?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A component: its plugin a workflow plugin the owner may run (pinned),
    /// each declared step's model known and allowed for the owner's tier.
    async fn check_component(&self, caller: &Caller, c: &mut Component) -> WorkflowResult<()> {
        let r = self
            .resolve_plugin(caller, &c.plugin)
            .await?
            .map_err(|reason| DefinitionError::port("component", "plugin", reason))?;
        if r.kind != "workflow" {
            return Err(DefinitionError::port(
                "component",
                "plugin",
                format!("{} is a {} plugin, not a workflow", c.plugin, r.kind),
            )
            .into());
        }
        c.plugin = format!("{}@{}", r.name, r.version);
        self.check_declared(caller, c)
    }

    /// Each declared step's model, and its LoRAs (of the model's base),
    /// known and allowed for `caller` — at save for the owner, at every
    /// run for the runner (another user's public workflow, or a tier that
    /// dropped since).
    pub(crate) fn check_declared(&self, caller: &Caller, c: &Component) -> WorkflowResult<()> {
        for (i, step) in c.steps.iter().enumerate() {
            let kinds: &[&str] = if step.op == "upscale" {
                &["upscaler"]
            } else {
                &["main"]
            };
            let port = format!("steps[{i}].model");
            let model = self.model_at(caller, ("component", &port), &step.model, kinds)?;
            for (j, lora) in step.loras.iter().enumerate() {
                let port = format!("steps[{i}].loras[{j}]");
                let l = self.model_at(caller, ("component", &port), lora, &["lora"])?;
                if l.base.is_some() && l.base != model.base {
                    return Err(DefinitionError::port(
                        "component",
                        &port,
                        format!("{lora} is made for another base model"),
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// A model a node's `port` names, of one of `kinds`, known and allowed
    /// for the owner's tier.
    fn model_at(
        &self,
        caller: &Caller,
        (node, port): (&str, &str),
        name: &str,
        kinds: &[&str],
    ) -> WorkflowResult<crate::models::Model> {
        match self.generator.model(caller, port, name, kinds) {
            Ok(m) => Ok(m),
            Err(GenerationError::Invalid { reason, .. }) => {
                Err(DefinitionError::port(node, port, reason).into())
            }
            Err(GenerationError::ModelNotAvailable { model, min_tier }) => Err(
                DefinitionError::port(node, port, format!("{model} needs the {min_tier} tier"))
                    .into(),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves each plugin node for `caller` (pinning a bare name to its
    /// newest version) and tells its side.
    async fn pin_plugins(
        &self,
        caller: &Caller,
        graph: &mut Graph,
    ) -> WorkflowResult<HashMap<String, PluginSide>> {
        let mut sides = HashMap::new();
        for node in &mut graph.nodes {
            let NodeOp::Plugin { plugin, config } = &mut node.op else {
                continue;
            };
            if config.as_ref().is_some_and(|c| !c.is_object()) {
                return Err(DefinitionError::port(&node.id, "config", "expected an object").into());
            }
            let r = self
                .resolve_plugin(caller, plugin)
                .await?
                .map_err(|reason| DefinitionError::node(&node.id, reason))?;
            let side = r.side.ok_or_else(|| {
                DefinitionError::node(&node.id, format!("{plugin} is not a node plugin"))
            })?;
            *plugin = format!("{}@{}", r.name, r.version);
            sides.insert(node.id.clone(), side);
        }
        Ok(sides)
    }

    /// A plugin node's `name@version` (or bare name) resolved for `caller`,
    /// or why it cannot be used (the inner error).
    async fn resolve_plugin(
        &self,
        caller: &Caller,
        plugin: &str,
    ) -> WorkflowResult<Result<ResolvedPlugin, String>> {
        let (name, version) = plugin_ref(plugin);
        let runnable = match self
            .generator
            .registry
            .resolve(&caller.id, name, version)
            .await
        {
            Ok(r) => r,
            Err(RegistryError::NotFound) => {
                return Ok(Err(format!("no plugin {plugin} you may run")));
            }
            Err(RegistryError::Yanked) => return Ok(Err(format!("{plugin} is yanked"))),
            Err(e) => return Err(GenerationError::Internal(anyhow::anyhow!("{e}")).into()),
        };
        let side = match (
            runnable.plugin.kind.as_str(),
            runnable.version.node_kind.as_deref(),
        ) {
            ("node", Some("pre")) => Some(PluginSide::Pre),
            ("node", Some("post")) => Some(PluginSide::Post),
            _ => None,
        };
        Ok(Ok(ResolvedPlugin {
            name: runnable.plugin.name,
            version: runnable.version.version,
            kind: runnable.plugin.kind,
            side,
        }))
    }

    /// Validates a `params` node's fields as the REST API does; errors
    /// name the node and the field.
    async fn validate_params(
        &self,
        caller: &Caller,
        node: &str,
        mut body: Map<String, Value>,
    ) -> WorkflowResult<crate::queue::job::JobSpec> {
        for field in ["pre_nodes", "post_nodes", "save_to_board", "controlnet"] {
            if body.contains_key(field) {
                return Err(
                    DefinitionError::port(node, field, "not a field of a params node").into(),
                );
            }
        }
        let strength = match body.remove("strength") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_f64() {
                Some(s) if (0.0..=1.0).contains(&s) => Some(s as f32),
                _ => {
                    return Err(DefinitionError::port(node, "strength", "between 0 and 1").into());
                }
            },
        };
        match self
            .generator
            .text_to_image(caller, Value::Object(body))
            .await
        {
            Ok(mut prepared) => {
                prepared.spec.strength = strength;
                Ok(prepared.spec)
            }
            Err(GenerationError::Invalid { field, reason }) => {
                Err(DefinitionError::port(node, &field, reason).into())
            }
            Err(GenerationError::ModelNotAvailable { model, min_tier }) => Err(
                DefinitionError::port(node, "model", format!("{model} needs the {min_tier} tier"))
                    .into(),
            ),
            Err(e) => Err(e.into()),
        }
    }

    fn upscale_model(
        &self,
        caller: &Caller,
        node: &str,
        scale: Option<u32>,
        model: Option<&str>,
    ) -> WorkflowResult<(String, u32)> {
        let scale = scale.unwrap_or(2);
        if !(2..=4).contains(&scale) {
            return Err(DefinitionError::port(node, "scale", "2, 3 or 4").into());
        }
        let name = model.unwrap_or("real-esrgan");
        let m = self.model_at(caller, (node, "model"), name, &["upscaler"])?;
        Ok((m.name, scale))
    }
}
