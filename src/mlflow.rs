//! MLflow model registry webhooks (MLflow OSS 3.x), the pure part: the
//! signature check exactly as MLflow signs, and the mapping of each
//! delivery to the events this log records.
//!
//! MLflow signs a delivery with HMAC-SHA256 over
//! `"{delivery_id}.{timestamp}.{body}"` (the `X-MLflow-Delivery-Id` and
//! `X-MLflow-Timestamp` headers, and the raw JSON body as sent) keyed with
//! the webhook's secret, and sends `X-MLflow-Signature: v1,<base64>`
//! (`mlflow/webhooks/delivery.py`, `_generate_hmac_signature`). The body is
//! `{"entity", "action", "timestamp", "data"}`.
//!
//! | MLflow event | logged as |
//! |---|---|
//! | `registered_model.created` | `create_model`, subject `model:<name>` |
//! | `model_version.created` | `register`, subject `model_version:<name>:<version>`, related `run:<run_id>`, `metadata.source` |
//! | `model_version_tag.set` / `.deleted` | `tag_set` / `tag_deleted` on the version |
//! | `model_version_alias.created` | `promote` to the mapped stage when the alias is mapped (the registry's gates apply); else `alias_set` |
//! | `model_version_alias.deleted` | `alias_deleted`, subject `model:<name>` |
//! | anything else (prompts, budgets) | nothing: ignored |
//!
//! Every event carries `metadata.mlflow` (the delivery id, the MLflow
//! event and, for aliases, the alias), and its `event_id` is derived from
//! the delivery id, so a delivery recorded twice is one entry.
//!
//! What this module does not do: HTTP, time, or appending.

use crate::registry::Stage;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const SIGNATURE_HEADER: &str = "x-mlflow-signature";
pub const TIMESTAMP_HEADER: &str = "x-mlflow-timestamp";
pub const DELIVERY_HEADER: &str = "x-mlflow-delivery-id";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("malformed delivery: {0}")]
    Malformed(String),
}

/// Check MLflow's `v1,<base64>` signature of a delivery, in constant time.
pub fn verify_signature(
    secret: &[u8],
    delivery_id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> Result<(), WebhookError> {
    use base64::Engine;
    let b64 = header
        .strip_prefix("v1,")
        .ok_or(WebhookError::BadSignature)?;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| WebhookError::BadSignature)
}

/// The signature MLflow would send (for tests and for operators checking
/// a setup by hand).
pub fn sign(secret: &[u8], delivery_id: &str, timestamp: &str, body: &[u8]) -> String {
    use base64::Engine;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{delivery_id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// The integration's settings (`[integrations.mlflow]`, checked). The
/// secret is never printed.
#[derive(Clone)]
pub struct WebhookSettings {
    pub secret: Vec<u8>,
    /// The owner-only file holding the bearer token the events are
    /// appended with, read at each delivery.
    pub token_file: std::path::PathBuf,
    /// Deliveries signed further than this from now are refused.
    pub max_age: std::time::Duration,
    /// MLflow alias → the stage a promotion goes to.
    pub aliases: BTreeMap<String, Stage>,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("token_file", &self.token_file)
            .field("max_age", &self.max_age)
            .field("aliases", &self.aliases)
            .finish_non_exhaustive()
    }
}

/// What a delivery becomes.
#[derive(Debug, PartialEq)]
pub enum Mapped {
    /// Events to append, in order, each without `actor` (the integration's
    /// principal is set by the caller).
    Events(Vec<Value>),
    /// An MLflow event this log does not record (`entity.action`).
    Ignored(String),
}

/// The id of the `n`-th event of a delivery: a UUID (version 8) from
/// SHA-256 of the delivery id, the same every time.
pub fn event_id(delivery_id: &str, n: usize) -> uuid::Uuid {
    let h = Sha256::digest(format!("mlflow-delivery:{delivery_id}:{n}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    uuid::Uuid::new_v8(b)
}

fn text<'a>(data: &'a Map<String, Value>, key: &str) -> Result<&'a str, WebhookError> {
    data.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| WebhookError::Malformed(format!("data.{key} must be a non-empty string")))
}

