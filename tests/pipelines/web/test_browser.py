"""The review web app in a real browser: Playwright driving Debian's headless Chromium.

Logs in with the token, loads the queue, opens a row, releases it with a note
and sees the status change on the row page and in the queue; ticks two rows
and rejects them in bulk. Saves the row page as ``docs/review.png`` for the
README. Runs in CI (``.ci/run`` installs Chromium with apt when missing).
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.review_store import SCRIPT, TOKEN, fill_tiny_store
from tests.tiny_data import FAR_AWAY, FLIPPED, UNKNOWN_COLOUR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# The README's screenshot is refreshed on request only, so a test run does
# not leave a changed binary in the working tree:
#   POISONGUARD_UPDATE_SCREENSHOT=1 pytest tests/test_review_browser.py
README_SCREENSHOT = Path(__file__).resolve().parents[3] / "docs" / "review.png"

pytestmark = pytest.mark.slow


def _need(condition: bool, reason: str) -> None:
    """Skip on a developer machine without the browser; in CI, fail instead."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must run the browser test; .ci/run installs chromium with apt)")
    pytest.skip(reason)


@pytest.fixture
def server(tmp_path):
    """The review app on a free localhost port, served by uvicorn in a thread."""
    import uvicorn

    from poisonguard.pipelines.web.app import create_app

    app = create_app(store_url=fill_tiny_store(tmp_path), token=TOKEN)
    # IPPROTO_TCP so asyncio turns on TCP_NODELAY (as when uvicorn binds the port itself).
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    listener.close()


@pytest.fixture
def page():
    _need(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        page = context.new_page()
        page.set_default_timeout(15_000)
        dialogs = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.dialogs = dialogs
        yield page
        context.close()
        browser.close()


def test_review_in_a_real_browser(server, page, tmp_path):
    from playwright.sync_api import expect

    # Without a session the queue answers with the login form.
    page.goto(f"{server}/")
    expect(page.locator("h1")).to_have_text("Log in")
    page.fill("#token", "not-the-token-at-all")
    page.click("button[type=submit]")
    expect(page.locator("[role=alert]")).to_contain_text("not the review token")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")

    # The queue: most suspicious first, every poisoned row pending.
    expect(page.locator("h1")).to_have_text("Review queue")
    far_row = page.locator("#queue tbody tr", has=page.locator(f"text={FAR_AWAY}"))
    expect(far_row).to_have_count(1)
    expect(far_row.locator(".badge")).to_have_text("pending")
    # A cell holding a script tag shows as text and never runs.
    expect(page.locator("#queue")).to_contain_text(SCRIPT)

    # Open the far-away row: values, findings, evidence and the plots.
    far_row.locator("a.mono").click()
    expect(page.locator("h1")).to_contain_text(FAR_AWAY)
    expect(page.locator("#status")).to_have_text("pending")
    expect(page.locator("#plots svg.plot")).to_have_count(2)
    expect(page.locator("#plots")).to_contain_text("this row: 60")
    expect(page.locator("#features")).to_contain_text("outside the trusted range")
    expect(page.locator("#neighbours")).to_contain_text("nearest")
    expect(page.locator("#history")).to_contain_text("No decisions yet")

    page.fill("#note", "Checked with the lab: a real but extreme measurement, keep it.")
    page.fill("#reviewer", "ann")
    screenshot = README_SCREENSHOT if os.environ.get("POISONGUARD_UPDATE_SCREENSHOT") else tmp_path / "review.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    page.click("#release")
    expect(page.locator("#done")).to_have_text("Released 1 entry.")
    expect(page.locator("#status")).to_have_text("released")
    expect(page.locator("#history")).to_contain_text("a real but extreme measurement")
    expect(page.locator("#history")).to_contain_text("ann")
    expect(page.locator("#decide h2")).to_have_text("Change the decision")

    # The queue moved on: the row left the pending queue and shows as released.
    page.click("text=← Queue")
    expect(page.locator("h1")).to_have_text("Review queue")
    expect(page.locator("#queue tbody tr", has=page.locator(f"text={FAR_AWAY}"))).to_have_count(0)
    page.select_option("#status", "released")
    page.click("#filters button[type=submit]")
    released = page.locator("#queue tbody tr", has=page.locator(f"text={FAR_AWAY}"))
    expect(released.locator(".badge")).to_have_text("released")

    # Bulk: tick two flipped-label rows and reject them with one note.
    page.select_option("#status", "pending")
    page.click("#filters button[type=submit]")
    expect(page.locator("[data-bulk]").first).to_be_disabled()
    for row_id in FLIPPED[:2]:
        page.locator("#queue tbody tr", has=page.locator(f"text={row_id}")).locator("input[name=ids]").check()
    expect(page.locator("#ticked-count")).to_have_text("2 ticked")
    page.fill("#bulk-note", "labels flipped against every neighbour")
    page.click("text=Reject ticked")
    expect(page.locator("#done")).to_have_text("Rejected 2 entries.")
    for row_id in FLIPPED[:2]:
        expect(page.locator("#queue tbody tr", has=page.locator(f"text={row_id}"))).to_have_count(0)

    # The row holding a script tag renders it as text on its own page too.
    page.locator("#queue tbody tr", has=page.locator(f"text={UNKNOWN_COLOUR}")).locator("a.mono").click()
    expect(page.locator("#values")).to_contain_text(SCRIPT)
    assert page.dialogs == []
