//! c2sp.org/tlog-proof v1: an offline receipt of index, inclusion proof and
//! signed checkpoint, with an optional unauthenticated `extra` line.

use super::{decode_hash_b64, parse_canonical_u64, NoteError, B64};
use crate::tree::Hash;
use base64::Engine;

const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// An inclusion proof never has more than 64 hashes.
const MAX_PROOF_HASHES: usize = 64;

/// The index line, a line per hash, and the blank line.
fn push_index_and_hashes(index: u64, proof: &[Hash], newline: &str, s: &mut String) {
    s.push_str("index ");
    s.push_str(&index.to_string());
    s.push_str(newline);
    for h in proof {
        B64.encode_string(h, s);
        s.push_str(newline);
    }
    s.push_str(newline);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The lines of a proof without `extra` up to its checkpoint (the header,
    /// the index, one line per hash and the blank line), each ended by
    /// `newline`: `"\n"` for the text itself, `"\\n"` for the text inside a
    /// JSON string, where nothing else in these lines is escaped (they are the
    /// header's characters, digits and standard base64). The checkpoint
    /// follows them.
    pub fn lines_before_checkpoint(index: u64, proof: &[Hash], newline: &str) -> String {
        let mut s = String::with_capacity(64 + (44 + newline.len()) * proof.len());
        s.push_str(HEADER);
        s.push_str(newline);
        push_index_and_hashes(index, proof, newline, &mut s);
        s
    }

    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(64 + 45 * self.proof.len() + self.checkpoint.len());
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            B64.encode_string(extra, &mut s);
            s.push('\n');
        }
        push_index_and_hashes(self.index, &self.proof, "\n", &mut s);
        s.push_str(&self.checkpoint);
        s
    }

    /// Parse strictly. The checkpoint is returned unverified.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        if text.len() > super::MAX_NOTE_BYTES + 64 * 64 {
            return Err(NoteError::BadProof("too large"));
        }
        let rest = text
            .strip_prefix(HEADER)
            .and_then(|r| r.strip_prefix('\n'))
            .ok_or(NoteError::BadProof(
                "first line must be c2sp.org/tlog-proof@v1",
            ))?;
        let (mut line, mut rest) = next_line(rest)?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(e)
                    .map_err(|_| NoteError::BadProof("extra is not canonical base64"))?,
            );
            (line, rest) = next_line(rest)?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_canonical_u64)
            .ok_or(NoteError::BadProof("missing or non-canonical index line"))?;
        let mut proof = Vec::new();
        loop {
            let (l, r) = next_line(rest)?;
            rest = r;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(NoteError::BadProof("too many proof hashes"));
            }
            proof.push(
                decode_hash_b64(l)
                    .ok_or(NoteError::BadProof("proof line is not base64 of 32 bytes"))?,
            );
        }
        if rest.is_empty() {
            return Err(NoteError::BadProof("missing checkpoint"));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: rest.to_string(),
        })
    }
}

fn next_line(s: &str) -> Result<(&str, &str), NoteError> {
    s.split_once('\n').ok_or(NoteError::BadProof("truncated"))
}
