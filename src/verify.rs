//! Verification for auditors, monitors and other programs: open a signed
//! checkpoint under a trust policy (the log's key, and k of n witness keys),
//! verify an offline receipt against the event it is for, verify inclusion
//! and consistency proofs.
//!
//! No server, storage engine or network in here: callers fetch bytes however
//! they like and hand them over. Every failure says whether the input was
//! malformed (it could not be read) or failed verification (it was read and
//! is wrong), which the CLI turns into exit codes 2 and 1.

use crate::audit::event;
use crate::note::{Checkpoint, KeyKind, Note, NoteError, TlogProof, VerifierKey};
use crate::tree::{self, Hash};
use std::fmt;

/// Why verification did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The input could not be parsed: truncated, garbled, non-canonical.
    Malformed(String),
    /// The input parsed but does not verify: wrong signature, key, root,
    /// proof or origin; too few witnesses.
    Invalid(String),
}

impl Failure {
    /// The exit code for command-line tools: 2 malformed, 1 invalid.
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Malformed(_) => 2,
            Failure::Invalid(_) => 1,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Malformed(m) => write!(f, "malformed: {m}"),
            Failure::Invalid(m) => write!(f, "verification failed: {m}"),
        }
    }
}

impl std::error::Error for Failure {}

impl From<NoteError> for Failure {
    fn from(e: NoteError) -> Self {
        match e {
            NoteError::Malformed(_)
            | NoteError::BadKey(_)
            | NoteError::BadCheckpoint(_)
            | NoteError::BadProof(_) => Failure::Malformed(e.to_string()),
            NoteError::BadSignature(_)
            | NoteError::NoKnownSignature
            | NoteError::WrongOrigin { .. } => Failure::Invalid(e.to_string()),
        }
    }
}

impl From<tree::VerifyError> for Failure {
    fn from(e: tree::VerifyError) -> Self {
        Failure::Invalid(e.to_string())
    }
}

/// Whom to trust: the log's key (whose name is the origin) and, optionally,
/// witnesses of which at least `min_witnesses` distinct ones (by name) must
/// have cosigned, each within `max_cosignature_age` seconds if set.
#[derive(Clone, Debug)]
pub struct Policy {
    pub log_key: VerifierKey,
    pub witnesses: Vec<VerifierKey>,
    pub min_witnesses: usize,
    /// Cosignatures older than this many seconds (or more than
    /// [`MAX_CLOCK_SKEW`] in the future) do not count.
    pub max_cosignature_age: Option<u64>,
}

/// How far in the future a cosignature's time may be and still count.
pub const MAX_CLOCK_SKEW: u64 = 300;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A checkpoint that passed the policy.
#[derive(Clone, Debug)]
pub struct Verified {
    pub checkpoint: Checkpoint,
    /// The signed note as received.
    pub signed: String,
    /// Names of the witnesses whose cosignatures verified.
    pub witnesses: Vec<String>,
}

impl Policy {
    /// Trust only the log's key.
    pub fn log_only(log_key: VerifierKey) -> Self {
        Policy {
            log_key,
            witnesses: Vec::new(),
            min_witnesses: 0,
            max_cosignature_age: None,
        }
    }

    /// Trust the log's key and `min` of these witnesses.
    pub fn with_witnesses(log_key: VerifierKey, witnesses: Vec<VerifierKey>, min: usize) -> Self {
        Policy {
            log_key,
            witnesses,
            min_witnesses: min,
            max_cosignature_age: None,
        }
    }

    /// The distinct witnesses (by name) the policy knows.
    fn witness_names(&self) -> std::collections::BTreeSet<&str> {
        self.witnesses.iter().map(|w| w.name().as_str()).collect()
    }

    pub fn origin(&self) -> &str {
        self.log_key.name().as_str()
    }

