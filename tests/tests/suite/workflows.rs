//! 워크플로우 API and workflow runs, black-box.

use pingvas_tests::{Session, TestServer, assert_error, png_base64};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// prompt → params → text-to-image → output.
fn simple(model: &str) -> Value {
    json!({
        "kind": "graph",
        "inputs": [
            { "name": "prompt", "type": "string", "default": "a lighthouse" },
            { "name": "seed", "type": "integer", "default": 7, "min": 0, "max": 1000 },
        ],
        "nodes": [
            { "id": "p", "type": "params",
              "values": { "model": model, "width": 64, "height": 64, "steps": 4 } },
            { "id": "gen", "type": "text_to_image" },
            { "id": "out", "type": "output" },
        ],
        "edges": [
            { "from": "inputs.prompt", "to": "p.prompt" },
            { "from": "inputs.seed", "to": "p.seed" },
            { "from": "p.params", "to": "gen.params" },
            { "from": "gen.images", "to": "out.images" },
        ],
    })
}

async fn create(srv: &TestServer, s: &Session, body: Value) -> (StatusCode, Value) {
    srv.post("/workflows", Some(&s.access), body).await
}

async fn created(srv: &TestServer, s: &Session, body: Value) -> String {
    let (status, b) = create(srv, s, body).await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["data"]["id"].as_str().unwrap().to_owned()
}

async fn run(srv: &TestServer, s: &Session, body: Value) -> (StatusCode, Value) {
    srv.generate("workflow", &s.access, body).await
}

fn named(v: &Value) -> Vec<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn workflow_bytes(srv: &TestServer, s: &Session) -> i64 {
    let (_, u) = srv.get("/storage/usage", Some(&s.access)).await;
    u["data"]["breakdown"]["workflows"].as_i64().unwrap()
}

