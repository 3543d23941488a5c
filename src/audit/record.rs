//! Events the server records itself: a refusal (`deny`), an archived
//! version (`archive`), an access change (`grant_access`, `revoke_access`,
//! `register_key`). They are built here and then prepared exactly like a
//! client's submission, so they obey the same schema and canonical form
//! and nothing the server writes could be refused by a verifier.
//!
//! Pure: no I/O.

use super::event::{prepare, EventError, Prepared};
use super::vocab::{Action, Principal, Ref};
use serde_json::{Map, Value};

/// An event under construction.
#[derive(Clone, Debug)]
pub struct Record {
    action: Action,
    subject: Ref,
    related: Vec<Ref>,
    metadata: Map<String, Value>,
}

impl Record {
    pub fn new(action: Action, subject: Ref) -> Self {
        Record {
            action,
            subject,
            related: Vec::new(),
            metadata: Map::new(),
        }
    }

    /// Add a `related` link (each link once).
    pub fn related(mut self, r: Ref) -> Self {
        if !self.related.contains(&r) {
            self.related.push(r);
        }
        self
    }

    pub fn related_all(mut self, refs: impl IntoIterator<Item = Ref>) -> Self {
        for r in refs {
            self = self.related(r);
        }
        self
    }

    /// Set `metadata.<key>`.
    pub fn meta(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    pub fn action(&self) -> &Action {
        &self.action
    }

    /// The event as `actor` at `timestamp`, validated and canonical, with a
    /// new UUIDv7 event id.
    pub fn prepare(&self, actor: &Principal, timestamp: &str) -> Result<Prepared, EventError> {
        let mut obj = Map::new();
        obj.insert("action".into(), Value::String(self.action.to_string()));
        obj.insert(
            "actor".into(),
            serde_json::json!({"type": actor.kind.as_str(), "id": actor.id}),
        );
        obj.insert("timestamp".into(), Value::String(timestamp.to_string()));
        obj.insert(
            "subject".into(),
            serde_json::json!({"type": self.subject.kind, "id": self.subject.id}),
        );
        if !self.related.is_empty() {
            obj.insert(
                "related".into(),
                Value::Array(
                    self.related
                        .iter()
                        .map(|r| serde_json::json!({"type": r.kind, "id": r.id}))
                        .collect(),
                ),
            );
        }
        if !self.metadata.is_empty() {
            obj.insert("metadata".into(), Value::Object(self.metadata.clone()));
        }
        let body =
            serde_json::to_vec(&Value::Object(obj)).map_err(|e| EventError::Json(e.to_string()))?;
        prepare(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_an_ordinary_event() {
        let p = Record::new(Action::Deny, Ref::model_version("fraud:v3"))
            .related(Ref::new("run", "r1"))
            .related(Ref::new("run", "r1"))
            .meta("reasons", vec!["no"])
            .prepare(&Principal::server(), "2025-05-05T14:03:00Z")
            .unwrap();
        assert!(!p.client_id);
        assert_eq!(p.event.action, Action::Deny);
        assert_eq!(p.event.actor, Principal::server());
        assert_eq!(p.event.related, vec![Ref::new("run", "r1")]);
        let text = String::from_utf8(p.canonical.clone()).unwrap();
        assert!(
            text.starts_with(
                "{\"action\":\"deny\",\"actor\":{\"id\":\"modeltrail\",\"type\":\"service\"}"
            ),
            "{text}"
        );
    }
}
