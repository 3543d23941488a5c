//! A model's life in the log, end to end: a dataset and a training run, a
//! model registered from them, signed CI attestations (tests, fairness), two
//! approvals, promotion to staging and production, a deployment,
//! predictions, a promotion the gates refuse, a hand-over and a rollback,
//! and at the end a prediction traced back to its dataset, verified.
//!
//! ```text
//! cargo run --release --example scenario
//! ```
//!
//! starts its own server (a temporary data folder, a free loopback port,
//! the gates of `examples/registry.toml`) and stops it at the end. To run
//! against a server of your own, started with `--config
//! examples/registry.toml`:
//!
//! ```text
//! cargo run --release --example scenario -- --server http://127.0.0.1:8080 \
//!     --token-file modeltrail-data/admin.token --vkey modeltrail-data/log.vkey
//! ```
//!
//! Event ids are fresh UUIDs, so it can run more than once on one log, as
//! long as the model versions it registers (`fraud:v3-<run>`) are new.

use base64::Engine;
use modeltrail::note::VerifierKey;
use modeltrail::verify::Policy;
use serde_json::{json, Value};

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().await.map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn token(
        &self,
        admin: &str,
        kind: &str,
        id: &str,
        roles: &[&str],
    ) -> Result<String, String> {
        let body = json!({"principal": {"type": kind, "id": id}, "roles": roles});
        let (status, r) = self
            .call(
                reqwest::Method::POST,
                "/v1/admin/tokens",
                Some(admin),
                Some(&body),
            )
            .await?;
        if status != 201 {
            return Err(format!("making a token for {id}: {status} {r}"));
        }
        println!(
            "  token for {kind}:{id} ({}) — grant logged at #{}",
            roles.join(", "),
            r["grant_index"]
        );
        Ok(r["token"].as_str().unwrap_or_default().to_string())
    }

    /// Append and expect `want`; returns the answer.
    async fn append(&self, token: &str, ev: &Value, want: u16) -> Result<Value, String> {
        let (status, r) = self
            .call(reqwest::Method::POST, "/v1/events", Some(token), Some(ev))
            .await?;
        if status != want {
            return Err(format!(
                "{} answered {status}, expected {want}: {r}",
                ev["action"]
            ));
        }
        Ok(r)
    }
}

fn event(
    action: &str,
    actor: (&str, &str),
    subject: (&str, &str),
    related: &[(&str, &str)],
    metadata: Value,
) -> Value {
    let mut e = json!({
        "event_id": uuid::Uuid::now_v7().to_string(),
        "action": action,
        "actor": {"type": actor.0, "id": actor.1},
        "timestamp": time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "subject": {"type": subject.0, "id": subject.1},
        "metadata": metadata,
    });
    if !related.is_empty() {
        e["related"] = Value::Array(
            related
                .iter()
                .map(|(t, i)| json!({"type": t, "id": i}))
                .collect(),
        );
    }
    e
}

