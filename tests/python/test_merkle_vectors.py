"""RFC 6962 proof vectors (transparency-dev/merkle, in tests/data/merkle):
every happy path verifies with the Python client's Merkle code and every
mutation is refused."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

import pytest

from modeltrail import VerificationError
from modeltrail.merkle import verify_consistency, verify_inclusion


def _hash(s: str) -> Optional[bytes]:
    """A vector's hash; short placeholders ("don't care") map to a stand-in
    32-byte hash, an empty one to None (refused when parsed)."""
    raw = base64.b64decode(s)
    if len(raw) == 32:
        return raw
    if not raw:
        return None
    return hashlib.sha256(b"vector placeholder" + raw).digest()


def _vectors(root: Path, kind: str) -> Iterator[Tuple[Path, Any]]:
    files = sorted(p for p in (root / kind).rglob("*.json"))
    assert files, f"no {kind} vectors under {root}"
    for p in files:
        yield p, json.loads(p.read_text())


def _check(vectors: Path, kind: str, fields: list[str], verify: Callable[..., None]) -> None:
    """Each vector of `kind`: its hashes (`fields`, then the proof) given to
    `verify`; it must raise exactly when the vector wants an error."""
    good = bad = 0
    for path, v in _vectors(vectors, kind):
        proof = [_hash(p) for p in (v["proof"] or [])]
        hashes = [_hash(v[f]) for f in fields]
        if any(h is None for h in [*proof, *hashes]):
            rejected = True
        else:
            try:
                verify(v, *hashes, proof)
                rejected = False
            except VerificationError:
                rejected = True
        assert rejected == v["wantErr"], f"{path}: {v['desc']}"
        bad, good = (bad + 1, good) if v["wantErr"] else (bad, good + 1)
    assert good >= 6 and bad >= 80, (good, bad)


def test_inclusion_vectors(vectors: Path) -> None:
    _check(
        vectors,
        "inclusion",
        ["leafHash", "root"],
        lambda v, leaf, root, proof: verify_inclusion(
            v["leafIdx"], v["treeSize"], leaf, proof, root
        ),
    )


def test_consistency_vectors(vectors: Path) -> None:
    _check(
        vectors,
        "consistency",
        ["root1", "root2"],
        lambda v, r1, r2, proof: verify_consistency(v["size1"], v["size2"], r1, r2, proof),
    )


def test_short_hashes_are_refused() -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(0, 1, b"\x00" * 31, [], b"\x00" * 32)
