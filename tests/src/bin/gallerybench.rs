//! Gallery listing load script (BENCHMARKS.md): starts `pingvas serve` on a
//! fresh SQLite data dir, gives one user 10,000 image rows, then measures
//! in one run `GET /healthz` (the baseline) and `GET /api/v1/images?per_page=50`
//! sorted by created_at and by file_size, on page 1 and page 200 — with the
//! page cache as configured by default, then on a second server with it off.
//!
//! `cargo build --release -p pingvas-host -p pingvas-tests --bins &&
//!  target/release/gallerybench [--seconds 10] [--connections 32]`

use chrono::{Duration, Utc};
use pingvas_tests::bench::{Args, Run, ServerProcess, drive, sign_in, start_serve};
use reqwest::StatusCode;
use serde_json::Value;

const IMAGES: i64 = 10_000;

/// Inserts `IMAGES` rows for `user` straight into the server's database
/// (files are not needed to list them).
async fn seed(db_path: &std::path::Path, user: &str) {
    let url = format!("sqlite://{}", db_path.display());
    let pool = sqlx::SqlitePool::connect(&url)
        .await
        .expect("the server's database");
    let mut tx = pool.begin().await.unwrap();
    let start = Utc::now() - Duration::days(30);
    for i in 0..IMAGES {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO images (id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
             mime_type, is_starred, is_public, share_token, metadata, created_at, thumb_size) \
             VALUES ($1, $2, NULL, $3, $4, 1024, 1024, $5, 'image/png', FALSE, FALSE, NULL, $6, $7, 9000)",
        )
        .bind(&id)
        .bind(user)
        .bind(format!("images/{user}/{id}.png"))
        .bind(format!("thumbnails/{user}/{id}.jpg"))
        // Sizes in no relation to age, so the two sorts differ.
        .bind(1_000_000 + (i * 7919) % 2_000_000)
        .bind(r#"{"model":"stable-diffusion-xl","prompt":"a lighthouse on a cliff at dusk","seed":42}"#)
        .bind(start + Duration::seconds(i * 60))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool.close().await;
}

/// Starts a server (`env` on top of the defaults), seeds its user and
/// returns it with the user's token.
async fn seeded_server(env: Vec<(String, String)>) -> (ServerProcess, String) {
    let server = start_serve(move |_| env).await;
    let base = server.base.clone();
    let token = sign_in(&base, "gallery@example.com", || {}).await;
    let me: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user = me["data"]["id"].as_str().unwrap().to_owned();
    seed(&server.dir.path().join("data/pingvas.db"), &user).await;
    (server, token)
}

const PAGES: [(&str, u32); 4] = [
    ("created_at", 1),
    ("created_at", 200),
    ("file_size", 1),
    ("file_size", 200),
];

/// Each of `PAGES`, driven in turn.
async fn list_pages(base: &str, token: &str, args: &Args) -> Vec<(String, Run)> {
    let mut runs = Vec::new();
    for (sort, page) in PAGES {
        let url = format!("{base}/api/v1/images?per_page=50&sort={sort}&page={page}");
        let t = token.to_owned();
        let run = drive(
            args.connections,
            args.duration(),
            StatusCode::OK,
            move |c, _| c.get(&url).bearer_auth(&t),
        )
        .await;
        runs.push((format!("sort={sort}&page={page}"), run));
    }
    runs
}

fn row(name: &str, run: &Run) {
    println!(
        "| {name} | {:.0} | {:.2} | {:.2} | {} |",
        run.rps(),
        run.percentile_ms(0.5),
        run.percentile_ms(0.99),
        run.errors
    );
}

fn verdicts(what: &str, health: &Run, runs: &[(String, Run)]) {
    for (i, sort) in ["created_at", "file_size"].iter().enumerate() {
        let (first, deep) = (&runs[2 * i].1, &runs[2 * i + 1].1);
        println!(
            "{what}, sort={sort}: page 1 ÷ healthz {:.1}% (target ≥ 25%); page 200 p50 ÷ page 1 p50 {:.2}× (target ≤ 1.5×)",
            first.rps() / health.rps() * 100.0,
            deep.percentile_ms(0.5) / first.percentile_ms(0.5)
        );
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse("gallerybench", 10, 32);
    // As configured by default (page cache on), and with the cache off:
    // every request counts, walks the index and signs its links.
    let (warm, token) = seeded_server(Vec::new()).await;
    let b = warm.base.clone();
    let health = drive(
        args.connections,
        args.duration(),
        StatusCode::OK,
        move |c, _| c.get(format!("{b}/healthz")),
    )
    .await;
    let cached = list_pages(&warm.base, &token, &args).await;
    drop(warm);
    let (cold, token) =
        seeded_server(vec![("PINGVAS_GALLERY_PAGE_CACHE_MIB".into(), "0".into())]).await;
    let uncached = list_pages(&cold.base, &token, &args).await;
    drop(cold);

    println!("| GET /api/v1/images?per_page=50&… | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---:|---:|---:|---:|");
    row("GET /healthz (baseline)", &health);
    for (name, run) in &cached {
        row(name, run);
    }
    for (name, run) in &uncached {
        row(&format!("{name}, page cache off"), run);
    }
    println!();
    verdicts("page cache on", &health, &cached);
    verdicts("page cache off", &health, &uncached);
}