    /// Check that the policy itself makes sense.
    pub fn check(&self) -> Result<(), Failure> {
        if self.log_key.kind() != KeyKind::Ed25519 {
            return Err(Failure::Malformed(
                "the log key must be an Ed25519 (type 0x01) key".into(),
            ));
        }
        if self
            .witnesses
            .iter()
            .any(|w| w.kind() != KeyKind::CosignatureV1)
        {
            return Err(Failure::Malformed(
                "witness keys must be cosigner (type 0x04) keys".into(),
            ));
        }
        // A witness listed twice (or with two keys) is still one witness.
        let distinct = self.witness_names().len();
        if self.min_witnesses > distinct {
            return Err(Failure::Malformed(format!(
                "--min-witnesses {} is more than the {distinct} distinct witnesses given",
                self.min_witnesses,
            )));
        }
        Ok(())
    }

    /// Parse and verify a signed checkpoint: the log's signature, the origin,
    /// and enough witness cosignatures. Signatures by unknown keys are
    /// ignored; a known key whose signature fails rejects the note.
    pub fn open_checkpoint(&self, signed: &[u8]) -> Result<Verified, Failure> {
        self.open_checkpoint_at(signed, unix_now())
    }

    /// The same, with the current time given (Unix seconds).
    pub fn open_checkpoint_at(&self, signed: &[u8], now: u64) -> Result<Verified, Failure> {
        self.check()?;
        let note = Note::parse(signed)?;
        // Strict syntax first, so that a garbled checkpoint reads as
        // malformed rather than as a bad signature.
        let checkpoint = Checkpoint::parse_text(note.text())?;
        let mut keys = vec![self.log_key.clone()];
        keys.extend(self.witnesses.iter().cloned());
        let ok = note.verify(&keys)?;
        if !ok.iter().any(|k| **k == self.log_key) {
            return Err(Failure::Invalid(format!(
                "not signed by the log key {}",
                self.log_key.name()
            )));
        }
        if checkpoint.origin != self.origin() {
            return Err(NoteError::WrongOrigin {
                got: checkpoint.origin,
                want: self.origin().to_string(),
            }
            .into());
        }
        // Each witness counts once, whatever keys or signature lines it
        // has, and only with a cosignature fresh enough for the policy.
        let fresh = |k: &VerifierKey| match self.max_cosignature_age {
            None => true,
            Some(max) => note
                .signatures()
                .iter()
                .filter(|s| s.name == k.name().as_str() && s.key_id == k.key_id())
                .filter_map(|s| crate::note::cosignature_parts(&s.sig).map(|(t, _)| t))
                .any(|t| t <= now.saturating_add(MAX_CLOCK_SKEW) && now.saturating_sub(t) <= max),
        };
        let witnesses: Vec<String> = ok
            .iter()
            .filter(|k| k.kind() == KeyKind::CosignatureV1)
            .filter(|k| fresh(k))
            .map(|k| k.name().to_string())
            .collect::<std::collections::BTreeSet<String>>()
            .into_iter()
            .collect();
        if witnesses.len() < self.min_witnesses {
            return Err(Failure::Invalid(format!(
                "{} of the required {} witness cosignatures",
                witnesses.len(),
                self.min_witnesses
            )));
        }
        Ok(Verified {
            checkpoint,
            signed: String::from_utf8_lossy(signed).into_owned(),
            witnesses,
        })
    }
}

/// The leaf an event JSON document stands for: its RFC 8785 canonical bytes
/// and their leaf hash. Whitespace and key order in the file do not matter.
pub fn event_leaf(event_json: &[u8]) -> Result<(Vec<u8>, Hash), Failure> {
    let value =
        event::parse_strict(event_json).map_err(|e| Failure::Malformed(format!("event: {e}")))?;
    if !value.is_object() {
        return Err(Failure::Malformed("event: not a JSON object".into()));
    }
    let canonical = event::canonicalize(&value);
    let leaf = tree::leaf_hash(&canonical);
    Ok((canonical, leaf))
}

/// What a verified receipt proves.
#[derive(Clone, Debug)]
pub struct ReceiptCheck {
    pub index: u64,
    pub leaf_hash: Hash,
    pub checkpoint: Verified,
}

