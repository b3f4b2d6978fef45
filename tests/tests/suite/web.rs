//! The web studio in headless Chromium (driven over the DevTools protocol)
//! against the real server: sign up, generate, live progress, gallery,
//! stars, boards and shares; keyboard use at phone width; Korean; API
//! errors shown as the envelope says; and the page's weight and paint.
//! Screenshots of every page go to `<target>/tmp/web-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use pingvas_tests::browser::{Browser, Page};
use pingvas_tests::{PASSWORD, TestServer};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
};
use serde_json::{Value, json};

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots")
}

async fn shot(page: &Page, name: &str) {
    page.screenshot(&shots_dir().join(format!("{name}.png")))
        .await
        .expect("screenshot");
}

/// Waits for `condition` and reports what the page showed when it failed.
async fn expect(page: &Page, condition: &str) -> Value {
    match page.wait_for(condition).await {
        Ok(v) => v,
        Err(e) => {
            let _ = page.screenshot(&shots_dir().join("failure.png")).await;
            let text = page
                .eval("location.href + '\\n' + document.body.innerText")
                .await
                .unwrap_or_default();
            panic!("{e}\npage: {text}\nproblems: {:?}", page.problems());
        }
    }
}

fn q(selector: &str) -> String {
    format!("document.querySelector({})", json!(selector))
}

/// Nothing went wrong inside the page: no exception, no console error, no
/// text key without a translation.
async fn assert_clean(page: &Page) {
    assert_eq!(page.problems(), Vec::<String>::new());
    let missing = page
        .eval("Array.from(window.__pingvasMissingText || [])")
        .await
        .unwrap();
    assert_eq!(missing, json!([]), "texts without a translation");
}

