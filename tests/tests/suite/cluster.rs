//! Several hosts as one studio, on PostgreSQL + Redis (skipped, saying
//! so, without them): a job's events, image link and gallery page on a
//! host other than the one it went through; a host killed under its
//! sockets, whose clients resume on another with no gap and no repeat;
//! allowances and the login back-off shared by every host.

use pingvas_tests::process::HostProcess;
use pingvas_tests::{
    Events, PASSWORD, Session, TestServer, WORKER_TOKEN, WorkerProcess, assert_error, manifest,
    plugin_wasm, small_job,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Whether this run has the shared services a cluster needs.
fn clustered() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
    let ok = set("TEST_DATABASE_URL") && set("TEST_REDIS_URL");
    if !ok {
        eprintln!("skipped: a cluster needs TEST_DATABASE_URL and TEST_REDIS_URL");
    }
    ok
}

/// The first host: remote workers only.
async fn first_host() -> TestServer {
    TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
    })
    .await
}

/// Enqueues `body` through `srv` once a worker serves (it registers on
/// its first poll); the job id.
async fn enqueue(srv: &TestServer, who: &Session, body: Value) -> String {
    loop {
        let (s, b) = srv
            .generate("text-to-image", &who.access, body.clone())
            .await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            tokio::task::yield_now().await;
            continue;
        }
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        return b["data"]["job_id"].as_str().unwrap().to_owned();
    }
}