/// Verify an offline receipt (c2sp tlog-proof text) for an event, with no
/// network: the checkpoint under the policy, the event's leaf hash, and the
/// inclusion proof binding the two.
pub fn receipt(
    policy: &Policy,
    event_json: &[u8],
    tlog_proof: &[u8],
) -> Result<ReceiptCheck, Failure> {
    let text = std::str::from_utf8(tlog_proof)
        .map_err(|_| Failure::Malformed("receipt is not UTF-8".into()))?;
    let proof = TlogProof::parse(text)?;
    let checkpoint = policy.open_checkpoint(proof.checkpoint.as_bytes())?;
    let (_, leaf) = event_leaf(event_json)?;
    let cp = &checkpoint.checkpoint;
    tree::verify_inclusion(proof.index, cp.size, &leaf, &proof.proof, &cp.root)?;
    Ok(ReceiptCheck {
        index: proof.index,
        leaf_hash: leaf,
        checkpoint,
    })
}

/// A revealed private value, as `modeltrail reveal` writes it.
pub struct RevealParts<'a> {
    pub event_json: &'a [u8],
    pub tlog_proof: &'a [u8],
    pub field: &'a str,
    pub commitment: &'a str,
    pub value: &'a str,
    pub salt_hex: &'a str,
}

/// Verify a revealed value with no network: the entry's receipt under the
/// policy (as [`receipt`]), the event holds `commitment` at `field`, and
/// SHA-256(salt ‖ value) is that commitment.
pub fn reveal(policy: &Policy, r: &RevealParts<'_>) -> Result<ReceiptCheck, Failure> {
    use crate::audit::commitment::{opens, parse_leaf_form, FieldPath};
    let check = receipt(policy, r.event_json, r.tlog_proof)?;
    let path = FieldPath::parse(r.field)
        .ok_or_else(|| Failure::Malformed(format!("{:?} is not a field path", r.field)))?;
    let event: serde_json::Value = serde_json::from_slice(r.event_json)
        .map_err(|e| Failure::Malformed(format!("event: {e}")))?;
    let held = path
        .get(&event)
        .and_then(|v| v.as_str())
        .ok_or_else(|| Failure::Invalid(format!("the event has no string at {}", r.field)))?;
    if parse_leaf_form(held).is_none() {
        return Err(Failure::Invalid(format!(
            "the event holds no commitment at {}",
            r.field
        )));
    }
    if held != r.commitment {
        return Err(Failure::Invalid(format!(
            "the event commits to {held} at {}, not {}",
            r.field, r.commitment
        )));
    }
    if !opens(held, r.value, r.salt_hex) {
        return Err(Failure::Invalid(
            "the value and salt do not open the commitment".into(),
        ));
    }
    Ok(check)
}

/// Verify an inclusion proof against a verified checkpoint.
pub fn inclusion(cp: &Checkpoint, index: u64, leaf: &Hash, proof: &[Hash]) -> Result<(), Failure> {
    Ok(tree::verify_inclusion(
        index, cp.size, leaf, proof, &cp.root,
    )?)
}

/// Verify that `new` extends `old`. Equal sizes need equal roots; a smaller
/// new tree is a failure (the log went backwards).
pub fn consistency(old: &Checkpoint, new: &Checkpoint, proof: &[Hash]) -> Result<(), Failure> {
    if new.size < old.size {
        return Err(Failure::Invalid(format!(
            "the tree shrank from {} to {} entries",
            old.size, new.size
        )));
    }
    if old.size == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(Failure::Invalid(
                "a proof from the empty tree must be empty".into(),
            ))
        };
    }
    if old.size == new.size && old.root != new.root {
        return Err(Failure::Invalid(format!(
            "two different roots for tree size {}: the log forked",
            old.size
        )));
    }
    Ok(tree::verify_consistency(
        old.size, new.size, proof, &old.root, &new.root,
    )?)
}

/// Parse a list of lowercase hex hashes (as the JSON API returns them).
pub fn parse_hex_hashes(list: &[String]) -> Result<Vec<Hash>, Failure> {
    list.iter()
        .map(|h| {
            let ok = h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
            ok.then(|| hex::decode(h).ok())
                .flatten()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| {
                    Failure::Malformed(format!("{h:?} is not a 64-digit lowercase hex hash"))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