async fn access_token(page: &Page) -> String {
    page.eval("JSON.parse(localStorage.getItem('pingvas.session')).access_token")
        .await
        .unwrap()
        .as_str()
        .expect("signed in")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_generate_watch_progress_star_board_and_share() {
    let srv = TestServer::start().await;
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("en-US", 1280, 900).await.unwrap();

    page.goto(&srv.url_of("/")).await.unwrap();
    expect(
        &page,
        "location.pathname === '/sign-in' && document.querySelector('form[data-form=sign-in]')",
    )
    .await;
    shot(&page, "sign-in").await;
    page.click("a[href='/sign-up']").await.unwrap();
    expect(&page, "document.querySelector('form[data-form=sign-up]')").await;
    page.fill("input[autocomplete=name]", "Web Tester")
        .await
        .unwrap();
    page.fill("input[name=email]", "web@example.com")
        .await
        .unwrap();
    page.fill("input[name=password]", PASSWORD).await.unwrap();
    shot(&page, "sign-up").await;
    page.click("form[data-form=sign-up] button[type=submit]")
        .await
        .unwrap();
    expect(
        &page,
        "location.pathname === '/generate' && document.querySelector('select[name=model] option')",
    )
    .await;
    let token = access_token(&page).await;

    // A long job of the same user holds the worker, so the page's job is
    // seen queued before it runs.
    let mut events = srv.events(&token, None).await;
    let big = json!({ "prompt": "blocker", "model": "stable-diffusion-1.5",
                      "width": 1024, "height": 1024, "steps": 150, "seed": 1 });
    let (s, b) = srv.generate("text-to-image", &token, big).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let blocker = b["data"]["job_id"].as_str().unwrap().to_owned();
    events.until("job.started", &blocker).await;

    page.fill("textarea[name=prompt]", "a lighthouse at dusk")
        .await
        .unwrap();
    page.fill("input[name=width]", "64").await.unwrap();
    page.fill("input[name=height]", "64").await.unwrap();
    page.fill("input[name=steps]", "6").await.unwrap();
    shot(&page, "generate").await;
    page.click("form[data-form=generate] button[type=submit]")
        .await
        .unwrap();
    let job = expect(
        &page,
        "document.querySelector('.jobs .job[data-status=queued]')?.dataset.job",
    )
    .await;
    let job = job.as_str().unwrap().to_owned();
    assert_ne!(job, blocker);

    // The queue after a full reload: the socket resumes, REST fills in.
    page.goto(&srv.url_of("/queue")).await.unwrap();
    let card = |id: &str, status: &str| {
        format!("document.querySelector('[data-job=\"{id}\"][data-status={status}]')")
    };
    expect(&page, &card(&blocker, "processing")).await;
    expect(&page, &card(&job, "queued")).await;
    page.eval(&format!(
        r#"window.__progress = [];
        new MutationObserver(() => {{
          const el = document.querySelector('[data-job="{job}"] .pct');
          const v = el && Number(el.dataset.progress);
          if (el && window.__progress[window.__progress.length - 1] !== v) window.__progress.push(v);
        }}).observe(document.body, {{ subtree: true, childList: true, attributes: true, characterData: true }});
        true"#
    ))
    .await
    .unwrap();
    shot(&page, "queue").await;
    page.click(&format!("[data-job=\"{blocker}\"] button"))
        .await
        .unwrap();
    expect(&page, &card(&blocker, "cancelled")).await;
    expect(&page, &card(&job, "completed")).await;
    let progress = page.eval("window.__progress").await.unwrap();
    let seen: Vec<i64> = progress
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert_eq!(seen.last(), Some(&100), "progress shown: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    expect(&page, &format!("[...document.querySelectorAll('[data-job=\"{job}\"] .thumbs img')].some(i => i.complete && i.naturalWidth > 0)")).await;
    assert_eq!(srv.job(&token, &job).await["status"], "completed");

    // The gallery: one image (the cancelled job made none).
    page.click("nav a[href='/gallery']").await.unwrap();
    expect(
        &page,
        "document.querySelectorAll('.grid .thumb').length === 1",
    )
    .await;
    let image = page
        .eval(&format!("{}.dataset.image", q(".grid .thumb")))
        .await
        .unwrap();
    let image = image.as_str().unwrap().to_owned();
    page.fill(".boards input", "Favourites").await.unwrap();
    page.click(".boards form button[type=submit]")
        .await
        .unwrap();
    expect(&page, "[...document.querySelectorAll('.boards li')].some(li => li.textContent.includes('Favourites'))").await;
    shot(&page, "gallery").await;

    page.click(".grid .thumb").await.unwrap();
    expect(
        &page,
        "document.querySelector('dialog[open] button[data-action=star][aria-pressed=false]')",
    )
    .await;
    page.click("dialog[open] button[data-action=star]")
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('dialog[open] button[data-action=star][aria-pressed=true]')",
    )
    .await;
    let (_, detail) = srv.get(&format!("/images/{image}"), Some(&token)).await;
    assert_eq!(detail["data"]["is_starred"], true);

    page.eval(
        "(() => { const s = document.querySelector('dialog[open] select[data-select=board]');
          s.value = s.options[1].value; s.dispatchEvent(new Event('change', { bubbles: true })); return s.value; })()",
    )
    .await
    .unwrap();
    page.click("dialog[open] button[data-action=add-to-board]")
        .await
        .unwrap();
    expect(&page, "[...document.querySelectorAll('dialog[open] .chip')].some(c => c.textContent.includes('Favourites'))").await;
    let (_, boards) = srv.get("/boards", Some(&token)).await;
    let board = boards["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, on_board) = srv
        .get(&format!("/images?board_id={board}"), Some(&token))
        .await;
    assert_eq!(on_board["data"][0]["id"], image.as_str());

    page.click("dialog[open] button[data-action=share]")
        .await
        .unwrap();
    let link = expect(
        &page,
        "document.querySelector('dialog[open] input[data-share-url]')?.value",
    )
    .await;
    let link = link.as_str().unwrap().to_owned();
    shot(&page, "gallery-image").await;

    // The share link in a browser that never signed in.
    let stranger = browser.fresh_page("en-US", 800, 600).await.unwrap();
    stranger.goto(&link).await.unwrap();
    expect(&stranger, "document.contentType === 'image/png' && document.images[0] && document.images[0].naturalWidth === 64").await;
    assert_eq!(
        stranger
            .eval("localStorage.getItem('pingvas.session')")
            .await
            .unwrap(),
        Value::Null
    );
    shot(&stranger, "shared").await;

    // Every other page renders its data.
    page.eval("document.querySelector('dialog[open]').close()")
        .await
        .unwrap();
    for (path, ready) in [
        (
            "/workflows",
            "document.querySelector('.page.workflows details')",
        ),
        (
            "/credits",
            "document.querySelector('.chart svg rect') && document.querySelector('table.ledger tbody tr')",
        ),
        ("/plan", "document.querySelector('li[data-plan=pro]')"),
        (
            "/plugins",
            "document.querySelector('form[data-form=publish]')",
        ),
    ] {
        page.click(&format!("nav a[href='{path}']")).await.unwrap();
        expect(&page, &format!("location.pathname === '{path}' && {ready}")).await;
        let text = page
            .eval("document.querySelector('main').innerText")
            .await
            .unwrap();
        let text = text.as_str().unwrap();
        assert!(
            !text.contains("NaN") && !text.contains("undefined"),
            "{path}: {text}"
        );
        shot(&page, &path[1..]).await;
    }
    assert_clean(&page).await;
    assert_clean(&stranger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn korean_browsers_get_korean_and_api_errors_show_the_envelope_message() {
    let srv = TestServer::start().await;
    srv.signup("kim@example.com").await;
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("ko-KR,ko", 1280, 800).await.unwrap();
    page.goto(&srv.url_of("/sign-in")).await.unwrap();
    expect(
        &page,
        "document.querySelector('#auth-title')?.textContent === '로그인'",
    )
    .await;
    assert_eq!(
        page.eval("document.documentElement.lang").await.unwrap(),
        "ko"
    );

    page.fill("input[name=email]", "kim@example.com")
        .await
        .unwrap();
    page.fill("input[name=password]", "WrongPass123!")
        .await
        .unwrap();
    page.click("form[data-form=sign-in] button[type=submit]")
        .await
        .unwrap();
    let shown = expect(
        &page,
        "document.querySelector('[role=alert]')?.textContent.trim()",
    )
    .await;
    let api = srv
        .client
        .post(srv.url("/auth/login"))
        .header("accept-language", "ko-KR,ko")
        .json(&json!({ "email": "kim@example.com", "password": "WrongPass123!" }))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: Value = api.json().await.unwrap();
    assert_eq!(
        shown, body["error"]["message"],
        "the page shows the envelope's message"
    );
    let code = page
        .eval(&format!("{}.dataset.code", q("[role=alert]")))
        .await
        .unwrap();
    assert_eq!(code, body["error"]["code"]);
    shot(&page, "sign-in-ko-error").await;

    // A mailed verification link with a made-up token: the API's refusal.
    page.goto(&srv.url_of("/verify-email?token=made-up"))
        .await
        .unwrap();
    let shown = expect(
        &page,
        "document.querySelector('[role=alert]')?.dataset.code",
    )
    .await;
    assert_eq!(shown, "INVALID_TOKEN");
    assert_clean(&page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_only_at_phone_width() {
    let srv = TestServer::start().await;
    srv.signup("keys@example.com").await;
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("en-US", 390, 844).await.unwrap();
    page.goto(&srv.url_of("/sign-in")).await.unwrap();
    expect(&page, "document.querySelector('form[data-form=sign-in]')").await;

    page.press("Tab").await.unwrap();
    assert_eq!(
        page.eval("document.activeElement.name").await.unwrap(),
        "email"
    );
    page.type_text("keys@example.com").await.unwrap();
    page.press("Tab").await.unwrap();
    assert_eq!(
        page.eval("document.activeElement.name").await.unwrap(),
        "password"
    );
    page.type_text(PASSWORD).await.unwrap();
    page.press("Enter").await.unwrap();
    expect(
        &page,
        "location.pathname === '/generate' && document.querySelector('select[name=model] option')",
    )
    .await;
    let fits = "document.documentElement.scrollWidth <= window.innerWidth";
    assert_eq!(
        page.eval(fits).await.unwrap(),
        true,
        "no sideways scrolling"
    );
    shot(&page, "phone-generate").await;

    // The focus starts at the page's content; just before it is the menu
    // button, which opens the menu on Enter; its links follow in order.
    assert_eq!(
        page.eval("document.activeElement.id").await.unwrap(),
        "main"
    );
    page.press_shift("Tab").await.unwrap();
    assert_eq!(
        page.eval("document.activeElement.className").await.unwrap(),
        "menu"
    );
    page.press("Enter").await.unwrap();
    expect(
        &page,
        "document.querySelector('button.menu[aria-expanded=true]')",
    )
    .await;
    for _ in 0..3 {
        page.press("Tab").await.unwrap();
    }
    assert_eq!(
        page.eval("document.activeElement.getAttribute('href')")
            .await
            .unwrap(),
        "/gallery"
    );
    page.press("Enter").await.unwrap();
    expect(
        &page,
        "location.pathname === '/gallery' && document.querySelector('.boards form')",
    )
    .await;
    assert_eq!(
        page.eval(fits).await.unwrap(),
        true,
        "no sideways scrolling"
    );
    shot(&page, "phone-gallery").await;
    assert_clean(&page).await;
}

#[tokio::test]
async fn pages_and_assets_are_served_with_the_right_caching() {
    let srv = TestServer::start_with(|c| {
        c.public_url = Some("http://studio.test".into());
        c.google_client_id = Some("client".into());
        c.google_client_secret = Some("secret".to_owned().into());
    })
    .await;
    let page = srv.client.get(srv.url_of("/gallery")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(page.headers()[CACHE_CONTROL], "no-cache");
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = page.text().await.unwrap();
    let start = html.find("/assets/").unwrap();
    let version = html[start + 8..].split('/').next().unwrap().to_owned();
    assert_eq!(version.len(), 16, "{html}");
    assert!(html.contains(r#""providers":["google"]"#), "{html}");

    let main = srv.url_of(&format!("/assets/{version}/js/main.js"));
    let plain = srv.client.get(&main).send().await.unwrap();
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.headers()[CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        plain.headers()[CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert!(plain.headers().get(CONTENT_ENCODING).is_none());
    let etag = plain.headers()[ETAG].clone();
    let source = plain.text().await.unwrap();
    assert!(source.contains("import"), "{source}");
    let zipped = srv
        .client
        .get(&main)
        .header(ACCEPT_ENCODING, "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()[CONTENT_ENCODING], "gzip");
    assert!(zipped.bytes().await.unwrap().len() < source.len());
    let again = srv
        .client
        .get(&main)
        .header(IF_NONE_MATCH, etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for gone in [
        "/assets/0000000000000000/js/main.js".to_owned(),
        format!("/assets/{version}/js/nope.js"),
        format!("/assets/{version}/../Cargo.toml"),
        format!("/assets/{version}/index.html"),
        "/not-a-page".to_owned(),
    ] {
        let r = srv.client.get(srv.url_of(&gone)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{gone}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "NOT_FOUND", "{gone}");
    }

    let api_only = TestServer::start_with(|c| c.web_ui = false).await;
    let r = api_only
        .client
        .get(api_only.url_of("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// First paint and page weight of the sign-in page, cold (a fresh browser
/// context each time), against a one-line HTML page served on the same
/// loopback in the same run. Figures: stdout and
/// `<target>/tmp/web-bench.json` (BENCHMARKS.md); only the weight budget
/// is asserted, timing is measured, not tested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_paint_and_page_weight() {
    let srv = TestServer::start().await;
    let baseline = baseline_server().await;
    let browser = Browser::launch().await.expect("chromium");
    let measure = r#"new Promise((resolve) => {
        const lcp = [];
        new PerformanceObserver((l) => lcp.push(...l.getEntries())).observe({ type: 'largest-contentful-paint', buffered: true });
        requestAnimationFrame(() => requestAnimationFrame(() => {
          const fcp = performance.getEntriesByName('first-contentful-paint')[0];
          const ready = performance.getEntriesByName('pingvas:page')[0];
          const nav = performance.getEntriesByType('navigation')[0];
          const res = performance.getEntriesByType('resource').filter((r) => !r.name.includes('/api/'));
          resolve({
            fcp: fcp ? fcp.startTime : null,
            lcp: lcp.length ? lcp[lcp.length - 1].startTime : null,
            ready: ready ? ready.startTime : null,
            html: nav.responseEnd,
            assets: Math.max(0, ...res.map((r) => r.responseEnd)),
            dcl: nav.domContentLoadedEventEnd,
            bytes: nav.encodedBodySize + res.reduce((s, r) => s + r.encodedBodySize, 0),
            decoded: nav.decodedBodySize + res.reduce((s, r) => s + r.decodedBodySize, 0),
            files: res.length + 1,
          });
        }));
      })"#;
    let mut studio = Vec::new();
    let mut base = Vec::new();
    for _ in 0..7 {
        let p = browser.fresh_page("en-US", 1280, 800).await.unwrap();
        p.goto(&baseline).await.unwrap();
        base.push(p.eval(measure).await.unwrap());
        let p = browser.fresh_page("en-US", 1280, 800).await.unwrap();
        p.goto(&srv.url_of("/sign-in")).await.unwrap();
        expect(&p, "document.querySelector('form[data-form=sign-in]')").await;
        studio.push(p.eval(measure).await.unwrap());
        assert_clean(&p).await;
    }
    let median = |xs: &[Value], k: &str| {
        let mut v: Vec<f64> = xs.iter().filter_map(|x| x[k].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let weight = studio[0]["bytes"].as_f64().unwrap();
    let report = json!({
        "runs": studio.len(),
        "studio": { "fcp_ms": median(&studio, "fcp"), "lcp_ms": median(&studio, "lcp"),
                    "app_rendered_ms": median(&studio, "ready"),
                    "html_received_ms": median(&studio, "html"), "assets_received_ms": median(&studio, "assets"),
                    "dom_content_loaded_ms": median(&studio, "dcl"),
                    "transfer_bytes": weight, "decoded_bytes": studio[0]["decoded"], "files": studio[0]["files"] },
        "baseline": { "fcp_ms": median(&base, "fcp"), "lcp_ms": median(&base, "lcp"), "transfer_bytes": base[0]["bytes"] },
        "lcp_ratio": median(&studio, "lcp") / median(&base, "lcp"),
    });
    println!("web bench: {report:#}");
    std::fs::write(
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-bench.json"),
        serde_json::to_vec_pretty(&report).unwrap(),
    )
    .unwrap();
    assert!(
        weight > 10_000.0,
        "the page and its modules were counted: {report}"
    );
    assert!(
        weight < 200.0 * 1024.0,
        "page weight over 200 KB compressed: {report}"
    );
}

/// A one-line HTML page on loopback: the paint baseline.
async fn baseline_server() -> String {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async {
            axum::response::Html(
                "<!doctype html><meta charset=utf-8><title>b</title><h1>Pingvas Studio</h1>",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

/// The status a job's card ends in (completed, failed or cancelled). A
/// job may first compile a node's component (slow in a debug build on a
/// busy machine), hence the longer wait.
async fn job_end(page: &Page, job: &str) -> Value {
    let status = format!("document.querySelector('[data-job=\"{job}\"]')?.dataset.status");
    let ended = format!("['completed', 'failed', 'cancelled'].includes({status}) && {status}");
    match page.wait_for_within(&ended, Duration::from_secs(180)).await {
        Ok(v) => v,
        Err(e) => panic!("{e}\nproblems: {:?}", page.problems()),
    }
}

/// Submits the generate form and waits for its job to complete; the job's
/// REST view.
async fn generate_until_done(page: &Page, srv: &TestServer, token: &str) -> Value {
    page.click("form[data-form=generate] button[type=submit]")
        .await
        .unwrap();
    let job = expect(page, "document.querySelector('.jobs .job')?.dataset.job").await;
    let job = job.as_str().unwrap().to_owned();
    let status = job_end(page, &job).await;
    let detail = srv.job(token, &job).await;
    assert_eq!(status, "completed", "{detail}");
    detail
}

/// Signs `page` in as `session` (the sign-up flow is the first test's).
async fn sign_in_as(page: &Page, srv: &TestServer, session: &pingvas_tests::Session) {
    page.goto(&srv.url_of("/sign-in")).await.unwrap();
    page.eval(&format!(
        "localStorage.setItem('pingvas.session', JSON.stringify({}))",
        json!({ "access_token": session.access, "refresh_token": session.refresh })
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_a_node_use_it_with_its_form_then_yank_and_run_an_imported_workflow() {
    let srv = TestServer::start().await;
    // The bundled nodes' names are reserved for the operator.
    let user = srv.signup_admin("author@example.com").await;
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("en-US", 1280, 900).await.unwrap();
    sign_in_as(&page, &srv, &user).await;

    // Publish the watermark component through the form.
    page.goto(&srv.url_of("/plugins")).await.unwrap();
    expect(&page, "document.querySelector('.page.plugins details')").await;
    page.eval("document.querySelector('.page.plugins details').open = true")
        .await
        .unwrap();
    page.fill("form[data-form=publish] input[name=name]", "watermark")
        .await
        .unwrap();
    let wasm = pingvas_tests::plugin_path("watermark");
    page.set_files("form[data-form=publish] input[name=component]", &[&wasm])
        .await
        .unwrap();
    page.click("form[data-form=publish] button[type=submit]")
        .await
        .unwrap();
    expect(&page, "document.querySelector('li[data-plugin=watermark]')").await;
    shot(&page, "plugins-published").await;

    // Generate with it as a post-node; its parameters come from the form
    // built from its JSON Schema.
    page.click("nav a[href='/generate']").await.unwrap();
    expect(&page, "[...document.querySelectorAll('fieldset select option')].some(o => o.value === 'watermark')").await;
    page.eval(
        "(() => { const s = [...document.querySelectorAll('fieldset select')].find(s => [...s.options].some(o => o.value === 'watermark'));
          s.value = 'watermark'; s.dispatchEvent(new Event('change', { bubbles: true }));
          s.parentElement.querySelector('button').click(); })()",
    )
    .await
    .unwrap();
    expect(&page, "document.querySelector('.node select[name=corner]') && document.querySelector('.node input[name=opacity]')").await;
    page.fill(".node input[name=text]", "PINGVAS")
        .await
        .unwrap();
    page.fill("textarea[name=prompt]", "a marked lighthouse")
        .await
        .unwrap();
    page.fill("input[name=width]", "64").await.unwrap();
    page.fill("input[name=height]", "64").await.unwrap();
    page.fill("input[name=steps]", "4").await.unwrap();
    shot(&page, "generate-post-node").await;
    let job = generate_until_done(&page, &srv, &user.access).await;
    let image = job["result"]["image_id"].as_str().unwrap().to_owned();
    let (_, creds) = srv
        .get(&format!("/images/{image}/credentials"), Some(&user.access))
        .await;
    assert!(
        creds.to_string().contains("watermark"),
        "the post-node ran: {creds}"
    );

    // Yank it: the next generation may no longer name it.
    page.click("nav a[href='/plugins']").await.unwrap();
    page.click("li[data-plugin=watermark] button[aria-expanded]")
        .await
        .unwrap();
    page.eval("window.confirm = () => true").await.unwrap();
    page.click("li[data-plugin=watermark] tr[data-version='0.1.0'] button")
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('li[data-plugin=watermark] tr[data-version=\"0.1.0\"] .badge')",
    )
    .await;
    let (_, versions) = srv
        .get("/plugins/watermark/versions", Some(&user.access))
        .await;
    assert_eq!(versions["data"][0]["yanked"], true);

    // Import an InvokeAI export from a file and run it with its inputs.
    page.click("nav a[href='/workflows']").await.unwrap();
    expect(&page, "document.querySelector('.page.workflows details')").await;
    page.eval("document.querySelector('.page.workflows details').open = true")
        .await
        .unwrap();
    let export = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/invokeai/workflows/Text_to_Image_-_SD1.5.json");
    page.set_files("form[data-form=import] input[name=import-file]", &[&export])
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('textarea[name=import-json]').value.length > 100",
    )
    .await;
    page.click("form[data-form=import] button[type=submit]")
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('.page.workflows [role=status] .ok')",
    )
    .await;
    let wf = expect(
        &page,
        "document.querySelector('li[data-workflow]')?.dataset.workflow",
    )
    .await;
    page.click(&format!(
        "li[data-workflow='{}'] button[aria-expanded]",
        wf.as_str().unwrap()
    ))
    .await
    .unwrap();
    expect(
        &page,
        "document.querySelector('form[data-form=run-workflow]')",
    )
    .await;
    let inputs = page
        .eval("[...document.querySelectorAll('form[data-form=run-workflow] [name]')].map(e => e.name)")
        .await
        .unwrap();
    let (_, stored) = srv
        .get(
            &format!("/workflows/{}", wf.as_str().unwrap()),
            Some(&user.access),
        )
        .await;
    let declared: Vec<Value> = stored["data"]["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].clone())
        .collect();
    assert_eq!(inputs, json!(declared), "one field per declared input");
    shot(&page, "workflow-run").await;
    page.click("form[data-form=run-workflow] button[type=submit]")
        .await
        .unwrap();
    let run = expect(
        &page,
        "document.querySelector('.page.workflows .job')?.dataset.job",
    )
    .await;
    let run = run.as_str().unwrap().to_owned();
    assert_eq!(
        job_end(&page, &run).await,
        "completed",
        "{}",
        srv.job(&user.access, &run).await
    );
    assert_clean(&page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_image_to_image_upscale_and_inpaint_with_the_mask_brush() {
    let srv = TestServer::start().await;
    let user = srv.signup("painter@example.com").await;
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("en-US", 1280, 900).await.unwrap();
    sign_in_as(&page, &srv, &user).await;

    // Upload a picture through the gallery.
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("source.png");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(pingvas_tests::png_base64(64, 64, [200, 40, 40]))
        .unwrap();
    std::fs::write(&png, bytes).unwrap();
    page.goto(&srv.url_of("/gallery")).await.unwrap();
    page.set_files(".upload input[type=file]", &[&png])
        .await
        .unwrap();
    let image = expect(
        &page,
        "document.querySelector('.grid .thumb')?.dataset.image",
    )
    .await;
    let image = image.as_str().unwrap().to_owned();

    // Image to image from the image's panel.
    page.click(".grid .thumb").await.unwrap();
    page.click("dialog[open] button[data-use=image-to-image]")
        .await
        .unwrap();
    expect(&page, "location.search.includes('mode=image-to-image') && document.querySelector('img.source-preview')?.naturalWidth === 64").await;
    page.fill("textarea[name=prompt]", "a red lighthouse")
        .await
        .unwrap();
    page.fill("input[name=steps]", "4").await.unwrap();
    let job = generate_until_done(&page, &srv, &user.access).await;
    assert_eq!(job["job_type"], "image_to_image");

    // Upscale ×2 of the upload.
    page.goto(&srv.url_of(&format!("/generate?mode=upscale&source={image}")))
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('img.source-preview')?.naturalWidth === 64",
    )
    .await;
    shot(&page, "generate-upscale").await;
    let job = generate_until_done(&page, &srv, &user.access).await;
    assert_eq!(job["result"]["images"][0]["width"], 128, "{job}");

    // Inpaint: a brush stroke across the middle is the mask.
    page.goto(&srv.url_of(&format!("/generate?mode=inpaint&source={image}")))
        .await
        .unwrap();
    expect(
        &page,
        "document.querySelector('.mask-stage canvas')?.width === 64",
    )
    .await;
    page.drag(".mask-stage canvas", (0.2, 0.5), (0.8, 0.5))
        .await
        .unwrap();
    let painted = page
        .eval(
            "(() => { const c = document.querySelector('.mask-stage canvas');
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })()",
        )
        .await
        .unwrap();
    // A 32 px brush on a 64 px picture shown 512 px wide: a 4 px line.
    assert!(
        painted.as_i64().unwrap() > 100,
        "the stroke painted the mask: {painted}"
    );
    page.fill("textarea[name=prompt]", "a window")
        .await
        .unwrap();
    page.fill("input[name=steps]", "4").await.unwrap();
    shot(&page, "generate-inpaint").await;
    let job = generate_until_done(&page, &srv, &user.access).await;
    assert_eq!(job["job_type"], "inpaint");
    assert_clean(&page).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_sign_in_through_the_browser_and_no_session_from_a_planted_link() {
    let fake = pingvas_tests::fakes::FakeOAuth::start().await;
    // public_url must name the server's own address: pick the port first.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let srv = TestServer::start_with(|c| {
        c.addr = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(base.clone());
        fake.configure(c, "google");
    })
    .await;
    fake.sign_in_as(json!({ "sub": "g-web-1", "email": "kim@example.com", "email_verified": true,
                            "name": "김구글", "picture": "https://lh3.googleusercontent.com/a/p.png" }));
    let browser = Browser::launch().await.expect("chromium");
    let page = browser.fresh_page("en-US", 1280, 800).await.unwrap();
    page.goto(&format!("{base}/sign-in")).await.unwrap();
    expect(&page, "document.querySelector('a[data-provider=google]')").await;
    assert_eq!(
        page.eval("document.querySelector('a[data-provider=discord]')")
            .await
            .unwrap(),
        Value::Null,
        "Discord is not configured"
    );
    page.click("a[data-provider=google]").await.unwrap();
    // Provider, callback, then the studio with the session in the fragment,
    // which it takes and removes from the address bar.
    expect(
        &page,
        "location.pathname === '/generate' && document.querySelector('select[name=model] option')",
    )
    .await;
    assert_eq!(page.eval("location.hash").await.unwrap(), "");
    let token = access_token(&page).await;
    let (_, me) = srv.get("/users/me", Some(&token)).await;
    assert_eq!(me["data"]["email"], "kim@example.com");
    let refresh = page
        .eval("JSON.parse(localStorage.getItem('pingvas.session')).refresh_token")
        .await
        .unwrap();

    // A link carrying someone's tokens, opened by a browser that started no
    // sign-in, signs nobody in.
    let victim = browser.fresh_page("en-US", 1280, 800).await.unwrap();
    victim
        .goto(&format!(
            "{base}/#access_token={token}&refresh_token={}&token_type=Bearer&provider=google",
            refresh.as_str().unwrap()
        ))
        .await
        .unwrap();
    expect(
        &victim,
        "location.pathname === '/sign-in' && document.querySelector('form[data-form=sign-in]')",
    )
    .await;
    assert_eq!(
        victim
            .eval("localStorage.getItem('pingvas.session')")
            .await
            .unwrap(),
        Value::Null
    );
    assert_eq!(
        victim.eval("location.hash").await.unwrap(),
        "",
        "the tokens leave the address bar"
    );

    // A provider's refusal comes back as the error fragment, shown.
    fake.sign_in_as(json!({ "sub": "g-web-2", "name": "No Mail" }));
    page.eval("localStorage.clear()").await.unwrap();
    page.goto(&format!("{base}/sign-in")).await.unwrap();
    page.click("a[data-provider=google]").await.unwrap();
    let code = expect(
        &page,
        "document.querySelector('[role=alert]')?.dataset.code",
    )
    .await;
    assert_eq!(code, "email_missing");
    assert_clean(&page).await;
    assert_clean(&victim).await;
}
