//! Identities and roles over the real API: tokens made and revoked by the
//! admin (and logged), each action needing its role, the actor bound to the
//! caller, and tokens that survive a restart stored only as hashes.

use crate::common::*;
use modeltrail::server::{self, ServerConfig};
use modeltrail::verify::{self, Policy};
use serde_json::{json, Value};

async fn admin_call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = s.http.request(method, s.url(path)).bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn ev(action: &str, kind: &str, id: &str) -> Value {
    let mut e = json!({
        "action": action,
        "actor": {"type": kind, "id": id},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": "fraud:v3"},
    });
    if action == "promote" {
        e["metadata"] = json!({"to_stage": "staging"});
    }
    if action == "attest" {
        e["metadata"] = json!({"kind": "tests", "passed": true});
    }
    e
}

async fn size(s: &TestServer) -> u64 {
    s.get_json("/v1/log").await.1["tree_size"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_bind_actions_and_actors() {
    let mut s = start().await;
    let (ci, grant_ci) = grant(&s, "service", "ci.pipeline", &["submitter"]).await;
    let (alice, _) = grant(&s, "user", "alice", &["approver"]).await;
    let (ops, _) = grant(&s, "user", "ops.bob", &["deployer", "approver"]).await;
    let (auditor, _) = grant(&s, "user", "carol", &["auditor"]).await;

    // The grant is an event in the log, with a receipt that verifies.
    let receipt = &grant_ci["receipt"];
    assert_eq!(receipt["event"]["action"], "grant_access");
    assert_eq!(
        receipt["event"]["actor"],
        json!({"type": "user", "id": "admin"})
    );
    assert_eq!(
        receipt["event"]["subject"],
        json!({"type": "service", "id": "ci.pipeline"})
    );
    assert_eq!(receipt["event"]["metadata"]["roles"], json!(["submitter"]));
    assert_eq!(
        receipt["event"]["metadata"]["token_id"],
        grant_ci["token_id"]
    );
    assert_eq!(grant_ci["grant_index"], receipt["index"]);
    verify::receipt(
        &Policy::log_only(s.vkey.clone()),
        receipt["event"].to_string().as_bytes(),
        receipt["tlog_proof"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let before = size(&s).await;
    assert_eq!(before, 4);

    // Each role may do its actions, in its own name.
    assert_eq!(
        post_as(&s, &ci, &ev("register", "service", "ci.pipeline"))
            .await
            .0,
        201
    );
    assert_eq!(
        post_as(&s, &ci, &ev("attest", "service", "ci.pipeline"))
            .await
            .0,
        201
    );
    assert_eq!(
        post_as(&s, &alice, &ev("approve", "user", "alice")).await.0,
        201
    );
    assert_eq!(
        post_as(&s, &ops, &ev("promote", "user", "ops.bob")).await.0,
        201
    );
    assert_eq!(
        post_as(&s, &ops, &ev("approve", "user", "ops.bob")).await.0,
        201
    );
    let after_ok = size(&s).await;
    assert_eq!(after_ok, before + 5);

    // And nothing else: each refusal is 403 and writes nothing.
    let refused = [
        (&ci, ev("approve", "service", "ci.pipeline")),
        (&alice, ev("promote", "user", "alice")),
        (&alice, ev("register", "user", "alice")),
        (&auditor, ev("register", "user", "carol")),
        // Approving in someone else's name, or as the other kind.
        (&alice, ev("approve", "user", "ops.bob")),
        (&alice, ev("approve", "service", "alice")),
        // Access events are recorded by the server only, even for admins.
        (&s.token, ev("grant_access", "user", "admin")),
        (&s.token, ev("revoke_access", "user", "admin")),
        (&s.token, ev("deny", "user", "admin")),
    ];
    for (token, e) in refused.iter() {
        let (status, body) = post_as(&s, token, e).await;
        assert_eq!(status, 403, "{e} -> {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // The admin holds every role, but also only in its own name.
    assert_eq!(
        post_as(&s, &s.token, &ev("approve", "user", "alice"))
            .await
            .0,
        403
    );
    assert_eq!(
        post_as(&s, &s.token, &ev("approve", "user", "admin"))
            .await
            .0,
        201
    );
    assert_eq!(size(&s).await, after_ok + 1);

    // Only admins make tokens; admins and auditors list them, without secrets.
    let (status, _) = admin_call(
        &s,
        reqwest::Method::POST,
        "/v1/admin/tokens",
        &alice,
        Some(json!({"principal": {"type": "user", "id": "mallory"}, "roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 403);
    for t in [&auditor, &s.token] {
        let (status, list) =
            admin_call(&s, reqwest::Method::GET, "/v1/admin/tokens", t, None).await;
        assert_eq!(status, 200);
        let tokens = list["tokens"].as_array().unwrap();
        assert_eq!(tokens.len(), 4);
        assert!(tokens.iter().all(|t| t.get("token").is_none()));
        let text = list.to_string();
        for secret in [&ci, &alice, &ops, &auditor] {
            assert!(!text.contains(secret.as_str()));
        }
    }
    let (status, _) = admin_call(&s, reqwest::Method::GET, "/v1/admin/tokens", &ci, None).await;
    assert_eq!(status, 403);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_revocation_expiry_and_restart() {
    let mut s = start().await;
    let bad = [
        json!({"principal": {"type": "robot", "id": "x"}, "roles": ["submitter"]}),
        json!({"principal": {"type": "user", "id": "x"}, "roles": ["superuser"]}),
        json!({"principal": {"type": "user", "id": "x"}, "roles": []}),
        json!({"principal": {"type": "user", "id": "admin"}, "roles": ["approver"]}),
        json!({"principal": {"type": "user", "id": ""}, "roles": ["approver"]}),
        json!({"principal": {"type": "user", "id": "x"}, "roles": ["approver"], "expires_at": "tomorrow"}),
        json!({"principal": {"type": "user", "id": "x"}, "roles": ["approver"], "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"principal": {"type": "user", "id": "x"}, "roles": ["approver"], "extra": 1}),
        json!({"principal": {"type": "user"}, "roles": ["approver"]}),
        // A look-alike of "alice" with a right-to-left override.
        json!({"principal": {"type": "user", "id": "ali\u{202e}ce"}, "roles": ["approver"]}),
        json!({"principal": {"type": "user", "id": "alice\u{200b}"}, "roles": ["approver"]}),
        json!(["not", "an", "object"]),
    ];
    for b in bad {
        let (status, body) = admin_call(
            &s,
            reqwest::Method::POST,
            "/v1/admin/tokens",
            &s.token,
            Some(b.clone()),
        )
        .await;
        assert_eq!(status, 400, "{b} -> {body}");
    }
    assert_eq!(size(&s).await, 0, "a refused grant writes nothing");
    let (status, _) = admin_call(
        &s,
        reqwest::Method::POST,
        "/v1/admin/tokens",
        "not-a-token",
        Some(json!({"principal": {"type": "user", "id": "x"}, "roles": ["approver"]})),
    )
    .await;
    assert_eq!(status, 401);

    assert_eq!(
        post_as(&s, &s.token, &ev("register", "user", "admin"))
            .await
            .0,
        201
    );
    // A role change is logged, then applies.
    let (dana, g) = grant(&s, "user", "dana", &["submitter"]).await;
    let dana_path = format!("/v1/admin/tokens/{}", g["token_id"].as_str().unwrap());
    assert_eq!(
        post_as(&s, &dana, &ev("reject", "user", "dana")).await.0,
        403
    );
    let (status, r) = admin_call(
        &s,
        reqwest::Method::PATCH,
        &dana_path,
        &s.token,
        Some(json!({"roles": ["approver", "submitter"]})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["receipt"]["event"]["action"], "grant_access");
    assert_eq!(
        r["receipt"]["event"]["metadata"]["roles"],
        json!(["submitter", "approver"])
    );
    assert_eq!(
        r["receipt"]["event"]["metadata"]["previous_roles"],
        json!(["submitter"])
    );
    for (body, want) in [
        (json!({"roles": ["approver", "submitter"]}), 400),
        (json!({"roles": ["root"]}), 400),
        (json!({"roles": []}), 400),
        (json!({"role": ["approver"]}), 400),
    ] {
        let (status, _) =
            admin_call(&s, reqwest::Method::PATCH, &dana_path, &s.token, Some(body)).await;
        assert_eq!(status, want);
    }
    let (status, _) = admin_call(
        &s,
        reqwest::Method::PATCH,
        &dana_path,
        &dana,
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 403);
    // Now dana may reject (the version was registered above).
    let reject = json!({"action": "reject", "actor": {"type": "user", "id": "dana"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "model_version", "id": "fraud:v3"}});
    assert_eq!(post_as(&s, &dana, &reject).await.0, 201);

    // Revocation is logged, then the token stops working.
    let (alice, g) = grant(&s, "user", "alice", &["approver"]).await;
    let id = g["token_id"].as_str().unwrap().to_string();
    assert_eq!(
        post_as(&s, &alice, &ev("approve", "user", "alice")).await.0,
        201
    );
    let path = format!("/v1/admin/tokens/{id}");
    let (status, _) = admin_call(&s, reqwest::Method::DELETE, &path, &alice, None).await;
    assert_eq!(status, 403);
    let (status, r) = admin_call(&s, reqwest::Method::DELETE, &path, &s.token, None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["receipt"]["event"]["action"], "revoke_access");
    assert_eq!(r["receipt"]["event"]["metadata"]["token_id"], id);
    assert_eq!(r["revoke_index"], r["receipt"]["index"]);
    assert!(r["revoked_at"].is_string());
    assert_eq!(
        post_as(&s, &alice, &ev("approve", "user", "alice")).await.0,
        401
    );
    let (status, _) = admin_call(&s, reqwest::Method::DELETE, &path, &s.token, None).await;
    assert_eq!(status, 400);
    let unknown = "/v1/admin/tokens/0190c0de-0000-7000-8000-000000000000";
    let (status, _) = admin_call(&s, reqwest::Method::DELETE, unknown, &s.token, None).await;
    assert_eq!(status, 404);
    let (status, _) = admin_call(
        &s,
        reqwest::Method::DELETE,
        "/v1/admin/tokens/nope",
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 400);

    // An expired token is refused.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, r) = admin_call(
        &s,
        reqwest::Method::POST,
        "/v1/admin/tokens",
        &s.token,
        Some(json!({"principal": {"type": "service", "id": "temp"}, "roles": ["submitter"], "expires_at": soon})),
    )
    .await;
    assert_eq!(status, 201);
    let temp = r["token"].as_str().unwrap().to_string();
    assert_eq!(
        post_as(&s, &temp, &ev("evaluate", "service", "temp"))
            .await
            .0,
        201
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(
        post_as(&s, &temp, &ev("evaluate", "service", "temp"))
            .await
            .0,
        401
    );

    // A live token keeps working after a restart; the store holds only hashes.
    let (ci, _) = grant(&s, "service", "ci", &["submitter"]).await;
    let data_dir = s.dir.path().join("data");
    s.stop().await;
    let db_bytes = crate::common::db_contents(&data_dir.join("db"));
    // Control: the newest record is found by this scan, with its hash.
    let ci_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ci.as_bytes()));
    assert!(db_bytes
        .windows(ci_hash.len())
        .any(|w| w == ci_hash.as_bytes()));
    for secret in [&ci, &alice, &temp] {
        assert!(
            !db_bytes
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "a token secret is stored in the clear"
        );
    }
    let cfg = ServerConfig::resolve(modeltrail::server::Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(data_dir),
        origin: Some(ORIGIN.into()),
        ..Default::default()
    })
    .unwrap();
    let d = server::prepare_data_dir(&cfg).unwrap();
    let running = server::start(&cfg, &d).await.unwrap();
    s.base = format!("http://{}", running.addr);
    s.running = Some(running);
    assert_eq!(
        post_as(&s, &ci, &ev("evaluate", "service", "ci")).await.0,
        201
    );
    assert_eq!(
        post_as(&s, &alice, &ev("approve", "user", "alice")).await.0,
        401
    );
    s.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_modeltrail");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_attestations_verify_from_the_log_alone() {
    use base64::Engine;
    use modeltrail::audit::signature;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut s = start().await;
    let (ci, _) = grant(&s, "service", "ci", &["submitter"]).await;
    let (alice, _) = grant(&s, "user", "alice", &["submitter"]).await;
    let key = ed25519_dalek::SigningKey::from_bytes(&[5u8; 32]);
    let public = b64.encode(key.verifying_key().as_bytes());
    let other = ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]);

    let register = |token: String, body: Value| {
        let s = &s;
        async move { admin_call(s, reqwest::Method::POST, "/v1/keys", &token, Some(body)).await }
    };
    // Only a service with the submitter role registers a key, a valid one,
    // once; each is logged.
    let (reader, _) = grant(&s, "service", "reader", &["auditor"]).await;
    assert_eq!(
        register(reader.clone(), json!({"public_key": public}))
            .await
            .0,
        403
    );
    assert_eq!(
        register(alice.clone(), json!({"public_key": public}))
            .await
            .0,
        403
    );
    assert_eq!(
        register(ci.clone(), json!({"public_key": "AAAA"})).await.0,
        400
    );
    assert_eq!(register(ci.clone(), json!({"key": public})).await.0, 400);
    let (status, r) = register(ci.clone(), json!({"public_key": public})).await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["receipt"]["event"]["action"], "register_key");
    assert_eq!(
        r["receipt"]["event"]["metadata"]["ed25519_public_key"],
        public
    );
    let key_index = r["index"].as_u64().unwrap();
    assert_eq!(
        register(ci.clone(), json!({"public_key": public})).await.0,
        400
    );
    let (_, keys) = s.get_json("/v1/keys/ci").await;
    assert_eq!(keys["keys"][0]["public_key"], public);
    assert_eq!(keys["keys"][0]["index"], key_index);
    // Nobody appends register_key events directly.
    let forged = json!({
        "action": "register_key", "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "service", "id": "ci"},
        "metadata": {"ed25519_public_key": b64.encode(other.verifying_key().as_bytes())}
    });
    assert_eq!(post_as(&s, &ci, &forged).await.0, 403);

    let attestation = |n: u32| {
        json!({
            "event_id": format!("0190c0de-0000-7000-8000-{n:012}"),
            "action": "attest",
            "actor": {"type": "service", "id": "ci"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "model_version", "id": "fraud:v3"},
            "metadata": {"kind": "tests", "passed": true},
            "integrity": {"artifact_sha256": "ab".repeat(32)}
        })
    };
    let signed = signature::sign(&attestation(1), &key).unwrap();
    assert_eq!(
        post_as(&s, &ci, &ev("register", "service", "ci")).await.0,
        201
    );
    let before = size(&s).await;
    // Refused, writing nothing: another key, tampered content, a signed
    // event without its own id, a signature by a user.
    let refusals = [
        (signature::sign(&attestation(2), &other).unwrap(), 422),
        (
            {
                let mut t = signed.clone();
                t["metadata"]["passed"] = json!(false);
                t
            },
            422,
        ),
        (
            {
                let mut t = signature::sign(&attestation(3), &key).unwrap();
                t.as_object_mut().unwrap().remove("event_id");
                t
            },
            400,
        ),
    ];
    for (e, want) in refusals {
        let (status, body) = post_as(&s, &ci, &e).await;
        assert_eq!(status, want, "{body}");
    }
    let mut by_user = signature::sign(&attestation(4), &key).unwrap();
    by_user["actor"] = json!({"type": "user", "id": "alice"});
    let by_user = signature::sign(&by_user, &key).unwrap();
    assert_eq!(post_as(&s, &alice, &by_user).await.0, 422);
    assert_eq!(size(&s).await, before);

    // Accepted, and checkable from the log alone: the auditor reads the
    // register_key entry and the attestation entry, and nothing else.
    let (status, r) = post_as(&s, &ci, &signed).await;
    assert_eq!(status, 201, "{r}");
    let index = r["index"].as_u64().unwrap();
    let (_, key_entry) = s.get_json(&format!("/v1/entries/{key_index}")).await;
    let (_, att_entry) = s.get_json(&format!("/v1/entries/{index}")).await;
    let logged_key = key_entry["event"]["metadata"]["ed25519_public_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        key_entry["event"]["actor"],
        json!({"type": "service", "id": "ci"})
    );
    let vk = signature::parse_public_key(&logged_key).unwrap();
    signature::verify(&att_entry["event"], &vk).unwrap();
    // With the command line too: 0 valid, 1 invalid, 2 malformed.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("att.json");
    std::fs::write(&f, att_entry["event"].to_string()).unwrap();
    let run = |args: Vec<String>| {
        std::process::Command::new(BIN)
            .args(args)
            .output()
            .unwrap()
            .status
            .code()
    };
    let f = f.to_str().unwrap().to_string();
    let v = |k: &str| {
        vec![
            "verify".to_string(),
            "signature".into(),
            "--event".into(),
            f.clone(),
            "--public-key".into(),
            k.to_string(),
        ]
    };
    assert_eq!(run(v(&logged_key)), Some(0));
    assert_eq!(
        run(v(&b64.encode(other.verifying_key().as_bytes()))),
        Some(1)
    );
    assert_eq!(run(v("not-a-key")), Some(2));
    // Unsigned events from the same service are still fine.
    let mut plain = attestation(9);
    plain.as_object_mut().unwrap().remove("integrity");
    assert_eq!(post_as(&s, &ci, &plain).await.0, 201);
    s.stop().await;
}

#[test]
fn sign_command_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("ci.key");
    let out = std::process::Command::new(BIN)
        .args(["sign", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ev = dir.path().join("ev.json");
    std::fs::write(
        &ev,
        json!({
            "event_id": "0190c0de-0000-7000-8000-000000000001",
            "action": "attest", "actor": {"type": "service", "id": "ci"},
            "timestamp": "2025-05-05T14:03:00Z", "subject": {"type": "run", "id": "r1"}
        })
        .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args([
            "sign",
            "event",
            "--key",
            key.to_str().unwrap(),
            ev.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let vk = modeltrail::audit::signature::parse_public_key(&public).unwrap();
    modeltrail::audit::signature::verify(&signed, &vk).unwrap();
}

/// A token revoked while its request's body is still arriving cannot
/// append: roles are checked when the event is appended, and an append
/// never lands after the `revoke_access` of its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_during_a_slow_upload_takes_effect() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = start().await;
    let (ci, g) = grant(&s, "service", "ci", &["submitter"]).await;
    let id = g["token_id"].as_str().unwrap().to_string();
    let body = ev("register", "service", "ci").to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
    c.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ci}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, r) = admin_call(
        &s,
        reqwest::Method::DELETE,
        &format!("/v1/admin/tokens/{id}"),
        &s.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let revoke_index = r["receipt"]["index"].as_u64().unwrap();
    c.write_all(tail.as_bytes()).await.unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // Nothing by ci after the revocation.
    assert_eq!(size(&s).await, revoke_index + 1);
    s.stop().await;
}