/// Run the scenario against a server; returns the verified trace, rendered.
pub async fn run(base: &str, admin: &str, vkey: &VerifierKey) -> Result<String, String> {
    let api = Api {
        http: reqwest::Client::new(),
        base: base.trim_end_matches('/').to_string(),
    };
    let tag = &uuid::Uuid::now_v7().simple().to_string()[20..];
    let v3 = format!("fraud:v3-{tag}");
    let v4 = format!("fraud:v4-{tag}");
    let dataset = format!("ds:2025-05-01-{tag}");
    let run_id = format!("run-933-{tag}");
    let deployment = format!("fraud-prod-{tag}");
    let (ci, alice, bob, ops, scorer) = (
        ("service", "ci.pipeline"),
        ("user", "alice"),
        ("user", "bob"),
        ("user", "ops"),
        ("service", "scorer"),
    );

    println!("1. people and services get tokens from the admin:");
    let t_ci = api.token(admin, ci.0, ci.1, &["submitter"]).await?;
    let t_alice = api.token(admin, alice.0, alice.1, &["approver"]).await?;
    let t_bob = api.token(admin, bob.0, bob.1, &["approver"]).await?;
    let t_ops = api.token(admin, ops.0, ops.1, &["deployer"]).await?;
    let t_scorer = api.token(admin, scorer.0, scorer.1, &["submitter"]).await?;

    println!("2. CI registers its signing key, the data, the run and the model:");
    let key = ed25519_dalek::SigningKey::from_bytes(&rand_seed());
    let public = base64::engine::general_purpose::STANDARD.encode(key.verifying_key().as_bytes());
    let (status, r) = api
        .call(
            reqwest::Method::POST,
            "/v1/keys",
            Some(&t_ci),
            Some(&json!({"public_key": public})),
        )
        .await?;
    // A second run on the same log finds the key already registered.
    if status != 201 && r["error"]["code"] != "duplicate_key" {
        return Err(format!("registering the key: {status} {r}"));
    }
    let commit = ("commit", "9f1c2e7");
    let env = ("environment", "sha256:4b1d…lockfile");
    api.append(
        &t_ci,
        &event(
            "publish",
            ci,
            ("dataset", &dataset),
            &[],
            json!({"rows": 1_200_000}),
        ),
        201,
    )
    .await?;
    api.append(
        &t_ci,
        &event(
            "train",
            ci,
            ("run", &run_id),
            &[("dataset", &dataset), commit, env],
            json!({"auc": 0.945}),
        ),
        201,
    )
    .await?;
    let r = api
        .append(
            &t_ci,
            &event(
                "register",
                ci,
                ("model_version", &v3),
                &[("run", &run_id)],
                json!({}),
            ),
            201,
        )
        .await?;
    println!("  {v3} registered at #{}", r["index"]);

    println!("3. CI attests tests and fairness, signed with its key:");
    for kind in ["tests", "fairness"] {
        let e = event(
            "attest",
            ci,
            ("model_version", &v3),
            &[],
            json!({"kind": kind, "passed": true}),
        );
        let signed = modeltrail::audit::signature::sign(&e, &key).map_err(|e| e.to_string())?;
        let r = api.append(&t_ci, &signed, 201).await?;
        println!(
            "  {kind} attestation, signature verified by the server, at #{}",
            r["index"]
        );
    }

    println!("4. two approvers approve; staging, production, deployment:");
    for (who, t) in [(alice, &t_alice), (bob, &t_bob)] {
        api.append(
            t,
            &event("approve", who, ("model_version", &v3), &[], json!({})),
            201,
        )
        .await?;
    }
    for stage in ["staging", "production"] {
        let r = api
            .append(
                &t_ops,
                &event(
                    "promote",
                    ops,
                    ("model_version", &v3),
                    &[],
                    json!({"to_stage": stage}),
                ),
                201,
            )
            .await?;
        println!("  {v3} → {stage} at #{}", r["index"]);
    }
    api.append(
        &t_ops,
        &event(
            "deploy",
            ops,
            ("deployment", &deployment),
            &[("model_version", &v3)],
            json!({"region": "eu-west-1"}),
        ),
        201,
    )
    .await?;

    println!("5. the deployment scores transactions:");
    for p in 1..=3 {
        let r = api
            .append(
                &t_scorer,
                &event(
                    "predict",
                    scorer,
                    ("prediction", &format!("P{p}-{tag}")),
                    &[("deployment", &deployment), ("model_version", &v3)],
                    json!({"score": 0.91, "decision": "block"}),
                ),
                201,
            )
            .await?;
        println!("  prediction P{p}-{tag} at #{}", r["index"]);
    }

    println!("6. someone tries to rush {v4} into production:");
    api.append(
        &t_ci,
        &event(
            "register",
            ci,
            ("model_version", &v4),
            &[("run", &run_id)],
            json!({}),
        ),
        201,
    )
    .await?;
    let r = api
        .append(
            &t_ops,
            &event(
                "promote",
                ops,
                ("model_version", &v4),
                &[],
                json!({"to_stage": "production"}),
            ),
            422,
        )
        .await?;
    for reason in r["error"]["reasons"].as_array().into_iter().flatten() {
        println!("  refused: {}", reason.as_str().unwrap_or_default());
    }
    println!(
        "  the refusal itself is logged at #{}",
        r["deny_receipt"]["index"]
    );

    println!("7. {v4} passes the gates and replaces {v3}; then a rollback:");
    for kind in ["tests", "fairness"] {
        let e = event(
            "attest",
            ci,
            ("model_version", &v4),
            &[],
            json!({"kind": kind, "passed": true}),
        );
        let signed = modeltrail::audit::signature::sign(&e, &key).map_err(|e| e.to_string())?;
        api.append(&t_ci, &signed, 201).await?;
    }
    for (who, t) in [(alice, &t_alice), (bob, &t_bob)] {
        api.append(
            t,
            &event("approve", who, ("model_version", &v4), &[], json!({})),
            201,
        )
        .await?;
    }
    let r = api
        .append(
            &t_ops,
            &event(
                "promote",
                ops,
                ("model_version", &v4),
                &[],
                json!({"to_stage": "production"}),
            ),
            201,
        )
        .await?;
    println!(
        "  {v4} → production at #{}; the server archives {v3} at #{}",
        r["index"],
        r["index"].as_u64().unwrap_or(0) + 1
    );
    let r = api
        .append(
            &t_ops,
            &event(
                "rollback",
                ops,
                ("model_version", &v3),
                &[],
                json!({"reason": "false positives"}),
            ),
            201,
        )
        .await?;
    println!("  rollback to {v3} at #{}", r["index"]);

    let (name, version) = v3.split_once(':').unwrap_or((&v3, ""));
    let (_, state) = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/models/{name}/versions/{version}"),
            None,
            None,
        )
        .await?;
    println!(
        "8. {v3} as the log says: stage {}, approvers {}, derived from entries {}",
        state["stage"], state["approvers"], state["events"]
    );

    println!("9. prediction P2-{tag}, traced back and verified against one signed checkpoint:");
    let bytes = api
        .http
        .get(format!("{}/v1/trace/prediction/P2-{tag}", api.base))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    let checked = modeltrail::trace::check(&Policy::log_only(vkey.clone()), &bytes)
        .map_err(|e| e.to_string())?;
    let tree = modeltrail::trace::render(&checked.bundle);
    print!("{tree}");
    println!(
        "  {} entries, every inclusion proof verified in the tree of size {}",
        checked.bundle.entries.len(),
        checked.tree_size
    );
    Ok(tree)
}

