//! Headless Chromium over the Chrome DevTools Protocol, for the web
//! studio's tests: launch, one browser context per "fresh browser", and the
//! few page commands the tests use (navigate, evaluate, wait for a
//! condition, files, keys, screenshots, viewport and language).
//!
//! Commands and events are plain JSON (`serde_json::Value`) over one
//! WebSocket, so a newer Chromium's added fields or enum values never break
//! decoding. The browser is `$CHROME`, else `chromium` on the PATH (Debian's
//! package, which `.ci/run` installs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `wait_for` lets a page condition take.
pub const WAIT: Duration = Duration::from_secs(30);

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>;

struct Conn {
    out: mpsc::UnboundedSender<Message>,
    next_id: AtomicU64,
    pending: Pending,
    events: broadcast::Sender<Value>,
}

impl Conn {
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> anyhow::Result<Value> {
        self.call_within(session, method, params, COMMAND_TIMEOUT)
            .await
    }

    async fn call_within(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        limit: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.out
            .send(Message::Text(msg.to_string().into()))
            .map_err(|_| anyhow!("browser connection closed"))?;
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => bail!("{method}: {e}"),
            Ok(Err(_)) => bail!("{method}: browser connection closed"),
            Err(_) => bail!("{method}: no answer in {limit:?}"),
        }
    }
}

/// A running headless Chromium; killed when dropped.
pub struct Browser {
    conn: Arc<Conn>,
    user_agent: String,
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

fn chromium_path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROME") {
        return Ok(PathBuf::from(p));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!("no Chromium: install Debian's `chromium` (.ci/run does) or set CHROME")
}

impl Browser {
    pub async fn launch() -> anyhow::Result<Browser> {
        let profile = tempfile::tempdir()?;
        let mut child = tokio::process::Command::new(chromium_path()?)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--mute-audio",
                "--lang=en-US",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start chromium")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let mut lines = BufReader::new(stderr).lines();
        let ws_url = tokio::time::timeout(COMMAND_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return Ok(url.trim().to_owned());
                }
            }
            bail!("chromium exited before it listened")
        })
        .await
        .context("chromium did not start")??;
        // Keep draining stderr so the browser never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let (socket, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .context("connect to DevTools")?;
        let (mut sink, mut stream) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (events, _) = broadcast::channel(4096);
        let conn = Arc::new(Conn {
            out,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            events,
        });
        tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader = Arc::clone(&conn);
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(text) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    if let Some(tx) = reader.pending.lock().unwrap().remove(&id) {
                        let answer = match v.get("error") {
                            Some(e) => Err(e.to_string()),
                            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
                        };
                        let _ = tx.send(answer);
                    }
                } else {
                    let _ = reader.events.send(v);
                }
            }
            reader.pending.lock().unwrap().clear();
        });
        let version = conn.call(None, "Browser.getVersion", json!({})).await?;
        Ok(Browser {
            user_agent: version["userAgent"].as_str().unwrap_or_default().to_owned(),
            conn,
            _child: child,
            _profile: profile,
        })
    }

    /// A page in a browser context of its own: no cookies, storage or cache
    /// shared with any other page, as a fresh browser would be.
    pub async fn fresh_page(&self, lang: &str, width: u32, height: u32) -> anyhow::Result<Page> {
        let ctx = self
            .conn
            .call(None, "Target.createBrowserContext", json!({}))
            .await?;
        let context = ctx["browserContextId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let target = self
            .conn
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": context }),
            )
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let page = Page {
            conn: Arc::clone(&self.conn),
            session,
            problems: Arc::new(Mutex::new(Vec::new())),
        };
        page.collect_problems();
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        page.call(
            "Emulation.setUserAgentOverride",
            json!({ "userAgent": self.user_agent, "acceptLanguage": lang }),
        )
        .await?;
        page.viewport(width, height).await?;
        Ok(page)
    }
}

/// Whether a command failed because the page navigated away under it.
fn is_navigation(e: &anyhow::Error) -> bool {
    let text = e.to_string();
    text.contains("navigated or closed") || text.contains("Execution context was destroyed")
}

/// One tab.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    problems: Arc<Mutex<Vec<String>>>,
}

