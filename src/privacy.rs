//! Privacy by commitment: sensitive values stay out of the Merkle tree.
//!
//! A field named in the configuration (`actor.id` of user actors, or a
//! string under `metadata`) is replaced in the event, before it is
//! canonicalised, by a salted commitment:
//!
//! ```text
//! commitment = SHA-256(salt ‖ UTF-8(value))     salt: 32 random bytes
//! in the leaf: "commit:" ‖ lowercase hex(commitment)
//! ```
//!
//! The value and its salt go to the private store, a directory of files
//! beside the log (never in RocksDB, never in a leaf). Each value belongs
//! to a data subject, `kind:value` (`user:alice`, `email:bob@example.com`),
//! and keeps one salt for as long as it is kept, so the same value always
//! commits to the same string: the registry still sees that two approvals
//! came from one person, without learning who. Anyone holding the value
//! and the salt checks them against the leaf ([`opens`]).
//!
//! Erasing a subject deletes its file (and with it the salt); what is left
//! is a tombstone naming only the commitment, which the log already holds.
//! The leaf, every checkpoint and every proof are unchanged, and without
//! the salt the commitment no longer reveals or confirms the value.
//!
//! What this module does not do: HTTP, logging events, or deciding who may
//! reveal. It is files and hashing.

pub use crate::audit::commitment::{
    commitment, leaf_form, opens, parse_leaf_form, FieldPath, COMMIT_PREFIX,
};
use crate::fsutil::{self, FileError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The longest value committed to (the event limit bounds it anyway).
pub const MAX_VALUE_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// A field this log refuses outright.
    #[error("{0} may not be logged: this log refuses that field")]
    Refused(String),
    /// A sensitive field in a form the server cannot commit to.
    #[error("{field}: {msg}")]
    Unfit { field: String, msg: String },
    #[error("no private value is kept for {0}")]
    UnknownSubject(String),
    #[error("no private value is kept for commitment {0}")]
    UnknownCommitment(String),
    /// The value was erased: the commitment stays, the value is gone.
    #[error("the value of commitment {commitment} was erased ({when}); the log keeps only the commitment")]
    Erased { commitment: String, when: String },
    #[error("private store: {0}")]
    Io(String),
}

impl From<FileError> for PrivacyError {
    fn from(e: FileError) -> Self {
        PrivacyError::Io(e.to_string())
    }
}

fn io(e: std::io::Error) -> PrivacyError {
    PrivacyError::Io(e.to_string())
}

/// A value the private store keeps.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Opening {
    /// `kind:value`.
    pub subject: String,
    pub value: String,
    /// 32 bytes, hex.
    pub salt: String,
    /// The leaf form, `commit:<hex>`.
    pub commitment: String,
    /// Unix seconds.
    pub first_seen: u64,
    /// Unix seconds, updated at most once an hour
    /// ([`LAST_USED_GRANULARITY`]).
    pub last_used: u64,
}

/// What is left of an erased value: the commitment (already public) and
/// when and why it went. `entry` is the index of the logged `erase`
/// event, absent while the erasure is being logged.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Tombstone {
    pub commitment: String,
    pub kind: String,
    pub erased_at: u64,
    pub reason: String,
    #[serde(default)]
    pub entry: Option<u64>,
    /// The subject's file name (a hash), so an interrupted erasure can be
    /// finished.
    pub file: String,
}

/// What a commitment points to.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum Pointer {
    Erased(Tombstone),
    Live { file: String },
}

/// `last_used` is rewritten at most this often, so it may be this much
/// older than the true last use; retention adds it to the window, so a
/// value is never erased before it has really gone unused that long.
pub const LAST_USED_GRANULARITY: u64 = 3_600;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The private store: `subjects/<sha256(subject)>.json` holds an
/// [`Opening`]; `commitments/<hex>.json` points to it, or is the
/// [`Tombstone`] once it is erased. Directories and files are owner-only.
pub struct PrivateStore {
    root: PathBuf,
    /// Creating and erasing take it; reading does not.
    write: Mutex<()>,
}

