"""Receipts, entries and offline proofs (c2sp.org/tlog-proof), verified
from the bytes that were hashed.

An event's leaf is its stored canonical JSON, exactly as the server
embeds it in its answers. Parsing would lose those bytes, so the raw text
of each member is taken from the answer itself and hashed as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from . import merkle
from .errors import TransportError, VerificationError
from .note import Checkpoint, VerifierKey, b64decode, verify_checkpoint

TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"

_decoder = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def raw_members(text: str) -> Dict[str, str]:
    """The raw JSON text of each member of the object `text`, by name.
    Duplicate names are refused: which one was meant is ambiguous."""
    out: Dict[str, str] = {}
    i = _skip_ws(text, 0)
    if text[i : i + 1] != "{":
        raise TransportError("expected a JSON object")
    i = _skip_ws(text, i + 1)
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            try:
                key, i = _decoder.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise TransportError(f"not JSON: {e}") from None
            if not isinstance(key, str):
                raise TransportError("an object member's name is not a string")
            i = _skip_ws(text, i)
            if text[i : i + 1] != ":":
                raise TransportError("expected ':' in a JSON object")
            start = i = _skip_ws(text, i + 1)
            try:
                _, i = _decoder.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise TransportError(f"not JSON: {e}") from None
            if key in out:
                raise TransportError(f"the member {key!r} appears twice")
            out[key] = text[start:i]
            i = _skip_ws(text, i)
            if text[i : i + 1] == ",":
                i = _skip_ws(text, i + 1)
                continue
            if text[i : i + 1] == "}":
                i += 1
                break
            raise TransportError("expected ',' or '}' in a JSON object")
    if _skip_ws(text, i) != len(text):
        raise TransportError("trailing text after the JSON object")
    return out


def _hex32(s: Any, what: str) -> bytes:
    if not isinstance(s, str) or len(s) != 64 or s.lower() != s:
        raise VerificationError(f"{what} is not 64 lowercase hex digits")
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise VerificationError(f"{what} is not 64 lowercase hex digits") from None


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise VerificationError(f"{what} is not a non-negative integer")
    return v


@dataclass(frozen=True)
class Entry:
    """A log entry: its index, its event (parsed) and the exact bytes that
    were hashed into its leaf."""

    index: int
    leaf_hash: bytes
    event: Dict[str, Any]
    event_bytes: bytes

    @classmethod
    def from_members(cls, members: Dict[str, str]) -> "Entry":
        try:
            raw = members["event"]
            index = _int(json.loads(members["index"]), "index")
            claimed = _hex32(json.loads(members["leaf_hash"]), "leaf_hash")
        except KeyError as e:
            raise TransportError(f"an entry without {e}") from None
        event_bytes = raw.encode("utf-8")
        if merkle.leaf_hash(event_bytes) != claimed:
            raise VerificationError(f"entry {index}: the event does not hash to its leaf hash")
        event = json.loads(raw)
        if not isinstance(event, dict):
            raise VerificationError(f"entry {index}: the event is not a JSON object")
        return cls(index, claimed, event, event_bytes)

    @classmethod
    def from_json(cls, text: str) -> "Entry":
        return cls.from_members(raw_members(text))


@dataclass(frozen=True)
class Receipt:
    """The answer to an append (or ``GET /v1/receipt``): an event, its
    inclusion proof and the signed checkpoint it is proved against. Keep
    it, and check it later with :meth:`verify` and the log's key: no server
    is needed."""

    index: int
    tree_size: int
    leaf_hash: bytes
    event_id: str
    event: Dict[str, Any]
    event_bytes: bytes
    checkpoint: str
    inclusion_proof: List[bytes]
    tlog_proof: str
    witnessed: Optional[bool]
    #: The receipt as received.
    text: str
    #: With an append: True if the event is new, False if it was already
    #: in the log (the same id and content).
    created: Optional[bool] = None

    @classmethod
    def from_json(cls, text: Union[str, bytes], created: Optional[bool] = None) -> "Receipt":
        """Read a receipt (as the server sends it or as it was saved). This
        checks its shape only; call :meth:`verify`."""
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        m = raw_members(text)
        try:
            entry_index = _int(json.loads(m["index"]), "index")
            tree_size = _int(json.loads(m["tree_size"]), "tree_size")
            leaf = _hex32(json.loads(m["leaf_hash"]), "leaf_hash")
            event_id = json.loads(m["event_id"])
            raw_event = m["event"]
            checkpoint = json.loads(m["checkpoint"])
            proof = json.loads(m["inclusion_proof"])
            tlog_proof = json.loads(m["tlog_proof"])
        except KeyError as e:
            raise VerificationError(f"a receipt without {e}") from None
        witnessed = json.loads(m["witnessed"]) if "witnessed" in m else None
        if not isinstance(event_id, str) or not isinstance(checkpoint, str):
            raise VerificationError("event_id and checkpoint are strings")
        if not isinstance(tlog_proof, str) or not isinstance(proof, list):
            raise VerificationError("tlog_proof is a string and inclusion_proof a list")
        event = json.loads(raw_event)
        if not isinstance(event, dict):
            raise VerificationError("the event is not a JSON object")
        return cls(
            index=entry_index,
            tree_size=tree_size,
            leaf_hash=leaf,
            event_id=event_id,
            event=event,
            event_bytes=raw_event.encode("utf-8"),
            checkpoint=checkpoint,
            inclusion_proof=[_hex32(h, "an inclusion proof hash") for h in proof],
            tlog_proof=tlog_proof,
            witnessed=witnessed if isinstance(witnessed, bool) else None,
            text=text,
            created=created,
        )

    def verify(self, key: Union[VerifierKey, str]) -> Checkpoint:
        """Check everything the receipt claims, with the log's pinned
        verifier key: the event hashes to the leaf, the leaf is at its index
        in the tree the checkpoint signs, the checkpoint is signed by the
        key, the event is the one named, and the offline tlog-proof says
        the same. Returns the checkpoint; raises
        :class:`VerificationError` on any failure."""
        if isinstance(key, str):
            key = VerifierKey.parse(key)
        leaf = merkle.leaf_hash(self.event_bytes)
        if leaf != self.leaf_hash:
            raise VerificationError("the event does not hash to the receipt's leaf hash")
        if self.event.get("event_id") != self.event_id:
            raise VerificationError("the event's id is not the receipt's event_id")
        cp = verify_checkpoint(self.checkpoint, key)
        if cp.size != self.tree_size:
            raise VerificationError(
                f"the checkpoint is of size {cp.size}, the receipt says {self.tree_size}"
            )
        merkle.verify_inclusion(self.index, cp.size, leaf, self.inclusion_proof, cp.root)
        index, proof_cp = verify_tlog_proof(self.tlog_proof, self.event_bytes, key)
        if index != self.index or proof_cp.note != self.checkpoint:
            raise VerificationError("the tlog-proof is not about the same entry and checkpoint")
        return cp


def parse_tlog_proof(text: str) -> Tuple[int, List[bytes], str, Optional[bytes]]:
    """``(index, proof hashes, checkpoint note, extra data)`` of a tlog-proof."""
    lines = text.split("\n")
    if not lines or lines[0] != TLOG_PROOF_HEADER:
        raise VerificationError(f"a tlog-proof starts with {TLOG_PROOF_HEADER}")
    i = 1
    extra: Optional[bytes] = None
    if i < len(lines) and lines[i].startswith("extra "):
        extra = b64decode(lines[i][len("extra ") :], "the extra data")
        i += 1
    if i >= len(lines) or not lines[i].startswith("index "):
        raise VerificationError("a tlog-proof has an index line")
    digits = lines[i][len("index ") :]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        raise VerificationError("the index is not a canonical decimal")
    index = int(digits)
    i += 1
    hashes: List[bytes] = []
    while i < len(lines) and lines[i] != "":
        h = b64decode(lines[i], "a proof hash")
        if len(h) != 32:
            raise VerificationError("a proof hash is not 32 bytes")
        hashes.append(h)
        i += 1
    if i >= len(lines):
        raise VerificationError("a tlog-proof has a blank line before its checkpoint")
    return index, hashes, "\n".join(lines[i + 1 :]), extra


def verify_tlog_proof(
    text: str, event_bytes: bytes, key: Union[VerifierKey, str]
) -> Tuple[int, Checkpoint]:
    """Verify an offline proof (c2sp.org/tlog-proof) that `event_bytes` is
    logged: ``(index, checkpoint)``."""
    index, hashes, note, _extra = parse_tlog_proof(text)
    cp = verify_checkpoint(note, key)
    merkle.verify_inclusion(index, cp.size, merkle.leaf_hash(event_bytes), hashes, cp.root)
    return index, cp


def verify_consistency(
    old: Union[Checkpoint, str],
    new: Union[Checkpoint, str],
    proof: List[bytes],
    key: Union[VerifierKey, str],
) -> Checkpoint:
    """Check that checkpoint `new` extends checkpoint `old` (both signed by
    `key`) with a consistency proof; returns the new checkpoint. A monitor
    calls this with the last checkpoint it trusted and each newer one."""
    if isinstance(key, str):
        key = VerifierKey.parse(key)
    old_cp = old if isinstance(old, Checkpoint) else verify_checkpoint(old, key)
    new_cp = new if isinstance(new, Checkpoint) else verify_checkpoint(new, key)
    if isinstance(old, Checkpoint):
        verify_checkpoint(old.note, key)
    if isinstance(new, Checkpoint):
        verify_checkpoint(new.note, key)
    if old_cp.origin != new_cp.origin:
        raise VerificationError("the checkpoints are of different logs")
    if new_cp.size < old_cp.size:
        raise VerificationError("the new checkpoint is smaller: the log went backwards")
    if old_cp.size == 0:
        # Every tree extends the empty tree.
        if proof:
            raise VerificationError("a proof from the empty tree must be empty")
        return new_cp
    merkle.verify_consistency(old_cp.size, new_cp.size, old_cp.root, new_cp.root, proof)
    return new_cp