#[tokio::test]
async fn workflows_are_private_public_copied_and_counted() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    let bob = srv.signup("bob@example.com").await;
    let private = created(
        &srv,
        &alice,
        json!({ "name": "Mine", "definition": simple("stable-diffusion-1.5"), "tags": ["Portrait"] }),
    )
    .await;
    let public = created(
        &srv,
        &alice,
        json!({ "name": "Shared", "description": "for all", "is_public": true,
                "definition": simple("stable-diffusion-1.5"), "tags": ["landscape"] }),
    )
    .await;

    // Storage counts the stored definitions, exactly.
    let (_, a) = srv
        .get(&format!("/workflows/{private}"), Some(&alice.access))
        .await;
    let (_, b) = srv
        .get(&format!("/workflows/{public}"), Some(&alice.access))
        .await;
    let stored = a["data"]["definition_bytes"].as_i64().unwrap()
        + b["data"]["definition_bytes"].as_i64().unwrap();
    assert!(stored > 0);
    assert_eq!(workflow_bytes(&srv, &alice).await, stored);
    assert_eq!(a["data"]["tags"], json!(["portrait"]));
    assert_eq!(a["data"]["inputs"][0]["name"], "prompt");
    assert_eq!(a["data"]["is_owner"], true);

    // Bob sees the public one only, cannot change it, can copy it.
    let (_, list) = srv.get("/workflows", Some(&bob.access)).await;
    assert_eq!(named(&list), vec!["Shared"]);
    assert_eq!(list["meta"]["total"], 1);
    let (s, _) = srv
        .get(&format!("/workflows/{private}"), Some(&bob.access))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, seen) = srv
        .get(&format!("/workflows/{public}"), Some(&bob.access))
        .await;
    assert_eq!(seen["data"]["is_owner"], false);
    for (method, body) in [
        (Method::PATCH, Some(json!({ "name": "hijacked" }))),
        (Method::DELETE, None),
    ] {
        let r = srv
            .call(
                method,
                &format!("/workflows/{public}"),
                Some(&bob.access),
                body,
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
    }
    let (s, copy) = srv
        .post(
            &format!("/workflows/{public}/copy"),
            Some(&bob.access),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{copy}");
    assert_eq!(copy["data"]["copied_from"], json!(public));
    assert_eq!(copy["data"]["is_public"], false);
    assert_eq!(copy["data"]["is_owner"], true);
    let (_, mine) = srv.get("/workflows?scope=mine", Some(&bob.access)).await;
    assert_eq!(named(&mine), vec!["Shared"]);
    assert_error(
        &srv.post(
            &format!("/workflows/{private}/copy"),
            Some(&bob.access),
            json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Tags filter; the owner edits and deletes.
    let (_, tagged) = srv
        .get("/workflows?tag=landscape", Some(&alice.access))
        .await;
    assert_eq!(named(&tagged), vec!["Shared"]);
    let (s, edited) = srv
        .call(
            Method::PATCH,
            &format!("/workflows/{private}"),
            Some(&alice.access),
            Some(json!({ "name": "Renamed", "is_public": true, "tags": [] })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{edited}");
    assert_eq!(
        (
            edited["data"]["name"].clone(),
            edited["data"]["tags"].clone()
        ),
        (json!("Renamed"), json!([]))
    );
    let (_, list) = srv.get("/workflows", Some(&bob.access)).await;
    assert_eq!(list["meta"]["total"], 3, "two public and bob's copy");
    let (s, _) = srv
        .call(
            Method::DELETE,
            &format!("/workflows/{private}"),
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        workflow_bytes(&srv, &alice).await,
        b["data"]["definition_bytes"].as_i64().unwrap(),
        "the deleted definition no longer counts"
    );
    assert_error(
        &srv.get(&format!("/workflows/{private}"), Some(&alice.access))
            .await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );

    // Field rules.
    for (body, field) in [
        (
            json!({ "name": "", "definition": simple("stable-diffusion-1.5") }),
            "name",
        ),
        (
            json!({ "name": "x", "definition": simple("stable-diffusion-1.5"), "tags": ["no spaces"] }),
            "tags",
        ),
    ] {
        let e = assert_error(
            &create(&srv, &alice, body).await,
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETERS",
        );
        assert_eq!(e["details"]["field"], field);
    }
}

/// The VALIDATION_ERROR of creating a workflow with `definition`:
/// (node, port, reason).
async fn refused(srv: &TestServer, s: &Session, definition: Value) -> (Value, Value, String) {
    let r = create(srv, s, json!({ "name": "bad", "definition": definition })).await;
    let e = assert_error(&r, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    let d = &e["details"];
    (
        d["node"].clone(),
        d["port"].clone(),
        d["reason"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn definitions_are_checked_at_save_naming_node_and_port() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "watermark", "watermark")
        .await;

    // A cycle.
    let mut cyclic = simple("stable-diffusion-1.5");
    cyclic["nodes"].as_array_mut().unwrap().extend([
        json!({ "id": "a", "type": "upscale" }),
        json!({ "id": "b", "type": "upscale" }),
    ]);
    cyclic["edges"].as_array_mut().unwrap().extend([
        json!({ "from": "a.images", "to": "b.source" }),
        json!({ "from": "b.images", "to": "a.source" }),
    ]);
    let (node, _, reason) = refused(&srv, &alice, cyclic).await;
    assert!(reason.contains("cycle"), "{reason}");
    assert!(node == "a" || node == "b", "{node}");

    // Incompatible ports.
    let mut wrong = simple("stable-diffusion-1.5");
    wrong["edges"][2] = json!({ "from": "inputs.prompt", "to": "gen.params" });
    let (node, port, reason) = refused(&srv, &alice, wrong).await;
    assert_eq!((node, port), (json!("gen"), json!("params")));
    assert!(reason.contains("takes params"), "{reason}");

    // A missing required port.
    let mut open = simple("stable-diffusion-1.5");
    open["edges"].as_array_mut().unwrap().remove(3);
    let (node, port, _) = refused(&srv, &alice, open).await;
    assert_eq!((node, port), (json!("out"), json!("images")));

    // Unknown model; a model above the tier; a bad parameter.
    let (node, port, _) = refused(&srv, &alice, simple("no-such-model")).await;
    assert_eq!((node, port), (json!("p"), json!("model")));
    let (node, port, reason) = refused(&srv, &alice, simple("stable-diffusion-xl")).await;
    assert_eq!((node, port), (json!("p"), json!("model")));
    assert!(reason.contains("tier"), "{reason}");
    let mut steps = simple("stable-diffusion-1.5");
    steps["nodes"][0]["values"]["steps"] = json!(500);
    let (node, port, _) = refused(&srv, &alice, steps).await;
    assert_eq!((node, port), (json!("p"), json!("steps")));

    // Plugins: unknown, and a post-node used where params flow.
    let with_plugin = |plugin: &str| {
        let mut d = simple("stable-diffusion-1.5");
        d["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "id": "node", "type": "plugin", "plugin": plugin }));
        d["edges"][2] = json!({ "from": "p.params", "to": "node.params" });
        d["edges"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "from": "node.params", "to": "gen.params" }));
        d
    };
    let (node, _, reason) = refused(&srv, &alice, with_plugin("nonexistent@1.0.0")).await;
    assert_eq!(node, json!("node"));
    assert!(reason.contains("no plugin"), "{reason}");
    let (node, port, reason) = refused(&srv, &alice, with_plugin("watermark@0.1.0")).await;
    assert_eq!(node, json!("node"));
    assert!(
        port == json!("params") || reason.contains("out-port"),
        "{port} {reason}"
    );

    // Not a graph at all.
    let (node, _, reason) = refused(&srv, &alice, json!({ "nodes": [] })).await;
    assert_eq!(node, Value::Null);
    assert!(reason.contains("graph"), "{reason}");
    let (node, _, _) = refused(
        &srv,
        &alice,
        json!({ "kind": "graph", "nodes": [{ "id": "x", "type": "warp" }] }),
    )
    .await;
    assert_eq!(node, json!("x"));
}

/// prompt → params → prompt-style (pre) → text-to-image → watermark (post)
/// → upscale ×2 → output; and the text-to-image images to a second output.
fn pipeline() -> Value {
    json!({
        "kind": "graph",
        "inputs": [{ "name": "prompt", "type": "string" }],
        "nodes": [
            { "id": "p", "type": "params",
              "values": { "model": "stable-diffusion-1.5", "width": 64, "height": 64, "steps": 4, "seed": 3 } },
            { "id": "style", "type": "plugin", "plugin": "prompt-style",
              "config": { "style": "cinematic" } },
            { "id": "gen", "type": "text_to_image" },
            { "id": "mark", "type": "plugin", "plugin": "watermark@0.1.0",
              "config": { "text": "PV" } },
            { "id": "big", "type": "upscale", "scale": 2 },
            { "id": "final", "type": "output" },
        ],
        "edges": [
            { "from": "inputs.prompt", "to": "p.prompt" },
            { "from": "p.params", "to": "style.params" },
            { "from": "style.params", "to": "gen.params" },
            { "from": "gen.images", "to": "mark.images" },
            { "from": "style.params", "to": "mark.params" },
            { "from": "mark.images", "to": "big.source" },
            { "from": "big.images", "to": "final.images" },
        ],
    })
}

#[tokio::test]
async fn a_graph_of_nodes_and_inference_runs_into_the_gallery() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "prompt-style", "prompt-style")
        .await;
    srv.publish_node(&alice.access, "watermark", "watermark")
        .await;
    let (_, board) = srv
        .post("/boards", Some(&alice.access), json!({ "name": "runs" }))
        .await;
    let board = board["data"]["id"].as_str().unwrap().to_owned();
    let id = created(
        &srv,
        &alice,
        json!({ "name": "styled", "definition": pipeline() }),
    )
    .await;
    let (_, stored) = srv
        .get(&format!("/workflows/{id}"), Some(&alice.access))
        .await;
    assert_eq!(
        stored["data"]["definition"]["nodes"][1]["plugin"], "prompt-style@0.1.0",
        "a bare plugin name is pinned at save"
    );

    let before = srv.credits(&alice.user_id).await;
    let mut events = srv.events(&alice.access, None).await;
    // The prompt has no default: a run must give it.
    let e = assert_error(
        &run(&srv, &alice, json!({ "workflow_id": id })).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "inputs.prompt");
    let e = assert_error(
        &run(
            &srv,
            &alice,
            json!({ "workflow_id": id, "inputs": { "prompt": "x", "colour": "red" } }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "inputs.colour");
    assert_eq!(
        srv.credits(&alice.user_id).await,
        before,
        "nothing reserved"
    );

    let (s, b) = run(
        &srv,
        &alice,
        json!({ "workflow_id": id, "inputs": { "prompt": "a castle" }, "save_to_board": board }),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let job = b["data"]["job_id"].as_str().unwrap().to_owned();
    let estimated = b["data"]["estimated_credits"].as_i64().unwrap();
    let end = events.until_end(&job).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let images = end["data"]["images"].as_array().unwrap().clone();
    assert_eq!(images.len(), 1, "{end}");
    // Progress counts the plan's steps and names the node at work.
    let progress: Vec<&Value> = events
        .seen
        .iter()
        .filter(|e| e["type"] == "job.progress" && e["data"]["job_id"] == job)
        .map(|e| &e["data"])
        .collect();
    let last = progress.last().expect("progress before the end");
    assert_eq!(
        (last["percent"].as_i64(), last["step"].clone()),
        (Some(100), last["total_steps"].clone())
    );
    let nodes: Vec<&str> = progress.iter().filter_map(|p| p["node"].as_str()).collect();
    assert!(!nodes.is_empty(), "{progress:?}");
    for n in nodes {
        assert!(
            ["p", "style", "gen", "mark", "big", "final", "inputs.prompt"].contains(&n),
            "{n}"
        );
    }
    let image_id = images[0]["image_id"].as_str().unwrap();
    let (_, detail) = srv
        .get(&format!("/images/{image_id}"), Some(&alice.access))
        .await;
    let d = &detail["data"];
    assert_eq!(
        (d["width"].as_i64(), d["height"].as_i64()),
        (Some(128), Some(128))
    );
    assert_eq!(d["metadata"]["workflow_id"], json!(id));
    assert_eq!(d["metadata"]["workflow_node"], "final");
    assert_eq!(d["metadata"]["job_type"], "workflow");
    assert_eq!(
        d["metadata"]["models"],
        json!(["real-esrgan", "stable-diffusion-1.5"])
    );
    assert_eq!(d["boards"][0]["id"], json!(board));
    assert_eq!(d["generation_job_id"], json!(job));

    // Charged what was used, no more than reserved; the rest released.
    let after = srv.credits(&alice.user_id).await;
    let charged = before.0 - after.0;
    assert!(
        charged >= 1 && charged <= estimated,
        "{charged} of {estimated}"
    );
    assert_eq!(after.1, 0, "nothing stays reserved");
    let row = srv.job(&alice.access, &job).await;
    assert_eq!(row["credits_used"].as_i64(), Some(charged), "{row}");
}

#[tokio::test]
async fn the_estimate_sums_each_inference_step_at_its_models_rate() {
    let srv = TestServer::start_with(|c| c.worker_paused = true).await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;
    srv.set_credits(&alice.user_id, 10_000).await;
    // SDXL (2 credits/s, 0.12 s per megapixel-step) then SD 1.5 (1 credit/s,
    // 0.08 s) image-to-image on its output.
    let definition = json!({
        "kind": "graph",
        "nodes": [
            { "id": "xl", "type": "params",
              "values": { "model": "stable-diffusion-xl", "prompt": "a", "width": 1024, "height": 1024, "steps": 50 } },
            { "id": "sd", "type": "params",
              "values": { "model": "stable-diffusion-1.5", "prompt": "b", "width": 1024, "height": 1024, "steps": 50, "strength": 0.4 } },
            { "id": "gen", "type": "text_to_image" },
            { "id": "refine", "type": "image_to_image" },
            { "id": "out", "type": "output" },
        ],
        "edges": [
            { "from": "xl.params", "to": "gen.params" },
            { "from": "sd.params", "to": "refine.params" },
            { "from": "gen.images", "to": "refine.source" },
            { "from": "refine.images", "to": "out.images" },
        ],
    });
    let id = created(
        &srv,
        &alice,
        json!({ "name": "two models", "definition": definition }),
    )
    .await;
    let (s, b) = run(&srv, &alice, json!({ "workflow_id": id })).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let mp = 1024.0 * 1024.0 / 1e6;
    let xl = (mp * 50.0 * 0.12 * 2.0_f64).ceil() as i64;
    let sd = (mp * 50.0 * 0.08 * 1.0_f64).ceil() as i64;
    assert_eq!(
        b["data"]["estimated_credits"].as_i64(),
        Some(xl + sd),
        "{b}"
    );
    assert_ne!(xl, 2 * sd, "the two rates are told apart");
    let (_, _, available) = srv.credits(&alice.user_id).await;
    assert_eq!(available, 10_000 - xl - sd, "the sum is reserved");
}

#[tokio::test]
async fn image_inputs_and_a_yanked_plugin() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "grayscale", "grayscale")
        .await;
    let definition = json!({
        "kind": "graph",
        "inputs": [{ "name": "photo", "type": "image" }],
        "nodes": [
            { "id": "grey", "type": "plugin", "plugin": "grayscale@0.1.0" },
            { "id": "big", "type": "upscale", "scale": 2 },
            { "id": "out", "type": "output" },
        ],
        "edges": [
            { "from": "inputs.photo", "to": "grey.images" },
            { "from": "grey.images", "to": "big.source" },
            { "from": "big.images", "to": "out.images" },
        ],
    });
    let id = created(
        &srv,
        &alice,
        json!({ "name": "grey", "definition": definition }),
    )
    .await;
    let mut events = srv.events(&alice.access, None).await;
    let (s, b) = run(
        &srv,
        &alice,
        json!({ "workflow_id": id, "inputs": { "photo": png_base64(40, 30, [200, 10, 10]) } }),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let end = events
        .until_end(b["data"]["job_id"].as_str().unwrap())
        .await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let image_id = end["data"]["images"][0]["image_id"].as_str().unwrap();
    let row = pingvas_tests::pingvas_host::store::images::get(&srv.state.db, image_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((row.width, row.height), (80, 60));
    let png = srv.state.blobs.get(&row.blob_key).await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgba8();
    assert!(
        img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]),
        "the input went through the grayscale node"
    );

    // A bad image input names the input.
    let e = assert_error(
        &run(
            &srv,
            &alice,
            json!({ "workflow_id": id, "inputs": { "photo": "not an image" } }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "inputs.photo");

    // The plugin is yanked after save: a run is refused, naming the node,
    // with nothing reserved.
    let (s, _) = srv
        .call(
            Method::DELETE,
            "/plugins/grayscale/versions/0.1.0",
            Some(&alice.access),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let before = srv.credits(&alice.user_id).await;
    let e = assert_error(
        &run(
            &srv,
            &alice,
            json!({ "workflow_id": id, "inputs": { "photo": image_id } }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "nodes.grey.plugin");
    assert!(
        e["details"]["reason"].as_str().unwrap().contains("yanked"),
        "{e}"
    );
    assert_eq!(srv.credits(&alice.user_id).await, before);

    // Someone else's private workflow cannot be run.
    let bob = srv.signup("bob@example.com").await;
    assert_error(
        &run(&srv, &bob, json!({ "workflow_id": id })).await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    );
}

/// SQLite cannot alter the jobs' CHECK: migration 0007 rebuilds the table.
/// A database at 0006 with a job and its image keeps both, linked.
#[tokio::test]
async fn the_jobs_rebuild_keeps_every_job_and_image_link() {
    use pingvas_tests::pingvas_host::store::Db;
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, migrations.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let pool = sqlx::SqlitePool::connect_with(
        url.parse::<sqlx::sqlite::SqliteConnectOptions>()
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true),
    )
    .await
    .unwrap();
    sqlx::migrate::Migrator::new(migrations.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO users (id, email, name, created_at, updated_at) VALUES ('u', 'e@x', 'n', 't', 't')",
        "INSERT INTO jobs (id, user_id, job_type, status, priority, model, params, hold_id, \
         estimated_credits, seq, queued_at, node_seconds) \
         VALUES ('j', 'u', 'upscale', 'completed', 1, 'm', '{}', 'h', 3, 1, 't', 0.5)",
        "INSERT INTO images (id, user_id, job_id, blob_key, thumb_key, width, height, file_size, \
         mime_type, is_starred, is_public, metadata, created_at) \
         VALUES ('i', 'u', 'j', 'b', 't', 1, 1, 1, 'image/png', FALSE, FALSE, '{}', 't')",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let db = Db::connect(&url, 2).await.unwrap();
    db.migrate().await.unwrap();
    let pool = db.sqlite().expect("a SQLite database");
    let link: Option<String> = sqlx::query_scalar("SELECT job_id FROM images WHERE id = 'i'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(link.as_deref(), Some("j"));
    let job: (String, i64, f64) =
        sqlx::query_as("SELECT job_type, estimated_credits, node_seconds FROM jobs WHERE id = 'j'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(job, ("upscale".into(), 3, 0.5));
    // The new type is allowed, an unknown one still is not.
    let insert = |t: &'static str| {
        format!(
            "INSERT INTO jobs (id, user_id, job_type, status, priority, model, params, hold_id, \
             estimated_credits, seq, queued_at) VALUES ('{t}', 'u', '{t}', 'queued', 1, 'm', '{{}}', 'h', 1, 2, 't')"
        )
    };
    sqlx::query(&insert("workflow"))
        .execute(pool)
        .await
        .unwrap();
    assert!(
        sqlx::query(&insert("teleport"))
            .execute(pool)
            .await
            .is_err()
    );
    let broken = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(pool)
        .await
        .unwrap();
    assert!(broken.is_empty(), "no row points at a missing parent");
}

/// An export of InvokeAI's workflow library (`../shared/fixtures`).
fn invokeai_export(file: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/invokeai/workflows")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

async fn import(srv: &TestServer, s: &Session, export: Value) -> Value {
    let (status, b) = srv
        .post("/workflows/import/invokeai", Some(&s.access), export)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    b["data"].clone()
}

fn mapped(w: &Value) -> Vec<(String, String, String)> {
    w["import"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["model"].as_str().unwrap().to_owned(),
                m["matched_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn node_of<'a>(w: &'a Value, kind: &str) -> &'a Value {
    w["definition"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} node in {w}"))
}

#[tokio::test]
async fn invokeai_exports_import_and_run() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;
    srv.set_tier("alice@example.com", "pro").await;

    // SD 1.5: the exposed prompts and size become inputs; it runs.
    let sd = import(&srv, &alice, invokeai_export("Text_to_Image_-_SD1.5.json")).await;
    assert_eq!(sd["name"], "Text to Image - SD1.5");
    assert_eq!(
        mapped(&sd),
        vec![("model".into(), "stable-diffusion-1.5".into(), "base".into())]
    );
    let inputs: Vec<&str> = sd["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    // Named by the nodes' labels (else by the field they set).
    assert_eq!(
        inputs,
        [
            "positive_compel_prompt",
            "negative_compel_prompt",
            "width",
            "height"
        ]
    );
    assert_eq!(
        sd["inputs"][0]["default"],
        "Super cute tiger cub, national geographic award-winning photograph"
    );
    let p = node_of(&sd, "params");
    assert_eq!(
        (
            p["values"]["steps"].clone(),
            p["values"]["cfg_scale"].clone(),
            p["values"]["seed"].clone()
        ),
        (json!(30), json!(7.5), json!(-1)),
        "{p}"
    );
    assert_eq!(p["values"]["sampler"], "dpmpp_sde", "dpmpp_sde_k → nearest");
    assert!(sd["import"]["notes"].to_string().contains("dpmpp_sde_k"));
    let mut events = srv.events(&alice.access, None).await;
    let (s, b) = run(
        &srv,
        &alice,
        json!({ "workflow_id": sd["id"],
                "inputs": { "width": 64, "height": 64, "positive_compel_prompt": "a tiger" } }),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let end = events
        .until_end(b["data"]["job_id"].as_str().unwrap())
        .await;
    assert_eq!(end["type"], "job.completed", "{end}");

    // SDXL: prompts come through `string` nodes (the exposed ones become
    // inputs named by their labels); the model maps by the loader's base.
    let xl = import(&srv, &alice, invokeai_export("Text_to_Image_-_SDXL.json")).await;
    assert_eq!(
        mapped(&xl),
        vec![("model".into(), "stable-diffusion-xl".into(), "base".into())]
    );
    let names: Vec<&str> = xl["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["positive_prompt", "negative_prompt"]);
    let p = node_of(&xl, "params");
    assert_eq!(
        (
            p["values"]["steps"].clone(),
            p["values"]["width"].clone(),
            p["values"]["sampler"].clone()
        ),
        (json!(32), json!(1024), json!("dpmpp_2m_karras"))
    );

    // LoRA: the LoRA loader's reference maps to the catalogue's LoRA for
    // the model's base.
    let lora = import(
        &srv,
        &alice,
        invokeai_export("Text_to_Image_with_LoRA.json"),
    )
    .await;
    assert_eq!(
        mapped(&lora),
        vec![
            ("model".into(), "stable-diffusion-1.5".into(), "base".into()),
            ("lora".into(), "detail-tweaker".into(), "base".into()),
        ]
    );
    assert_eq!(
        node_of(&lora, "params")["values"]["loras"],
        json!([{ "name": "detail-tweaker", "weight": 1.0 }])
    );

    // FLUX image-to-image: an image input and the strength of
    // 1 − denoising_start.
    let flux = import(&srv, &alice, invokeai_export("FLUX_Image_to_Image.json")).await;
    assert_eq!(
        mapped(&flux),
        vec![("model".into(), "flux-dev".into(), "base".into())]
    );
    assert_eq!(node_of(&flux, "image_to_image")["type"], "image_to_image");
    assert_eq!(node_of(&flux, "params")["values"]["strength"], json!(0.96));
    assert!(
        flux["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "image" && i["type"] == "image"),
        "{flux}"
    );
}

#[tokio::test]
async fn invokeai_imports_name_what_they_cannot_map_and_follow_model_references() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;

    // Node types it cannot map are all named; nothing is stored.
    let mut export = invokeai_export("Text_to_Image_-_SD1.5.json");
    for kind in ["ip_adapter", "controlnet"] {
        export["nodes"].as_array_mut().unwrap().push(json!({
            "id": kind, "type": "invocation",
            "data": { "id": kind, "type": kind, "inputs": {} }
        }));
    }
    let e = assert_error(
        &srv.post("/workflows/import/invokeai", Some(&alice.access), export)
            .await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    assert!(
        e["details"]["reason"]
            .as_str()
            .unwrap()
            .ends_with("controlnet, ip_adapter"),
        "{e}"
    );
    assert_eq!(workflow_bytes(&srv, &alice).await, 0);

    // A reference by hash wins over the name; a name over the base. The
    // spec's POST /workflows takes an export as its definition too.
    let mut export = invokeai_export("Text_to_Image_-_SD1.5.json");
    let loader = export["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["data"]["type"] == "main_model_loader")
        .unwrap();
    loader["data"]["inputs"]["model"]["value"] = json!({
        "key": "0b2c1a", "hash": "blake3:e1441589a6ffee", "name": "Some Other Name", "base": "sd-1", "type": "main"
    });
    let (s, w) = create(
        &srv,
        &alice,
        json!({ "name": "by hash", "definition": export.clone() }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(
        mapped(&w["data"]),
        vec![("model".into(), "stable-diffusion-1.5".into(), "hash".into())]
    );
    let loader = export["nodes"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|n| n["data"]["type"] == "main_model_loader")
        .unwrap();
    loader["data"]["inputs"]["model"]["value"] =
        json!({ "key": "x", "hash": "", "name": "Stable Diffusion 1.5", "base": "sd-1" });
    let w = import(&srv, &alice, export).await;
    assert_eq!(
        mapped(&w),
        vec![("model".into(), "stable-diffusion-1.5".into(), "name".into())]
    );
}

/// hires-fix declared as a component workflow, base size 64.
fn hires_fix(base: u32, refine_steps: u32) -> Value {
    let big = base * 2;
    json!({
        "kind": "component",
        "plugin": "hires-fix",
        "inputs": [
            { "name": "prompt", "type": "string", "default": "a harbour at dawn" },
            { "name": "width", "type": "integer", "default": base },
            { "name": "height", "type": "integer", "default": base },
            { "name": "steps", "type": "integer", "default": refine_steps * 2 },
            { "name": "image", "type": "image", "optional": true },
            { "name": "post_node", "type": "string", "optional": true },
        ],
        "steps": [
            { "type": "text_to_image", "model": "stable-diffusion-1.5", "width": base, "height": base, "steps": refine_steps * 2 },
            { "type": "upscale", "model": "real-esrgan", "width": big, "height": big },
            { "type": "image_to_image", "model": "stable-diffusion-1.5", "width": big, "height": big, "steps": refine_steps },
        ],
        // Its own time, reserved with the run (the workflow limit, 300 s,
        // otherwise).
        "max_seconds": 20,
    })
}

async fn publish_hires_fix(srv: &TestServer, s: &Session) {
    let (status, b) = srv
        .publish(
            &s.access,
            pingvas_tests::manifest("hires-fix", "0.1.0", "workflow", "public"),
            pingvas_tests::plugin_wasm("hires-fix"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
}

/// Runs workflow `id` with `inputs` to its end event.
async fn run_to_end(srv: &TestServer, s: &Session, id: &str, inputs: Value) -> (Value, i64) {
    let mut events = srv.events(&s.access, None).await;
    // A remote worker registers on its first poll; until then nobody serves.
    let (status, b) = loop {
        let r = run(srv, s, json!({ "workflow_id": id, "inputs": inputs })).await;
        if r.0 != StatusCode::SERVICE_UNAVAILABLE {
            break r;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(status, StatusCode::ACCEPTED, "{b}");
    let job = b["data"]["job_id"].as_str().unwrap().to_owned();
    let end = events.until_end(&job).await;
    let progress: Vec<Value> = events
        .seen
        .iter()
        .filter(|e| e["type"] == "job.progress" && e["data"]["job_id"] == job)
        .map(|e| e["data"].clone())
        .collect();
    assert!(
        progress
            .iter()
            .all(|p| p["percent"].as_i64().unwrap() <= 100),
        "{progress:?}"
    );
    (end, b["data"]["estimated_credits"].as_i64().unwrap())
}

fn image_size(srv: &TestServer, end: &Value) -> impl Future<Output = (i64, i64, Value)> {
    let id = end["data"]["images"][0]["image_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{end}"))
        .to_owned();
    let db = srv.state.db.clone();
    async move {
        let row = pingvas_tests::pingvas_host::store::images::get(&db, &id)
            .await
            .unwrap()
            .unwrap();
        let meta: Value = serde_json::from_str(&row.metadata).unwrap();
        (row.width, row.height, meta)
    }
}

#[tokio::test]
async fn a_workflow_component_drives_inference_and_reads_image_inputs() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    publish_hires_fix(&srv, &alice).await;
    let (s, w) = create(
        &srv,
        &alice,
        json!({ "name": "hires", "definition": hires_fix(64, 2) }),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    assert_eq!(w["data"]["kind"], "component");
    assert_eq!(
        w["data"]["definition"]["plugin"], "hires-fix@0.1.0",
        "pinned at save"
    );
    let id = w["data"]["id"].as_str().unwrap().to_owned();

    // Generated at the base size, upscaled ×2, refined.
    let before = srv.credits(&alice.user_id).await;
    let (end, estimated) = run_to_end(&srv, &alice, &id, json!({})).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let (w, h, meta) = image_size(&srv, &end).await;
    assert_eq!((w, h), (128, 128));
    assert_eq!(meta["workflow_node"], "output");
    let after = srv.credits(&alice.user_id).await;
    let charged = before.0 - after.0;
    assert!(
        charged >= 1 && charged <= estimated,
        "{charged} of {estimated}"
    );
    assert_eq!(after.1, 0);

    // Given an image, it starts from it (40x30 → 80x60).
    let (end, _) = run_to_end(
        &srv,
        &alice,
        &id,
        json!({ "image": png_base64(40, 32, [10, 200, 10]) }),
    )
    .await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let (w, h, _) = image_size(&srv, &end).await;
    assert_eq!((w, h), (80, 64));

    // Its node calls run nodes the job's owner may use: a public one runs,
    // another user's private one is refused (and fails the run).
    srv.publish_node(&alice.access, "grayscale", "grayscale")
        .await;
    let (end, _) = run_to_end(&srv, &alice, &id, json!({ "post_node": "grayscale@0.1.0" })).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let row = pingvas_tests::pingvas_host::store::images::get(
        &srv.state.db,
        end["data"]["images"][0]["image_id"].as_str().unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    let png = srv.state.blobs.get(&row.blob_key).await.unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgba8();
    assert!(img.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    let bob = srv.signup_admin("bob@example.com").await;
    let (status, b) = srv
        .publish(
            &bob.access,
            pingvas_tests::manifest("watermark", "0.1.0", "node", "private"),
            pingvas_tests::plugin_wasm("watermark"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{b}");
    let (end, _) = run_to_end(&srv, &alice, &id, json!({ "post_node": "watermark@0.1.0" })).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    assert_eq!(end["data"]["error"]["code"], "PLUGIN_FAILED");
}

#[tokio::test]
async fn a_component_past_its_reservation_fails_and_is_charged_at_most_the_reservation() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    publish_hires_fix(&srv, &alice).await;
    // Declares a tiny generation but is run at a large base size: its
    // calls cost more than the reservation.
    let mut def = hires_fix(64, 1);
    def["steps"] = json!([
        { "type": "text_to_image", "model": "stable-diffusion-1.5", "width": 64, "height": 64, "steps": 1 },
    ]);
    let id = created(&srv, &alice, json!({ "name": "cheap", "definition": def })).await;
    let before = srv.credits(&alice.user_id).await;
    let (end, estimated) = run_to_end(
        &srv,
        &alice,
        &id,
        json!({ "width": 1024, "height": 1024, "steps": 150 }),
    )
    .await;
    let job = srv
        .job(&alice.access, end["data"]["job_id"].as_str().unwrap())
        .await;
    assert_eq!(end["type"], "job.failed", "{end} {job}");
    assert_eq!(end["data"]["error"]["code"], "PLUGIN_FAILED", "{end}");
    let after = srv.credits(&alice.user_id).await;
    assert!(before.0 - after.0 <= estimated);
    assert_eq!(after.1, 0);

    // A model the workflow did not declare is refused to the component,
    // which fails the run with its own error.
    let mut def = hires_fix(64, 1);
    def["steps"][0]["model"] = json!("stable-diffusion-xl");
    def["steps"][2]["model"] = json!("stable-diffusion-xl");
    srv.set_tier("alice@example.com", "pro").await;
    let id = created(
        &srv,
        &alice,
        json!({ "name": "undeclared", "definition": def }),
    )
    .await;
    let (end, _) = run_to_end(&srv, &alice, &id, json!({})).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    assert!(
        end["data"]["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not one the workflow declared"),
        "{end}"
    );
}

#[tokio::test]
async fn a_component_applies_only_the_loras_it_declared_and_pays_for_them() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.set_credits(&alice.user_id, 10_000).await;
    publish_hires_fix(&srv, &alice).await;
    // 512² generated, 1024² refined in 10 steps: the refine alone is
    // 1.05 MP × 10 × 0.08 s = 0.84 s at 1 credit/s, 1.36 s with the LoRA.
    let mut def = hires_fix(512, 10);
    def["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "lora", "type": "string", "optional": true }));
    let lora = json!({ "lora": "detail-tweaker" });

    // Undeclared, the component's call with it is refused and ends the run.
    let plain = created(&srv, &alice, json!({ "name": "plain", "definition": def })).await;
    let (end, plain_estimate) = run_to_end(&srv, &alice, &plain, lora.clone()).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    assert!(
        end["data"]["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("LoRA detail-tweaker is not one the workflow declared"),
        "{end}"
    );

    // Declared on both diffusion steps: priced in, and applied.
    def["steps"][0]["loras"] = json!(["detail-tweaker"]);
    def["steps"][2]["loras"] = json!(["detail-tweaker"]);
    let declared = created(
        &srv,
        &alice,
        json!({ "name": "lora", "definition": def.clone() }),
    )
    .await;
    let (end, estimate) = run_to_end(&srv, &alice, &declared, lora).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    assert_eq!(
        estimate,
        plain_estimate + 1,
        "the refine step's LoRA work is reserved"
    );

    // The runner's tier counts at every run, not only the owner's at save:
    // a starter LoRA declared by a starter owner is refused once the owner
    // is back on free.
    let mut sdxl = hires_fix(512, 10);
    sdxl["inputs"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "name": "lora", "type": "string", "optional": true }));
    sdxl["steps"][0]["model"] = json!("stable-diffusion-xl");
    sdxl["steps"][2]["model"] = json!("stable-diffusion-xl");
    sdxl["steps"][2]["loras"] = json!(["add_detail"]);
    srv.set_tier("alice@example.com", "starter").await;
    let locked = created(
        &srv,
        &alice,
        json!({ "name": "starter", "definition": sdxl }),
    )
    .await;
    srv.set_tier("alice@example.com", "free").await;
    let got = run(&srv, &alice, json!({ "workflow_id": locked, "inputs": {} })).await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(e.to_string().contains("needs the starter tier"), "{e}");

    // A LoRA of another base is refused at save, naming the step.
    def["steps"][0]["loras"] = json!(["add_detail"]);
    let got = create(
        &srv,
        &alice,
        json!({ "name": "sdxl-lora", "definition": def }),
    )
    .await;
    let e = assert_error(&got, StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
    assert!(e.to_string().contains("steps[0].loras[0]"), "{e}");
}

#[tokio::test]
async fn a_workflow_component_runs_on_a_remote_worker() {
    let srv = TestServer::start_with(|c| {
        c.worker_enabled = false;
        c.worker_token = Some(pingvas_tests::WORKER_TOKEN.to_owned().into());
    })
    .await;
    let alice = srv.signup_admin("alice@example.com").await;
    publish_hires_fix(&srv, &alice).await;
    srv.publish_node(&alice.access, "grayscale", "grayscale")
        .await;
    let _worker = pingvas_tests::WorkerProcess::start(&srv);
    let id = created(
        &srv,
        &alice,
        json!({ "name": "hires", "definition": hires_fix(64, 2) }),
    )
    .await;
    // Its node call goes through the internal API, resolved for the owner.
    let (end, _) = run_to_end(&srv, &alice, &id, json!({ "post_node": "grayscale@0.1.0" })).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    assert_eq!(image_size(&srv, &end).await.0, 128);

    // A graph with a plugin node runs there too (the worker fetches the
    // pinned node through the internal API).
    let graph = json!({
        "kind": "graph",
        "inputs": [{ "name": "photo", "type": "image" }],
        "nodes": [
            { "id": "grey", "type": "plugin", "plugin": "grayscale" },
            { "id": "out", "type": "output" },
            { "id": "big", "type": "upscale" },
        ],
        "edges": [
            { "from": "inputs.photo", "to": "grey.images" },
            { "from": "grey.images", "to": "big.source" },
            { "from": "big.images", "to": "out.images" },
        ],
    });
    let id = created(&srv, &alice, json!({ "name": "grey", "definition": graph })).await;
    let (end, _) = run_to_end(
        &srv,
        &alice,
        &id,
        json!({ "photo": png_base64(16, 16, [1, 2, 3]) }),
    )
    .await;
    assert_eq!(end["type"], "job.completed", "{end}");
}

#[tokio::test]
async fn a_failing_node_fails_the_run_naming_it_and_the_rest_is_refunded() {
    let srv = TestServer::start().await;
    let alice = srv.signup_admin("alice@example.com").await;
    srv.publish_node(&alice.access, "watermark", "watermark")
        .await;
    let mut def = simple("stable-diffusion-1.5");
    def["nodes"].as_array_mut().unwrap().push(json!({
        "id": "mark", "type": "plugin", "plugin": "watermark@0.1.0",
        "config": { "opacity": "opaque" }
    }));
    def["edges"][3] = json!({ "from": "gen.images", "to": "mark.images" });
    def["edges"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "from": "mark.images", "to": "out.images" }));
    let id = created(
        &srv,
        &alice,
        json!({ "name": "bad mark", "definition": def }),
    )
    .await;
    let before = srv.credits(&alice.user_id).await;
    let (end, estimated) = run_to_end(&srv, &alice, &id, json!({})).await;
    assert_eq!(end["type"], "job.failed", "{end}");
    let error = &end["data"]["error"];
    assert_eq!(error["code"], "PLUGIN_FAILED");
    assert!(
        error["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("watermark: ")),
        "{end}"
    );
    let after = srv.credits(&alice.user_id).await;
    let charged = before.0 - after.0;
    assert!(charged <= estimated, "{charged} of {estimated}");
    assert_eq!(after.1, 0, "the rest of the reservation is released");
}

#[tokio::test]
async fn a_components_deadline_counts_its_own_time_not_inference() {
    // A 500 ms deadline for hires-fix, and a run whose inference alone
    // takes longer than that: it completes, the calls being off its clock.
    let srv = TestServer::start_with(|c| {
        c.plugin_limits.insert(
            "hires-fix".into(),
            pingvas_tests::pingvas_host::plugins::limits::LimitsOverride {
                timeout_ms: Some(500),
                ..Default::default()
            },
        );
    })
    .await;
    let alice = srv.signup_admin("alice@example.com").await;
    publish_hires_fix(&srv, &alice).await;
    let id = created(
        &srv,
        &alice,
        json!({ "name": "slow", "definition": hires_fix(512, 20) }),
    )
    .await;
    let (end, _) = run_to_end(&srv, &alice, &id, json!({})).await;
    assert_eq!(end["type"], "job.completed", "{end}");
    let job = srv
        .job(&alice.access, end["data"]["job_id"].as_str().unwrap())
        .await;
    let gpu = job["gpu_seconds"].as_f64().unwrap();
    assert!(
        gpu > 1.0,
        "the premise: inference took {gpu} s, over the deadline"
    );
}

#[tokio::test]
async fn what_one_account_may_store_and_import_is_bounded() {
    let srv = TestServer::start().await;
    let alice = srv.signup("alice@example.com").await;

    // A definition over 256 KiB, and a graph of 65 nodes.
    let mut big = simple("stable-diffusion-1.5");
    big["inputs"][0]["description"] = json!("x".repeat(300 << 10));
    let e = assert_error(
        &create(&srv, &alice, json!({ "name": "big", "definition": big })).await,
        StatusCode::BAD_REQUEST,
        "INVALID_PARAMETERS",
    );
    assert_eq!(e["details"]["field"], "definition");
    let mut wide = simple("stable-diffusion-1.5");
    for i in 0..62 {
        wide["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "id": format!("o{i}"), "type": "output" }));
    }
    let e = assert_error(
        &create(&srv, &alice, json!({ "name": "wide", "definition": wide })).await,
        StatusCode::BAD_REQUEST,
        "VALIDATION_ERROR",
    );
    assert!(
        e["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("at most 64"),
        "{e}"
    );

    // Exports that loop (LoRA loaders feeding each other; a string joined
    // from itself) are refused, not followed for ever.
    let mut lora_cycle = invokeai_export("Text_to_Image_with_LoRA.json");
    lora_cycle["edges"].as_array_mut().unwrap().push(json!({
        "id": "loop", "type": "default",
        "source": "c41e705b-f2e3-4d1a-83c4-e34bb9344966", "sourceHandle": "unet",
        "target": "c41e705b-f2e3-4d1a-83c4-e34bb9344966", "targetHandle": "unet"
    }));
    let mut string_cycle = invokeai_export("Text_to_Image_-_SDXL.json");
    let join = "3774ec24-a69e-4254-864c-097d07a6256f";
    string_cycle["edges"].as_array_mut().unwrap().extend([
        json!({ "id": "prompt", "type": "default",
            "source": join, "sourceHandle": "value",
            "target": "faf965a4-7530-427b-b1f3-4ba6505c2a08", "targetHandle": "prompt" }),
        json!({ "id": "loop", "type": "default",
            "source": join, "sourceHandle": "value",
            "target": join, "targetHandle": "string_left" }),
    ]);
    let mut crowded = invokeai_export("Text_to_Image_-_SD1.5.json");
    for i in 0..600 {
        crowded["nodes"].as_array_mut().unwrap().push(json!({
            "id": format!("s{i}"), "type": "invocation",
            "data": { "id": format!("s{i}"), "type": "string", "inputs": {} }
        }));
    }
    for (export, says) in [
        (lora_cycle, "LoRA loaders"),
        (string_cycle, "more than 32 nodes"),
        (crowded, "at most 512 nodes"),
    ] {
        let e = assert_error(
            &srv.post("/workflows/import/invokeai", Some(&alice.access), export)
                .await,
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
        );
        assert!(
            e["details"]["reason"].as_str().unwrap().contains(says),
            "{e}"
        );
    }

    // At most 200 workflows an account.
    for i in 0..200 {
        created(
            &srv,
            &alice,
            json!({ "name": format!("w{i}"), "definition": simple("stable-diffusion-1.5") }),
        )
        .await;
    }
    let e = assert_error(
        &create(
            &srv,
            &alice,
            json!({ "name": "one more", "definition": simple("stable-diffusion-1.5") }),
        )
        .await,
        StatusCode::CONFLICT,
        "CONFLICT",
    );
    assert_eq!(e["details"]["reason"], "too_many_workflows");
}

/// The SD 1.5 sample with its positive prompt fed by `depth` layers of
/// `width` `string_join` nodes: each join takes both sides from the next
/// layer (nodes `i` and `i + 1`), so the paths to the last layer double at
/// every layer; the last layer joins `leaf` with itself, and the first
/// adds "a lighthouse" on the right.
fn join_chain(depth: usize, width: usize, leaf: &str) -> Value {
    let positive = "7d8bf987-284f-413a-b2fd-d825445a5d6c";
    let mut export = invokeai_export("Text_to_Image_-_SD1.5.json");
    export["exposedFields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| !(f["nodeId"] == positive && f["fieldName"] == "prompt"));
    let (mut nodes, mut edges) = (Vec::new(), Vec::new());
    for layer in 0..depth {
        let last = layer + 1 == depth;
        for i in 0..width {
            let id = format!("j{layer}_{i}");
            let inputs = if last {
                json!({ "string_left": { "value": leaf }, "string_right": { "value": leaf } })
            } else if layer == 0 {
                json!({ "string_right": { "value": "a lighthouse" } })
            } else {
                json!({})
            };
            nodes.push(json!({
                "id": id, "type": "invocation",
                "data": { "id": id, "type": "string_join", "inputs": inputs }
            }));
            if last {
                continue;
            }
            for (side, from) in [("string_left", i), ("string_right", (i + 1) % width)] {
                if layer == 0 && side == "string_right" {
                    continue;
                }
                edges.push(json!({
                    "id": format!("{id}_{side}"), "type": "default",
                    "source": format!("j{}_{from}", layer + 1), "sourceHandle": "value",
                    "target": id, "targetHandle": side
                }));
            }
        }
    }
    edges.push(json!({
        "id": "joined", "type": "default", "source": "j0_0", "sourceHandle": "value",
        "target": positive, "targetHandle": "prompt"
    }));
    export["nodes"].as_array_mut().unwrap().extend(nodes);
    export["edges"].as_array_mut().unwrap().extend(edges);
    export
}

/// How long an import may take here. The server's own work is a few
/// milliseconds (and at most its 2 s time limit); 1 s of wall time leaves
/// a loaded 2-core CI machine room, while the unbounded resolver took
/// over 10 s at depth 24 and doubles every level beyond.
const QUICK: std::time::Duration = std::time::Duration::from_secs(1);
/// Resident memory an import may add to the server.
const SMALL_GROWTH: u64 = 50 << 20;

/// An import on the server process, its answer and wall time; a client
/// timeout turns a runaway import into a failure, not a hung test.
async fn timed_import(
    srv: &pingvas_tests::process::ServerProcess,
    s: &Session,
    export: &Value,
) -> (StatusCode, Value, std::time::Duration) {
    let started = std::time::Instant::now();
    let res = srv
        .client
        .post(srv.url("/workflows/import/invokeai"))
        .bearer_auth(&s.access)
        .json(export)
        .timeout(std::time::Duration::from_secs(30))
        .send()
        .await
        .expect("the import answers within 30 s");
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body, started.elapsed())
}

#[tokio::test]
async fn invokeai_imports_resolve_each_field_once_in_bounded_time_and_memory() {
    let srv = pingvas_tests::process::ServerProcess::start(&[]).await;
    let alice = srv.signup("alice@example.com").await;
    // Warm up: the first import loads what every import uses.
    let (s, b, _) =
        timed_import(&srv, &alice, &invokeai_export("Text_to_Image_-_SD1.5.json")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let peak_before = srv.peak_rss_bytes();

    // The deepest chain the resolver follows (31 joins, 2^30 paths to the
    // last), and a wide one (30 layers of 16): each field is resolved once.
    for (what, export) in [
        ("deep", join_chain(31, 1, "")),
        ("wide", join_chain(30, 16, "")),
    ] {
        let (s, b, took) = timed_import(&srv, &alice, &export).await;
        assert_eq!(s, StatusCode::CREATED, "{what}: {b}");
        assert!(took < QUICK, "{what}: {took:?}");
        let params = node_of(&b["data"], "params");
        assert_eq!(
            params["values"]["prompt"], "a lighthouse",
            "{what}: {params}"
        );
    }

    // Joined past the prompt limit (2^31 characters if built), and a
    // 256 KiB text joined ten levels down: refused, naming the field and
    // the limit, without building the text.
    for (what, export, named) in [
        ("doubling", join_chain(31, 1, "ab"), None),
        (
            "big leaf",
            join_chain(10, 1, &"x".repeat(256 << 10)),
            Some(("j9_0", "string_left")),
        ),
    ] {
        let (s, b, took) = timed_import(&srv, &alice, &export).await;
        let e = assert_error(&(s, b), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert!(took < QUICK, "{what}: {took:?}");
        let reason = e["details"]["reason"].as_str().unwrap();
        assert!(
            reason.contains("4000 characters (the prompt limit)"),
            "{what}: {e}"
        );
        assert!(e["details"]["port"].is_string(), "{what}: {e}");
        if let Some((node, port)) = named {
            assert_eq!(
                (&e["details"]["node"], &e["details"]["port"]),
                (&json!(node), &json!(port)),
                "{what}: {e}"
            );
        }
    }
    let grew = srv.peak_rss_bytes().saturating_sub(peak_before);
    assert!(grew < SMALL_GROWTH, "peak RSS grew {} MiB", grew >> 20);

    // Two at once leave the runtime free: /healthz answers quickly while
    // they run, probed until both are done.
    let alice = std::sync::Arc::new(alice);
    let srv = std::sync::Arc::new(srv);
    let imports: Vec<_> = [join_chain(31, 1, "ab"), join_chain(30, 16, "a")]
        .into_iter()
        .map(|export| {
            let (srv, alice) = (srv.clone(), alice.clone());
            tokio::spawn(async move { timed_import(&srv, &alice, &export).await })
        })
        .collect();
    loop {
        let started = std::time::Instant::now();
        let (s, _) = srv.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            started.elapsed() < QUICK,
            "/healthz took {:?}",
            started.elapsed()
        );
        if imports.iter().all(|i| i.is_finished()) {
            break;
        }
    }
    for i in imports {
        let (s, b, took) = i.await.unwrap();
        assert_error(&(s, b), StatusCode::BAD_REQUEST, "VALIDATION_ERROR");
        assert!(took < QUICK, "{took:?}");
    }
}