fn ids(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_job_through_one_host_is_heard_downloaded_and_listed_on_another() {
    if !clustered() {
        return;
    }
    let a = first_host().await;
    let b = HostProcess::start(&a).await;
    // The worker leases through B what was queued through A.
    let _worker = WorkerProcess::start_at(&b.base);
    let alice = a.signup("cluster-events@example.com").await;
    let mut on_b = Events::open(&b.base, &alice.access, None).await;
    let id = enqueue(&a, &alice, small_job("two hosts")).await;
    let end = on_b.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let kinds = on_b.kinds_of(&id);
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("job.queued"),
        "{kinds:?}"
    );
    assert!(kinds.iter().any(|k| k == "job.started"), "{kinds:?}");
    let seen = ids(&on_b.seen);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ids grow: {seen:?}");

    // A's link downloads from B, byte for byte.
    let link = end["data"]["images"][0]["image_url"]
        .as_str()
        .unwrap()
        .to_owned();
    let from_a = a.download(&link).await;
    let from_b = a
        .client
        .get(format!("{}{link}", b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(from_b.status(), StatusCode::OK);
    assert_eq!(from_b.bytes().await.unwrap().as_ref(), from_a.as_slice());
    // B's gallery lists the image at once.
    let image = end["data"]["images"][0]["image_id"].as_str().unwrap();
    let (s, page) = pingvas_tests::send_json(
        a.client.get(pingvas_tests::api_url(&b.base, "/images")),
        Some(&alice.access),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(page["data"][0]["id"], image, "{page}");
}

#[tokio::test]
async fn clients_of_a_killed_host_resume_on_another_without_gap_or_repeat() {
    if !clustered() {
        return;
    }
    let survivor = first_host().await;
    let mut doomed = HostProcess::start(&survivor).await;
    let _worker = WorkerProcess::start_at(&survivor.base);
    let alice = survivor.signup("cluster-resume@example.com").await;
    let mut before = Events::open(&doomed.base, &alice.access, None).await;
    let slow = json!({ "prompt": "long", "model": "stable-diffusion-1.5", "width": 512, "height": 512, "steps": 40, "seed": 3 });
    let id = enqueue(&survivor, &alice, slow).await;
    before.until("job.progress", &id).await;
    doomed.kill9();
    while before.try_next().await.is_some() {}
    let handled = before.seen.last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut after = Events::open(&survivor.base, &alice.access, Some(&handled)).await;
    assert_eq!(after.hello.as_ref().unwrap()["complete"], true);
    let end = after.until_end(&id).await;
    assert_eq!(end["type"], "job.completed", "{end}");

    // What both sockets got, in order, is exactly what the studio kept.
    let got: Vec<u64> = ids(&before.seen)
        .into_iter()
        .chain(ids(&after.seen))
        .collect();
    let first = got[0];
    let mut all = Events::open(
        &survivor.base,
        &alice.access,
        Some(&(first - 1).to_string()),
    )
    .await;
    let last = *got.last().unwrap();
    while ids(&all.seen).last().is_none_or(|&i| i < last) {
        all.next().await;
    }
    assert_eq!(got, ids(&all.seen), "a gap or a repeat across the hosts");
}

#[tokio::test]
async fn allowances_and_the_login_back_off_hold_across_hosts() {
    if !clustered() {
        return;
    }
    let a = TestServer::start_with(|c| c.plugin_publishes_per_hour = 1).await;
    let b = a.another_host().await;
    let on_b = |path: &str| pingvas_tests::api_url(&b.base, path);

    // One publish an hour, wherever it is made.
    let bob = a.signup_admin("cluster-publisher@example.com").await;
    let first = a
        .publish(
            &bob.access,
            manifest("prompt-style", "0.1.0", "node", "public"),
            plugin_wasm("prompt-style"),
        )
        .await;
    assert_eq!(first.0, StatusCode::CREATED, "{}", first.1);
    let form = reqwest::multipart::Form::new()
        .text(
            "manifest",
            manifest("prompt-style", "0.2.0", "node", "public").to_string(),
        )
        .part(
            "component",
            reqwest::multipart::Part::bytes(plugin_wasm("prompt-style")).file_name("plugin.wasm"),
        );
    let second = a
        .client
        .post(on_b("/plugins"))
        .bearer_auth(&bob.access)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = second.status();
    let body: Value = second.json().await.unwrap();
    assert_error(
        &(status, body),
        StatusCode::TOO_MANY_REQUESTS,
        "RATE_LIMITED",
    );

    // Five wrong passwords through A: B refuses even the right one.
    a.signup("cluster-target@example.com").await;
    let wrong = json!({ "email": "cluster-target@example.com", "password": "Wrong-pass-1" });
    for _ in 0..5 {
        let r = a.post("/auth/login", None, wrong.clone()).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    let right = json!({ "email": "cluster-target@example.com", "password": PASSWORD });
    let r = pingvas_tests::send_json(a.client.post(on_b("/auth/login")), None, Some(right)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

/// The `host:port` a service URL names.
fn service_addr(url: &str) -> std::net::SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    let rest = rest.rsplit('@').next().unwrap();
    let hostport = rest.split(['/', '?']).next().unwrap();
    use std::net::ToSocketAddrs;
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

/// Polls `base`'s `/readyz` until it answers `ready` (true) or not.
async fn until_ready(client: &reqwest::Client, base: &str, ready: bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ok = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if ok == ready {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{base} never became {}",
            if ready { "ready" } else { "not ready" }
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn postgres_then_redis_restarting_under_running_jobs_loses_nothing() {
    use pingvas_tests::chaos::TcpProxy;
    use secrecy::ExposeSecret;
    if !clustered() {
        return;
    }
    let pg_addr = service_addr(&std::env::var("TEST_DATABASE_URL").unwrap());
    let redis_addr = service_addr(&std::env::var("TEST_REDIS_URL").unwrap());
    let pg = TcpProxy::start(pg_addr).await;
    let redis = TcpProxy::start(redis_addr).await;
    let a = TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(WORKER_TOKEN.to_owned().into());
        c.lease_ttl_secs = 3;
        c.job_max_attempts = 6;
        let db = c.database_url.as_ref().unwrap().expose_secret().to_owned();
        c.database_url = Some(pg.url_through(&db, pg_addr).into());
        let r = c.redis_url.as_ref().unwrap().expose_secret().to_owned();
        c.redis_url = Some(redis.url_through(&r, redis_addr).into());
    })
    .await;
    let b = a.another_host().await;
    let _workers = [
        WorkerProcess::start_at(&a.base),
        WorkerProcess::start_at(&b.base),
    ];
    let users = [
        a.signup("chaos-one@example.com").await,
        a.signup("chaos-two@example.com").await,
    ];
    let mut events = a.events(&users[0].access, None).await;
    let body = json!({ "prompt": "chaos", "model": "stable-diffusion-1.5", "width": 256, "height": 256, "steps": 20, "seed": 9 });
    let mut jobs = Vec::new();
    for who in &users {
        for _ in 0..3 {
            jobs.push((who.clone(), enqueue(&a, who, body.clone()).await));
        }
    }
    events.until("job.started", &jobs[0].1).await;

    for service in [&pg, &redis] {
        service.cut();
        until_ready(&a.client, &a.base, false).await;
        service.restore();
        until_ready(&a.client, &a.base, true).await;
        until_ready(&a.client, &b.base, true).await;
    }

    // Every accepted job ends, done, and is charged once.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(180);
    for (who, id) in &jobs {
        loop {
            let job = a.job(&who.access, id).await;
            if job["status"] == "completed" {
                break;
            }
            assert!(
                !["failed", "cancelled"].contains(&job["status"].as_str().unwrap()),
                "a job was lost to the restarts: {job}"
            );
            assert!(tokio::time::Instant::now() < deadline, "{job}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    a.assert_ledger_at_rest().await;
}

#[tokio::test]
async fn two_hundred_workers_on_two_hosts_never_lease_a_job_twice() {
    use pingvas_tests::simworkers::SimWorkers;
    if !clustered() {
        return;
    }
    let a = first_host().await;
    let b = a.another_host().await;
    let workers = SimWorkers::start(&[a.base.clone(), b.base.clone()], 200, WORKER_TOKEN);
    let mut users = Vec::new();
    for i in 0..20 {
        let email = format!("fleet-{i}@example.com");
        let who = a.signup(&email).await;
        a.set_tier(&email, "studio").await;
        a.set_credits(&who.user_id, 1_000_000).await;
        users.push(who);
    }
    // Through both hosts at once: each host's enqueues wake the workers
    // polling the other.
    let mut sends = Vec::new();
    for (i, who) in users.iter().enumerate() {
        for j in 0..10 {
            let base = if (i + j) % 2 == 0 { &a.base } else { &b.base };
            let req = a
                .client
                .post(pingvas_tests::api_url(base, "/generate/text-to-image"))
                .bearer_auth(&who.access)
                .json(&small_job("fleet"));
            // Until the host has seen the workers' first polls, nobody
            // serves (503).
            sends.push(async move {
                loop {
                    let r = pingvas_tests::send_json(req.try_clone().unwrap(), None, None).await;
                    if r.0 != StatusCode::SERVICE_UNAVAILABLE {
                        return r;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            });
        }
    }
    for (s, body) in futures::future::join_all(sends).await {
        assert_eq!(s, StatusCode::ACCEPTED, "{s} {body}");
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    while a
        .count("SELECT COUNT(*) FROM jobs WHERE status = 'completed'")
        .await
        < 200
    {
        assert!(tokio::time::Instant::now() < deadline, "the fleet stalled");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let leases = workers.leases.lock().unwrap().clone();
    workers.stop().await;
    let mut jobs: Vec<&str> = leases.iter().map(|l| l.job_id.as_str()).collect();
    jobs.sort_unstable();
    let n = jobs.len();
    jobs.dedup();
    assert_eq!((n, jobs.len()), (200, 200), "a job was leased twice");
    assert_eq!(
        a.count("SELECT COUNT(*) FROM jobs WHERE attempts <> 1")
            .await,
        0
    );
    a.assert_ledger_at_rest().await;
    a.assert_queue_counters().await;
}

#[tokio::test]
async fn a_webhook_delivered_to_two_hosts_at_once_grants_once() {
    use pingvas_tests::billing::{LS_SECRET, PRO_MONTHLY, ls_deliver, ls_server, settled_balance};
    use pingvas_tests::fakes::hmac_hex;
    if !clustered() {
        return;
    }
    let (a, fake, _dir, _path) = ls_server().await;
    let b = a.another_host().await;
    let user = a.signup("cluster-billing@example.com").await;
    let sub = fake.subscribe(&user.user_id, PRO_MONTHLY);
    ls_deliver(&a, &fake.subscription_event("subscription_created", &sub)).await;
    let before = settled_balance(&a, &user.user_id).await;

    // The provider retries to whichever host its request reaches: the same
    // paid invoice arrives through both at once, twice each.
    let paid = fake.invoice_event("subscription_payment_success", &sub, 9101, "initial");
    let sends = [&a.base, &b.base, &a.base, &b.base].map(|base| {
        a.client
            .post(pingvas_tests::api_url(base, "/webhooks/lemon-squeezy"))
            .header("content-type", "application/json")
            .header("X-Signature", hmac_hex(LS_SECRET, &paid))
            .body(paid.clone())
            .send()
    });
    for r in futures::future::join_all(sends).await {
        assert_eq!(r.unwrap().status(), StatusCode::OK);
    }
    // Both hosts' apply loops and upkeep ticks run over it, at once.
    let now = chrono::Utc::now();
    let (da, db, ma, mb) = tokio::join!(
        a.state.billing.drain(),
        b.state.billing.drain(),
        a.state.billing.maintain(now),
        b.state.billing.maintain(now),
    );
    for applied in [da, db] {
        applied.unwrap();
    }
    for maintained in [ma, mb] {
        maintained.unwrap();
    }
    assert_eq!(settled_balance(&a, &user.user_id).await, before + 15000);
}

/// A worker long-polling host B gets a job queued through host A at once:
/// B hears A's enqueue (PostgreSQL NOTIFY) instead of finding it at its
/// next periodic re-check (10 s on a host that hears the others, longer
/// than this poll waits).
#[tokio::test]
async fn a_job_queued_through_one_host_wakes_a_worker_waiting_on_another() {
    if !clustered() {
        return;
    }
    let a = first_host().await;
    let b = a.another_host().await;
    let alice = a.signup("cluster-wake@example.com").await;
    let poll = a
        .client
        .post(format!("{}/internal/v1/lease", b.base))
        .bearer_auth(WORKER_TOKEN)
        .json(&json!({
            "worker_id": "waiting-on-b",
            "name": "waiting-on-b",
            "backend": "cpu-reference",
            "models": null,
            "worker_key": "key-waiting-on-b-0123456789",
            "wait_ms": 8000,
        }))
        .send();
    let waiting = tokio::spawn(poll);
    let id = enqueue(&a, &alice, small_job("wake me")).await;
    let leased = waiting.await.unwrap().unwrap();
    assert_eq!(leased.status(), StatusCode::OK, "no lease within the poll");
    let body: Value = leased.json().await.unwrap();
    assert_eq!(body["data"]["job_id"], id.as_str());
}
