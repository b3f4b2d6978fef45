//! Test harness: starts the real server on a free loopback port with its own
//! database, and talks HTTP to it.
//!
//! The database is SQLite in a temporary directory, or — when
//! `TEST_DATABASE_URL` names a PostgreSQL server — a fresh database created
//! for the one server and dropped after. With `TEST_REDIS_URL` (`.ci/run`
//! passes it for the PostgreSQL + Redis run) each server uses that Redis
//! with a key prefix of its own.

use std::path::PathBuf;
use std::sync::Arc;

use pingvas_host::app::{AppState, SharedState};
use pingvas_host::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use pingvas_host;

pub mod bench;
pub mod billing;
pub mod browser;
pub mod chaos;
pub mod fakes;
pub mod images;
pub mod process;
pub mod simworkers;

pub const PASSWORD: &str = "SecurePass123!";
/// The worker token of tests that run remote workers (32 bytes or more,
/// as the host requires).
pub const WORKER_TOKEN: &str = "test-worker-token-0123456789abcdef";

/// A database made for one test server.
pub struct TestDatabase {
    pub url: String,
    /// (admin URL, database name) of a PostgreSQL database to drop at the end.
    drop_on_exit: Option<(String, String)>,
    _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_path_buf();
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin_url) if admin_url.starts_with("postgres") => {
                let name = format!("pingvas_test_{}", uuid::Uuid::now_v7().simple());
                let admin = sqlx::PgPool::connect(&admin_url)
                    .await
                    .expect("connect TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let url = with_database(&admin_url, &name);
                TestDatabase {
                    url,
                    drop_on_exit: Some((admin_url, name)),
                    _dir: dir,
                    data_dir,
                }
            }
            _ => {
                let url = format!("sqlite://{}", data_dir.join("pingvas.db").display());
                TestDatabase {
                    url,
                    drop_on_exit: None,
                    _dir: dir,
                    data_dir,
                }
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.drop_on_exit.is_some()
    }
}

/// `url` with its path (database name) replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{}", &base[..host_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.drop_on_exit.take() {
            // Drop runs outside any runtime we may block; use a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .ok()?;
                rt.block_on(async {
                    let admin = sqlx::PgPool::connect(&admin_url).await.ok()?;
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                    Some(())
                })
            })
            .join();
        }
    }
}

