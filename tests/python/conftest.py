"""The pytest suite of the Python client, run by the integration test
`python_client` (tests/it/python.rs) against a real server: it passes the
server's address, an admin token and the log's verifier key here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run these tests through `cargo test` "
            "(tests/it/python.rs starts the server they talk to)"
        )
    return value


@pytest.fixture(scope="session")
def url() -> str:
    return _env("MODELTRAIL_URL")


@pytest.fixture(scope="session")
def admin_token() -> str:
    return _env("MODELTRAIL_TOKEN")


@pytest.fixture(scope="session")
def vkey() -> str:
    return _env("MODELTRAIL_VKEY")


@pytest.fixture(scope="session")
def vectors() -> Path:
    return Path(_env("MODELTRAIL_VECTORS"))
