//! A run of a workflow: the run's inputs checked against the declared
//! ones, then the definition compiled into a `WorkflowPlan` job.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::definition::{
    self, Checked, Component, Definition, DefinitionError, Graph, INPUTS, InputDecl, InputType,
    NodeOp, PluginSide,
};
use super::plan::{Declared, Step, StepOp, WorkflowPlan, joined_models};
use super::{WorkflowResult, Workflows, invalid};
use crate::generation::GenerationError;
use crate::generation::inputs::{self, Input};
use crate::generation::validate::{MAX_SOURCE_SIDE, MAX_UPSCALED_SIDE, Prepared};
use crate::inference::Generation;
use crate::plugins::world::PluginKind;
use crate::queue::job::{
    JobSpec, JobType, MAX_OUTPUT_IMAGES, MAX_OUTPUT_PIXELS, NodeSpec, Work, diffusion_speed,
};
use crate::users::Caller;

/// A value that validates in place of an input with no default, at save.
fn placeholder(field: &str) -> Value {
    match field {
        "prompt" => json!("a workflow input"),
        "negative_prompt" => json!(""),
        "seed" => json!(-1),
        "steps" => json!(30),
        "cfg_scale" => json!(7.5),
        "width" | "height" => json!(1024),
        "batch_size" => json!(1),
        "strength" => json!(0.75),
        _ => Value::Null,
    }
}

/// A `params` node's request body: its values, with each connected
/// in-port set from the run's input (`inputs`), or at save from the
/// input's default or a placeholder.
pub(super) fn params_body(
    g: &Graph,
    c: &Checked,
    node: usize,
    values: &Map<String, Value>,
    inputs: Option<&HashMap<String, Value>>,
) -> Result<Map<String, Value>, DefinitionError> {
    let mut body = values.clone();
    for (port, ..) in definition::PARAM_PORTS {
        let Some(link) = c.into_port(node, port) else {
            continue;
        };
        let value = match inputs {
            Some(given) => given.get(&link.from_port).cloned(),
            None => g
                .inputs
                .iter()
                .find(|d| d.name == link.from_port)
                .and_then(|d| d.default.clone())
                .or_else(|| Some(placeholder(port))),
        };
        if let Some(v) = value {
            body.insert((*port).to_owned(), v);
        }
    }
    Ok(body)
}

/// How many images a step hands on, and their size, as far as known at
/// enqueue (what the reservation prices).
#[derive(Debug, Clone, Copy)]
struct Expect {
    count: u32,
    width: u32,
    height: u32,
}

/// The steps compiled so far and what is known of them.
#[derive(Default)]
struct Builder {
    steps: Vec<Step>,
    /// Node index → its step.
    step_of: HashMap<usize, usize>,
    /// Image input name → its step.
    image_step: HashMap<String, usize>,
    expect: HashMap<usize, Expect>,
    /// Steps that hand on parameters → those parameters.
    specs: HashMap<usize, JobSpec>,
    /// Output images so far, and their pixels.
    outputs: (usize, u64),
    /// Pixels of every step's images together: at worst a worker holds
    /// them all at once.
    held: u64,
}

/// The most pixels a graph's steps may hand on in all: four times the
/// outputs' bound, 1 GiB of RGBA.
const MAX_HELD_PIXELS: u64 = 4 * MAX_OUTPUT_PIXELS;

impl Builder {
    /// The step node `i`'s in-port `port` takes from; an image input gets
    /// its own step the first time it is used.
    fn source_of(
        &mut self,
        checked: &Checked,
        images: &HashMap<String, Input>,
        i: usize,
        port: &str,
    ) -> Option<usize> {
        let link = checked.into_port(i, port)?;
        if let Some(f) = link.from {
            return self.step_of.get(&f).copied();
        }
        let name = link.from_port.clone();
        if let Some(&s) = self.image_step.get(&name) {
            return Some(s);
        }
        let input = images.get(&name)?;
        self.steps.push(Step {
            node: format!("{INPUTS}.{name}"),
            op: StepOp::Image {
                key: input.key.clone(),
            },
        });
        let s = self.steps.len() - 1;
        self.image_step.insert(name, s);
        self.expect.insert(
            s,
            Expect {
                count: 1,
                width: input.width,
                height: input.height,
            },
        );
        Some(s)
    }

