//! Shared by the load scripts (`loadgen`, `queuebench`): a `pingvas serve`
//! process on a fresh SQLite data dir and a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running server process, killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `pingvas` binary next to the running one.
pub fn sibling_pingvas() -> std::path::PathBuf {
    std::env::current_exe().unwrap().with_file_name("pingvas")
}

/// Starts `pingvas serve` with `env` (a closure may write files into the
/// data dir first) and waits until `/healthz` answers.
pub async fn start_serve(
    env: impl FnOnce(&std::path::Path) -> Vec<(String, String)>,
) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = sibling_pingvas();
    let child = Command::new(&bin)
        .arg("serve")
        .current_dir(dir.path())
        .env("PINGVAS_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .envs(env(dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    // From here on, dropping `server` kills and reaps the child.
    let server = ServerProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client
            .get(format!("{}/healthz", server.base))
            .send()
            .await
            .is_ok()
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}
