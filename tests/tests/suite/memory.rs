//! What hostile uploads and slow readers cost the server: its memory,
//! measured on the real `pingvas serve` in a process of its own (in the
//! test binary every other test's server shares the process), and the
//! connections a stalled or greedy reader may keep.

use pingvas_tests::images::{SlowReader, bomb_png, noisy_png};
use pingvas_tests::process::ServerProcess;
use pingvas_tests::{Session, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;

/// A server process on this run's blob store (`TEST_BLOB_URL`: S3) with
/// `env` on top.
async fn server(env: &[(&str, &str)]) -> ServerProcess {
    let mut all: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if let Some(url) = pingvas_tests::s3_blob_url().await {
        all.push(("PINGVAS_BLOB_URL".into(), url));
        let endpoint = std::env::var("TEST_S3_ENDPOINT").unwrap_or_default();
        all.push(("PINGVAS_S3_ENDPOINT".into(), endpoint));
        all.push(("PINGVAS_S3_ACCESS_KEY_ID".into(), "testing".into()));
        all.push(("PINGVAS_S3_SECRET_ACCESS_KEY".into(), "testing".into()));
    }
    let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ServerProcess::start(&pairs).await
}

async fn upload(srv: &ServerProcess, s: &Session, bytes: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(bytes).file_name("in.png"),
    );
    let r = srv
        .client
        .post(srv.url("/images/upload"))
        .bearer_auth(&s.access)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bomb_uploads_are_refused_from_their_header_without_taking_memory() {
    let srv = server(&[]).await;
    let alice = srv.signup("alice@example.com").await;
    // Warm the upload path (threads, pools, codecs) before the baseline.
    let (status, body) = upload(&srv, &alice, noisy_png(256)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let bomb = bomb_png(8192);
    assert!(bomb.len() < 16 << 10, "a bomb of {} bytes", bomb.len());

    let before = srv.peak_rss_bytes();
    let all = futures::future::join_all((0..8).map(|_| upload(&srv, &alice, bomb.clone()))).await;
    let grown = srv.peak_rss_bytes().saturating_sub(before);
    eprintln!("8 bomb uploads: peak RSS +{} MiB", grown / MIB);
    for got in &all {
        let e = assert_error(got, StatusCode::BAD_REQUEST, "INVALID_PARAMETERS");
        assert_eq!(e["details"]["field"], "file", "{e}");
        let reason = e["details"]["reason"].as_str().unwrap();
        assert!(reason.contains("at most 2048x2048"), "{reason}");
    }
    assert!(
        grown < 200 * MIB,
        "8 bomb uploads grew the peak RSS by {} MiB",
        grown / MIB
    );
    let (_, images) = srv
        .call(reqwest::Method::GET, "/images", Some(&alice.access), None)
        .await;
    assert_eq!(images["meta"]["total"], 1, "no bomb was stored");
}

/// Uploads an image of noise `side` pixels square for `s` (2040: ~16 MB),
/// shares it; its share path.
async fn shared_noise(srv: &ServerProcess, s: &Session, side: u32) -> String {
    let (status, up) = upload(srv, s, noisy_png(side)).await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    let id = up["data"]["id"].as_str().unwrap();
    let (status, shared) = srv
        .call(
            reqwest::Method::POST,
            &format!("/images/{id}/share"),
            Some(&s.access),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    format!(
        "/api/v1/shared/{}",
        shared["data"]["share_token"].as_str().unwrap()
    )
}

#[tokio::test]
async fn slow_readers_of_a_large_share_do_not_hold_it_in_memory() {
    // A 20 MB share (2280² of noise): uploads that large need an operator
    // who allows them.
    let srv = server(&[
        ("PINGVAS_FILE_READS_PER_CLIENT", "64"),
        ("PINGVAS_UPLOAD_MAX_SIDE", "2280"),
    ])
    .await;
    let alice = srv.signup("alice@example.com").await;
    let path = shared_noise(&srv, &alice, 2280).await;
    // One whole read first: the serving path is warm and the file is good.
    let mut whole = SlowReader::open(&srv.base, &path, 0).await;
    assert_eq!(whole.status(), 200, "{}", whole.head);
    let len = whole.content_length();
    assert!(len > 20_000_000, "a {len}-byte share");
    assert_eq!(
        whole.read_rest(std::time::Duration::from_secs(60)).await,
        len
    );

    let (before, resident_before) = (srv.peak_rss_bytes(), srv.rss_bytes());
    let mut readers = Vec::new();
    for _ in 0..40 {
        let r = SlowReader::open(&srv.base, &path, 4096).await;
        assert_eq!(r.status(), 200, "{}", r.head);
        readers.push(r);
    }
    let grown = srv.peak_rss_bytes().saturating_sub(before);
    let resident = srv.rss_bytes().saturating_sub(resident_before);
    eprintln!(
        "40 stalled readers of a {} MB share: peak RSS +{} MiB (resident now +{} MiB)",
        len / 1_000_000,
        grown / MIB,
        resident / MIB
    );
    // Both: the upload before may have raised the peak past what the
    // readers take, but not what is resident while they stall.
    assert!(
        grown < 100 * MIB && resident < 100 * MIB,
        "40 stalled readers grew the peak RSS by {} MiB, the resident by {} MiB",
        grown / MIB,
        resident / MIB
    );
    drop(readers);
}

#[tokio::test]
async fn a_reader_that_stalls_past_the_write_timeout_is_cut_off() {
    use std::time::Duration;
    let srv = server(&[("PINGVAS_WRITE_TIMEOUT_MS", "500")]).await;
    let alice = srv.signup("alice@example.com").await;
    let path = shared_noise(&srv, &alice, 2040).await;
    // A reader that keeps reading gets the whole file.
    let mut steady = SlowReader::open(&srv.base, &path, 0).await;
    let len = steady.content_length();
    assert_eq!(steady.read_rest(Duration::from_secs(60)).await, len);

    let mut stalled = SlowReader::open(&srv.base, &path, 4096).await;
    assert_eq!(stalled.status(), 200, "{}", stalled.head);
    // The behaviour under test: the client reads nothing for five write
    // timeouts (no event to wait for instead: the stall is the input).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let read = stalled.read_rest(Duration::from_secs(60)).await;
    assert!(
        read < len,
        "the stalled reader got all {len} bytes: it was never cut off"
    );
}

#[tokio::test]
async fn each_client_reads_at_most_its_share_of_files_at_once() {
    let srv = server(&[("PINGVAS_FILE_READS_PER_CLIENT", "2")]).await;
    let alice = srv.signup("alice@example.com").await;
    let path = shared_noise(&srv, &alice, 2040).await;
    let first = SlowReader::open(&srv.base, &path, 4096).await;
    let second = SlowReader::open(&srv.base, &path, 4096).await;
    assert_eq!((first.status(), second.status()), (200, 200));

    let get = |headers: &[(&'static str, String)]| {
        let mut req = srv.client.get(srv.url(&path));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send()
    };
    let range = [("range", "bytes=0-3".to_owned())];
    let third = get(&range).await.unwrap();
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.headers()["retry-after"], "1");
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    assert_eq!(body["error"]["details"]["max"], 2, "{body}");
    // Revalidating reads no file: still answered.
    let etag = first.header("etag").unwrap().to_owned();
    let current = get(&[("if-none-match", etag)]).await.unwrap();
    assert_eq!(current.status(), StatusCode::NOT_MODIFIED);

    // A reader gone gives its place back once the server sees it go.
    drop(first);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let again = get(&range).await.unwrap();
        if again.status() == StatusCode::PARTIAL_CONTENT {
            assert_eq!(&again.bytes().await.unwrap()[1..4], b"PNG");
            break;
        }
        assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed reader's place was never given back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(second);
}
