//! c2sp.org/signed-note v1.0.0 with Ed25519 keys, c2sp.org/tlog-checkpoint
//! v1.0.0 and c2sp.org/tlog-proof v1 (see `specs/` in the design docs).
//!
//! Pure: no I/O. Parsing is strict and fails closed: non-canonical numbers or
//! base64, control characters, oversized notes and malformed key strings are
//! errors. Only Ed25519 (signature type 0x01) keys are supported; signatures
//! from other keys are carried along and ignored, as the spec requires.

mod checkpoint;
mod keys;
mod proof;

pub use checkpoint::Checkpoint;
pub use keys::{cosignature_message, cosignature_parts, KeyKind, KeyName, SignerKey, VerifierKey};
pub use proof::TlogProof;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Largest note accepted (bytes). Comfortably above 16 signatures.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;
/// Most signature lines accepted on one note.
pub const MAX_SIGNATURES: usize = 64;

/// Why a note, key, checkpoint or proof was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("malformed key: {0}")]
    BadKey(&'static str),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
    #[error("malformed tlog-proof: {0}")]
    BadProof(&'static str),
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    #[error("no signature by a known key")]
    NoKnownSignature,
    #[error("checkpoint origin {got:?} is not the expected {want:?}")]
    WrongOrigin { got: String, want: String },
}

/// One signature line: `— <name> base64(key id ‖ signature)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub key_id: u32,
    pub sig: Vec<u8>,
}

impl Signature {
    /// The signature line, `— <name> <base64>` and a newline.
    pub fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.sig);
        format!("\u{2014} {} {}\n", self.name, B64.encode(raw))
    }
}

/// A parsed signed note. The text is not to be trusted until [`Note::verify`]
/// has succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    sigs: Vec<Signature>,
}

impl Note {
    /// Sign `text` (which must end in a newline) with `key`.
    pub fn sign(text: &str, key: &SignerKey) -> Result<Note, NoteError> {
        check_text(text)?;
        Ok(Note {
            text: text.to_string(),
            sigs: vec![key.sign_note_text(text.as_bytes())?],
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(NoteError::Malformed("note too large"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::Malformed("not UTF-8"))?;
        if s.chars().any(|c| c < ' ' && c != '\n') {
            return Err(NoteError::Malformed("control character"));
        }
        let split = s
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let text = &s[..split + 1];
        let sig_block = &s[split + 2..];
        check_text(text)?;
        if sig_block.is_empty() || !sig_block.ends_with('\n') {
            return Err(NoteError::Malformed("signatures must end with a newline"));
        }
        let mut sigs = Vec::new();
        for line in sig_block[..sig_block.len() - 1].split('\n') {
            if sigs.len() == MAX_SIGNATURES {
                return Err(NoteError::Malformed("too many signatures"));
            }
            sigs.push(parse_sig_line(line)?);
        }
        Ok(Note {
            text: text.to_string(),
            sigs,
        })
    }

    /// The signed text, including its final newline. Untrusted until verified.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[Signature] {
        &self.sigs
    }

    pub fn add_signature(&mut self, sig: Signature) {
        self.sigs.push(sig);
    }

    /// Verify against `keys`: every signature whose name and id match a known
    /// key must verify; unknown signatures are ignored; at least one must be
    /// by a known key. Returns the keys that verified, in `keys` order.
    pub fn verify<'k>(&self, keys: &'k [VerifierKey]) -> Result<Vec<&'k VerifierKey>, NoteError> {
        let mut ok: Vec<&VerifierKey> = Vec::new();
        for sig in &self.sigs {
            for key in keys {
                if key.name().as_str() == sig.name && key.key_id() == sig.key_id {
                    if !key.verify_note_text(self.text.as_bytes(), &sig.sig) {
                        return Err(NoteError::BadSignature(sig.name.clone()));
                    }
                    if !ok.iter().any(|k| std::ptr::eq(*k, key)) {
                        ok.push(key);
                    }
                }
            }
        }
        if ok.is_empty() {
            return Err(NoteError::NoKnownSignature);
        }
        ok.sort_by_key(|k| keys.iter().position(|x| std::ptr::eq(x, *k)));
        Ok(ok)
    }

    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 128 * self.sigs.len());
        out.push_str(&self.text);
        out.push('\n');
        for s in &self.sigs {
            out.push_str(&s.line());
        }
        out
    }
}

fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() || !text.ends_with('\n') {
        return Err(NoteError::Malformed("text must end with a newline"));
    }
    if text.chars().any(|c| c < ' ' && c != '\n') {
        return Err(NoteError::Malformed("control character"));
    }
    Ok(())
}

fn parse_sig_line(line: &str) -> Result<Signature, NoteError> {
    let rest = line.strip_prefix("\u{2014} ").ok_or(NoteError::Malformed(
        "signature line must start with an em dash",
    ))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(NoteError::Malformed("signature line has no signature"))?;
    KeyName::new(name).map_err(|_| NoteError::Malformed("bad key name in signature"))?;
    let raw = B64
        .decode(b64)
        .map_err(|_| NoteError::Malformed("signature is not canonical base64"))?;
    if raw.len() < 5 {
        return Err(NoteError::Malformed("signature too short"));
    }
    let key_id = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
    Ok(Signature {
        name: name.to_string(),
        key_id,
        sig: raw[4..].to_vec(),
    })
}

pub use crate::encoding::parse_canonical_u64;

/// Decode canonical standard base64 of exactly 32 bytes.
pub fn decode_hash_b64(s: &str) -> Option<[u8; 32]> {
    let v = B64.decode(s).ok()?;
    v.try_into().ok()
}

pub fn encode_b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

#[cfg(test)]
mod tests;
