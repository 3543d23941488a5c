"""The exceptions the client raises."""

from __future__ import annotations

from typing import Any, List, Optional


class ModeltrailError(Exception):
    """Base class of every error this package raises."""


class VerificationError(ModeltrailError):
    """Something did not verify: a signature, a proof, a hash. Whatever was
    being checked must not be trusted."""


class ApiError(ModeltrailError):
    """The server answered with an error: its HTTP status and the stable
    error code of its JSON body (``bad_query``, ``unauthorized``,
    ``denied``, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        reasons: Optional[List[str]] = None,
        body: Optional[Any] = None,
        text: str = "",
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.reasons = reasons or []
        #: The whole error body, parsed (a refusal carries ``deny_receipt``)
        #: and as received (to verify that receipt from its exact bytes).
        self.body = body
        self.text = text


class TransportError(ModeltrailError):
    """The server could not be reached, or its answer was not what the API
    describes."""
