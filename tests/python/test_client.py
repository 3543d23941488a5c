"""The Python client against a real modeltrail server: submit, read,
search, trace, and verify offline; every tampered receipt, checkpoint and
proof is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import urllib.request
import uuid
from typing import Any, Callable, Dict

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from modeltrail.receipt import raw_members
from modeltrail import (
    ApiError,
    Client,
    Receipt,
    TransportError,
    VerificationError,
    VerifierKey,
    verify_checkpoint,
    verify_consistency,
    verify_tlog_proof,
)


def grant(url: str, admin: str, kind: str, ident: str, roles: list[str]) -> str:
    """A token for a principal, made through the admin API."""
    body = json.dumps({"principal": {"type": kind, "id": ident}, "roles": roles}).encode()
    req = urllib.request.Request(f"{url}/v1/admin/tokens", data=body, method="POST")
    req.add_header("Authorization", f"Bearer {admin}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        token: str = json.load(r)["token"]
    return token


def event(actor: Dict[str, str], action: str, subject: str, **extra: Any) -> Dict[str, Any]:
    e: Dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "action": action,
        "actor": actor,
        "timestamp": "2026-12-02T10:00:00Z",
        "subject": {"type": "model_version", "id": subject},
    }
    e.update(extra)
    return e


def other_key(name: str) -> str:
    """A verifier key with the same name as the log's, for another key."""
    public = (
        Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    key = b"\x01" + public
    key_hash = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    return f"{name}+{key_hash.hex()}+{base64.b64encode(key).decode()}"


def test_submit_and_verify_in_a_few_lines(url: str, admin_token: str, vkey: str) -> None:
    service = f"ci-{uuid.uuid4().hex[:8]}"
    log = Client(url, token=grant(url, admin_token, "service", service, ["submitter"]))
    r = log.submit(
        {
            "action": "register",
            "actor": {"type": "service", "id": service},
            "timestamp": "2026-12-02T10:00:00Z",
            "subject": {"type": "model_version", "id": f"fraud:{service}"},
        }
    )
    checkpoint = r.verify(vkey)
    assert r.created is True
    assert checkpoint.size == r.tree_size > r.index
    assert r.event["subject"]["id"] == f"fraud:{service}"


def test_a_resubmission_gets_the_stored_receipt(url: str, admin_token: str, vkey: str) -> None:
    admin = Client(url, token=admin_token)
    e = event({"type": "user", "id": "admin"}, "register", f"m:{uuid.uuid4().hex[:8]}")
    first = admin.submit(e)
    again = admin.submit(e)
    assert (first.created, again.created) == (True, False)
    assert again.index == first.index and again.event_bytes == first.event_bytes
    again.verify(vkey)


def test_reads_are_checked(url: str, admin_token: str, vkey: str) -> None:
    admin = Client(url, token=admin_token)
    model = f"churn-{uuid.uuid4().hex[:8]}"
    r = admin.submit(
        event(
            {"type": "user", "id": "admin"},
            "register",
            f"{model}:v1",
            related=[{"type": "dataset", "id": f"ds-{model}"}],
            metadata={"note": "naïve — unicode survives", "auc": 0.91},
        )
    )
    entry = admin.get_entry(r.index)
    assert entry.event_bytes == r.event_bytes
    assert entry.event["metadata"]["note"] == "naïve — unicode survives"
    assert admin.get_event(r.event_id).index == r.index
    saved = admin.receipt(event_id=r.event_id)
    saved.verify(vkey)
    assert saved.index == r.index

    found, _ = admin.search(type="dataset", id=f"ds-{model}")
    assert [e.index for e in found] == [r.index]
    found, _ = admin.search(actor="user:admin", action="register", limit=1000)
    assert r.index in [e.index for e in found]

    state = admin.model_version(model, "v1", proofs=True)
    assert state["registered"]["index"] == r.index
    assert state["events"] == [r.index]
    bundle = admin.trace("model_version", f"{model}:v1")
    assert bundle["format"].startswith("modeltrail-trace/")
    assert any(n["type"] == "dataset" for n in bundle["nodes"])


def test_a_saved_receipt_verifies_offline(url: str, admin_token: str, vkey: str) -> None:
    r = Client(url, token=admin_token).submit(
        event({"type": "user", "id": "admin"}, "register", f"m:{uuid.uuid4().hex[:8]}")
    )
    again = Receipt.from_json(r.text)
    assert again.verify(vkey).root == r.verify(vkey).root
    index, cp = verify_tlog_proof(r.tlog_proof, r.event_bytes, vkey)
    assert index == r.index and cp.size == r.tree_size


def _tamper_json(text: str, key: str, change: Callable[[Any], Any]) -> str:
    data = json.loads(text)
    data[key] = change(data[key])
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _flip_hex(h: str) -> str:
    return ("0" if h[0] != "0" else "1") + h[1:]


def _other_signature(note: str) -> str:
    body, _, sigs = note.rpartition("\n\n")
    first, _, rest = sigs.partition("\n")
    dash, name, sig = first.split(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    return f"{body}\n\n{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n{rest}"


def _other_root(note: str) -> str:
    lines = note.split("\n")
    root = bytearray(base64.b64decode(lines[2]))
    root[0] ^= 1
    lines[2] = base64.b64encode(bytes(root)).decode()
    return "\n".join(lines)


def test_tampered_receipts_never_verify(url: str, admin_token: str, vkey: str) -> None:
    admin = Client(url, token=admin_token)
    # The next entry's proof (to the tree it ends) has as many hashes as
    # its index has 1 bits: pad until it has at least two.
    for i in range(8):
        pad = admin.submit(event({"type": "user", "id": "admin"}, "register", f"pad:{i}:{uuid.uuid4()}"))
        if bin(pad.tree_size).count("1") >= 2:
            break
    model = f"fraud-{uuid.uuid4().hex[:8]}"
    r = admin.submit(event({"type": "user", "id": "admin"}, "register", f"{model}:v9"))
    r.verify(vkey)
    assert len(r.inclusion_proof) >= 2
    name = VerifierKey.parse(vkey).name
    # The raw event text inside the receipt, changed but still JSON.
    raw = r.event_bytes.decode()
    tampered = {
        "event (another model)": r.text.replace(raw, raw.replace(f"{model}:v9", f"{model}:v8")),
        "event (reordered)": r.text.replace(
            raw, json.dumps(dict(reversed(list(r.event.items()))), separators=(",", ":"))
        ),
        "leaf hash": _tamper_json(r.text, "leaf_hash", _flip_hex),
        "index": _tamper_json(r.text, "index", lambda i: i + 1),
        "tree size": _tamper_json(r.text, "tree_size", lambda n: n + 1),
        "a proof hash": _tamper_json(
            r.text, "inclusion_proof", lambda p: [_flip_hex(p[0])] + p[1:]
        ),
        "proof shortened": _tamper_json(r.text, "inclusion_proof", lambda p: p[:-1]),
        "proof reordered": _tamper_json(r.text, "inclusion_proof", lambda p: p[::-1]),
        "event id": _tamper_json(r.text, "event_id", lambda _: str(uuid.uuid4())),
        "checkpoint root": _tamper_json(r.text, "checkpoint", _other_root),
        "checkpoint signature": _tamper_json(r.text, "checkpoint", _other_signature),
        "checkpoint unsigned": _tamper_json(
            r.text, "checkpoint", lambda c: c.rpartition("\n\n")[0] + "\n\n"
        ),
        "checkpoint signature, in both places": _tamper_json(
            _tamper_json(r.text, "checkpoint", _other_signature),
            "tlog_proof",
            lambda t: t.replace(r.checkpoint, _other_signature(r.checkpoint)),
        ),
        "tlog-proof index": _tamper_json(
            r.text, "tlog_proof", lambda t: t.replace(f"index {r.index}\n", f"index {r.index + 1}\n")
        ),
        "tlog-proof root": _tamper_json(
            r.text,
            "tlog_proof",
            lambda t: t.replace(r.checkpoint, _other_root(r.checkpoint)),
        ),
    }
    for what, text in tampered.items():
        assert text != r.text, what
        with pytest.raises(VerificationError):
            Receipt.from_json(text).verify(vkey)
            pytest.fail(f"a receipt with a tampered {what} verified")
    # The right receipt under another key with the log's name.
    with pytest.raises(VerificationError):
        r.verify(other_key(name))
    # Not even a receipt.
    with pytest.raises((VerificationError, TransportError)):
        Receipt.from_json('{"index": 1}').verify(vkey)


def test_verifier_keys_parse_with_a_plus_in_their_base64() -> None:
    for _ in range(200):
        key = other_key("example.com/log")
        if "+" in key.split("+", 2)[2]:
            assert VerifierKey.parse(key).name == "example.com/log"
            break
    else:
        pytest.fail("no key with '+' in its base64 in 200 tries")
    with pytest.raises(VerificationError):
        VerifierKey.parse("example.com/log+0000+AQ==")


def test_checkpoints_and_consistency(url: str, admin_token: str, vkey: str) -> None:
    admin = Client(url, token=admin_token)
    old = admin.checkpoint(vkey)
    for i in range(5):
        admin.submit(event({"type": "user", "id": "admin"}, "register", f"c:{i}:{uuid.uuid4()}"))
    new = admin.verify_consistency(old, vkey)
    assert new.size >= old.size + 5
    proof = admin.consistency_proof(old.size, new.size)
    verify_consistency(old.note, new.note, proof, vkey)

    with pytest.raises(VerificationError):  # a changed proof
        verify_consistency(old, new, [bytes([proof[0][0] ^ 1]) + proof[0][1:]] + proof[1:], vkey)
    with pytest.raises(VerificationError):  # backwards
        verify_consistency(new, old, proof, vkey)
    with pytest.raises(VerificationError):  # another root at the old size: a fork
        forged = verify_checkpoint(old.note, vkey)
        verify_consistency(_other_root(forged.note), new, proof, vkey)
    with pytest.raises(VerificationError):  # a changed signature
        verify_checkpoint(_other_signature(new.note), vkey)
    with pytest.raises(VerificationError):  # a signed text changed
        verify_checkpoint(new.note.replace(f"\n{new.size}\n", f"\n{new.size + 1}\n", 1), vkey)
    with pytest.raises(VerificationError):  # the wrong key
        admin.checkpoint(other_key(VerifierKey.parse(vkey).name))
    with pytest.raises(VerificationError):
        verify_checkpoint(new.note, vkey.replace("+", "-", 1))


def test_server_errors_raise_with_their_codes(url: str, admin_token: str) -> None:
    with pytest.raises(ApiError) as e:
        Client(url, token="not-a-token").submit(
            event({"type": "user", "id": "admin"}, "register", "x:1")
        )
    assert (e.value.status, e.value.code) == (401, "unauthorized")
    admin = Client(url, token=admin_token)
    with pytest.raises(ApiError) as e:
        admin.get_entry(10**12)
    assert (e.value.status, e.value.code) == (404, "not_found")
    with pytest.raises(ApiError) as e:
        admin.submit({"action": "register"})
    assert e.value.status == 400 and e.value.code == "invalid_event"
    # Someone else's name as the actor.
    with pytest.raises(ApiError) as e:
        admin.submit(event({"type": "user", "id": "mallory"}, "register", "x:2"))
    assert e.value.status in (403, 422), e.value
    with pytest.raises(ValueError):
        admin.search(actor="user:a&b")
    with pytest.raises(TransportError):
        Client("http://127.0.0.1:9", timeout=2).log_info()


def test_a_refusal_by_the_rules_carries_the_deny_receipt(
    url: str, admin_token: str, vkey: str
) -> None:
    deployer = f"ops-{uuid.uuid4().hex[:6]}"
    ops = Client(url, token=grant(url, admin_token, "user", deployer, ["deployer"]))
    admin = Client(url, token=admin_token)
    model = f"gate-{uuid.uuid4().hex[:8]}"
    admin.submit(event({"type": "user", "id": "admin"}, "register", f"{model}:v1"))
    with pytest.raises(ApiError) as e:
        ops.submit(
            event(
                {"type": "user", "id": deployer},
                "promote",
                f"{model}:v1",
                metadata={"to_stage": "production"},
            )
        )
    assert (e.value.status, e.value.code) == (422, "denied"), e.value
    assert e.value.reasons
    deny = Receipt.from_json(raw_members(e.value.text)["deny_receipt"])
    deny.verify(vkey)
    assert deny.event["action"] == "deny"
    assert deny.event["subject"]["id"] == f"{model}:v1"
    assert deny.event["metadata"]["attempted_action"] == "promote"
    assert deny.event["metadata"]["caller"] == {"type": "user", "id": deployer}
