//! What one plugin call's `Store` holds: the WASI context (no files, no
//! sockets, no environment), the resource table, the limiter, the deadline,
//! captured stdout/stderr, and the capabilities an operator granted.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::AsyncWrite;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::limits::{HostBudget, Limiter, Limits};

/// Capabilities granted to a plugin by the operator.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Hosts (`api.lemonsqueezy.com`, `127.0.0.1:8089`) outbound HTTP may reach.
    pub http_allow: Vec<String>,
    /// Settings a billing adapter reads through `config.get`.
    pub settings: HashMap<String, String>,
    /// Secrets a billing adapter reads through `config.secret`.
    pub secrets: HashMap<String, String>,
}

pub struct PluginState {
    pub plugin: String,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    /// What the call holds on the host for the guest.
    pub budget: HostBudget,
    pub deadline: Instant,
    pub deadline_hit: bool,
    pub output: CappedOutput,
    pub grants: Arc<Grants>,
    pub http: reqwest::Client,
    /// What a workflow component reaches (`host::workflow`); `None` for
    /// other calls.
    pub workflow: Option<Arc<dyn super::host::workflow::WorkflowHost>>,
    /// Why a host call ended a workflow run, when one did.
    pub aborted: Option<String>,
}

impl PluginState {
    pub fn new(plugin: &str, limits: Limits, grants: Arc<Grants>, http: reqwest::Client) -> Self {
        let output = CappedOutput::new(limits.output_bytes);
        let wasi = WasiCtx::builder()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            plugin: plugin.to_owned(),
            wasi,
            table: ResourceTable::new(),
            deadline: Instant::now() + limits.timeout,
            limiter: Limiter::new(limits),
            budget: HostBudget::default(),
            deadline_hit: false,
            output,
            grants,
            http,
            workflow: None,
            aborted: None,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// stdout + stderr of a call, kept up to a cap; what goes past the cap is
/// dropped (the guest's writes still succeed) and counted.
#[derive(Clone)]
pub struct CappedOutput {
    inner: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    cap: usize,
    dropped: usize,
}

impl CappedOutput {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Captured {
                cap,
                ..Captured::default()
            })),
        }
    }

    /// The captured text and how many bytes were dropped past the cap.
    pub fn take(&self) -> (String, usize) {
        let mut c = self.inner.lock().expect("output lock");
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        c.bytes.clear();
        (text, std::mem::take(&mut c.dropped))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut c = self.inner.lock().expect("output lock");
        let room = c.cap.saturating_sub(c.bytes.len());
        let keep = buf.len().min(room);
        c.bytes.extend_from_slice(&buf[..keep]);
        c.dropped += buf.len() - keep;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