fn rand_seed() -> [u8; 32] {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).expect("the system's random source");
    s
}

#[allow(dead_code)]
#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let result = match (arg("--server"), arg("--token-file"), arg("--vkey")) {
        (Some(server), Some(token_file), Some(vkey)) => {
            let token = std::fs::read_to_string(&token_file).expect("the admin token file");
            let vkey = std::fs::read_to_string(&vkey).unwrap_or(vkey);
            let vkey = VerifierKey::parse(vkey.trim()).expect("a verifier key");
            run(&server, token.trim(), &vkey).await
        }
        _ => {
            // Our own server: a temporary folder, a free port, the gates of
            // examples/registry.toml.
            let dir = tempfile::tempdir().expect("a temporary folder");
            let mut cfg =
                modeltrail::server::ServerConfig::resolve(modeltrail::server::Overrides {
                    listen: Some("127.0.0.1:0".into()),
                    data_dir: Some(dir.path().join("data")),
                    config: Some(
                        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                            .join("examples/registry.toml"),
                    ),
                    ..Default::default()
                })
                .expect("the example configuration");
            cfg.listen = "127.0.0.1:0".parse().expect("an address");
            let data = modeltrail::server::prepare_data_dir(&cfg).expect("the data folder");
            let running = modeltrail::server::start(&cfg, &data)
                .await
                .expect("the server");
            println!(
                "server on http://{} (data in a temporary folder)\n",
                running.addr
            );
            let r = run(
                &format!("http://{}", running.addr),
                &data.admin_token,
                &data.signer.verifier(),
            )
            .await;
            let _ = running.stop().await;
            r
        }
    };
    match result {
        Ok(_) => println!("\nscenario complete"),
        Err(e) => {
            eprintln!("scenario failed: {e}");
            std::process::exit(1);
        }
    }
}