    fn next(&self) -> usize {
        self.steps.len()
    }

    /// What step `at` hands on, as priced.
    fn expected(&self, at: usize, node: &str) -> Result<Expect, DefinitionError> {
        self.expect.get(&at).copied().ok_or_else(|| {
            DefinitionError::node(node, "the size of its input images cannot be known")
        })
    }

    /// Records what the next step hands on, held to the bound of one
    /// step's images (the outputs' bound) and of all steps' together:
    /// refused here, before anything is built or reserved for it.
    fn produce(&mut self, e: Expect, node: &str) -> Result<(), DefinitionError> {
        let pixels = u64::from(e.count) * u64::from(e.width) * u64::from(e.height);
        if e.count as usize > MAX_OUTPUT_IMAGES || pixels > MAX_OUTPUT_PIXELS {
            return Err(DefinitionError::node(
                node,
                format!(
                    "it hands on {} images of {} megapixels; a step may hand on at most {MAX_OUTPUT_IMAGES} images of {} megapixels",
                    e.count,
                    pixels / 1_000_000,
                    MAX_OUTPUT_PIXELS / 1_000_000
                ),
            ));
        }
        self.held += pixels;
        if self.held > MAX_HELD_PIXELS {
            return Err(DefinitionError::node(
                node,
                format!(
                    "the run's steps come to {} megapixels of images; at most {} in all",
                    self.held / 1_000_000,
                    MAX_HELD_PIXELS / 1_000_000
                ),
            ));
        }
        self.expect.insert(self.next(), e);
        Ok(())
    }

    /// Counts an output node's images against the job's output bound.
    fn output(&mut self, e: Expect, node: &str) -> Result<(), DefinitionError> {
        self.outputs.0 += e.count as usize;
        self.outputs.1 += u64::from(e.count) * u64::from(e.width) * u64::from(e.height);
        if self.outputs.0 > MAX_OUTPUT_IMAGES || self.outputs.1 > MAX_OUTPUT_PIXELS {
            return Err(DefinitionError::node(
                node,
                format!(
                    "the run's outputs come to {} images of {} megapixels; a run may output at most {MAX_OUTPUT_IMAGES} images of {} megapixels together",
                    self.outputs.0,
                    self.outputs.1 / 1_000_000,
                    MAX_OUTPUT_PIXELS / 1_000_000
                ),
            ));
        }
        Ok(())
    }
}

impl Expect {
    /// The size of each image.
    fn sizes(self) -> Vec<(u32, u32)> {
        vec![(self.width, self.height); self.count as usize]
    }
}

impl Workflows {
    /// Checks a run's inputs and compiles the workflow into a job (not yet
    /// queued: `Generator::submit_prepared` does that).
    pub async fn prepare_run(
        &self,
        caller: &Caller,
        workflow_id: &str,
        given: &Map<String, Value>,
        save_to_board: Option<String>,
    ) -> WorkflowResult<Prepared> {
        let wf = self.get(&caller.id, workflow_id).await?;
        let stored: Value = serde_json::from_str(&wf.row.definition)
            .map_err(|e| GenerationError::Internal(anyhow::anyhow!("stored definition: {e}")))?;
        let def = definition::parse_any(&stored)?;
        let (values, images) = self.run_inputs(caller, def.inputs(), given).await?;
        let steps = match &def {
            Definition::Graph(graph) => self.compile_graph(caller, graph, &values, &images).await?,
            Definition::Component(c) => self.compile_component(caller, c, &values, &images).await?,
        };
        let plan = WorkflowPlan {
            workflow_id: wf.row.id.clone(),
            steps,
        };
        let models = plan.models();
        if models.is_empty() {
            return Err(DefinitionError::whole("runs no inference step").into());
        }
        let spec = JobSpec {
            job_type: JobType::Workflow,
            generation: Generation {
                model: joined_models(&models),
                ..Generation::default()
            },
            save_to_board: self.generator.board(caller, save_to_board).await?,
            workflow: Some(plan),
            ..JobSpec::default()
        };
        Ok(Prepared {
            spec,
            inputs: images.into_values().collect(),
        })
    }

