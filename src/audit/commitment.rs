//! Commitments to private values (the pure part; the private store is
//! `crate::privacy`): the construction, its leaf form, the check anyone
//! can make with a revealed value, and the paths of an event that hold
//! sensitive values.
//!
//! ```text
//! commitment = SHA-256(salt ‖ UTF-8(value))     salt: 32 random bytes
//! in the leaf: "commit:" ‖ lowercase hex(commitment)
//! ```

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The prefix of a committed value in a leaf.
pub const COMMIT_PREFIX: &str = "commit:";
/// `SHA-256(salt ‖ UTF-8(value))`.
pub fn commitment(salt: &[u8; 32], value: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(value.as_bytes());
    h.finalize().into()
}

/// The leaf form of a commitment: `commit:<hex>`.
pub fn leaf_form(c: &[u8; 32]) -> String {
    format!("{COMMIT_PREFIX}{}", hex::encode(c))
}

/// The commitment a leaf string holds, if it is one.
pub fn parse_leaf_form(s: &str) -> Option<[u8; 32]> {
    let h = s.strip_prefix(COMMIT_PREFIX)?;
    if h.len() != 64 || !h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(h, &mut out).ok()?;
    Some(out)
}

/// Does `value` with `salt_hex` open the leaf string `committed`? The check
/// anyone can make with a revealed value, no server needed.
pub fn opens(committed: &str, value: &str, salt_hex: &str) -> bool {
    let (Some(c), Ok(salt)) = (parse_leaf_form(committed), hex::decode(salt_hex)) else {
        return false;
    };
    let Ok(salt) = <[u8; 32]>::try_from(salt.as_slice()) else {
        return false;
    };
    // Both sides are public once revealed; no secret is compared here.
    commitment(&salt, value) == c
}

/// A path in an event that holds a sensitive value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldPath {
    /// `actor.id`, for actors of type `user`.
    ActorId,
    /// `metadata.a.b`: the parts after `metadata`.
    Metadata(Vec<String>),
}

impl FieldPath {
    pub fn parse(s: &str) -> Option<FieldPath> {
        if s == "actor.id" {
            return Some(FieldPath::ActorId);
        }
        let rest = s.strip_prefix("metadata.")?;
        let parts: Vec<String> = rest.split('.').map(str::to_string).collect();
        parts
            .iter()
            .all(|p| !p.is_empty())
            .then_some(FieldPath::Metadata(parts))
    }

    /// The string at this path of an event, if there is one.
    pub fn get<'a>(&self, event: &'a Value) -> Option<&'a Value> {
        match self {
            FieldPath::ActorId => event.get("actor")?.get("id"),
            FieldPath::Metadata(parts) => {
                let mut cur = event.get("metadata")?;
                for p in parts {
                    cur = cur.get(p)?;
                }
                Some(cur)
            }
        }
    }

    pub fn get_mut<'a>(&self, event: &'a mut Map<String, Value>) -> Option<&'a mut Value> {
        match self {
            FieldPath::ActorId => {
                let actor = event.get_mut("actor")?.as_object_mut()?;
                if actor.get("type").and_then(Value::as_str) != Some("user") {
                    return None;
                }
                actor.get_mut("id")
            }
            FieldPath::Metadata(parts) => {
                let mut cur = event.get_mut("metadata")?;
                for p in parts {
                    cur = cur.as_object_mut()?.get_mut(p)?;
                }
                Some(cur)
            }
        }
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldPath::ActorId => f.write_str("actor.id"),
            FieldPath::Metadata(p) => write!(f, "metadata.{}", p.join(".")),
        }
    }
}
