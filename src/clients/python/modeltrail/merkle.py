"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.

Written from RFC 9162, sections 2.1.1 (hashes), 2.1.3.2 (verifying an
inclusion proof) and 2.1.4.2 (verifying a consistency proof). Every
function raises :class:`VerificationError` rather than returning False, so
a caller cannot forget to check a result.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from .errors import VerificationError

HASH_SIZE = 32


def leaf_hash(data: bytes) -> bytes:
    """The hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _check_hashes(name: str, hashes: Sequence[bytes]) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise VerificationError(f"{name}: a hash is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` makes of `leaf` at `index` in a tree of `size`."""
    _check_hashes("inclusion proof", [leaf, *proof])
    if not 0 <= index < size:
        raise VerificationError(f"index {index} is not in a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise VerificationError("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf` is at `index` in the tree of `size` whose root is `root`."""
    _check_hashes("root", [root])
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise VerificationError("the inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
) -> None:
    """Check that the tree of `new_size` with `new_root` extends the tree of
    `old_size` with `old_root`."""
    _check_hashes("consistency proof", [old_root, new_root, *proof])
    if not 0 <= old_size <= new_size:
        raise VerificationError(f"sizes {old_size} and {new_size} are not in order")
    if old_size == 0:
        # RFC 9162 defines proofs between non-empty trees only; that every
        # tree extends the empty one needs no proof (see
        # receipt.verify_consistency), so a "proof" from 0 is refused.
        raise VerificationError("no consistency proof starts at the empty tree")
    if old_size == new_size:
        if proof:
            raise VerificationError("a proof between equal sizes must be empty")
        if old_root != new_root:
            raise VerificationError("equal sizes with different roots: the log forked")
        return
    if not proof:
        raise VerificationError("the consistency proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree: its root starts the path.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("the consistency proof is too short")
    if fr != old_root:
        raise VerificationError("the consistency proof does not lead to the old root")
    if sr != new_root:
        raise VerificationError("the consistency proof does not lead to the new root")