/// Map a delivery's JSON body to events. `aliases` maps an MLflow alias
/// to the stage a promotion goes to; `now` is used when the body carries
/// no timestamp of its own.
pub fn map(
    body: &[u8],
    delivery_id: &str,
    aliases: &BTreeMap<String, Stage>,
    now: &str,
) -> Result<Mapped, WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    let entity = v
        .get("entity")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed("entity must be a string".into()))?;
    let action = v
        .get("action")
        .and_then(Value::as_str)
        .ok_or_else(|| WebhookError::Malformed("action must be a string".into()))?;
    let kind = format!("{entity}.{action}");
    let known = matches!(
        kind.as_str(),
        "registered_model.created"
            | "model_version.created"
            | "model_version_tag.set"
            | "model_version_tag.deleted"
            | "model_version_alias.created"
            | "model_version_alias.deleted"
    );
    if !known {
        return Ok(Mapped::Ignored(kind));
    }
    let data = v
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| WebhookError::Malformed("data must be an object".into()))?;
    // MLflow's own timestamp (ISO 8601 with an offset) when it is one.
    let timestamp = v
        .get("timestamp")
        .and_then(Value::as_str)
        .filter(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        })
        .unwrap_or(now);
    let name = text(data, "name")?;
    let mut mlflow = json!({"delivery_id": delivery_id, "event": kind});
    let version_ref = || -> Result<Value, WebhookError> {
        Ok(json!({"type": "model_version", "id": format!("{name}:{}", text(data, "version")?)}))
    };
    let (action, subject, related, mut metadata) = match kind.as_str() {
        "registered_model.created" => {
            let mut m = Map::new();
            if let Some(d) = data.get("description").filter(|d| d.is_string()) {
                m.insert("description".into(), d.clone());
            }
            if let Some(t) = data.get("tags").filter(|t| t.is_object()) {
                m.insert("tags".into(), t.clone());
            }
            (
                "create_model",
                json!({"type": "model", "id": name}),
                Vec::new(),
                m,
            )
        }
        "model_version.created" => {
            let mut m = Map::new();
            m.insert("source".into(), json!(text(data, "source")?));
            if let Some(t) = data.get("tags").filter(|t| t.is_object()) {
                m.insert("tags".into(), t.clone());
            }
            let related = match data.get("run_id").and_then(Value::as_str) {
                Some(run) if !run.is_empty() => vec![json!({"type": "run", "id": run})],
                _ => Vec::new(),
            };
            ("register", version_ref()?, related, m)
        }
        "model_version_tag.set" => {
            let mut m = Map::new();
            m.insert("key".into(), json!(text(data, "key")?));
            m.insert(
                "value".into(),
                json!(data.get("value").and_then(Value::as_str).unwrap_or("")),
            );
            ("tag_set", version_ref()?, Vec::new(), m)
        }
        "model_version_tag.deleted" => {
            let mut m = Map::new();
            m.insert("key".into(), json!(text(data, "key")?));
            ("tag_deleted", version_ref()?, Vec::new(), m)
        }
        "model_version_alias.created" => {
            let alias = text(data, "alias")?;
            mlflow["alias"] = json!(alias);
            match aliases.get(alias) {
                Some(stage) => {
                    let mut m = Map::new();
                    m.insert("to_stage".into(), json!(stage.as_str()));
                    ("promote", version_ref()?, Vec::new(), m)
                }
                None => ("alias_set", version_ref()?, Vec::new(), Map::new()),
            }
        }
        _ => {
            // model_version_alias.deleted: MLflow names the model only.
            mlflow["alias"] = json!(text(data, "alias")?);
            (
                "alias_deleted",
                json!({"type": "model", "id": name}),
                Vec::new(),
                Map::new(),
            )
        }
    };
    metadata.insert("mlflow".into(), mlflow);
    let mut event = json!({
        "event_id": event_id(delivery_id, 0).to_string(),
        "action": action,
        "timestamp": timestamp,
        "subject": subject,
        "metadata": metadata,
    });
    if !related.is_empty() {
        event["related"] = Value::Array(related);
    }
    Ok(Mapped::Events(vec![event]))
}

/// One registered model as MLflow's REST API describes it.
#[derive(Clone, Debug, Default)]
pub struct MlflowModel {
    pub name: String,
    /// `(version, current_stage)`; MLflow's stage is `None` unless the
    /// deprecated stages are used.
    pub versions: Vec<(String, String)>,
    /// `(alias, version)`.
    pub aliases: Vec<(String, String)>,
}

/// One model as this log's state describes it: `(version, stage)`.
#[derive(Clone, Debug, Default)]
pub struct LoggedModel {
    pub name: String,
    pub versions: Vec<(String, String)>,
}

