//! Key names, signer keys and verifier keys (signed-note §Verifier keys) of
//! two kinds: Ed25519 note signatures (type 0x01), which logs use, and
//! timestamped Ed25519 cosignatures (type 0x04, c2sp.org/tlog-cosignature
//! v1.0.1), which witnesses use.

use super::{NoteError, Signature, B64};
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// Signature type byte for Ed25519 (signed-note §Signature types).
pub const ED25519: u8 = 0x01;
/// Signature type byte for timestamped Ed25519 witness cosignatures.
pub const COSIGNATURE_V1: u8 = 0x04;

/// What a key signs: notes directly, or cosignatures over checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Ed25519,
    CosignatureV1,
}

impl KeyKind {
    fn type_byte(self) -> u8 {
        match self {
            KeyKind::Ed25519 => ED25519,
            KeyKind::CosignatureV1 => COSIGNATURE_V1,
        }
    }
    fn from_type_byte(b: u8) -> Option<Self> {
        match b {
            ED25519 => Some(KeyKind::Ed25519),
            COSIGNATURE_V1 => Some(KeyKind::CosignatureV1),
            _ => None,
        }
    }
}

/// The message a v1 cosignature signs: a header, the time, the checkpoint text.
pub fn cosignature_message(checkpoint_text: &[u8], timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(checkpoint_text);
    m
}

const MAX_NAME: usize = 256;

/// A note key name: non-empty, no Unicode whitespace, no `+`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyName(String);

impl KeyName {
    pub fn new(name: &str) -> Result<Self, NoteError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(NoteError::BadKey("key name must be 1..=256 bytes"));
        }
        if name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
        {
            return Err(NoteError::BadKey(
                "key name has a space, control character or '+'",
            ));
        }
        Ok(KeyName(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// key ID = SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4], big-endian.
pub fn key_id(name: &KeyName, sig_type: u8, public: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_str().as_bytes());
    h.update([b'\n', sig_type]);
    h.update(public);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// An Ed25519 note signer or cosigner. Its `Debug` output never shows the
/// secret.
#[derive(Clone)]
pub struct SignerKey {
    name: KeyName,
    id: u32,
    key: SigningKey,
    kind: KeyKind,
}

impl fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SignerKey({}+{:08x}, secret redacted)",
            self.name, self.id
        )
    }
}

impl SignerKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate(name: KeyName) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| NoteError::BadKey("no randomness available"))?;
        Ok(Self::from_seed(name, seed))
    }

    /// A new random witness cosigner key.
    pub fn generate_cosigner(name: KeyName) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| NoteError::BadKey("no randomness available"))?;
        Ok(Self::with_kind(name, seed, KeyKind::CosignatureV1))
    }

    pub fn from_seed(name: KeyName, seed: [u8; 32]) -> Self {
        Self::with_kind(name, seed, KeyKind::Ed25519)
    }

    pub fn with_kind(name: KeyName, seed: [u8; 32], kind: KeyKind) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&name, kind.type_byte(), key.verifying_key().as_bytes());
        SignerKey {
            name,
            id,
            key,
            kind,
        }
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// Parse `PRIVATE+KEY+<name>+<hex id>+<base64(type ‖ seed)>`, type 0x01
    /// (note signer) or 0x04 (cosigner).
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim_end_matches('\n');
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("signer key must start with PRIVATE+KEY+"))?;
        let (name, id, raw) = split_key(rest)?;
        let kind = match raw.first().copied().and_then(KeyKind::from_type_byte) {
            Some(k) if raw.len() == 33 => k,
            _ => return Err(NoteError::BadKey("signer key is not an Ed25519 seed")),
        };
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let key = Self::with_kind(name, seed, kind);
        if key.id != id {
            return Err(NoteError::BadKey("signer key id does not match the key"));
        }
        Ok(key)
    }

    /// The secret key string. Store it owner-only; never log it.
    pub fn encode_secret(&self) -> String {
        let mut raw = vec![self.kind.type_byte()];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            B64.encode(raw)
        )
    }

    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
            kind: self.kind,
        }
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub(super) fn sign_note_text(&self, text: &[u8]) -> Result<Signature, NoteError> {
        if self.kind != KeyKind::Ed25519 {
            return Err(NoteError::BadKey("a cosigner key only makes cosignatures"));
        }
        Ok(Signature {
            name: self.name.0.clone(),
            key_id: self.id,
            sig: self.key.sign(text).to_bytes().to_vec(),
        })
    }

    /// A tlog-cosignature/v1 over a checkpoint's note text at `timestamp`
    /// (POSIX seconds, at most 2^63 − 1).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> Result<Signature, NoteError> {
        if self.kind != KeyKind::CosignatureV1 {
            return Err(NoteError::BadKey("only a cosigner key makes cosignatures"));
        }
        if timestamp > i64::MAX as u64 {
            return Err(NoteError::BadKey("cosignature timestamp out of range"));
        }
        let msg = cosignature_message(checkpoint_text.as_bytes(), timestamp);
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(&self.key.sign(&msg).to_bytes());
        Ok(Signature {
            name: self.name.0.clone(),
            key_id: self.id,
            sig,
        })
    }
}

