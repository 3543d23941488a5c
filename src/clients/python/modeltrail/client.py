"""An HTTP client for a modeltrail server (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from .errors import ApiError, TransportError, VerificationError
from .note import Checkpoint, VerifierKey, verify_checkpoint
from .receipt import Entry, Receipt, raw_members, verify_consistency

#: Characters a query value may hold as it is: the server reads query
#: strings strictly and never percent-decodes.
_QUERY_SAFE = set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:@+,;!*'()/"
)
#: The most bytes of an answer read (a page of entries is at most 4 MiB).
MAX_ANSWER = 16 << 20


def _query(params: Mapping[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        s = str(v)
        if not s or not set(s) <= _QUERY_SAFE:
            raise ValueError(f"{k}={s!r}: a query value is printable ASCII without & = # % or spaces")
        parts.append(f"{k}={s}")
    return "?" + "&".join(parts) if parts else ""


def _path_segment(s: str, what: str) -> str:
    if not s or "/" in s or not set(s) <= _QUERY_SAFE:
        raise ValueError(f"{what} {s!r} cannot be a path segment")
    return s


class Client:
    """A client of one modeltrail server.

    >>> c = Client("http://127.0.0.1:8080", token="...")
    >>> r = c.submit({"action": "register", ...})
    >>> r.verify(open("log.vkey").read())
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        # Never the token.
        return f"Client({self.url!r})"

    # -- transport -----------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        body: Optional[bytes] = None,
        content_type: str = "application/json",
    ) -> Tuple[int, str]:
        url = self.url + path + _query(params or {})
        req = urllib.request.Request(url, data=body, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.status, self._read(r)
        except urllib.error.HTTPError as e:
            text = self._read(e)
            raise self._error(e.code, text) from None
        except (urllib.error.URLError, OSError) as e:
            raise TransportError(f"{method} {url}: {e}") from None

    @staticmethod
    def _read(r: Any) -> str:
        data = r.read(MAX_ANSWER + 1)
        if len(data) > MAX_ANSWER:
            raise TransportError("the answer is too large")
        try:
            return str(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise TransportError("the answer is not UTF-8") from None

    @staticmethod
    def _error(status: int, text: str) -> ApiError:
        try:
            body = json.loads(text)
            err = body["error"]
            return ApiError(
                status,
                str(err["code"]),
                str(err["message"]),
                [str(r) for r in err.get("reasons", [])],
                body,
                text,
            )
        except (ValueError, KeyError, TypeError):
            return ApiError(status, f"http_{status}", text[:200], text=text)

    def _json(self, path: str, params: Optional[Mapping[str, Any]] = None) -> Any:
        _, text = self._call("GET", path, params)
        try:
            return json.loads(text)
        except ValueError:
            raise TransportError(f"GET {path}: the answer is not JSON") from None

    # -- writes ----------------------------------------------------------

    def submit(self, event: Mapping[str, Any], wait_witnessed: bool = False) -> Receipt:
        """Append one event; its receipt once it is durable. The event's
        actor must be the token's principal. A refusal by the registry's
        rules raises :class:`ApiError` with code ``denied`` (its
        ``reasons``, and the receipt of the logged ``deny`` in ``body``)."""
        body = json.dumps(dict(event), ensure_ascii=False, separators=(",", ":")).encode()
        status, text = self._call(
            "POST",
            "/v1/events",
            {"wait": "witnessed" if wait_witnessed else None},
            body,
        )
        return Receipt.from_json(text, created=status == 201)

    # -- reads -----------------------------------------------------------

    def log_info(self) -> Dict[str, Any]:
        """``GET /v1/log``: origin, verifier key (do not trust it: pin your
        own copy), tree size and checkpoint."""
        info: Dict[str, Any] = self._json("/v1/log")
        return info

    def checkpoint(self, key: Union[VerifierKey, str]) -> Checkpoint:
        """The latest checkpoint, verified with the pinned `key`."""
        _, text = self._call("GET", "/checkpoint")
        return verify_checkpoint(text, key)

    def get_entry(self, index: int) -> Entry:
        """One entry; its event is checked against its leaf hash."""
        _, text = self._call("GET", f"/v1/entries/{int(index)}")
        return Entry.from_json(text)

    def get_event(self, event_id: str) -> Entry:
        """The entry of an event, by its id."""
        _, text = self._call("GET", f"/v1/events/{_path_segment(event_id, 'event id')}")
        return Entry.from_json(text)

    def receipt(self, index: Optional[int] = None, event_id: Optional[str] = None) -> Receipt:
        """A receipt for a logged entry, against the published checkpoint."""
        _, text = self._call("GET", "/v1/receipt", {"index": index, "event_id": event_id})
        return Receipt.from_json(text)

    def search(
        self,
        type: Optional[str] = None,
        id: Optional[str] = None,
        actor: Optional[str] = None,
        action: Optional[str] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        start: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Tuple[List[Entry], Optional[int]]:
        """Entries matching every filter given, in log order: ``(entries,
        next_start)``; ``next_start`` is where the next page starts, or
        None. Each entry's event is checked against its leaf hash."""
        _, text = self._call(
            "GET",
            "/v1/search",
            {
                "type": type,
                "id": id,
                "actor": actor,
                "action": action,
                "since": since,
                "until": until,
                "start": start,
                "limit": limit,
            },
        )
        members = raw_members(text)
        entries = [Entry.from_members(raw_members(t)) for t in _raw_items(members["entries"])]
        next_start = json.loads(members["next_start"])
        return entries, next_start if isinstance(next_start, int) else None

    def trace(self, kind: str, id: str) -> Dict[str, Any]:
        """The lineage trace bundle from ``kind:id`` (a prediction, a model
        version, ...) back to its data; verify it offline with
        ``modeltrail verify trace``."""
        bundle: Dict[str, Any] = self._json(
            f"/v1/trace/{_path_segment(kind, 'type')}/{_path_segment(id, 'id')}"
        )
        return bundle

    def model_version(self, name: str, version: str, proofs: bool = False) -> Dict[str, Any]:
        """A model version's state as the registry derives it from the log:
        stage, approvals, attestations, deployments, denials, the indexes of
        its events and, with `proofs`, their inclusion proofs."""
        state: Dict[str, Any] = self._json(
            f"/v1/models/{_path_segment(name, 'model name')}/versions/"
            f"{_path_segment(version, 'version')}",
            {"proofs": proofs or None},
        )
        return state

    def consistency_proof(self, old_size: int, new_size: int) -> List[bytes]:
        """``GET /v1/proof/consistency``: the hashes, unverified."""
        proof = self._json(
            "/v1/proof/consistency", {"old_size": int(old_size), "new_size": int(new_size)}
        )
        hashes = proof.get("proof") if isinstance(proof, dict) else None
        if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
            raise TransportError("a consistency proof is a list of hashes")
        try:
            return [bytes.fromhex(h) for h in hashes]
        except ValueError:
            raise VerificationError("a consistency proof hash is not hex") from None

    def verify_consistency(
        self, old: Union[Checkpoint, str], key: Union[VerifierKey, str]
    ) -> Checkpoint:
        """Fetch the latest checkpoint and check that it extends `old` (the
        last checkpoint you trusted): what a monitor does on each poll.
        Returns the new checkpoint, to keep for the next call."""
        if isinstance(key, str):
            key = VerifierKey.parse(key)
        old_cp = old if isinstance(old, Checkpoint) else verify_checkpoint(old, key)
        new_cp = self.checkpoint(key)
        if new_cp.size < old_cp.size:
            raise VerificationError("the log's checkpoint went backwards")
        if old_cp.size == 0:
            # Every tree extends the empty one; there is no proof to ask for.
            return verify_consistency(old_cp, new_cp, [], key)
        proof = self.consistency_proof(old_cp.size, new_cp.size)
        return verify_consistency(old_cp, new_cp, proof, key)


def _raw_items(text: str) -> List[str]:
    """The raw JSON text of each item of the array `text`."""
    wrapped = raw_members('{"items":' + text + "}")["items"]
    items: List[str] = []
    decoder = json.JSONDecoder()
    i = 1
    while True:
        while wrapped[i] in " \t\r\n,":
            i += 1
        if wrapped[i] == "]":
            return items
        start = i
        _, i = decoder.raw_decode(wrapped, i)
        items.append(wrapped[start:i])
