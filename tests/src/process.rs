//! The real `pingvas serve` in a process of its own, for tests that measure
//! what a request costs the server (its resident memory, its threads):
//! in the test binary every other test's server shares the process.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{PASSWORD, Session, TestDatabase, api_url, pingvas_bin, send_json};

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `bin serve` in `dir` on loopback `port`, quiet, with the per-tier rate
/// limits off (tests and benchmarks measure the paths, not the limits);
/// callers add their settings and spawn it.
pub fn serve_command(bin: &Path, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .current_dir(dir)
        .env("PINGVAS_ADDR", format!("127.0.0.1:{port}"))
        .env("PINGVAS_RATE_LIMITS_ENABLED", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// Waits until `base`'s `/healthz` answers 2xx (a minute at most).
pub async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pingvas serve did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A `pingvas serve` process on its own database and data dir, killed
/// when dropped.
pub struct ServerProcess {
    pub base: String,
    pub client: reqwest::Client,
    child: std::process::Child,
    pub db: TestDatabase,
}

impl ServerProcess {
    /// Starts the server with `env` (`PINGVAS_…` settings) on top of the
    /// test defaults (loopback, its own database, rate limits off), and
    /// waits until `/healthz` answers.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let db = TestDatabase::create().await;
        let port = free_port();
        let mut cmd = serve_command(&pingvas_bin(), &db.data_dir, port);
        cmd.env("PINGVAS_DATA_DIR", &db.data_dir)
            .env("PINGVAS_DATABASE_URL", &db.url)
            .env("PINGVAS_WEB_UI", "false")
            .env("PINGVAS_JWT_SECRET", crate::test_secret())
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .envs(env.iter().copied());
        let child = cmd.spawn().expect("start pingvas serve");
        let srv = ServerProcess {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
            db,
        };
        wait_healthy(&srv.client, &srv.base).await;
        srv
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's resident memory now, bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// The most resident memory the process has had, bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a memory figure")
    }

    /// Full URL of an API path (as `TestServer::url`), or of a link as the
    /// API hands it out.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            api_url(&self.base, path)
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(self.client.request(method, self.url(path)), token, body).await
    }

    /// Registers `email` with the standard password and logs in.
    pub async fn signup(&self, email: &str) -> Session {
        let (s, body) = self
            .call(
                Method::POST,
                "/auth/register",
                None,
                Some(json!({ "email": email, "password": PASSWORD, "name": "테스터" })),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "register {email}: {body}");
        let login = json!({ "email": email, "password": PASSWORD });
        let (s, body) = self
            .call(Method::POST, "/auth/login", None, Some(login))
            .await;
        assert_eq!(s, StatusCode::OK, "login {email}: {body}");
        Session::of(&body)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Another host of a `TestServer` as a process of its own (`pingvas
/// serve` on the server's database, data dir, secret, Redis, blob store
/// and worker token, without an in-process worker), so a test can
/// `kill -9` a host while clients hold sockets to it.
pub struct HostProcess {
    pub base: String,
    child: std::process::Child,
}

impl HostProcess {
    pub async fn start(srv: &crate::TestServer) -> Self {
        use secrecy::ExposeSecret;
        let c = &srv.state.config;
        let port = free_port();
        let mut cmd = serve_command(&pingvas_bin(), &c.data_dir, port);
        cmd.env("PINGVAS_DATA_DIR", &c.data_dir)
            .env("PINGVAS_DATABASE_URL", c.database_url())
            .env("PINGVAS_WEB_UI", "false")
            .env("PINGVAS_WORKER_ENABLED", "false")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL");
        let secrets = [
            ("PINGVAS_JWT_SECRET", &c.jwt_secret),
            ("PINGVAS_REDIS_URL", &c.redis_url),
            ("PINGVAS_WORKER_TOKEN", &c.worker_token),
            ("PINGVAS_S3_SECRET_ACCESS_KEY", &c.s3_secret_access_key),
        ];
        for (name, value) in secrets {
            if let Some(v) = value {
                cmd.env(name, v.expose_secret());
            }
        }
        let plain = [
            ("PINGVAS_BLOB_URL", &c.blob_url),
            ("PINGVAS_S3_ENDPOINT", &c.s3_endpoint),
            ("PINGVAS_S3_ACCESS_KEY_ID", &c.s3_access_key_id),
        ];
        for (name, value) in plain {
            if let Some(v) = value {
                cmd.env(name, v);
            }
        }
        cmd.env("PINGVAS_REDIS_PREFIX", &c.redis_prefix);
        let child = cmd.spawn().expect("start another pingvas serve");
        let host = HostProcess {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        wait_healthy(&reqwest::Client::new(), &host.base).await;
        host
    }

    /// SIGKILL: the host's sockets drop without a close frame.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