    /// The run's inputs: declared ones only, each of its type and limits;
    /// defaults fill the rest. Image inputs are probed (stored at enqueue).
    async fn run_inputs(
        &self,
        caller: &Caller,
        declared: &[InputDecl],
        given: &Map<String, Value>,
    ) -> WorkflowResult<(HashMap<String, Value>, HashMap<String, Input>)> {
        if let Some(unknown) = given
            .keys()
            .find(|k| !declared.iter().any(|d| &d.name == *k))
        {
            return Err(invalid(
                format!("inputs.{unknown}"),
                "not an input of this workflow",
            ));
        }
        let mut values = HashMap::new();
        let mut images: HashMap<String, Input> = HashMap::new();
        for d in declared {
            let field = format!("inputs.{}", d.name);
            let v = match given.get(&d.name).or(d.default.as_ref()) {
                Some(v) => v,
                None if d.optional => continue,
                None => return Err(invalid(field, "required")),
            };
            definition::check_value(d, v).map_err(|r| invalid(&field, r))?;
            if d.ty == InputType::Image {
                let input = inputs::probe(
                    &self.db,
                    caller,
                    &field,
                    v.as_str().unwrap_or_default(),
                    MAX_SOURCE_SIDE,
                )
                .await?;
                images.insert(d.name.clone(), input);
            } else {
                values.insert(d.name.clone(), v.clone());
            }
        }

        Ok((values, images))
    }

