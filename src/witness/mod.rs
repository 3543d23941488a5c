//! Witnessing, c2sp.org/tlog-witness v1.0.0 with tlog-cosignature v1.0.1
//! signatures: the `add-checkpoint` request format (shared by both sides),
//! the witness service ([`service`]) and the log's collector of
//! cosignatures ([`collector`]).
//!
//! This module is pure; the two sides do their own I/O.

pub mod collector;
pub mod service;

use crate::encoding::parse_canonical_u64;
use crate::note::{decode_hash_b64, MAX_NOTE_BYTES};
use crate::tree::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body: a note, 63 proof lines and the old size line.
pub const MAX_REQUEST_BYTES: usize = MAX_NOTE_BYTES + MAX_PROOF_LINES * 45 + 32;
/// Content type of a 409 answer that tells the client the witness's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// An `add-checkpoint` request: the size the client believes the witness
/// has cosigned, a consistency proof from it, and the signed checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    pub old_size: u64,
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as bytes.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("old {}\n", self.old_size).into_bytes();
        for h in &self.proof {
            out.extend_from_slice(B64.encode(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Strict parsing: canonical size, at most 63 canonical base64 hashes,
    /// one empty line, then a non-empty checkpoint (checked by the caller).
    pub fn parse(body: &[u8]) -> Result<Self, &'static str> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err("request too large");
        }
        let mut rest = body;
        let mut line = || -> Result<&[u8], &'static str> {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or("every header line must end with a newline")?;
            let (l, r) = rest.split_at(end);
            rest = &r[1..];
            Ok(l)
        };
        let first = std::str::from_utf8(line()?).map_err(|_| "old size line is not UTF-8")?;
        let old_size = first
            .strip_prefix("old ")
            .and_then(parse_canonical_u64)
            .ok_or("the first line must be \"old <size>\" in canonical decimal")?;
        let mut proof = Vec::new();
        loop {
            let l = line()?;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err("more than 63 consistency proof lines");
            }
            let h = std::str::from_utf8(l)
                .ok()
                .and_then(decode_hash_b64)
                .ok_or("a proof line is not base64 of 32 bytes")?;
            proof.push(h);
        }
        let checkpoint = rest.to_vec();
        if checkpoint.is_empty() {
            return Err("no checkpoint after the empty line");
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint,
        })
    }
}

/// Parse the body of a 409 answer: the witness's size and a newline.
pub fn parse_size_body(body: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(body).ok()?;
    parse_canonical_u64(s.strip_suffix('\n')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let req = AddCheckpoint {
            old_size: 20852014,
            proof: vec![[1u8; 32], [2u8; 32]],
            checkpoint: b"o\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n\xe2\x80\x94 o x\n"
                .to_vec(),
        };
        let enc = req.encode();
        assert_eq!(AddCheckpoint::parse(&enc).unwrap(), req);

        let empty = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: b"x".to_vec(),
        };
        assert_eq!(empty.encode(), b"old 0\n\nx");
        assert_eq!(AddCheckpoint::parse(b"old 0\n\nx").unwrap(), empty);

        for bad in [
            &b"old 01\n\nx"[..],
            b"old -1\n\nx",
            b"old 1",
            b"old 1\n",
            b"old 1\n\n",
            b"Old 1\n\nx",
            b"old  1\n\nx",
            b"old 1\r\n\nx",
            b"old 1\nnot base64\n\nx",
            b"old 1\nAAAA\n\nx",
            b"old 18446744073709551616\n\nx",
        ] {
            assert!(
                AddCheckpoint::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut many = b"old 5\n".to_vec();
        for _ in 0..64 {
            many.extend_from_slice(B64.encode([0u8; 32]).as_bytes());
            many.push(b'\n');
        }
        many.extend_from_slice(b"\nx");
        assert_eq!(
            AddCheckpoint::parse(&many),
            Err("more than 63 consistency proof lines")
        );
    }

    #[test]
    fn size_bodies() {
        assert_eq!(parse_size_body(b"42\n"), Some(42));
        assert_eq!(parse_size_body(b"0\n"), Some(0));
        assert_eq!(parse_size_body(b"42"), None);
        assert_eq!(parse_size_body(b"042\n"), None);
        assert_eq!(parse_size_body(b"x\n"), None);
    }
}
