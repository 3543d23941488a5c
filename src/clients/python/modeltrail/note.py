"""Signed notes (c2sp.org/signed-note) and checkpoints
(c2sp.org/tlog-checkpoint), verified with a pinned verifier key.

A verifier key is ``<name>+<key hash, 8 hex digits>+<base64(0x01 ||
32-byte Ed25519 public key)>``; the key hash is the first four bytes of
SHA-256(name || 0x0A || 0x01 || public key). A note is its text, a blank
line, then signature lines ``— <name> <base64(key hash || signature)>``;
the signature is over the text, including its final newline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass, field
from typing import List, Tuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import VerificationError

ED25519 = 0x01
MAX_NOTE = 1 << 20
SIGNATURE_PREFIX = "\u2014 "


def b64decode(s: str, what: str) -> bytes:
    """Strict standard base64 (padding required, no other characters)."""
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise VerificationError(f"{what} is not base64: {e}") from None
    if base64.b64encode(raw).decode() != s:
        raise VerificationError(f"{what} is not canonical base64")
    return raw


def _name_ok(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier key."""

    name: str
    key_hash: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> "VerifierKey":
        text = text.strip()
        parts = text.split("+", 2)
        if len(parts) != 3:
            raise VerificationError("a verifier key is name+hash+key")
        name, hash_hex, key_b64 = parts
        if not _name_ok(name):
            raise VerificationError(f"bad key name {name!r}")
        if len(hash_hex) != 8 or hash_hex.lower() != hash_hex:
            raise VerificationError("a key hash is 8 lowercase hex digits")
        try:
            key_hash = bytes.fromhex(hash_hex)
        except ValueError:
            raise VerificationError("a key hash is 8 lowercase hex digits") from None
        key = b64decode(key_b64, "the verifier key")
        if len(key) != 33 or key[0] != ED25519:
            raise VerificationError("not an Ed25519 verifier key")
        expected = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
        if expected != key_hash:
            raise VerificationError("the verifier key's hash does not match its name and key")
        return cls(name, key_hash, key[1:])

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class Note:
    """A signed note whose signature by the pinned key verified."""

    text: str
    #: ``(name, key hash)`` of every signature line, verified or not
    #: (witness cosignatures are carried, not checked here).
    signers: List[Tuple[str, bytes]] = field(default_factory=list)


def verify_note(note: str, key: VerifierKey) -> Note:
    """Check that `note` carries a valid signature by `key`; return its text."""
    if len(note) > MAX_NOTE:
        raise VerificationError("the note is too large")
    if not note.endswith("\n"):
        raise VerificationError("a note ends with a newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise VerificationError("a note has a blank line before its signatures")
    text, sigs = note[: split + 1], note[split + 2 :]
    signers: List[Tuple[str, bytes]] = []
    verified = False
    for line in sigs[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise VerificationError(f"not a signature line: {line!r}")
        name, _, sig_b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not _name_ok(name) or not sig_b64:
            raise VerificationError(f"not a signature line: {line!r}")
        sig = b64decode(sig_b64, "a signature")
        if len(sig) < 5:
            raise VerificationError("a signature is too short")
        signers.append((name, sig[:4]))
        if name == key.name and sig[:4] == key.key_hash:
            if len(sig) != 68 or not key.verify(text.encode(), sig[4:]):
                raise VerificationError(f"the signature by {name} does not verify")
            verified = True
    if not verified:
        raise VerificationError(f"the note is not signed by {key.name}")
    return Note(text, signers)


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose signature verified: the log's origin, tree size
    and root hash, the signed text and the whole note."""

    origin: str
    size: int
    root: bytes
    extensions: List[str]
    note: str

    @property
    def root_hex(self) -> str:
        return self.root.hex()


def _decimal(s: str, what: str) -> int:
    if not s.isascii() or not s.isdigit() or (len(s) > 1 and s[0] == "0") or len(s) > 20:
        raise VerificationError(f"{what} is not a canonical decimal: {s!r}")
    n = int(s)
    if n >= 1 << 64:
        raise VerificationError(f"{what} is out of range")
    return n


def verify_checkpoint(note: str, key: "VerifierKey | str") -> Checkpoint:
    """Verify a checkpoint's signature with the pinned `key` and parse it.
    Its origin must be the key's name."""
    if isinstance(key, str):
        key = VerifierKey.parse(key)
    verified = verify_note(note, key)
    lines = verified.text[:-1].split("\n")
    if len(lines) < 3:
        raise VerificationError("a checkpoint has an origin, a size and a root hash")
    origin, size, root = lines[0], lines[1], lines[2]
    if origin != key.name:
        raise VerificationError(f"the checkpoint's origin {origin!r} is not the key's {key.name!r}")
    root_bytes = b64decode(root, "the root hash")
    if len(root_bytes) != 32:
        raise VerificationError("the root hash is not 32 bytes")
    if any(not line for line in lines[3:]):
        raise VerificationError("a checkpoint has no empty lines")
    return Checkpoint(origin, _decimal(size, "the tree size"), root_bytes, lines[3:], note)
