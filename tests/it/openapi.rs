//! `GET /openapi.json`: the description is served (publicly, even when
//! reads are private), names every route the server has, and the server
//! keeps to it: schemathesis (PyPI) generates requests from it, valid and
//! invalid, against a live server holding the example scenario's data,
//! and checks every answer: no 5xx, only documented statuses, content
//! types, headers and bodies that match the description, invalid input
//! refused.

use crate::common::*;
use modeltrail::registry::Stage;
use modeltrail::server::MlflowConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The checks run: every one about what the server answers. Not
/// `positive_data_acceptance`: the description is a shape, and the
/// registry refuses many well-shaped events on purpose (gates, actors,
/// ids it has never seen).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection,\
missing_required_header";

fn schemathesis_bin() -> PathBuf {
    venv_tool(
        "schemathesis",
        "MODELTRAIL_SCHEMATHESIS",
        "schemathesis",
        "the API description",
    )
}

/// The seed, fixed so that a failure can be replayed; another with
/// `MODELTRAIL_SCHEMATHESIS_SEED`.
fn seed() -> String {
    std::env::var("MODELTRAIL_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".into())
}

/// Run schemathesis against `s` (with `global` options before `run`,
/// `selection` after); panic with its report if it finds anything. It
/// runs off the async workers, which serve the server it tests.
async fn run_schemathesis(
    s: &TestServer,
    dir: &Path,
    global: &[String],
    selection: &[String],
) -> String {
    let started = std::time::Instant::now();
    // Bounded: coreutils' `timeout` stops a run that hangs.
    let mut cmd = Command::new("timeout");
    cmd.arg("600")
        .arg(schemathesis_bin())
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .args(global)
        .args(["run", &s.url("/openapi.json")])
        .args(selection)
        .args(["--checks", CHECKS])
        .args(["--max-examples", "40", "--seed", &seed()])
        // No `--max-time`: with it, fuzzing repeats until the time is spent.
        .args(["--request-timeout", "20"])
        .args(["--header", &format!("Authorization: Bearer {}", s.token)]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("run schemathesis");
    eprintln!(
        "schemathesis {selection:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "schemathesis found answers that break the API description:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" passed"), "{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_keeps_to_its_openapi_description() {
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("mlflow.token");
    let mut s = start_with(|c| {
        // Webhooks on, so their endpoint answers for itself.
        c.mlflow = Some(MlflowConfig {
            secret: b"a webhook secret".to_vec(),
            token_file: token_file.clone(),
            max_age: Duration::from_secs(300),
            aliases: [("champion".to_string(), Stage::Production)]
                .into_iter()
                .collect(),
        })
    })
    .await;
    let (mlflow_token, _) = grant(&s, "service", "mlflow", &["submitter"]).await;
    std::fs::write(&token_file, mlflow_token).unwrap();

    // The description: OpenAPI 3.1, every route of the server in it.
    let (status, doc) = s.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations: Vec<String> = paths
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .map(move |m| format!("{} {p}", m.to_uppercase()))
        })
        .collect();
    operations.sort();
    let expected = [
        "DELETE /v1/admin/tokens/{token_id}",
        "GET /",
        "GET /checkpoint",
        "GET /explorer/{file}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /tile/{path}",
        "GET /v1/admin/tokens",
        "GET /v1/artifacts/sha256/{digest}",
        "GET /v1/entries",
        "GET /v1/entries/{index}",
        "GET /v1/events/{event_id}",
        "GET /v1/keys/{service}",
        "GET /v1/log",
        "GET /v1/models",
        "GET /v1/models/{name}",
        "GET /v1/models/{name}/versions/{version}",
        "GET /v1/proof/consistency",
        "GET /v1/proof/inclusion",
        "GET /v1/receipt",
        "GET /v1/reveal",
        "GET /v1/search",
        "GET /v1/trace/{kind}/{id}",
        "HEAD /v1/artifacts/sha256/{digest}",
        "PATCH /v1/admin/tokens/{token_id}",
        "POST /v1/admin/erase",
        "POST /v1/admin/reconcile",
        "POST /v1/admin/reconciled",
        "POST /v1/admin/tokens",
        "POST /v1/events",
        "POST /v1/integrations/mlflow",
        "POST /v1/keys",
        "PUT /v1/artifacts/sha256/{digest}",
    ];
    assert_eq!(operations, expected);
    // Every described query parameter is one the handler accepts (a
    // request naming each of them is never refused as unknown), and one
    // that is not described is refused.
    let get = |path: String| {
        let req = s.http.get(s.url(&path)).bearer_auth(&s.token);
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let mut with_query = 0;
    for (path, ops) in paths {
        let Some(op) = ops.get("get") else { continue };
        let names: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .filter_map(|p| p["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if names.is_empty() || path.contains('{') {
            continue;
        }
        with_query += 1;
        let query: Vec<String> = names.iter().map(|n| format!("{n}=x")).collect();
        let (status, body) = get(format!("{path}?{}", query.join("&"))).await;
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!message.contains("unknown parameter"), "{path}: {body}");
        let (status, body) = get(format!("{path}?{}=1&no_such_parameter=1", names[0])).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains("unknown parameter"), "{path}: {body}");
    }
    assert_eq!(with_query, 7, "GETs with query parameters");

    // Data to read: the example scenario (models, approvals, deployments,
    // predictions, a trace).
    let prediction = crate::scenario::run_example(&s).await;
    let (_, models) = s.get_json("/v1/models").await;
    let (_, model) = s.get_json("/v1/models/fraud").await;
    assert!(models["models"].as_array().is_some_and(|m| !m.is_empty()));
    let version = model["versions"][0]["version"]
        .as_str()
        .unwrap_or_else(|| panic!("{model}"))
        .to_string();
    let dir = tempfile::tempdir().unwrap();

    // 1. Everything, with generated values, valid and invalid.
    run_schemathesis(&s, dir.path(), &[], &[]).await;

    // 2. The reads of things that exist, with their real names, so the
    // answers holding data are checked against the description too.
    let existing = [
        (
            "/v1/models/{name}",
            vec![("path.name", "fraud".to_string())],
        ),
        (
            "/v1/models/{name}/versions/{version}",
            vec![
                ("path.name", "fraud".to_string()),
                ("path.version", version.clone()),
            ],
        ),
        (
            "/v1/trace/{kind}/{id}",
            vec![
                ("path.kind", "prediction".to_string()),
                ("path.id", prediction.clone()),
            ],
        ),
        ("/v1/entries/{index}", vec![("path.index", "3".to_string())]),
    ];
    let mut toml = String::new();
    for (path, params) in &existing {
        toml.push_str(&format!(
            "[[operations]]\ninclude-path = \"{path}\"\n[operations.parameters]\n"
        ));
        for (k, v) in params {
            toml.push_str(&format!("\"{k}\" = \"{v}\"\n"));
        }
    }
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(&config, toml).unwrap();
    let global = [
        "--config-file".to_string(),
        config.to_string_lossy().into_owned(),
    ];
    // Valid requests only: a fixed name would turn an invalid one valid.
    let mut only: Vec<String> = existing
        .iter()
        .flat_map(|(p, _)| ["--include-path".to_string(), p.to_string()])
        .collect();
    only.extend(["--phases".to_string(), "fuzzing".to_string()]);
    only.extend(["--mode".to_string(), "positive".to_string()]);
    let text = run_schemathesis(&s, dir.path(), &global, &only).await;
    assert!(
        !text.contains("returned 404"),
        "the real names were not used:\n{text}"
    );

    // After all that, the log still verifies end to end.
    let (status, log) = s.get_json("/v1/log").await;
    assert_eq!(status, 200);
    let size = log["tree_size"].as_u64().unwrap();
    assert!(size > 20, "{log}");
    let (status, proof) = s
        .get_json(&format!("/v1/proof/consistency?old_size=1&new_size={size}"))
        .await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["new_size"], size, "{proof}");
    s.stop().await;
}
