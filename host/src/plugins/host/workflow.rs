//! `inference`, `nodes`, `progress` and `job-inputs`: what a workflow
//! component reaches. The work itself is the worker's (`WorkflowHost`,
//! supplied per job); this side moves images between handles and the
//! host, charges the images it hands the guest to the call's budget, and
//! keeps the deadline on guest time: time spent inside inference calls
//! (bounded by the job's reservation) moves the deadline on by as much.
//! Node calls stay on the clock — nothing else bounds how many a guest
//! makes.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use wasmtime::component::Resource;

use crate::plugins::bindings::v0_1_0::node::pingvas::plugin::types::{
    GenerationParams, PluginError,
};
use crate::plugins::bindings::v0_2_1::workflow::pingvas::plugin::{
    inference, job_inputs, nodes, progress,
};
use crate::plugins::image_handle::ImageHandle;
use crate::plugins::state::PluginState;

/// One inference operation a component asks for.
#[derive(Debug)]
pub enum Inference {
    TextToImage(GenerationParams),
    ImageToImage(GenerationParams, ImageHandle),
    Upscale {
        source: ImageHandle,
        scale: u32,
        model: String,
    },
    Inpaint(GenerationParams, ImageHandle, ImageHandle),
}

/// Why a host call did not give the component what it asked.
#[derive(Debug)]
pub enum CallError {
    /// Handed to the guest as its `plugin-error`; it may go on.
    Guest(PluginError),
    /// Ends the run (the job stopped, its reservation is spent, the host
    /// failed); the text is the job's failure.
    Abort(String),
}

/// The worker's side of a workflow run.
pub trait WorkflowHost: Send + Sync {
    fn infer(&self, call: Inference) -> BoxFuture<'_, Result<Vec<ImageHandle>, CallError>>;
    fn run_pre(
        &self,
        node: String,
        params: GenerationParams,
        config: String,
    ) -> BoxFuture<'_, Result<GenerationParams, CallError>>;
    fn run_post(
        &self,
        node: String,
        params: GenerationParams,
        images: Vec<ImageHandle>,
        config: String,
    ) -> BoxFuture<'_, Result<Vec<ImageHandle>, CallError>>;
    fn progress(&self, percent: u8, message: String);
    /// The job's image input of that name.
    fn input(&self, name: &str) -> Option<ImageHandle>;
}

impl PluginState {
    fn workflow_host(&self) -> wasmtime::Result<Arc<dyn WorkflowHost>> {
        self.workflow
            .clone()
            .ok_or_else(|| wasmtime::Error::msg("not a workflow run"))
    }

    /// Hands images to the guest, charged to the call's budget.
    fn give(&mut self, images: Vec<ImageHandle>) -> wasmtime::Result<Vec<Resource<ImageHandle>>> {
        let limits = self.limiter.limits;
        images
            .into_iter()
            .map(|mut img| {
                let bytes = img.rgba.len();
                if let Err(what) = self.budget.take(&limits, bytes, true) {
                    wasmtime::bail!("{what} budget exceeded");
                }
                img.charged = bytes;
                img.created = true;
                Ok(self.table.push(img)?)
            })
            .collect()
    }

    fn borrowed(&self, img: &Resource<ImageHandle>) -> wasmtime::Result<ImageHandle> {
        let mut copy = self.table.get(img)?.clone();
        copy.charged = 0;
        copy.created = false;
        Ok(copy)
    }

    /// Runs a host call off the guest's clock.
    async fn off_the_clock<T>(
        &mut self,
        call: impl Future<Output = Result<T, CallError>>,
    ) -> wasmtime::Result<Result<T, PluginError>> {
        let started = Instant::now();
        let out = call.await;
        self.deadline += started.elapsed();
        self.answer(out)
    }