impl PrivateStore {
    pub fn open(root: &Path) -> Result<PrivateStore, PrivacyError> {
        fsutil::private_dir(root)?;
        fsutil::private_dir(&root.join("subjects"))?;
        fsutil::private_dir(&root.join("commitments"))?;
        Ok(PrivateStore {
            root: root.to_path_buf(),
            write: Mutex::new(()),
        })
    }

    fn subject_file(&self, subject: &str) -> (String, PathBuf) {
        let name = hex::encode(Sha256::digest(subject.as_bytes()));
        let path = self.root.join("subjects").join(format!("{name}.json"));
        (name, path)
    }

    fn pointer_file(&self, commitment: &[u8; 32]) -> PathBuf {
        self.root
            .join("commitments")
            .join(format!("{}.json", hex::encode(commitment)))
    }

    fn read_opening(path: &Path) -> Result<Option<Opening>, PrivacyError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| PrivacyError::Io(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    fn write_json(path: &Path, v: &impl Serialize) -> Result<(), PrivacyError> {
        let s = serde_json::to_string(v).map_err(|e| PrivacyError::Io(e.to_string()))?;
        fsutil::write_secret(path, &s)?;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The commitment of `kind:value`, made (with a new salt, durably)
    /// the first time. Blocking.
    pub fn commit(&self, kind: &str, value: &str) -> Result<String, PrivacyError> {
        let subject = format!("{kind}:{value}");
        let (name, path) = self.subject_file(&subject);
        if let Some(o) = Self::read_opening(&path)? {
            if now().saturating_sub(o.last_used) >= LAST_USED_GRANULARITY {
                let _g = self.lock();
                // Read again under the lock: it may have been erased.
                if let Some(mut o) = Self::read_opening(&path)? {
                    o.last_used = now();
                    Self::write_json(&path, &o)?;
                    return Ok(o.commitment);
                }
            } else {
                return Ok(o.commitment);
            }
        }
        let _g = self.lock();
        if let Some(o) = Self::read_opening(&path)? {
            return Ok(o.commitment);
        }
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| PrivacyError::Io(e.to_string()))?;
        let c = commitment(&salt, value);
        let t = now();
        let opening = Opening {
            subject,
            value: value.to_string(),
            salt: hex::encode(salt),
            commitment: leaf_form(&c),
            first_seen: t,
            last_used: t,
        };
        // The pointer first: a subject file is never without one.
        Self::write_json(&self.pointer_file(&c), &Pointer::Live { file: name })?;
        Self::write_json(&path, &opening)?;
        Ok(opening.commitment)
    }

    /// The commitment of `kind:value` if the store keeps it; never makes
    /// one. Blocking.
    pub fn lookup(&self, kind: &str, value: &str) -> Result<Option<String>, PrivacyError> {
        let (_, path) = self.subject_file(&format!("{kind}:{value}"));
        Ok(Self::read_opening(&path)?.map(|o| o.commitment))
    }

    /// The opening of a leaf commitment `commit:<hex>`. Blocking.
    pub fn reveal(&self, committed: &str) -> Result<Opening, PrivacyError> {
        let c = parse_leaf_form(committed)
            .ok_or_else(|| PrivacyError::UnknownCommitment(committed.to_string()))?;
        let pointer: Pointer = match std::fs::read(self.pointer_file(&c)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| PrivacyError::Io(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(PrivacyError::UnknownCommitment(committed.to_string()))
            }
            Err(e) => return Err(io(e)),
        };
        match pointer {
            Pointer::Erased(t) => Err(PrivacyError::Erased {
                commitment: t.commitment,
                when: match t.entry {
                    Some(i) => format!("{} erasure, logged at entry {i}", t.reason),
                    None => format!("{} erasure", t.reason),
                },
            }),
            Pointer::Live { file } => {
                let path = self.root.join("subjects").join(format!("{file}.json"));
                match Self::read_opening(&path)? {
                    Some(o) if o.commitment == committed => Ok(o),
                    _ => Err(PrivacyError::UnknownCommitment(committed.to_string())),
                }
            }
        }
    }

    /// Erase `kind:value`: the tombstone is written first, then the
    /// subject's file is deleted and the directory synced. Returns the
    /// tombstone, to be logged and then marked with [`Self::logged`].
    /// Blocking.
    pub fn erase(&self, subject: &str, reason: &str) -> Result<Tombstone, PrivacyError> {
        let _g = self.lock();
        let (name, path) = self.subject_file(subject);
        let o = Self::read_opening(&path)?
            .ok_or_else(|| PrivacyError::UnknownSubject(subject.to_string()))?;
        let c = parse_leaf_form(&o.commitment)
            .ok_or_else(|| PrivacyError::Io("a stored commitment is malformed".into()))?;
        let kind = subject.split_once(':').map(|(k, _)| k).unwrap_or("");
        let t = Tombstone {
            commitment: o.commitment.clone(),
            kind: kind.to_string(),
            erased_at: now(),
            reason: reason.to_string(),
            entry: None,
            file: name,
        };
        Self::write_json(&self.pointer_file(&c), &Pointer::Erased(t.clone()))?;
        std::fs::remove_file(&path).map_err(io)?;
        fsutil::sync_dir_of(&path)?;
        Ok(t)
    }

    /// Record the entry that logged an erasure.
    pub fn logged(&self, t: &Tombstone, entry: u64) -> Result<(), PrivacyError> {
        let c = parse_leaf_form(&t.commitment)
            .ok_or_else(|| PrivacyError::Io("a tombstone's commitment is malformed".into()))?;
        let mut t = t.clone();
        t.entry = Some(entry);
        let _g = self.lock();
        Self::write_json(&self.pointer_file(&c), &Pointer::Erased(t))
    }

    /// Erasures not yet logged (a crash between deleting and logging); for
    /// each, the subject's file is deleted again in case it was not.
    pub fn unlogged(&self) -> Result<Vec<Tombstone>, PrivacyError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("commitments")).map_err(io)? {
            let path = e.map_err(io)?.path();
            let Ok(b) = std::fs::read(&path) else {
                continue;
            };
            if let Ok(Pointer::Erased(t)) = serde_json::from_slice::<Pointer>(&b) {
                if t.entry.is_none() {
                    let subject = self.root.join("subjects").join(format!("{}.json", t.file));
                    match std::fs::remove_file(&subject) {
                        Ok(()) => fsutil::sync_dir_of(&subject)?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(e)),
                    }
                    out.push(t);
                }
            }
        }
        Ok(out)
    }

    /// Subjects not used since `cutoff` (unix seconds), for retention.
    pub fn unused_since(&self, cutoff: u64) -> Result<Vec<String>, PrivacyError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.root.join("subjects")).map_err(io)? {
            let path = e.map_err(io)?.path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Some(o) = Self::read_opening(&path)? {
                if o.last_used < cutoff {
                    out.push(o.subject);
                }
            }
        }
        Ok(out)
    }
}

