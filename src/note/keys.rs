//! Key names, Ed25519 signer keys and verifier keys (signed-note §Verifier keys).

use super::{NoteError, Signature, B64};
use base64::Engine;
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// Signature type byte for Ed25519 (signed-note §Signature types).
pub const ED25519: u8 = 0x01;

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

/// An Ed25519 note signer. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct SignerKey {
    name: KeyName,
    id: u32,
    key: SigningKey,
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

    pub fn from_seed(name: KeyName, seed: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&seed);
        let id = key_id(&name, ED25519, key.verifying_key().as_bytes());
        SignerKey { name, id, key }
    }

    /// Parse `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let s = s.trim_end_matches('\n');
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("signer key must start with PRIVATE+KEY+"))?;
        let (name, id, raw) = split_key(rest)?;
        if raw.len() != 33 || raw[0] != ED25519 {
            return Err(NoteError::BadKey("signer key is not an Ed25519 seed"));
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&raw[1..]);
        let key = Self::from_seed(name, seed);
        if key.id != id {
            return Err(NoteError::BadKey("signer key id does not match the key"));
        }
        Ok(key)
    }

    /// The secret key string. Store it owner-only; never log it.
    pub fn encode_secret(&self) -> String {
        let mut raw = vec![ED25519];
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
        }
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub(super) fn sign_note_text(&self, text: &[u8]) -> Signature {
        Signature {
            name: self.name.0.clone(),
            key_id: self.id,
            sig: self.key.sign(text).to_bytes().to_vec(),
        }
    }
}

/// An Ed25519 verifier key: `<name>+<hex id>+<base64(0x01 ‖ public key)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    name: KeyName,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, raw) = split_key(s.trim_end_matches('\n'))?;
        if raw.len() != 33 || raw[0] != ED25519 {
            return Err(NoteError::BadKey("verifier key is not an Ed25519 key"));
        }
        let key = VerifyingKey::try_from(&raw[1..])
            .map_err(|_| NoteError::BadKey("invalid Ed25519 public key"))?;
        if key_id(&name, ED25519, key.as_bytes()) != id {
            return Err(NoteError::BadKey("verifier key id does not match the key"));
        }
        Ok(VerifierKey { name, id, key })
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.id
    }

    pub(super) fn verify_note_text(&self, text: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
            return false;
        };
        self.key.verify(text, &sig).is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = vec![ED25519];
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