/// With `TEST_BLOB_URL=s3://bucket` and `TEST_S3_ENDPOINT` (an
/// S3-compatible server such as moto, which `.ci/run` starts), blobs go to
/// that bucket under a prefix of their own per server; the bucket is made
/// when missing.
pub async fn s3_blob_url() -> Option<String> {
    let url = std::env::var("TEST_BLOB_URL")
        .ok()
        .filter(|u| u.starts_with("s3://"))?;
    let endpoint = std::env::var("TEST_S3_ENDPOINT").expect("TEST_S3_ENDPOINT with TEST_BLOB_URL");
    let bucket = url
        .trim_start_matches("s3://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    // moto takes unsigned requests; an existing bucket answers 409.
    let made = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("the S3 endpoint answers");
    assert!(
        made.status().is_success() || made.status() == StatusCode::CONFLICT,
        "creating bucket {bucket}: {}",
        made.status()
    );
    Some(format!(
        "s3://{bucket}/run-{}",
        uuid::Uuid::now_v7().simple()
    ))
}

/// A random JWT secret.
pub fn test_secret() -> String {
    format!("test-secret-{}", uuid::Uuid::new_v4().simple())
}

/// A running server and a client for it.
pub struct TestServer {
    pub base: String,
    /// The internal worker API's own listener, when `internal_addr` is set.
    pub internal_base: Option<String>,
    /// `/metrics`' own listener, when `metrics_addr` is set.
    pub metrics_base: Option<String>,
    pub client: reqwest::Client,
    pub state: SharedState,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub db: TestDatabase,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server with a config adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let db = TestDatabase::create().await;
        let mut config = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: db.data_dir.clone(),
            database_url: Some(db.url.clone().into()),
            // Tests about limits turn them on; others must not trip them.
            rate_limits_enabled: false,
            ..Config::default()
        };
        if let Some(url) = s3_blob_url().await {
            config.blob_url = Some(url);
            config.s3_endpoint = std::env::var("TEST_S3_ENDPOINT").ok();
            config.s3_access_key_id = Some("testing".into());
            config.s3_secret_access_key = Some("testing".to_owned().into());
        }
        if let Some(url) = std::env::var("TEST_REDIS_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            config.redis_url = Some(url.into());
            config.redis_prefix = format!("pingvas-test-{}:", uuid::Uuid::now_v7().simple());
        }
        tweak(&mut config);
        if config.jwt_secret.is_none() && config.multi_host() {
            // Hosts sharing a database share their secret.
            config.jwt_secret = Some(test_secret().into());
        }
        let state = AppState::build(config).await.expect("build app state");
        let l = launch(state.clone()).await;
        TestServer {
            base: l.base,
            internal_base: l.internal_base,
            metrics_base: l.metrics_base,
            client: reqwest::Client::new(),
            state,
            shutdown: Some(l.shutdown),
            task: Some(l.task),
            db,
        }
    }

    /// A second host on this server's database, data dir and settings
    /// (Redis prefix included), as another process of a scale-out
    /// deployment would be.
    pub async fn another_host(&self) -> OtherHost {
        let state = AppState::build(self.state.config.clone())
            .await
            .expect("build the second host");
        let l = launch(state.clone()).await;
        OtherHost {
            base: l.base,
            state,
            _shutdown: l.shutdown,
            task: l.task,
        }
    }

    /// Starts a server from a configuration file (as `pingvas serve
    /// --config` does: reloads read it again), on its own database.
    pub async fn start_from_file(path: &std::path::Path) -> Self {
        let file = Config::load(Some(path)).expect("configuration file");
        Self::start_with(|c| {
            *c = Config {
                addr: c.addr,
                data_dir: c.data_dir.clone(),
                database_url: c.database_url.clone(),
                ..file
            }
        })
        .await
    }

    /// Full URL of `path`: API paths are relative to `/api/v1`; the ops
    /// endpoints and paths already under `/api` are taken as they are.
    pub fn url(&self, path: &str) -> String {
        api_url(&self.base, path)
    }

    /// A link the API handed out (relative to the host), made absolute.
    pub fn url_of(&self, link: &str) -> String {
        if link.starts_with("http") {
            link.to_owned()
        } else {
            format!("{}{link}", self.base)
        }
    }

    /// The bytes behind a link the API handed out (an image's signed URL).
    pub async fn download(&self, link: &str) -> Vec<u8> {
        let resp = self
            .client
            .get(self.url_of(link))
            .send()
            .await
            .expect("download");
        assert!(resp.status().is_success(), "{link}: {}", resp.status());
        resp.bytes().await.expect("body").to_vec()
    }

    /// Sends a request; `body` as JSON when given. Returns status and the
    /// JSON answer (`Null` when the body is not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        send_json(self.client.request(method, self.url(path)), token, body).await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Registers `email` with the standard password and logs in.
    pub async fn signup(&self, email: &str) -> Session {
        let (s, body) = self
            .post(
                "/auth/register",
                None,
                json!({ "email": email, "password": PASSWORD, "name": "테스터" }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "register {email}: {body}");
        self.login(email).await
    }

    /// Registers `email` as an admin (who may publish the bundled
    /// plugins' names and billing adapters).
    pub async fn signup_admin(&self, email: &str) -> Session {
        let session = self.signup(email).await;
        pingvas_host::admin::set_role(&self.state.db, email, "admin")
            .await
            .expect("set role");
        session
    }

    pub async fn login(&self, email: &str) -> Session {
        let (s, body) = self
            .post(
                "/auth/login",
                None,
                json!({ "email": email, "password": PASSWORD }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "login {email}: {body}");
        Session::of(&body)
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        self.shutdown_now().await;
    }

    async fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A server's listeners, serving `state` until `shutdown` fires.
struct Launched {
    base: String,
    internal_base: Option<String>,
    metrics_base: Option<String>,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn launch(state: SharedState) -> Launched {
    // `127.0.0.1:0` unless a test chose the address (its public_url must
    // name it).
    let listener = tokio::net::TcpListener::bind(state.config.addr)
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let listeners = pingvas_host::server::Listeners::bind(listener, &state.config)
        .await
        .expect("bind the configured listeners");
    let internal_base = listeners
        .internal
        .as_ref()
        .map(|l| format!("http://{}", l.local_addr().unwrap()));
    let metrics_base = listeners
        .metrics
        .as_ref()
        .map(|l| format!("http://{}", l.local_addr().unwrap()));
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(pingvas_host::server::serve(state, listeners, async {
        let _ = rx.await;
    }));
    Launched {
        base,
        internal_base,
        metrics_base,
        shutdown: tx,
        task,
    }
}

/// Another host of a `TestServer` (`TestServer::another_host`); stops when
/// dropped.
pub struct OtherHost {
    pub base: String,
    pub state: SharedState,
    _shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        let state = Arc::clone(&self.state);
        // Close the pool so the PostgreSQL database can be dropped cleanly.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move { state.db.close().await });
        }
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub access: String,
    pub refresh: String,
}

impl Session {
    /// The session of a login's (or refresh's) answer.
    pub fn of(answer: &Value) -> Session {
        let d = &answer["data"];
        Session {
            user_id: d["user"]["id"].as_str().unwrap().to_owned(),
            access: d["access_token"].as_str().unwrap().to_owned(),
            refresh: d["refresh_token"].as_str().unwrap().to_owned(),
        }
    }
}

/// Asserts the spec's error envelope with `code` and `status`; returns the
/// error object.
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) -> Value {
    let (s, body) = got;
    assert_eq!(*s, status, "status for {code}: {body}");
    assert_eq!(body["success"], json!(false), "envelope: {body}");
    assert_eq!(body["error"]["code"], json!(code), "code: {body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message: {body}"
    );
    assert!(
        body["error"].get("details").is_some(),
        "details key: {body}"
    );
    body["error"].clone()
}

/// The `pingvas` binary next to this test executable (built by
/// `cargo test --workspace`).
/// Full URL on the server at `base` of an API path: relative to
/// `/api/v1`, or a root path (`/healthz`, `/api/…` …) as it is.
pub fn api_url(base: &str, path: &str) -> String {
    const ROOT_PATHS: [&str; 5] = ["/healthz", "/readyz", "/metrics", "/docs", "/api/"];
    if ROOT_PATHS.iter().any(|p| path.starts_with(p)) {
        format!("{base}{path}")
    } else {
        format!("{base}/api/v1{path}")
    }
}

/// Sends `req` with the bearer `token` and the JSON `body` when given.
/// Returns status and the JSON answer (`Null` when the body is not JSON).
pub async fn send_json(
    mut req: reqwest::RequestBuilder,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn pingvas_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(format!("pingvas{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} missing: run `cargo test --workspace` (it builds the binary)",
        bin.display()
    );
    bin
}

/// The compiled guest component `name` (e.g. `watermark`), built by
/// `scripts/test` into `$PINGVAS_PLUGIN_DIR` (default: the workspace's
/// `target/wasm32-wasip2/release`).
pub fn plugin_wasm(name: &str) -> Vec<u8> {
    let path = plugin_path(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build the plugins: scripts/test does)",
            path.display()
        )
    })
}

