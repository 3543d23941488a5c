//! c2sp.org/tlog-proof v1: an offline receipt of index, inclusion proof and
//! signed checkpoint, with an optional unauthenticated `extra` line.

use super::{decode_hash_b64, encode_b64, parse_canonical_u64, NoteError, B64};
use crate::tree::Hash;
use base64::Engine;

const HEADER: &str = "c2sp.org/tlog-proof@v1";
/// An inclusion proof never has more than 64 hashes.
const MAX_PROOF_HASHES: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    pub fn encode(&self) -> String {
        let mut s = String::with_capacity(64 + 45 * self.proof.len() + self.checkpoint.len());
        s.push_str(HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&B64.encode(extra));
            s.push('\n');
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&encode_b64(h));
            s.push('\n');
        }
        s.push('\n');
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