/// The configured rules: fields refused outright, fields committed to
/// (each with the kind of subject its values name), and the store.
pub struct Privacy {
    pub refuse: Vec<FieldPath>,
    pub commit: Vec<(FieldPath, String)>,
    pub store: Option<PrivateStore>,
}

impl Privacy {
    pub fn none() -> Privacy {
        Privacy {
            refuse: Vec::new(),
            commit: Vec::new(),
            store: None,
        }
    }

    /// Does any rule need to look at an event?
    pub fn is_active(&self) -> bool {
        !self.refuse.is_empty() || !self.commit.is_empty()
    }

    /// The kind of subject `actor.id` values name, if user ids are
    /// committed to.
    pub fn actor_kind(&self) -> Option<&str> {
        self.commit
            .iter()
            .find(|(p, _)| *p == FieldPath::ActorId)
            .map(|(_, k)| k.as_str())
    }

    /// The id a user principal has in the log: its commitment when user
    /// ids are committed to (made on first use), else the id itself. The
    /// bootstrap `admin` account is an account, not a person, and stays.
    pub fn user_id(&self, id: &str) -> Result<String, PrivacyError> {
        match (self.actor_kind(), &self.store) {
            (Some(kind), Some(store))
                if id != crate::audit::vocab::ADMIN_PRINCIPAL && parse_leaf_form(id).is_none() =>
            {
                store.commit(kind, id)
            }
            _ => Ok(id.to_string()),
        }
    }