    /// A graph's nodes as steps, in run order.
    async fn compile_graph(
        &self,
        caller: &Caller,
        graph: &Graph,
        values: &HashMap<String, Value>,
        images: &HashMap<String, Input>,
    ) -> WorkflowResult<Vec<Step>> {
        let (plugins, sides) = self.plugins_for_run(caller, graph).await?;
        let checked = definition::check(graph, &sides)?;
        let mut b = Builder::default();
        for &i in &checked.order {
            let node = &graph.nodes[i];
            let op = match &node.op {
                NodeOp::Params { values: v } => {
                    let body = params_body(graph, &checked, i, v, Some(values))?;
                    let spec = self.validate_params(caller, &node.id, body).await?;
                    b.specs.insert(b.next(), spec.clone());
                    StepOp::Params {
                        spec: Box::new(spec),
                    }
                }
                NodeOp::Plugin { .. } => {
                    let plugin = plugins[&node.id].clone();
                    match sides[&node.id] {
                        PluginSide::Pre => {
                            let params =
                                b.source_of(&checked, images, i, "params").expect("checked");
                            if let Some(s) = b.specs.get(&params).cloned() {
                                b.specs.insert(b.next(), s);
                            }
                            StepOp::Pre { plugin, params }
                        }
                        PluginSide::Post => {
                            let from = b.source_of(&checked, images, i, "images").expect("checked");
                            if let Some(e) = b.expect.get(&from).copied() {
                                b.produce(e, &node.id)?;
                            }
                            StepOp::Post {
                                plugin,
                                images: from,
                                params: b.source_of(&checked, images, i, "params"),
                            }
                        }
                    }
                }
                NodeOp::Upscale { scale, model } => {
                    let (model, scale) =
                        self.upscale_model(caller, &node.id, *scale, model.as_deref())?;
                    let source = b.source_of(&checked, images, i, "source").expect("checked");
                    let from = b.expected(source, &node.id)?;
                    let (w, h) = (from.width * scale, from.height * scale);
                    if w > MAX_UPSCALED_SIDE || h > MAX_UPSCALED_SIDE {
                        return Err(DefinitionError::node(
                            &node.id,
                            format!(
                                "{w}x{h} after upscaling; at most {MAX_UPSCALED_SIDE} per side"
                            ),
                        )
                        .into());
                    }
                    let m = self.generator.models.get(&model).expect("resolved");
                    let generation = Generation::default();
                    let secs = Work {
                        job_type: JobType::Upscale,
                        generation: &generation,
                        controlnet: None,
                        sources: &from.sizes(),
                        scale,
                    }
                    .gpu_seconds(m, &self.generator.models);
                    b.produce(
                        Expect {
                            count: from.count,
                            width: w,
                            height: h,
                        },
                        &node.id,
                    )?;
                    StepOp::Infer {
                        job_type: JobType::Upscale,
                        params: None,
                        source: Some(source),
                        mask: None,
                        scale: Some(scale),
                        model,
                        expected_gpu_seconds: secs,
                    }
                }
                NodeOp::TextToImage | NodeOp::ImageToImage | NodeOp::Inpaint => {
                    let job_type = match node.op {
                        NodeOp::TextToImage => JobType::TextToImage,
                        NodeOp::ImageToImage => JobType::ImageToImage,
                        _ => JobType::Inpaint,
                    };
                    let params = b.source_of(&checked, images, i, "params").expect("checked");
                    let source = b.source_of(&checked, images, i, "source");
                    let mask = b.source_of(&checked, images, i, "mask");
                    let mut spec = b.specs.get(&params).cloned().ok_or_else(|| {
                        DefinitionError::port(&node.id, "params", "no parameters")
                    })?;
                    spec.job_type = job_type;
                    // What the step really processes: image-to-image runs
                    // once per source image, inpaint at its source's size.
                    let sources = match (job_type, source) {
                        (JobType::TextToImage, _) | (_, None) => Vec::new(),
                        (_, Some(s)) => b.expected(s, &node.id)?.sizes(),
                    };
                    let (count, width, height) = match job_type {
                        JobType::Inpaint => {
                            let &(w, h) = sources.first().ok_or_else(|| {
                                DefinitionError::port(&node.id, "source", "no source image")
                            })?;
                            if !(64..=MAX_SOURCE_SIDE).contains(&w)
                                || !(64..=MAX_SOURCE_SIDE).contains(&h)
                            {
                                return Err(DefinitionError::port(
                                    &node.id,
                                    "source",
                                    format!(
                                        "a {w}x{h} source; inpaint takes 64 to {MAX_SOURCE_SIDE} pixels a side"
                                    ),
                                )
                                .into());
                            }
                            (1, w, h)
                        }
                        JobType::ImageToImage => (
                            sources.len().max(1) as u32,
                            spec.generation.width,
                            spec.generation.height,
                        ),
                        _ => (1, spec.generation.width, spec.generation.height),
                    };
                    let m = self.generator.models.get(spec.model()).ok_or_else(|| {
                        DefinitionError::port(&node.id, "params", "unknown model")
                    })?;
                    let secs = Work {
                        job_type,
                        generation: &spec.generation,
                        controlnet: spec.controlnet.as_ref().map(|c| c.model.as_str()),
                        sources: &sources,
                        scale: 1,
                    }
                    .gpu_seconds(m, &self.generator.models);
                    b.produce(
                        Expect {
                            count: count.saturating_mul(spec.generation.batch_size),
                            width,
                            height,
                        },
                        &node.id,
                    )?;
                    StepOp::Infer {
                        job_type,
                        params: Some(params),
                        source,
                        mask,
                        scale: None,
                        model: spec.model().to_owned(),
                        expected_gpu_seconds: secs,
                    }
                }
                NodeOp::Output => {
                    let from = b.source_of(&checked, images, i, "images").expect("checked");
                    b.output(b.expected(from, &node.id)?, &node.id)?;
                    StepOp::Output { images: from }
                }
            };
            b.steps.push(Step {
                node: node.id.clone(),
                op,
            });
            b.step_of.insert(i, b.steps.len() - 1);
        }

        Ok(b.steps)
    }