    /// A host call's outcome for the guest: its error to go on with, or
    /// the end of the run.
    fn answer<T>(&mut self, out: Result<T, CallError>) -> wasmtime::Result<Result<T, PluginError>> {
        match out {
            Ok(v) => Ok(Ok(v)),
            Err(CallError::Guest(e)) => Ok(Err(e)),
            Err(CallError::Abort(reason)) => {
                self.aborted = Some(reason.clone());
                Err(wasmtime::Error::msg(reason))
            }
        }
    }

    async fn inference(
        &mut self,
        call: Inference,
    ) -> wasmtime::Result<Result<Vec<Resource<ImageHandle>>, PluginError>> {
        let host = self.workflow_host()?;
        match self.off_the_clock(host.infer(call)).await? {
            Ok(images) => Ok(Ok(self.give(images)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl inference::Host for PluginState {
    async fn text_to_image(
        &mut self,
        params: GenerationParams,
    ) -> wasmtime::Result<Result<Vec<Resource<ImageHandle>>, PluginError>> {
        self.inference(Inference::TextToImage(params)).await
    }

    async fn image_to_image(
        &mut self,
        params: GenerationParams,
        source: Resource<ImageHandle>,
    ) -> wasmtime::Result<Result<Vec<Resource<ImageHandle>>, PluginError>> {
        let source = self.borrowed(&source)?;
        self.inference(Inference::ImageToImage(params, source))
            .await
    }

    async fn upscale(
        &mut self,
        source: Resource<ImageHandle>,
        scale: u32,
        model: String,
    ) -> wasmtime::Result<Result<Resource<ImageHandle>, PluginError>> {
        let source = self.borrowed(&source)?;
        let call = Inference::Upscale {
            source,
            scale,
            model,
        };
        Ok(match self.inference(call).await? {
            Ok(mut images) if images.len() == 1 => Ok(images.remove(0)),
            Ok(_) => Err(PluginError::Failed("upscale made no single image".into())),
            Err(e) => Err(e),
        })
    }

    async fn inpaint(
        &mut self,
        params: GenerationParams,
        source: Resource<ImageHandle>,
        mask: Resource<ImageHandle>,
    ) -> wasmtime::Result<Result<Vec<Resource<ImageHandle>>, PluginError>> {
        let (source, mask) = (self.borrowed(&source)?, self.borrowed(&mask)?);
        self.inference(Inference::Inpaint(params, source, mask))
            .await
    }
}

impl nodes::Host for PluginState {
    async fn run_pre(
        &mut self,
        node: String,
        params: GenerationParams,
        config: String,
    ) -> wasmtime::Result<Result<GenerationParams, PluginError>> {
        let host = self.workflow_host()?;
        let out = host.run_pre(node, params, config).await;
        self.answer(out)
    }

    async fn run_post(
        &mut self,
        node: String,
        params: GenerationParams,
        images: Vec<Resource<ImageHandle>>,
        config: String,
    ) -> wasmtime::Result<Result<Vec<Resource<ImageHandle>>, PluginError>> {
        let host = self.workflow_host()?;
        let mut given = Vec::with_capacity(images.len());
        for h in images {
            let img = self.table.delete(h)?;
            self.budget.give_back(img.charged, img.created);
            given.push(ImageHandle {
                charged: 0,
                created: false,
                ..img
            });
        }
        let out = host.run_post(node, params, given, config).await;
        match self.answer(out)? {
            Ok(images) => Ok(Ok(self.give(images)?)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl progress::Host for PluginState {
    async fn report(&mut self, percent: u8, message: String) -> wasmtime::Result<()> {
        let host = self.workflow_host()?;
        host.progress(percent.min(100), message);
        Ok(())
    }
}

impl job_inputs::Host for PluginState {
    async fn image(&mut self, name: String) -> wasmtime::Result<Option<Resource<ImageHandle>>> {
        let host = self.workflow_host()?;
        match host.input(&name) {
            Some(img) => Ok(Some(self.give(vec![img])?.remove(0))),
            None => Ok(None),
        }
    }
}