/// Where the compiled guest component `name` is (see `plugin_wasm`).
pub fn plugin_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("PINGVAS_PLUGIN_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(|t| PathBuf::from(t).join("wasm32-wasip2/release"))
        })
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/release")
        });
    dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// A plugin manifest for `POST /plugins`.
pub fn manifest(name: &str, version: &str, kind: &str, visibility: &str) -> Value {
    json!({ "name": name, "version": version, "kind": kind, "description": "test", "visibility": visibility })
}

impl TestServer {
    /// `POST /plugins` with `manifest` and the component bytes.
    pub async fn publish(
        &self,
        token: &str,
        manifest: Value,
        wasm: Vec<u8>,
    ) -> (StatusCode, Value) {
        use reqwest::multipart::{Form, Part};
        let form = Form::new()
            .text("manifest", manifest.to_string())
            .part("component", Part::bytes(wasm).file_name("plugin.wasm"));
        let resp = self
            .client
            .post(self.url("/plugins"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("request sent");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /images/upload` of a small red PNG; the new image's id.
    pub async fn upload_png(&self, token: &str) -> String {
        use base64::Engine;
        use reqwest::multipart::{Form, Part};
        let png = base64::engine::general_purpose::STANDARD
            .decode(png_base64(64, 64, [200, 40, 40]))
            .expect("png");
        let form = Form::new().part("file", Part::bytes(png).file_name("red.png"));
        let resp = self
            .client
            .post(self.url("/images/upload"))
            .bearer_auth(token)
            .multipart(form)
            .send()
            .await
            .expect("upload sent");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "upload: {body}");
        body["data"]["id"].as_str().expect("image id").to_owned()
    }

    /// Publishes the bundled component `wasm_name` as public node `name`
    /// 0.1.0, and asserts it was accepted.
    pub async fn publish_node(&self, token: &str, name: &str, wasm_name: &str) {
        let got = self
            .publish(
                token,
                manifest(name, "0.1.0", "node", "public"),
                plugin_wasm(wasm_name),
            )
            .await;
        assert_eq!(got.0, StatusCode::CREATED, "publish {name}: {}", got.1);
    }
}

/// Operator actions a test needs (what `pingvas admin` does).
impl TestServer {
    /// Sets a user's available credits to exactly `available` (admin
    /// adjustment).
    pub async fn set_credits(&self, user_id: &str, available: i64) {
        let (_, _, have) = self.credits(user_id).await;
        if have != available {
            self.state
                .ledger
                .credit(
                    user_id,
                    available - have,
                    pingvas_host::billing::ledger::TxKind::AdminAdjustment,
                    "test",
                    None,
                )
                .await
                .expect("adjust credits");
        }
    }

    /// Runs one SQL statement on the server's database: a test standing in
    /// for time passing or an operator's hand.
    pub async fn sql(&self, statement: &str) {
        pingvas_host::on_db!(&self.state.db, p => sqlx::query(statement).execute(p).await.map(|_| ()))
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        // Around the store: no profile revision was bumped.
        self.state.db.profile_revisions().bump_all();
    }

    /// The number a `SELECT COUNT(*) …` gives.
    pub async fn count(&self, query: &str) -> i64 {
        pingvas_host::on_db!(&self.state.db, p => sqlx::query_scalar::<_, i64>(query).fetch_one(p).await)
            .unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    pub async fn set_tier(&self, email: &str, tier: &str) {
        pingvas_host::admin::set_tier(&self.state.db, &self.state.plans, email, tier)
            .await
            .expect("set tier");
    }

    /// `(balance, reserved, available)` of the user.
    pub async fn credits(&self, user_id: &str) -> (i64, i64, i64) {
        let b = self.state.ledger.balance(user_id).await.expect("balance");
        (b.balance, b.reserved, b.available)
    }

    pub async fn generate(&self, kind: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.post(&format!("/generate/{kind}"), Some(token), body)
            .await
    }

    /// `DELETE /queue/items/{job_id}`.
    pub async fn cancel(&self, token: &str, job_id: &str) -> (StatusCode, Value) {
        self.call(
            Method::DELETE,
            &format!("/queue/items/{job_id}"),
            Some(token),
            None,
        )
        .await
    }

    /// A job's detail.
    pub async fn job(&self, token: &str, job_id: &str) -> Value {
        let (s, body) = self
            .get(&format!("/queue/items/{job_id}"), Some(token))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["data"].clone()
    }

    /// Opens the event WebSocket of `token`'s user.
    pub async fn events(&self, token: &str, last_event_id: Option<&str>) -> Events {
        Events::open(&self.base, token, last_event_id).await
    }
}

/// A test client of `GET /ws`.
pub struct Events {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
    pub hello: Option<Value>,
}

/// How long a test waits for an event before it fails.
pub const EVENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Events {
    /// Opens the event WebSocket of `token`'s user on the host at `base`;
    /// with `last_event_id`, resuming after it.
    pub async fn open(base: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let mut url = format!("{}/api/v1/ws?token={token}", base.replacen("http", "ws", 1));
        if let Some(id) = last_event_id {
            url.push_str(&format!("&last_event_id={id}"));
        }
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let mut events = Events {
            ws,
            seen: Vec::new(),
            hello: None,
        };
        let hello = events.next().await;
        assert_eq!(hello["type"], "connected", "{hello}");
        events.seen.clear();
        events.hello = Some(hello);
        events
    }

    /// The next message, or None when the socket ended (closed, reset, or
    /// its host died).
    pub async fn try_next(&mut self) -> Option<Value> {
        use futures::StreamExt;
        loop {
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next())
                .await
                .expect("an event or the socket's end within the timeout");
            match msg {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).expect("JSON event");
                    self.seen.push(v.clone());
                    return Some(v);
                }
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))
                | Some(Err(_))
                | None => {
                    return None;
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The next JSON message (pings are answered by the client library).
    pub async fn next(&mut self) -> Value {
        use futures::StreamExt;
        loop {
            let msg = tokio::time::timeout(EVENT_TIMEOUT, self.ws.next())
                .await
                .expect("an event within the timeout")
                .expect("socket open")
                .expect("socket message");
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("JSON event");
                self.seen.push(v.clone());
                return v;
            }
        }
    }

    /// Waits for the first event of `kind` about `job_id`.
    pub async fn until(&mut self, kind: &str, job_id: &str) -> Value {
        loop {
            let e = self.next().await;
            if e["type"] == kind && e["data"]["job_id"] == job_id {
                return e;
            }
        }
    }

    /// Waits for the first event of type `kind`.
    pub async fn until_type(&mut self, kind: &str) -> Value {
        loop {
            let e = self.next().await;
            if e["type"] == kind {
                return e;
            }
        }
    }

    /// Waits for the job's end (completed, failed or cancelled).
    pub async fn until_end(&mut self, job_id: &str) -> Value {
        loop {
            let e = self.next().await;
            let end = ["job.completed", "job.failed", "job.cancelled"];
            if end.iter().any(|k| e["type"] == *k) && e["data"]["job_id"] == job_id {
                return e;
            }
        }
    }

    /// The kinds of the events seen about `job_id`, in order.
    pub fn kinds_of(&self, job_id: &str) -> Vec<String> {
        self.seen
            .iter()
            .filter(|e| e["data"]["job_id"] == job_id)
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// A graph workflow: source + mask inputs → params (64×64 on paper) →
/// inpaint → output; priced from the source it really gets.
pub fn graph_inpaint(steps: u32, batch: u32) -> Value {
    json!({
        "kind": "graph",
        "inputs": [
            { "name": "source", "type": "image" },
            { "name": "mask", "type": "image" },
        ],
        "nodes": [
            { "id": "p", "type": "params",
              "values": { "model": "stable-diffusion-1.5", "prompt": "a door",
                          "width": 64, "height": 64, "steps": steps, "batch_size": batch, "seed": 3 } },
            { "id": "paint", "type": "inpaint" },
            { "id": "out", "type": "output" },
        ],
        "edges": [
            { "from": "p.params", "to": "paint.params" },
            { "from": "inputs.source", "to": "paint.source" },
            { "from": "inputs.mask", "to": "paint.mask" },
            { "from": "paint.images", "to": "out.images" },
        ],
    })
}

/// A small PNG, base64, for image inputs.
pub fn png_base64(width: u32, height: u32, rgb: [u8; 3]) -> String {
    use base64::Engine;
    let img =
        image::RgbaImage::from_pixel(width, height, image::Rgba([rgb[0], rgb[1], rgb[2], 255]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    base64::engine::general_purpose::STANDARD.encode(out)
}

/// A cheap text-to-image request on the free model.
pub fn small_job(prompt: &str) -> Value {
    json!({
        "prompt": prompt,
        "model": "stable-diffusion-1.5",
        "width": 64,
        "height": 64,
        "steps": 4,
        "seed": 42,
    })
}

impl TestServer {
    /// The queue's per-user counters agree with the jobs table.
    pub async fn assert_queue_counters(&self) {
        let db = &self.state.db;
        let counted: Vec<(String, i64)> = pingvas_host::on_db!(db, p => sqlx::query_as(
            "SELECT user_id, queued FROM queue_counters WHERE queued > 0 ORDER BY user_id",
        )
        .fetch_all(p)
        .await)
        .unwrap();
        let actual: Vec<(String, i64)> = pingvas_host::on_db!(db, p => sqlx::query_as(
            "SELECT user_id, COUNT(*) FROM jobs WHERE status = 'queued' GROUP BY user_id ORDER BY user_id",
        )
        .fetch_all(p)
        .await)
        .unwrap();
        assert_eq!(
            counted, actual,
            "queue counters drifted from the jobs table"
        );
    }
}

impl TestServer {
    /// The ledger at rest: every account's balance is the sum of its
    /// transactions (grants less charges), nothing is reserved, no hold is
    /// pending, and no job's hold was charged twice.
    pub async fn assert_ledger_at_rest(&self) {
        let db = &self.state.db;
        let drift: Vec<(String, i64, i64, i64)> = pingvas_host::on_db!(db, p => sqlx::query_as(
            "SELECT a.user_id, a.balance, a.reserved, \
             COALESCE((SELECT CAST(SUM(t.amount) AS BIGINT) FROM credit_transactions t WHERE t.user_id = a.user_id), 0) AS summed \
             FROM credit_accounts a",
        )
        .fetch_all(p)
        .await)
        .unwrap();
        for (user, balance, reserved, summed) in drift {
            assert_eq!(
                balance, summed,
                "{user}: balance is not grants less charges"
            );
            assert_eq!(reserved, 0, "{user}: credits still reserved at rest");
        }
        assert_eq!(
            self.count("SELECT COUNT(*) FROM credit_holds WHERE state = 'pending'")
                .await,
            0,
            "holds still pending at rest"
        );
        assert_eq!(
            self.count(
                "SELECT COUNT(*) FROM (SELECT hold_id FROM credit_transactions \
                 WHERE hold_id IS NOT NULL AND amount < 0 GROUP BY hold_id HAVING COUNT(*) > 1) twice"
            )
            .await,
            0,
            "a hold was charged twice"
        );
    }
}

/// A `pingvas worker` process, killed when dropped.
pub struct WorkerProcess {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl WorkerProcess {
    pub fn start(srv: &TestServer) -> Self {
        Self::start_at(&srv.base)
    }

    /// A worker of the host at `base`.
    pub fn start_at(base: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new(pingvas_bin())
            .args([
                "worker",
                "--server",
                base,
                "--token",
                WORKER_TOKEN,
                "--backend",
                "cpu-reference",
            ])
            .current_dir(dir.path())
            .env("PINGVAS_DATA_DIR", dir.path())
            .env_remove("PINGVAS_WORKER_TOKEN")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pingvas worker");
        WorkerProcess { child, _dir: dir }
    }

    /// SIGKILL: no goodbye, no report, the lease just stops being renewed.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