/// A verifier key: `<name>+<hex id>+<base64(type ‖ public key)>`, type 0x01
/// (note signatures) or 0x04 (cosignatures).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: KeyName,
    id: u32,
    key: VerifyingKey,
    kind: KeyKind,
}

impl VerifierKey {
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, raw) = split_key(s.trim_end_matches('\n'))?;
        let kind = match raw.first().copied().and_then(KeyKind::from_type_byte) {
            Some(k) if raw.len() == 33 => k,
            _ => {
                return Err(NoteError::BadKey(
                    "verifier key is not an Ed25519 key (type 0x01 or 0x04)",
                ))
            }
        };
        let key = VerifyingKey::try_from(&raw[1..])
            .map_err(|_| NoteError::BadKey("invalid Ed25519 public key"))?;
        if key_id(&name, kind.type_byte(), key.as_bytes()) != id {
            return Err(NoteError::BadKey("verifier key id does not match the key"));
        }
        Ok(VerifierKey {
            name,
            id,
            key,
            kind,
        })
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    pub(super) fn verify_note_text(&self, text: &[u8], sig: &[u8]) -> bool {
        match self.kind {
            KeyKind::Ed25519 => ed25519_dalek::Signature::from_slice(sig)
                .is_ok_and(|s| self.key.verify_strict(text, &s).is_ok()),
            KeyKind::CosignatureV1 => {
                let Some((ts, sig)) = cosignature_parts(sig) else {
                    return false;
                };
                let msg = cosignature_message(text, ts);
                ed25519_dalek::Signature::from_slice(sig)
                    .is_ok_and(|s| self.key.verify_strict(&msg, &s).is_ok())
            }
        }
    }
}

/// Split a 72-byte timestamped signature; `None` if malformed or the time
/// is beyond 2^63 − 1.
pub fn cosignature_parts(sig: &[u8]) -> Option<(u64, &[u8])> {
    if sig.len() != 72 {
        return None;
    }
    let ts = u64::from_be_bytes(sig[..8].try_into().ok()?);
    (ts <= i64::MAX as u64).then_some((ts, &sig[8..]))
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![self.kind.type_byte()];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(raw))
    }
}

/// Split `<name>+<8 hex>+<base64>` into its checked parts.
fn split_key(s: &str) -> Result<(KeyName, u32, Vec<u8>), NoteError> {
    // The base64 part may itself contain '+', so split at most twice.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(hex_id), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::BadKey("key must be <name>+<hex id>+<base64>"));
    };
    let name = KeyName::new(name)?;
    if hex_id.len() != 8
        || !hex_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(NoteError::BadKey("key id must be 8 lowercase hex digits"));
    }
    let id = u32::from_str_radix(hex_id, 16).map_err(|_| NoteError::BadKey("bad key id"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| NoteError::BadKey("key is not canonical base64"))?;
    Ok((name, id, raw))
}
