"""modeltrail: submit registry events to a modeltrail log and verify what
it says, offline, with the log's pinned verifier key.

    from modeltrail import Client
    log = Client("http://127.0.0.1:8080", token=open("ci.token").read().strip())
    receipt = log.submit({"action": "register", "actor": {"type": "service", "id": "ci"},
                          "timestamp": "2026-12-02T10:00:00Z",
                          "subject": {"type": "model_version", "id": "fraud:v3"}})
    receipt.verify(open("log.vkey").read())  # raises VerificationError if anything is off

The verification (RFC 6962 proofs, C2SP signed notes, checkpoints and
tlog-proofs) is written from the specifications and shares no code with
the server.
"""

from .client import Client
from .errors import ApiError, ModeltrailError, TransportError, VerificationError
from .merkle import leaf_hash
from .note import Checkpoint, VerifierKey, verify_checkpoint
from .receipt import Entry, Receipt, verify_consistency, verify_tlog_proof

__all__ = [
    "ApiError",
    "Checkpoint",
    "Client",
    "Entry",
    "ModeltrailError",
    "Receipt",
    "TransportError",
    "VerificationError",
    "VerifierKey",
    "leaf_hash",
    "verify_checkpoint",
    "verify_consistency",
    "verify_tlog_proof",
]
