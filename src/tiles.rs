//! c2sp.org/tlog-tiles v0.1.0 paths and bodies (pure).
//!
//! A hash tile at tile level `L`, index `N`, width `W` holds the tree nodes
//! at tree level `8·L` with indexes `256·N .. 256·N + W`; an entry bundle
//! holds the entries `256·N .. 256·N + W`, each prefixed with its length as a
//! big-endian u16. Paths are parsed strictly: a non-canonical spelling of a
//! tile (`x000/067` for `067`, `01` for level `1`, `.p/0`, `.p/256`,
//! `.p/07`) is an error, never an alias.

use crate::encoding::parse_canonical_u64;

pub const TILE_WIDTH: u64 = 256;
/// Tile levels are 0..=63 by the spec; beyond 7 no tree of u64 size has nodes.
pub const MAX_TILE_LEVEL: u8 = 63;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileKind {
    Hashes { level: u8 },
    Entries,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TilePath {
    pub kind: TileKind,
    pub index: u64,
    /// 1..=255 for a partial tile, 256 for a full one.
    pub width: u64,
}

impl TilePath {
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The smallest tree size in which every hash or entry of this tile
    /// exists, or `None` if no u64 tree is that large.
    pub fn min_tree_size(&self) -> Option<u64> {
        let shift = match self.kind {
            TileKind::Hashes { level } => u32::from(level) * 8,
            TileKind::Entries => 0,
        };
        if shift >= 64 {
            return None;
        }
        let last = self
            .index
            .checked_mul(TILE_WIDTH)?
            .checked_add(self.width)?;
        if last > u64::MAX >> shift {
            return None;
        }
        Some(last << shift)
    }

    /// The path below `/tile/`.
    pub fn encode(&self) -> String {
        let mut s = match self.kind {
            TileKind::Hashes { level } => format!("{level}/"),
            TileKind::Entries => "entries/".to_string(),
        };
        s.push_str(&encode_index(self.index));
        if self.is_partial() {
            s.push_str(&format!(".p/{}", self.width));
        }
        s
    }
}

/// `1234067` → `x001/x234/067`.
pub fn encode_index(mut n: u64) -> String {
    let mut parts = vec![format!("{:03}", n % 1000)];
    n /= 1000;
    while n > 0 {
        parts.push(format!("x{:03}", n % 1000));
        n /= 1000;
    }
    parts.reverse();
    parts.join("/")
}

/// Parse the part of a tile URL after `/tile/`.
pub fn parse(path: &str) -> Result<TilePath, &'static str> {
    if path.len() > 64 {
        return Err("tile path too long");
    }
    let mut segs: Vec<&str> = path.split('/').collect();
    let kind = match segs.first().copied() {
        Some("entries") => TileKind::Entries,
        Some(l) => {
            let level = parse_canonical_u64(l).ok_or("tile level is not a canonical decimal")?;
            if level > u64::from(MAX_TILE_LEVEL) {
                return Err("tile level must be 0..=63");
            }
            TileKind::Hashes { level: level as u8 }
        }
        None => return Err("empty tile path"),
    };
    segs.remove(0);

    let mut width = TILE_WIDTH;
    if segs.len() >= 2 {
        if let Some(last_index) = segs[segs.len() - 2].strip_suffix(".p") {
            let w = parse_canonical_u64(segs[segs.len() - 1])
                .ok_or("partial width is not a canonical decimal")?;
            if !(1..TILE_WIDTH).contains(&w) {
                return Err("partial width must be 1..=255");
            }
            width = w;
            segs.pop();
            let n = segs.len();
            segs[n - 1] = last_index;
        }
    }
    if segs.is_empty() || segs.len() > 7 {
        return Err("tile index must have 1..=7 path elements");
    }
    let mut index: u128 = 0;
    for (i, seg) in segs.iter().enumerate() {
        let last = i == segs.len() - 1;
        let digits = if last {
            *seg
        } else {
            seg.strip_prefix('x')
                .ok_or("tile index elements but the last must start with x")?
        };
        if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err("tile index elements must be three digits");
        }
        if i == 0 && !last && digits == "000" {
            return Err("tile index has a leading zero element");
        }
        let d: u128 = digits.parse().map_err(|_| "bad tile index")?;
        index = index * 1000 + d;
    }
    let index = u64::try_from(index).map_err(|_| "tile index too large")?;
    Ok(TilePath { kind, index, width })
}

/// An entry bundle body: each entry as a big-endian u16 length and its bytes.
/// Entries are at most 65,535 bytes by construction (see the event limits).
pub fn entry_bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for e in entries {
        let len = u16::try_from(e.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&e[..len as usize]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding_round_trips() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(1000), "x001/000");
        for n in [0, 1, 999, 1000, 1001, 999_999, 1_000_000, u64::MAX] {
            let p = TilePath {
                kind: TileKind::Hashes { level: 2 },
                index: n,
                width: 5,
            };
            assert_eq!(parse(&p.encode()).unwrap(), p);
            let p = TilePath {
                kind: TileKind::Entries,
                index: n,
                width: 256,
            };
            assert_eq!(parse(&p.encode()).unwrap(), p);
        }
    }

    #[test]
    fn spec_example_sizes() {
        // A tree of 70,000: the partial level-1 tile has width 17.
        let t = parse("1/000.p/17").unwrap();
        assert_eq!(t.min_tree_size(), Some(17 * 256));
        let t = parse("0/273.p/112").unwrap();
        assert_eq!(t.min_tree_size(), Some(70_000));
        assert_eq!(parse("8/000.p/1").unwrap().min_tree_size(), None);
        // Sizes beyond u64 are no tree's, at every level.
        assert_eq!(parse("7/000.p/1").unwrap().min_tree_size(), Some(1 << 56));
        assert_eq!(parse("7/x001/000").unwrap().min_tree_size(), None);
        assert_eq!(
            parse("1/x018/x446/x744/x073/x709/x551/615")
                .unwrap()
                .min_tree_size(),
            None
        );
        assert_eq!(
            parse("entries/x018/x446/x744/x073/x709/x551/615")
                .unwrap()
                .min_tree_size(),
            None
        );
    }

    #[test]
    fn rejects_non_canonical_and_malformed() {
        for bad in [
            "",
            "0",
            "0/",
            "01/000",
            "64/000",
            "-1/000",
            "0/67",
            "0/0067",
            "0/x000/067",
            "0/x001",
            "0/001/002",
            "0/x1/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/07",
            "0/000.p/",
            "0/000.p",
            "0/000.p/1/2",
            "entries",
            "entries/",
            "entries/1",
            "0/x019/x000/x000/x000/x000/x000/000",
            "0/x018/x446/x744/x073/x709/x551/616",
            "0/000/",
            "/0/000",
            "0//000",
            "0/abc",
            "0/+12",
            "0/x001/067.p/x",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(parse("0/x018/x446/x744/x073/x709/x551/615").is_ok());
    }

    #[test]
    fn bundle_format() {
        let b = entry_bundle(&[b"ab".to_vec(), vec![], b"c".to_vec()]);
        assert_eq!(b, vec![0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
    }
}
