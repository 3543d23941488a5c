"""The explorer in a real browser (Debian's Chromium, driven by Playwright):
against a real server holding the example scenario, every verdict is
green; with a wrong pinned key, or answers tampered in transit by a proxy,
the page says so. Run by tests/it/explorer.rs, which starts the server and
the proxy and passes their addresses here."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Iterator, Optional

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import Browser, Page, expect, sync_playwright

TIMEOUT = 20_000  # ms, for each wait
expect.set_options(timeout=TIMEOUT)


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run this through `cargo test` (tests/it/explorer.rs)")
    return value


URL = env("MODELTRAIL_URL")
TAMPERED = env("MODELTRAIL_TAMPERED_URL")
VKEY = env("MODELTRAIL_VKEY")
PREDICTION = env("MODELTRAIL_PREDICTION")
SHOTS: Optional[Path] = Path(os.environ["MODELTRAIL_SCREENSHOTS"]) if os.environ.get("MODELTRAIL_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=env("MODELTRAIL_CHROMIUM"),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield b
        b.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    p = context.new_page()
    p.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, f"script errors in the page: {errors}"


def shot(page: Page, name: str) -> None:
    if SHOTS is not None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pin(page: Page, base: str, key: str) -> None:
    page.goto(base + "/")
    page.fill("#vkey", key)
    page.click("#pin button")


def all_green(page: Page, at_least: int) -> None:
    """Wait until nothing loads, then: no red verdict, enough green ones."""
    expect(page.locator(".loading")).to_have_count(0)
    expect(page.locator('[data-verdict="fail"]')).to_have_count(0)
    assert page.locator('[data-verdict="ok"]').count() >= at_least
    text = page.locator("main").inner_text()
    assert "[object" not in text and ",http" not in text, text


def other_key() -> str:
    name = VKEY.split("+", 1)[0]
    public = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key = b"\x01" + public
    h = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    return f"{name}+{h.hex()}+{base64.b64encode(key).decode()}"


def test_every_page_verifies_against_the_pinned_key(page: Page) -> None:
    pin(page, URL, VKEY)
    expect(page.locator("#head")).to_contain_text("signed by the pinned key")
    all_green(page, 3)
    rows = page.locator("#entries tbody tr")
    assert rows.count() >= 10
    expect(page.locator("#entries tbody [data-verdict=ok]")).to_have_count(rows.count())
    shot(page, "log")

    # Reloaded, the tab checks the new checkpoint against the one it kept.
    page.reload()
    expect(page.locator("#head")).to_contain_text("consistent with the checkpoint of size")
    all_green(page, 3)

    page.goto(URL + "/#/entry/3")
    expect(page.locator("#entry-verdict [data-verdict=ok]")).to_have_count(1)
    all_green(page, 1)
    shot(page, "entry")

    page.goto(URL + "/#/search?action=approve")
    all_green(page, 2)
    assert page.locator("#results tbody tr").count() >= 2
    shot(page, "search")

    page.goto(URL + "/#/model/fraud")
    expect(page.locator("section.version").first).to_be_visible()
    all_green(page, 1)
    expect(page.locator("main")).to_contain_text("approvals:")
    shot(page, "model")

    page.goto(URL + f"/#/trace/prediction/{PREDICTION}")
    expect(page.locator("#trace-verdict [data-verdict=ok]")).to_have_count(1)
    all_green(page, 4)
    assert page.locator("svg.graph rect.node.ok").count() >= 4
    expect(page.locator("main")).to_contain_text("dataset:")
    shot(page, "trace")


def test_a_phone_sized_screen(browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT)
    pin(page, URL, VKEY)
    all_green(page, 3)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 400, f"the page is {width}px wide on a 390px screen"
    shot(page, "phone")
    context.close()


def test_a_wrong_pinned_key_is_shown(page: Page) -> None:
    pin(page, URL, other_key())
    expect(page.locator(".problem")).to_contain_text("not signed by the pinned key")
    expect(page.locator('[data-verdict="ok"]')).to_have_count(0)
    shot(page, "wrong-key")
    # Not a key at all.
    page.evaluate("localStorage.clear()")
    pin(page, URL, "not a key")
    expect(page.locator(".problem")).to_contain_text("Not a usable key")


def test_answers_tampered_in_transit_are_shown(page: Page) -> None:
    # The proxy flips a bit of every inclusion proof it passes on.
    pin(page, TAMPERED, VKEY)
    expect(page.locator("#head")).to_contain_text("signed by the pinned key")
    expect(page.locator(".loading")).to_have_count(0)
    rows = page.locator("#entries tbody tr")
    assert rows.count() >= 10
    expect(page.locator("#entries tbody [data-verdict=fail]")).to_have_count(rows.count())
    page.goto(TAMPERED + "/#/entry/3")
    expect(page.locator("#entry-verdict [data-verdict=fail]")).to_contain_text("does not lead to the signed root")
    shot(page, "tampered")
    page.goto(TAMPERED + f"/#/trace/prediction/{PREDICTION}")
    expect(page.locator("#trace-verdict [data-verdict=fail]")).to_have_count(1)


def test_unknown_things_and_a_down_server(page: Page) -> None:
    pin(page, URL, VKEY)
    all_green(page, 3)
    page.goto(URL + "/#/entry/999999")
    expect(page.locator(".problem")).to_contain_text("404")
    page.goto(URL + "/#/model/no-such-model")
    expect(page.locator(".problem")).to_contain_text("404")
    page.goto(URL + "/#/nowhere")
    expect(page.locator(".problem")).to_contain_text("There is no page")
    # The server goes away under a loaded page.
    page.route("**/checkpoint", lambda route: route.abort("connectionrefused"))
    page.goto(URL + "/#/entry/2")
    expect(page.locator(".problem")).to_contain_text("cannot be reached")
