//! c2sp.org/tlog-checkpoint v1.0.0: origin, tree size, root hash, optional
//! extension lines, signed as a note.

use super::{
    decode_hash_b64, encode_b64, parse_canonical_u64, Note, NoteError, SignerKey, VerifierKey,
};
use crate::tree::Hash;

/// A checkpoint body. Construct from trusted values or from a verified note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub extensions: Vec<String>,
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The note text: three lines plus extensions, each ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            encode_b64(&self.root)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }

    /// Parse the note text strictly.
    pub fn parse_text(text: &str) -> Result<Self, NoteError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(NoteError::BadCheckpoint("text must end with a newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(NoteError::BadCheckpoint("empty origin"));
        }
        let size = lines
            .next()
            .and_then(parse_canonical_u64)
            .ok_or(NoteError::BadCheckpoint(
                "tree size is not a canonical decimal",
            ))?;
        let root = lines
            .next()
            .and_then(decode_hash_b64)
            .ok_or(NoteError::BadCheckpoint("root is not base64 of 32 bytes"))?;
        let mut extensions = Vec::new();
        for l in lines {
            if l.is_empty() {
                return Err(NoteError::BadCheckpoint("empty extension line"));
            }
            extensions.push(l.to_string());
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// Sign as a note with the log key; returns the encoded signed note.
    pub fn sign(&self, key: &SignerKey) -> Result<String, NoteError> {
        Ok(Note::sign(&self.to_text(), key)?.encode())
    }

    /// Parse a signed checkpoint, verify it against the log's key and check
    /// the origin. Returns the checkpoint and the parsed note (whose other
    /// signatures, such as witness cosignatures, the caller may check).
    pub fn open(
        signed: &[u8],
        origin: &str,
        log_key: &VerifierKey,
    ) -> Result<(Self, Note), NoteError> {
        let note = Note::parse(signed)?;
        note.verify(std::slice::from_ref(log_key))?;
        let cp = Checkpoint::parse_text(note.text())?;
        if cp.origin != origin {
            return Err(NoteError::WrongOrigin {
                got: cp.origin,
                want: origin.to_string(),
            });
        }
        Ok((cp, note))
    }
}