    /// Apply the rules to a submitted event (a parsed JSON object), before
    /// it is validated and canonicalised. A value already in commitment
    /// form is left as it is (a resubmission of a stored event). Blocking.
    pub fn apply(&self, event: &mut Value) -> Result<(), PrivacyError> {
        for path in &self.refuse {
            if path.get(event).is_some() {
                return Err(PrivacyError::Refused(path.to_string()));
            }
        }
        let Some(obj) = event.as_object_mut() else {
            return Ok(());
        };
        let signed = obj
            .get("integrity")
            .and_then(Value::as_object)
            .is_some_and(|i| i.contains_key("signature") || i.contains_key("event_sha256"));
        for (path, kind) in &self.commit {
            let Some(slot) = path.get_mut(obj) else {
                continue;
            };
            let unfit = |msg: &str| PrivacyError::Unfit {
                field: path.to_string(),
                msg: msg.to_string(),
            };
            let Some(value) = slot.as_str() else {
                return Err(unfit("a field the log commits to must be a string"));
            };
            if parse_leaf_form(value).is_some() {
                continue;
            }
            if *path == FieldPath::ActorId && value == crate::audit::vocab::ADMIN_PRINCIPAL {
                continue;
            }
            if signed {
                return Err(unfit(
                    "an event with a signature or event_sha256 cannot carry a value the log \
                     replaces by a commitment (the digest would no longer match the leaf)",
                ));
            }
            if value.is_empty() || value.len() > MAX_VALUE_BYTES {
                return Err(unfit("must be 1 to 4096 bytes"));
            }
            let store = self
                .store
                .as_ref()
                .ok_or_else(|| PrivacyError::Io("no private store".into()))?;
            *slot = Value::String(store.commit(kind, value)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn privacy(dir: &Path) -> Privacy {
        Privacy {
            refuse: vec![FieldPath::parse("metadata.ssn").unwrap()],
            commit: vec![
                (FieldPath::ActorId, "user".into()),
                (
                    FieldPath::parse("metadata.customer.email").unwrap(),
                    "email".into(),
                ),
            ],
            store: Some(PrivateStore::open(dir).unwrap()),
        }
    }

    fn event(actor: &str, email: &str) -> Value {
        json!({"action": "register", "actor": {"type": "user", "id": actor},
               "subject": {"type": "model_version", "id": "m:1"},
               "metadata": {"customer": {"email": email}, "n": 1}})
    }

    #[test]
    fn values_are_replaced_by_commitments_that_open_with_their_salt() {
        let d = tempfile::tempdir().unwrap();
        let p = privacy(d.path());
        let mut a = event("alice", "bob@example.com");
        p.apply(&mut a).unwrap();
        let text = a.to_string();
        assert!(!text.contains("alice") && !text.contains("bob@"), "{text}");
        let cid = a["actor"]["id"].as_str().unwrap().to_string();
        let cmail = a["metadata"]["customer"]["email"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(parse_leaf_form(&cid).is_some() && parse_leaf_form(&cmail).is_some());
        // The same value, the same commitment; another value, another.
        let mut b = event("alice", "carol@example.com");
        p.apply(&mut b).unwrap();
        assert_eq!(b["actor"]["id"], cid.as_str());
        assert_ne!(b["metadata"]["customer"]["email"], cmail.as_str());
        // Applying again changes nothing (a resubmission).
        let before = a.clone();
        p.apply(&mut a).unwrap();
        assert_eq!(a, before);
        // The opening checks; a wrong value or salt does not.
        let store = p.store.as_ref().unwrap();
        let o = store.reveal(&cmail).unwrap();
        assert_eq!(
            (o.value.as_str(), o.subject.as_str()),
            ("bob@example.com", "email:bob@example.com")
        );
        assert!(opens(&cmail, &o.value, &o.salt));
        assert!(!opens(&cmail, "bob@example.org", &o.salt));
        assert!(!opens(&cmail, &o.value, &"00".repeat(32)));
        assert!(!opens("commit:zz", &o.value, &o.salt));
        assert_eq!(
            store.lookup("user", "alice").unwrap().as_deref(),
            Some(cid.as_str())
        );
        assert_eq!(store.lookup("user", "nobody").unwrap(), None);
        // Owner-only files.
        use std::os::unix::fs::PermissionsExt;
        for sub in ["subjects", "commitments"] {
            for e in std::fs::read_dir(d.path().join(sub)).unwrap() {
                let m = e.unwrap().metadata().unwrap().permissions().mode();
                assert_eq!(m & 0o077, 0, "{sub}");
            }
        }
    }

    #[test]
    fn refused_unfit_and_signed_fields() {
        let d = tempfile::tempdir().unwrap();
        let p = privacy(d.path());
        let mut e = event("alice", "x@y");
        e["metadata"]["ssn"] = json!("1");
        assert!(matches!(p.apply(&mut e), Err(PrivacyError::Refused(_))));
        let mut e = event("alice", "x@y");
        e["metadata"]["customer"]["email"] = json!(42);
        assert!(matches!(p.apply(&mut e), Err(PrivacyError::Unfit { .. })));
        let mut e = event("alice", "x@y");
        e["integrity"] = json!({"signature": "abc"});
        assert!(matches!(p.apply(&mut e), Err(PrivacyError::Unfit { .. })));
        // Service actors and the admin account are not people.
        let mut e = json!({"actor": {"type": "service", "id": "ci"}});
        p.apply(&mut e).unwrap();
        assert_eq!(e["actor"]["id"], "ci");
        let mut e = json!({"actor": {"type": "user", "id": "admin"}});
        p.apply(&mut e).unwrap();
        assert_eq!(e["actor"]["id"], "admin");
        // Nothing was stored for the refused events but what they committed
        // to before the refusal ("alice" from the first event).
        assert!(p
            .store
            .as_ref()
            .unwrap()
            .lookup("email", "x@y")
            .unwrap()
            .is_none());
    }

    #[test]
    fn erasure_leaves_a_tombstone_and_a_new_salt_afterwards() {
        let d = tempfile::tempdir().unwrap();
        let p = privacy(d.path());
        let store = p.store.as_ref().unwrap();
        let c = store.commit("user", "alice").unwrap();
        let t = store.erase("user:alice", "request").unwrap();
        assert_eq!(t.commitment, c);
        assert!(matches!(store.reveal(&c), Err(PrivacyError::Erased { .. })));
        assert!(matches!(
            store.erase("user:alice", "request"),
            Err(PrivacyError::UnknownSubject(_))
        ));
        // Not logged yet: found again after a crash, then marked.
        assert_eq!(store.unlogged().unwrap(), vec![t.clone()]);
        store.logged(&t, 7).unwrap();
        assert!(store.unlogged().unwrap().is_empty());
        match store.reveal(&c) {
            Err(PrivacyError::Erased { when, .. }) => assert!(when.contains("entry 7"), "{when}"),
            other => panic!("{other:?}"),
        }
        // No file holds the value any more.
        for sub in ["subjects", "commitments"] {
            for e in std::fs::read_dir(d.path().join(sub)).unwrap() {
                let b = std::fs::read(e.unwrap().path()).unwrap();
                assert!(!String::from_utf8_lossy(&b).contains("alice"));
            }
        }
        // The same value later: a new salt, a new commitment.
        let c2 = store.commit("user", "alice").unwrap();
        assert_ne!(c2, c);
        assert!(matches!(
            store.reveal("commit:00"),
            Err(PrivacyError::UnknownCommitment(_))
        ));
    }

    #[test]
    fn retention_finds_what_was_not_used_since() {
        let d = tempfile::tempdir().unwrap();
        let p = privacy(d.path());
        let store = p.store.as_ref().unwrap();
        store.commit("user", "alice").unwrap();
        assert!(store.unused_since(now() - 10).unwrap().is_empty());
        assert_eq!(
            store.unused_since(now() + 10).unwrap(),
            vec!["user:alice".to_string()]
        );
    }
}