impl Page {
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Uncaught exceptions and `console.error` calls are kept for
    /// `problems()`.
    fn collect_problems(&self) {
        let mut events = self.conn.events.subscribe();
        let (session, problems) = (self.session.clone(), Arc::clone(&self.problems));
        tokio::spawn(async move {
            loop {
                let ev = match events.recv().await {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                };
                if ev["sessionId"] != session.as_str() {
                    continue;
                }
                let p = &ev["params"];
                let text = match ev["method"].as_str() {
                    Some("Runtime.exceptionThrown") => {
                        let d = &p["exceptionDetails"];
                        format!("exception: {} {}", d["text"], d["exception"]["description"])
                    }
                    Some("Runtime.consoleAPICalled") if p["type"] == "error" => {
                        format!("console.error: {}", p["args"])
                    }
                    _ => continue,
                };
                problems.lock().unwrap().push(text);
            }
        });
    }

    /// Exceptions and console errors seen so far.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().unwrap().clone()
    }

    pub async fn viewport(&self, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
        )
        .await?;
        Ok(())
    }

    /// Navigates and waits for the load event.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        let mut events = self.conn.events.subscribe();
        let nav = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            bail!("navigate {url}: {e}");
        }
        self.until_event(&mut events, "Page.loadEventFired").await
    }

    async fn until_event(
        &self,
        events: &mut broadcast::Receiver<Value>,
        method: &str,
    ) -> anyhow::Result<()> {
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            loop {
                match events.recv().await {
                    Ok(ev)
                        if ev["sessionId"] == self.session.as_str() && ev["method"] == method =>
                    {
                        return Ok(());
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => bail!("{method}: {e}"),
                }
            }
        })
        .await
        .with_context(|| format!("no {method}"))?
    }

    /// The value of a JavaScript expression (promises are awaited).
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        self.eval_within(expression, COMMAND_TIMEOUT).await
    }

    async fn eval_within(&self, expression: &str, limit: Duration) -> anyhow::Result<Value> {
        let r = self
            .conn
            .call_within(
                Some(&self.session),
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
                limit,
            )
            .await?;
        if let Some(d) = r.get("exceptionDetails") {
            bail!(
                "{expression}: {}",
                d["exception"]["description"]
                    .as_str()
                    .unwrap_or(&d["text"].to_string())
            );
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits, inside the page, until `condition` (an expression) is truthy,
    /// and returns its value; fails after `WAIT` naming the condition.
    pub async fn wait_for(&self, condition: &str) -> anyhow::Result<Value> {
        self.wait_for_within(condition, WAIT).await
    }

    /// `wait_for` with a limit of its own.
    /// A navigation (a redirect through another site, say) ends the wait's
    /// page context; it starts again in the new page, within the same limit.
    pub async fn wait_for_within(&self, condition: &str, limit: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut events = self.conn.events.subscribe();
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.wait_once(condition, left).await {
                Err(e) if is_navigation(&e) && !left.is_zero() => {
                    self.until_event(&mut events, "Page.loadEventFired").await?;
                }
                other => return other,
            }
        }
    }

    async fn wait_once(&self, condition: &str, limit: Duration) -> anyhow::Result<Value> {
        let js = format!(
            r#"new Promise((resolve, reject) => {{
                const until = performance.now() + {ms};
                const check = () => {{
                    let v;
                    try {{ v = ({condition}); }} catch (e) {{ v = undefined; }}
                    if (v) return resolve(v);
                    if (performance.now() > until) return reject(new Error('timed out waiting for: ' + {quoted}));
                    setTimeout(check, 20);
                }};
                check();
            }})"#,
            ms = limit.as_millis(),
            quoted = serde_json::to_string(condition)?,
        );
        self.eval_within(&js, limit + Duration::from_secs(30)).await
    }

    /// Clicks the first element matching `selector` (it must exist).
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        self.wait_for(&format!("document.querySelector({sel})"))
            .await?;
        self.eval(&format!("document.querySelector({sel}).click()"))
            .await?;
        Ok(())
    }

    /// Empties the field matching `selector`, then types `value` into it
    /// as a user would (the framework sees the input events).
    pub async fn fill(&self, selector: &str, value: &str) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        self.wait_for(&format!("document.querySelector({sel})"))
            .await?;
        self.eval(&format!(
            "(() => {{ const el = document.querySelector({sel}); el.focus();
               Object.getOwnPropertyDescriptor(Object.getPrototypeOf(el), 'value').set.call(el, '');
               el.dispatchEvent(new Event('input', {{ bubbles: true }})); }})()"
        ))
        .await?;
        self.call("Input.insertText", json!({ "text": value }))
            .await?;
        Ok(())
    }

    /// Sets the files of the `<input type=file>` matching `selector`.
    pub async fn set_files(&self, selector: &str, files: &[&Path]) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        self.wait_for(&format!("document.querySelector({sel})"))
            .await?;
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": format!("document.querySelector({sel})") }),
            )
            .await?;
        let object = r["result"]["objectId"].as_str().context("no element")?;
        // Chromium cannot read a path with `..` in it: hand it real paths.
        let files = files
            .iter()
            .map(|p| p.canonicalize().map(|p| p.display().to_string()))
            .collect::<Result<Vec<_>, _>>()
            .context("a file to set")?;
        self.call(
            "DOM.setFileInputFiles",
            json!({ "files": files, "objectId": object }),
        )
        .await?;
        Ok(())
    }

    /// Presses a key (`Tab`, `Enter`, `Escape`, space) on the focused element.
    pub async fn press(&self, key: &str) -> anyhow::Result<()> {
        self.press_with(key, 0).await
    }

    /// Shift + `key` (Shift+Tab moves the focus backwards).
    pub async fn press_shift(&self, key: &str) -> anyhow::Result<()> {
        self.press_with(key, 8).await
    }

    async fn press_with(&self, key: &str, modifiers: u32) -> anyhow::Result<()> {
        let (code, text) = match key {
            "Tab" => (9, ""),
            "Enter" => (13, "\r"),
            "Escape" => (27, ""),
            " " => (32, " "),
            _ => bail!("no key code for {key}"),
        };
        let mut down = json!({ "type": "keyDown", "key": key, "code": key,
                               "windowsVirtualKeyCode": code, "modifiers": modifiers });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": key,
                    "windowsVirtualKeyCode": code, "modifiers": modifiers }),
        )
        .await?;
        Ok(())
    }

    /// Drags the mouse across the element matching `selector`, from and to
    /// points given as fractions of its box (a brush stroke).
    pub async fn drag(
        &self,
        selector: &str,
        from: (f64, f64),
        to: (f64, f64),
    ) -> anyhow::Result<()> {
        let sel = serde_json::to_string(selector)?;
        let r = self
            .wait_for(&format!(
                "(() => {{ const b = document.querySelector({sel})?.getBoundingClientRect();
                   return b && b.width > 0 && [b.left, b.top, b.width, b.height]; }})()"
            ))
            .await?;
        let b: Vec<f64> = r
            .as_array()
            .context("box")?
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        let at = |(fx, fy): (f64, f64)| (b[0] + fx * b[2], b[1] + fy * b[3]);
        let mouse = |kind: &str, (x, y): (f64, f64), buttons: u32| json!({ "type": kind, "x": x, "y": y, "button": "left", "buttons": buttons, "clickCount": 1 });
        self.call("Input.dispatchMouseEvent", mouse("mouseMoved", at(from), 0))
            .await?;
        self.call(
            "Input.dispatchMouseEvent",
            mouse("mousePressed", at(from), 1),
        )
        .await?;
        for i in 1..=10 {
            let t = f64::from(i) / 10.0;
            let p = (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t);
            self.call("Input.dispatchMouseEvent", mouse("mouseMoved", at(p), 1))
                .await?;
        }
        self.call(
            "Input.dispatchMouseEvent",
            mouse("mouseReleased", at(to), 0),
        )
        .await?;
        Ok(())
    }

    /// Text typed at the focus (one input event, like a paste).
    pub async fn type_text(&self, text: &str) -> anyhow::Result<()> {
        self.call("Input.insertText", json!({ "text": text }))
            .await?;
        Ok(())
    }

    /// A PNG of the whole page, written to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let m = self.call("Page.getLayoutMetrics", json!({})).await?;
        let size = &m["cssContentSize"];
        let w = size["width"].as_f64().unwrap_or(1280.0).max(1.0);
        let h = size["height"].as_f64().unwrap_or(800.0).clamp(1.0, 6000.0);
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true,
                        "clip": { "x": 0, "y": 0, "width": w, "height": h, "scale": 1 } }),
            )
            .await?;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}