/// A way MLflow and the log disagree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    /// A version in MLflow that was never logged.
    NotLogged { model: String, version: String },
    /// A version in the log that MLflow does not have.
    NotInMlflow { model: String, version: String },
    /// A mapped alias whose version is not the log's version in that stage.
    Alias {
        model: String,
        alias: String,
        stage: String,
        mlflow_version: String,
        logged_versions: Vec<String>,
    },
    /// MLflow's (deprecated) stage of a version disagrees with the log's.
    Stage {
        model: String,
        version: String,
        mlflow_stage: String,
        logged_stage: String,
    },
}

/// Every difference between MLflow's registry and the log's state, in a
/// stable order (by model, then kind, then version).
pub fn compare(
    mlflow: &[MlflowModel],
    logged: &[LoggedModel],
    aliases: &BTreeMap<String, Stage>,
) -> Vec<Difference> {
    let ours: BTreeMap<&str, BTreeMap<&str, &str>> = logged
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.versions
                    .iter()
                    .map(|(v, s)| (v.as_str(), s.as_str()))
                    .collect(),
            )
        })
        .collect();
    let theirs: BTreeMap<&str, &MlflowModel> =
        mlflow.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&str> =
        ours.keys().chain(theirs.keys()).copied().collect();
    let empty = BTreeMap::new();
    for name in names {
        let logged_versions = ours.get(name).unwrap_or(&empty);
        let m = theirs.get(name);
        let their_versions: BTreeMap<&str, &str> = m
            .map(|m| {
                m.versions
                    .iter()
                    .map(|(v, s)| (v.as_str(), s.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        for (v, their_stage) in &their_versions {
            match logged_versions.get(v) {
                None => out.push(Difference::NotLogged {
                    model: name.into(),
                    version: (*v).into(),
                }),
                Some(our_stage) => {
                    if let Some(st) = Stage::parse(their_stage).filter(|s| *s != Stage::None) {
                        if Stage::parse(our_stage) != Some(st) {
                            out.push(Difference::Stage {
                                model: name.into(),
                                version: (*v).into(),
                                mlflow_stage: (*their_stage).into(),
                                logged_stage: (*our_stage).into(),
                            });
                        }
                    }
                }
            }
        }
        for v in logged_versions.keys() {
            if !their_versions.contains_key(v) {
                out.push(Difference::NotInMlflow {
                    model: name.into(),
                    version: (*v).into(),
                });
            }
        }
        for (alias, version) in m.map(|m| m.aliases.as_slice()).unwrap_or_default() {
            let Some(stage) = aliases.get(alias) else {
                continue;
            };
            let in_stage: Vec<String> = logged_versions
                .iter()
                .filter(|(_, s)| Stage::parse(s) == Some(*stage))
                .map(|(v, _)| (*v).to_string())
                .collect();
            if in_stage != [version.clone()] {
                out.push(Difference::Alias {
                    model: name.into(),
                    alias: alias.clone(),
                    stage: stage.as_str().into(),
                    mlflow_version: version.clone(),
                    logged_versions: in_stage,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> BTreeMap<String, Stage> {
        [("champion".to_string(), Stage::Production)]
            .into_iter()
            .collect()
    }

    #[test]
    fn signatures_verify_as_mlflow_makes_them() {
        // What MLflow 3.17's `_generate_hmac_signature("s3cret", "d-1",
        // "1700000000", '{"a": 1}')` returns.
        let body = br#"{"a": 1}"#;
        let sig = sign(b"s3cret", "d-1", "1700000000", body);
        assert_eq!(sig, "v1,cXba7k2h2S9JgnqN7BcpWvnFMfMoFMqAonfzn9WFZBg=");
        verify_signature(b"s3cret", "d-1", "1700000000", body, &sig).unwrap();
        for (secret, id, ts, body, s) in [
            (&b"other"[..], "d-1", "1700000000", &body[..], sig.as_str()),
            (b"s3cret", "d-2", "1700000000", body, &sig),
            (b"s3cret", "d-1", "1700000001", body, &sig),
            (b"s3cret", "d-1", "1700000000", br#"{"a": 2}"#, &sig),
            (b"s3cret", "d-1", "1700000000", body, "v2,abc"),
            (b"s3cret", "d-1", "1700000000", body, "v1,!!!"),
            (b"s3cret", "d-1", "1700000000", body, ""),
        ] {
            assert_eq!(
                verify_signature(secret, id, ts, body, s),
                Err(WebhookError::BadSignature)
            );
        }
    }

    #[test]
    fn each_registry_event_maps_and_the_rest_is_ignored() {
        let now = "2026-01-01T00:00:00Z";
        let go = |body: Value| map(body.to_string().as_bytes(), "d-1", &aliases(), now);
        let Mapped::Events(e) = go(json!({"entity": "model_version", "action": "created",
            "timestamp": "2026-12-02T02:40:00.123456+00:00",
            "data": {"name": "fraud", "version": "3", "source": "models:/m-1", "run_id": "r-9", "tags": {}}}))
        .unwrap() else {
            panic!()
        };
        assert_eq!(e[0]["action"], "register");
        assert_eq!(e[0]["subject"]["id"], "fraud:3");
        assert_eq!(e[0]["related"][0], json!({"type": "run", "id": "r-9"}));
        assert_eq!(e[0]["timestamp"], "2026-12-02T02:40:00.123456+00:00");
        assert_eq!(e[0]["metadata"]["mlflow"]["delivery_id"], "d-1");
        assert_eq!(e[0]["event_id"], event_id("d-1", 0).to_string());
        let Mapped::Events(e) = go(json!({"entity": "model_version_alias", "action": "created",
            "data": {"name": "fraud", "alias": "champion", "version": "3"}}))
        .unwrap() else {
            panic!()
        };
        assert_eq!(e[0]["action"], "promote");
        assert_eq!(e[0]["metadata"]["to_stage"], "production");
        assert_eq!(e[0]["timestamp"], now);
        let Mapped::Events(e) = go(json!({"entity": "model_version_alias", "action": "created",
            "data": {"name": "fraud", "alias": "shadow", "version": "3"}}))
        .unwrap() else {
            panic!()
        };
        assert_eq!(e[0]["action"], "alias_set");
        assert_eq!(
            go(json!({"entity": "prompt", "action": "created", "data": {}})).unwrap(),
            Mapped::Ignored("prompt.created".into())
        );
        for bad in [
            json!([]),
            json!({"entity": "model_version", "action": "created"}),
            json!({"entity": "model_version", "action": "created", "data": {"name": "m"}}),
            json!({"entity": 1, "action": "created", "data": {}}),
        ] {
            assert!(matches!(go(bad), Err(WebhookError::Malformed(_))));
        }
        assert!(matches!(
            map(b"{", "d", &aliases(), now),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn comparison_finds_every_kind_of_difference() {
        let v = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let mlflow = vec![
            MlflowModel {
                name: "fraud".into(),
                versions: v(&[("1", "None"), ("2", "Staging"), ("3", "None")]),
                aliases: v(&[("champion", "2"), ("shadow", "3")]),
            },
            MlflowModel {
                name: "churn".into(),
                versions: v(&[("1", "None")]),
                aliases: v(&[("champion", "1")]),
            },
        ];
        let logged = vec![
            LoggedModel {
                name: "fraud".into(),
                versions: v(&[("1", "production"), ("2", "none"), ("4", "none")]),
            },
            LoggedModel {
                name: "churn".into(),
                versions: v(&[("1", "production")]),
            },
        ];
        let d = compare(&mlflow, &logged, &aliases());
        assert_eq!(
            d,
            vec![
                // churn agrees entirely.
                Difference::Stage {
                    model: "fraud".into(),
                    version: "2".into(),
                    mlflow_stage: "Staging".into(),
                    logged_stage: "none".into()
                },
                Difference::NotLogged {
                    model: "fraud".into(),
                    version: "3".into()
                },
                Difference::NotInMlflow {
                    model: "fraud".into(),
                    version: "4".into()
                },
                Difference::Alias {
                    model: "fraud".into(),
                    alias: "champion".into(),
                    stage: "production".into(),
                    mlflow_version: "2".into(),
                    logged_versions: vec!["1".into()]
                },
            ]
        );
        assert!(compare(&mlflow[1..], &logged[1..], &aliases()).is_empty());
    }

    #[test]
    fn event_ids_are_stable_per_delivery() {
        assert_eq!(event_id("a", 0), event_id("a", 0));
        assert_ne!(event_id("a", 0), event_id("b", 0));
        assert_ne!(event_id("a", 0), event_id("a", 1));
    }
}