    /// A component's run: its image inputs, the component pinned as
    /// stored (resolved for the runner now), priced by its declared steps;
    /// then its images out.
    async fn compile_component(
        &self,
        caller: &Caller,
        c: &Component,
        values: &HashMap<String, Value>,
        images: &HashMap<String, Input>,
    ) -> WorkflowResult<Vec<Step>> {
        let r = self
            .resolve_plugin(caller, &c.plugin)
            .await?
            .map_err(|reason| invalid("component.plugin", reason))?;
        if r.kind != "workflow" {
            return Err(invalid("component.plugin", "not a workflow plugin"));
        }
        self.check_declared(caller, c)?;
        let mut steps = Vec::new();
        let mut named = Vec::new();
        let mut names: Vec<&String> = images.keys().collect();
        names.sort();
        for name in names {
            steps.push(Step {
                node: format!("{INPUTS}.{name}"),
                op: StepOp::Image {
                    key: images[name].key.clone(),
                },
            });
            named.push((name.clone(), steps.len() - 1));
        }
        let mut declared = Vec::with_capacity(c.steps.len());
        for (i, d) in c.steps.iter().enumerate() {
            let m = self.generator.models.get(&d.model).ok_or_else(|| {
                invalid(
                    format!("component.steps[{i}].model"),
                    "no longer in the catalogue",
                )
            })?;
            let megapixels = f64::from(d.width) * f64::from(d.height) / 1e6;
            let models = &self.generator.models;
            let secs = if d.op == "upscale" {
                megapixels * m.gpu_seconds_per_megapixel_step
            } else {
                let adapters = d.loras.iter().map(String::as_str);
                megapixels
                    * f64::from(d.steps)
                    * f64::from(d.batch_size)
                    * diffusion_speed(m, adapters, models)
            };
            declared.push(Declared {
                model: m.name.clone(),
                expected_gpu_seconds: secs,
                loras: d.loras.clone(),
            });
        }
        let scalars: Map<String, Value> = values.clone().into_iter().collect();
        // Its own time is reserved: what it declared, at most its limit.
        let limit_ms = self.generator.plugin_time_ms(PluginKind::Workflow, &r.name);
        let mut plugin = NodeSpec::new(r.name, r.version, json!({}));
        plugin.reserved_ms = Some(
            c.max_seconds
                .map_or(limit_ms, |s| limit_ms.min(u64::from(s) * 1000)),
        );
        steps.push(Step {
            node: "component".into(),
            op: StepOp::Component {
                plugin,
                inputs: Value::Object(scalars).to_string(),
                images: named,
                declared,
            },
        });
        steps.push(Step {
            node: "output".into(),
            op: StepOp::Output {
                images: steps.len() - 1,
            },
        });
        Ok(steps)
    }

    /// Each plugin node pinned as stored, resolved for the runner now: a
    /// yanked or vanished version refuses the run, naming the node.
    async fn plugins_for_run(
        &self,
        caller: &Caller,
        graph: &Graph,
    ) -> WorkflowResult<(HashMap<String, NodeSpec>, HashMap<String, PluginSide>)> {
        let mut specs = HashMap::new();
        let mut sides = HashMap::new();
        for node in &graph.nodes {
            let NodeOp::Plugin { plugin, config } = &node.op else {
                continue;
            };
            let r = self
                .resolve_plugin(caller, plugin)
                .await?
                .map_err(|reason| invalid(format!("nodes.{}.plugin", node.id), reason))?;
            let side = r.side.ok_or_else(|| {
                invalid(
                    format!("nodes.{}.plugin", node.id),
                    format!("{plugin} is not a node plugin"),
                )
            })?;
            sides.insert(node.id.clone(), side);
            specs.insert(
                node.id.clone(),
                NodeSpec::new(
                    r.name,
                    r.version,
                    config.clone().unwrap_or_else(|| json!({})),
                ),
            );
        }
        Ok((specs, sides))
    }
}
