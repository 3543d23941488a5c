//! Proof verification, RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
//! (consistency). Independent of the planning code in the parent module: the
//! verifier walks the bits of the index and sizes instead of recursing, so a
//! bug in one is unlikely to be mirrored in the other.

use super::{node_hash, Hash};

/// Why a proof was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("old size {old} is not in 1..={new}")]
    BadSizes { old: u64, new: u64 },
    #[error("proof has {got} hashes, expected {want}")]
    WrongProofLength { got: usize, want: usize },
    #[error("computed root does not match the expected root")]
    RootMismatch,
    #[error("computed old root does not match the old checkpoint's root")]
    OldRootMismatch,
}

/// Number of hashes in an inclusion proof for `index` in a tree of `size`.
fn inclusion_len(index: u64, size: u64) -> usize {
    // Levels below the point where the path leaves the right edge, plus the
    // remaining right-edge levels above it.
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    // `inner` is 64 when the sizes differ in the top bit: nothing is left.
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Check that `leaf` is at `index` in the tree of `size` with root `root`.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), VerifyError> {
    if index >= size {
        return Err(VerifyError::IndexOutOfRange { index, size });
    }
    let want = inclusion_len(index, size);
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if &r != root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}

/// Check that the tree of `new_size` with `new_root` extends the tree of
/// `old_size` with `old_root`. Needs 1 <= old_size <= new_size: a
/// consistency proof from the empty tree proves nothing.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), VerifyError> {
    if old_size == 0 || old_size > new_size {
        return Err(VerifyError::BadSizes {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                want: 0,
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(VerifyError::RootMismatch)
        };
    }
    // The proof for old < new: the levels where the old tree's last node
    // meets the new tree, plus the new tree's remaining right edge.
    let inner = 64 - ((old_size - 1) ^ (new_size - 1)).leading_zeros();
    let shift = (old_size - 1).trailing_ones().min(inner);
    let border = (old_size - 1).checked_shr(inner).unwrap_or(0).count_ones();
    let mut want = (inner + border - shift) as usize;
    if !old_size.is_power_of_two() {
        want += 1;
    }
    if proof.len() != want {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }

    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);

    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let mut fr = path[0];
    let mut sr = path[0];
    for c in &path[1..] {
        if s == 0 {
            return Err(VerifyError::WrongProofLength {
                got: proof.len(),
                want,
            });
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(VerifyError::WrongProofLength {
            got: proof.len(),
            want,
        });
    }
    if &fr != old_root {
        return Err(VerifyError::OldRootMismatch);
    }
    if &sr != new_root {
        return Err(VerifyError::RootMismatch);
    }
    Ok(())
}
