"""The review web app through FastAPI's test client, on a store filled by a real tiny run.

Auth (bearer and login cookie), CSRF, escaping, 404 / 409 / 422, paging and
filters, the pages' evidence and plots, single and bulk decisions.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.store import EntryFilter, QuarantineStore
from poisonguard.pipelines.web.app import create_app
from poisonguard.pipelines.web.server import serve
from poisonguard.pipelines.web import security as web_security
from poisonguard.pipelines.web.security import SESSION_COOKIE, Guard
from poisonguard.pipelines.web.views import histogram_plot
from tests.cli_helpers import invoke
from tests.review_store import SCRIPT, TOKEN, fill_tiny_store
from tests.tiny_data import FAR_AWAY, FLIPPED, POISONED, UNKNOWN_COLOUR

def copy_store(url: str, target: Path) -> str:
    """A consistent copy of a SQLite store (WAL included), so each test may write."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    destination = sqlite3.connect(target)
    with destination:
        source.backup(destination)
    source.close()
    destination.close()
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def tiny_store_template(tmp_path_factory):
    return fill_tiny_store(tmp_path_factory.mktemp("webapp"))


@pytest.fixture
def store_url(tiny_store_template, tmp_path):
    return copy_store(tiny_store_template, tmp_path / "review.db")


@pytest.fixture
def store(store_url):
    store = QuarantineStore(store_url)
    yield store
    store.close()


@pytest.fixture
def app(store_url):
    return create_app(store_url=store_url, token=TOKEN)


@pytest.fixture
def api(app):
    """A tool with the bearer token."""
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def anonymous(app):
    with TestClient(app) as client:
        yield client


def logged_in(app) -> TestClient:
    client = TestClient(app)
    response = client.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303
    return client


@pytest.fixture
def browser(app):
    """A browser session: login cookie, CSRF tokens from the pages."""
    with logged_in(app) as client:
        yield client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def entry_id(store, row_id: str) -> int:
    return next(e["id"] for e in store.list_entries() if e["row_id"] == row_id)


# ------------------------------------------------------------------- auth


def test_every_request_needs_the_token(anonymous, api, app):
    for path in ("/api/entries", "/api/entries/1"):
        response = anonymous.get(path)
        assert response.status_code == 401, path
        assert response.json()["detail"].startswith("the review token is missing")
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = anonymous.get("/api/entries", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 401
    assert anonymous.get("/api/entries", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert anonymous.post("/api/entries/1/decision", json={"status": "released", "note": "x"}).status_code == 401
    # A browser without a session gets the login form, still as a 401.
    page = anonymous.get("/entries/1?x=1")
    assert page.status_code == 401 and 'action="/login"' in page.text
    assert 'name="next" value="/entries/1?x=1"' in page.text
    assert anonymous.get("/").status_code == 401
    assert anonymous.get("/no/such/page").status_code == 401  # even a 404 needs the token first
    ok = api.get("/api/entries")
    assert ok.status_code == 200 and ok.json()["total"] == len(ok.json()["entries"]) >= len(POISONED)


def test_login_sets_a_signed_httponly_strict_cookie_not_the_token(app, anonymous):
    refused = anonymous.post("/login", data={"token": "wrong-token-wrong-token", "next": "/"})
    assert refused.status_code == 401 and "not the review token" in refused.text
    assert SESSION_COOKIE not in refused.cookies
    response = anonymous.post("/login", data={"token": TOKEN, "next": "/entries/1"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/entries/1"
    header = response.headers["set-cookie"]
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in header and "SameSite=strict" in header.replace("Strict", "strict")
    value = anonymous.cookies[SESSION_COOKIE]
    assert TOKEN not in value and TOKEN not in header
    assert anonymous.get("/").status_code == 200
    assert anonymous.get("/api/entries").status_code == 200
    # A wrong bearer header is refused even beside a valid cookie.
    assert anonymous.get("/api/entries", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_forged_expired_and_foreign_sessions_are_refused(app):
    guard = Guard(TOKEN)
    issued, nonce, signature = guard.new_session().split(".")
    forged = f"{issued}.{nonce}x.{signature}"
    expired = guard.new_session(now=0)
    other_server = Guard("another-token-for-another-server").new_session()
    for cookie in (forged, expired, other_server, "garbage", "1.2.3"):
        with TestClient(app, cookies={SESSION_COOKIE: cookie}) as client:
            assert client.get("/api/entries").status_code == 401, cookie
    with TestClient(app, cookies={SESSION_COOKIE: guard.new_session()}) as client:
        assert client.get("/api/entries").status_code == 200


def test_login_never_redirects_to_another_site(anonymous):
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        response = anonymous.post("/login", data={"token": TOKEN, "next": target}, follow_redirects=False)
        assert response.headers["location"] == "/", target


def test_a_short_token_is_refused(store_url):
    with pytest.raises(InputError, match="at least 16 characters"):
        create_app(store_url=store_url, token="short")


def test_review_serve_with_a_short_token_is_one_line_and_exit_2(tiny_store_template, monkeypatch):
    monkeypatch.setenv("POISONGUARD_REVIEW_TOKEN", "short")
    result = invoke("review", "serve", "--store", tiny_store_template, "--port", 9)
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: the review token must be at least 16 characters")


def test_pages_carry_security_headers(browser):
    response = browser.get("/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy and "script-src 'nonce-" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    assert f'<script nonce="{nonce}">' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # no external resources


# ------------------------------------------------------------------- CSRF


def test_cookie_posts_need_the_sessions_csrf_token(app, browser, store):
    target = entry_id(store, FLIPPED[0])
    page = browser.get(f"/entries/{target}")
    token = csrf_of(page.text)
    form = {"status": "released", "note": "checked", "expected_status": "pending"}
    assert browser.post(f"/entries/{target}/decision", data=form).status_code == 403
    assert browser.post(f"/entries/{target}/decision", data={**form, "csrf_token": "0" * 64}).status_code == 403
    with logged_in(app) as other:  # another session's token is no good here
        foreign = csrf_of(other.get("/").text)
    assert foreign != token
    assert browser.post(f"/entries/{target}/decision", data={**form, "csrf_token": foreign}).status_code == 403
    cross_site = browser.post(
        f"/entries/{target}/decision", data={**form, "csrf_token": token}, headers={"Origin": "https://evil.example"}
    )
    assert cross_site.status_code == 403
    assert store.get_entry(target)["status"] == "pending"
    done = browser.post(f"/entries/{target}/decision", data={**form, "csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith(f"/entries/{target}?done=released")
    assert store.get_entry(target)["status"] == "released"
    # The JSON API under a cookie session wants the token as a header.
    other_entry = entry_id(store, FLIPPED[1])
    body = {"status": "rejected", "note": "poison"}
    assert browser.post(f"/api/entries/{other_entry}/decision", json=body).status_code == 403
    ok = browser.post(f"/api/entries/{other_entry}/decision", json=body, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["entry"]["status"] == "rejected"
    # Logging out is a POST with CSRF too.
    assert browser.post("/logout", data={}).status_code == 403
    out = browser.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303 and SESSION_COOKIE in out.headers["set-cookie"]


def test_bearer_requests_need_no_csrf_token(api, store):
    target = entry_id(store, FLIPPED[2])
    response = api.post(f"/api/entries/{target}/decision", json={"status": "rejected", "note": "label flipped"})
    assert response.status_code == 200
    assert response.json()["decisions"][0]["status_after"] == "rejected"


def test_every_state_changing_route_is_a_csrf_protected_post(app):
    for route in app.routes:
        methods = getattr(route, "methods", set()) or set()
        assert not methods & {"PUT", "PATCH", "DELETE"}, route.path
        if "POST" in methods and route.path != "/login":
            calls = [dependency.call.__name__ for dependency in route.dependant.dependencies]
            assert "require_csrf" in calls, route.path


# --------------------------------------------------------------- escaping


def test_row_values_are_shown_as_text_never_as_markup(browser, api, store):
    target = entry_id(store, UNKNOWN_COLOUR)
    page = browser.get(f"/entries/{target}")
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert SCRIPT not in page.text
    queue = browser.get("/")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in queue.text and SCRIPT not in queue.text
    assert api.get(f"/api/entries/{target}").json()["row"]["shade"] == SCRIPT


# ------------------------------------------------------------ 404 and 422


def test_unknown_ids_are_404(api, browser):
    assert api.get("/api/entries/999").status_code == 404
    assert api.get("/api/entries/999").json() == {"detail": "no quarantine entry 999"}  # no store path
    assert api.post("/api/entries/999/decision", json={"status": "released", "note": "x"}).status_code == 404
    page = browser.get("/entries/999")
    assert page.status_code == 404 and "no quarantine entry 999" in page.text
    assert browser.get("/nothing/here").status_code == 404
    assert api.get("/nothing/here").status_code == 404


@pytest.mark.parametrize("query", [
    "status=done", "max_score=abc", "max_score=nan", "per_page=500", "per_page=0", "page=0", "page=x",
    "page=99999999999999999999",
])
def test_bad_filters_are_422(api, browser, query):
    response = api.get(f"/api/entries?{query}")
    assert response.status_code == 422, query
    assert response.json()["detail"]
    page = browser.get(f"/?{query}")
    assert page.status_code == 422 and "Traceback" not in page.text


def test_bad_decisions_are_422_and_change_nothing(api, browser, store):
    target = entry_id(store, FAR_AWAY)
    for path in ("/api/entries/abc", "/api/entries/-1", "/api/entries/99999999999999999999999"):
        assert api.get(path).status_code == 422, path
    assert browser.get("/entries/abc").status_code == 422
    bad_bodies = [
        {"status": "maybe", "note": "x"},
        {"status": "released", "note": "   "},
        {"status": "released"},
        {"status": "released", "note": "x", "expected_status": "done"},
        {"status": "released", "note": "x", "surprise": 1},
        {"status": "released", "note": "x" * 2001},
        {"status": "released", "note": "x", "reviewer": "a" * 101},
    ]
    for body in bad_bodies:
        response = api.post(f"/api/entries/{target}/decision", json=body)
        assert response.status_code == 422, body
    assert api.post(f"/api/entries/{target}/decision", content=b"not json",
                    headers={"Content-Type": "application/json"}).status_code == 422
    token = csrf_of(browser.get("/").text)
    empty_note = browser.post(f"/entries/{target}/decision", data={"csrf_token": token, "status": "released", "note": ""})
    assert empty_note.status_code == 422 and "a note is required" in empty_note.text
    no_ticks = browser.post("/decisions", data={"csrf_token": token, "status": "released", "note": "x"})
    assert no_ticks.status_code == 422 and "tick at least one entry" in no_ticks.text
    assert api.post("/api/decisions", json={"ids": [], "status": "released", "note": "x"}).status_code == 422
    assert store.count_entries(EntryFilter(status="pending")) == store.count_entries()


def test_huge_bodies_are_refused_before_parsing(anonymous, api):
    assert anonymous.post("/login", data={"token": "x" * 100_000}).status_code == 413
    assert api.post("/api/decisions", content=b"{" + b" " * 100_000, headers={"Content-Type": "application/json"}).status_code == 413


@pytest.mark.parametrize("path, content_type", [
    ("/api/decisions", "application/json"),
    ("/decisions", "application/x-www-form-urlencoded"),
    ("/login", "application/x-www-form-urlencoded"),
])
def test_a_chunked_body_without_a_length_is_refused(api, path, content_type):
    def chunks():  # chunked, so no Content-Length announces the size
        for _ in range(4):
            yield b"x" * (64 << 10)

    response = api.post(path, content=chunks(), headers={"Content-Type": content_type})
    assert response.status_code == 413 and response.json() == {"detail": "request body too large"}


def test_the_body_limit_stops_reading_the_stream_at_the_limit():
    """At the ASGI level: of a 300 MB chunked body, no more than the limit and one chunk is read."""
    import asyncio

    from poisonguard.pipelines.web.requests import BodyLimit

    pulled, answered, reached_app = [], [], []

    async def receive():
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * (1 << 20), "more_body": len(pulled) < 300}

    async def send(message):
        answered.append(message)

    async def app(scope, receive, send):
        reached_app.append(scope)

    asyncio.run(BodyLimit(app, limit=64 * 1024)({"type": "http"}, receive, send))
    assert len(pulled) == 1 and reached_app == []
    assert answered[0]["status"] == 413


def test_an_unexpected_error_is_a_plain_500_page(app, browser, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("secret detail /etc/passwd")

    monkeypatch.setattr(QuarantineStore, "count_entries", broken)
    page = browser.get("/")
    assert page.status_code == 500
    assert "internal error" in page.text.lower()
    assert "secret detail" not in page.text and "Traceback" not in page.text
    response = browser.get("/api/entries")
    assert response.status_code == 500 and response.json() == {"detail": "internal error"}


# -------------------------------------------------------------------- 409


def test_a_second_reviewer_gets_409_and_the_first_decision_stands(api, browser, store):
    target = entry_id(store, FAR_AWAY)
    first = api.post(f"/api/entries/{target}/decision",
                     json={"status": "rejected", "note": "way off", "reviewer": "ann", "expected_status": "pending"})
    assert first.status_code == 200
    second = api.post(f"/api/entries/{target}/decision",
                      json={"status": "released", "note": "fine", "reviewer": "bob", "expected_status": "pending"})
    assert second.status_code == 409
    assert re.search(rf"entry {target} was already rejected by ann at .*changed while you were looking",
                     second.json()["detail"])
    # The same from a stale page in a browser: a clear message, no traceback.
    token = csrf_of(browser.get("/").text)
    stale = browser.post(f"/entries/{target}/decision",
                         data={"csrf_token": token, "status": "released", "note": "fine", "expected_status": "pending"})
    assert stale.status_code == 409 and "already rejected by ann" in stale.text and "Traceback" not in stale.text
    entry = store.get_entry(target)
    assert entry["status"] == "rejected"
    assert [(h["reviewer"], h["status_after"]) for h in entry["history"]] == [("ann", "rejected")]


def test_two_reviewers_at_the_same_moment_one_wins_one_gets_409(app, store):
    target = entry_id(store, FLIPPED[0])
    start = threading.Barrier(2)
    results = {}

    def reviewer(name, status):
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            start.wait()
            results[name] = client.post(f"/api/entries/{target}/decision", json={
                "status": status, "note": f"{name} says {status}", "reviewer": name, "expected_status": "pending"})

    threads = [threading.Thread(target=reviewer, args=args) for args in (("ann", "released"), ("bob", "rejected"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    codes = sorted(response.status_code for response in results.values())
    assert codes == [200, 409]
    winner = next(name for name, response in results.items() if response.status_code == 200)
    history = store.get_entry(target)["history"]
    assert [h["reviewer"] for h in history] == [winner]


def test_changing_a_decision_needs_force(api, store):
    target = entry_id(store, FLIPPED[1])
    assert api.post(f"/api/entries/{target}/decision", json={"status": "released", "note": "ok"}).status_code == 200
    again = api.post(f"/api/entries/{target}/decision", json={"status": "rejected", "note": "on reflection"})
    assert again.status_code == 409 and "--force" in again.json()["detail"]
    forced = api.post(f"/api/entries/{target}/decision",
                      json={"status": "rejected", "note": "on reflection", "force": True, "expected_status": "released"})
    assert forced.status_code == 200
    history = api.get(f"/api/entries/{target}").json()["history"]
    assert [(h["status_before"], h["status_after"]) for h in history] == [("pending", "released"), ("released", "rejected")]


# ------------------------------------------------------- paging, filters


def test_api_pages_through_the_queue_most_suspicious_first(api, store):
    everything = store.list_entries()
    seen = []
    for page in (1, 2, 3, 4):
        body = api.get(f"/api/entries?per_page=2&page={page}").json()
        assert body["total"] == len(everything) and body["per_page"] == 2 and body["page"] == page
        seen += [entry["id"] for entry in body["entries"]]
    assert seen == [e["id"] for e in everything]
    first = api.get("/api/entries").json()["entries"][0]
    assert {"id", "row_id", "run", "status", "checks", "reasons", "score"} <= set(first)
    assert isinstance(first["checks"], list) and isinstance(first["reasons"], list)
    assert api.get("/api/entries?page=1000").json()["entries"] == []


def test_api_filters_by_status_run_check_and_score(api, store):
    run_id = store.list_entries()[0]["run_id"]
    by_check = api.get("/api/entries?check=outlier.ecod").json()
    assert by_check["total"] >= 1 and all("outlier.ecod" in e["checks"] for e in by_check["entries"])
    assert FAR_AWAY in {e["row_id"] for e in by_check["entries"]}
    assert api.get("/api/entries?check=outlier").json()["total"] == 0  # whole names only
    assert api.get(f"/api/entries?run={run_id}").json()["total"] == store.count_entries()
    assert api.get("/api/entries?run=no-such-run").json()["total"] == 0
    below = api.get("/api/entries?max_score=1").json()
    assert below["total"] == store.count_entries(EntryFilter(below_score=1.0))
    assert all(e["score"] < 1 for e in below["entries"])
    target = entry_id(store, FLIPPED[0])
    api.post(f"/api/entries/{target}/decision", json={"status": "released", "note": "ok"})
    assert [e["id"] for e in api.get("/api/entries?status=released").json()["entries"]] == [target]
    assert api.get("/api/entries?status=pending").json()["total"] == store.count_entries() - 1
    assert api.get("/api/entries?status=any").json()["total"] == store.count_entries()


def test_the_queue_page_filters_and_pages(browser, store):
    total = store.count_entries()
    first = browser.get("/?per_page=2")
    assert first.status_code == 200
    assert f"Showing 1–2 of {total}" in first.text and f"Page 1 of {-(-total // 2)}" in first.text
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    rows = re.findall(r'<tr data-entry="(\d+)">', first.text)
    assert [int(i) for i in rows] == [e["id"] for e in store.list_entries(limit=2)]
    second = browser.get("/?per_page=2&page=2")
    assert 'rel="prev"' in second.text
    assert not set(re.findall(r'<tr data-entry="(\d+)">', second.text)) & set(rows)
    outliers = browser.get("/?check=outlier.ecod&status=any")
    listed = re.findall(r'<tr data-entry="(\d+)">', outliers.text)
    assert [int(i) for i in listed] == [e["id"] for e in store.list_entries(EntryFilter(check="outlier.ecod"))]
    # The queue shows id, row id, run, status, score, checks and the first reason.
    far = next(e for e in store.list_entries() if e["row_id"] == FAR_AWAY)
    assert far["row_id"] in outliers.text and far["run_id"][:8] in outliers.text
    assert far["findings"][0]["reason"].replace("'", "&#39;") in outliers.text
    assert '<span class="badge pending">pending</span>' in outliers.text
    # The default queue is what is still pending.
    target = entry_id(store, FLIPPED[2])
    token = csrf_of(first.text)
    browser.post(f"/entries/{target}/decision", data={"csrf_token": token, "status": "rejected", "note": "flip"})
    assert f'data-entry="{target}"' not in browser.get("/").text
    assert f'data-entry="{target}"' in browser.get("/?status=rejected").text


# ------------------------------------------------------ pages and evidence


def test_the_row_page_shows_values_findings_evidence_plot_and_history(browser, api, store):
    target = entry_id(store, FAR_AWAY)
    page = browser.get(f"/entries/{target}").text
    entry = store.get_entry(target)
    for column, value in entry["row"].items():
        assert f">{column}</th>" in page and str(value) in page
    for finding in entry["findings"]:
        assert finding["check"] in page
    assert "Features furthest from the trusted data" in page and "outside the trusted range" in page
    assert "Nearest trusted rows and their labels" in page
    # One inline SVG per histogram, bars and a marker where the row sits.
    assert page.count('<svg class="plot"') == len(entry["evidence"]["histograms"]) == 2
    assert page.count("<rect ") == 40
    assert "this row: 60" in page and "this row: -45" in page
    assert "No decisions yet" in page
    assert 'name="expected_status" value="pending"' in page
    flipped = browser.get(f"/entries/{entry_id(store, FLIPPED[0])}").text
    label = store.get_entry(entry_id(store, FLIPPED[0]))["evidence"]["label"]
    assert f"This row's label: <strong class=\"mono\">{label}</strong>" in flipped
    # After a decision, the history shows it and the form becomes a change with force.
    token = csrf_of(page)
    browser.post(f"/entries/{target}/decision",
                 data={"csrf_token": token, "status": "rejected", "note": "60 is impossible", "reviewer": "Zoë",
                       "expected_status": "pending"})
    after = browser.get(f"/entries/{target}").text
    assert "60 is impossible" in after and "Zoë" in after and '<span class="badge rejected" id="status">' in after
    assert 'name="force" value="1" required' in after
    assert 'value="Zoë"' in browser.get("/").text  # the reviewer name is remembered
    detail = api.get(f"/api/entries/{target}").json()
    assert detail["evidence"]["histograms"] and detail["history"][0]["reviewer"] == "Zoë"


def test_bulk_decisions_from_the_queue(browser, store):
    page = browser.get("/?per_page=200")
    token = csrf_of(page.text)
    ticked = [e for e in store.list_entries() if e["row_id"] in FLIPPED]
    response = browser.post("/decisions", data={
        "csrf_token": token, "status": "rejected", "note": "labels flipped", "reviewer": "ann",
        "ids": [f"{e['id']}:pending" for e in ticked], "return_to": "status=pending&per_page=200",
    }, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/?status=pending&page=1&per_page=200&done=rejected&n=3")
    landing = browser.get(response.headers["location"])
    assert "Rejected 3 entries." in landing.text
    for entry in ticked:
        assert store.get_entry(entry["id"])["status"] == "rejected"
        assert store.get_entry(entry["id"])["history"][0]["note"] == "labels flipped"
    # A stale tick (decided meanwhile) fails the whole batch with 409: all or nothing.
    others = [e for e in store.list_entries(EntryFilter(status="pending"))][:2]
    stale = browser.post("/decisions", data={
        "csrf_token": token, "status": "released", "note": "fine",
        "ids": [f"{e['id']}:pending" for e in others] + [f"{ticked[0]['id']}:pending"],
    })
    assert stale.status_code == 409
    assert all(store.get_entry(e["id"])["status"] == "pending" for e in others)
    mixed = browser.post("/decisions", data={
        "csrf_token": token, "status": "released", "note": "fine",
        "ids": [f"{others[0]['id']}:pending", f"{ticked[0]['id']}:rejected"],
    })
    assert mixed.status_code == 422 and "different statuses" in mixed.text
    # return_to only ever leads back to the queue.
    elsewhere = browser.post("/decisions", data={
        "csrf_token": token, "status": "released", "note": "fine", "ids": [f"{others[0]['id']}:pending"],
        "return_to": "//evil.example/?status=bogus",
    }, follow_redirects=False)
    location = elsewhere.headers["location"]
    assert elsewhere.status_code == 303 and location.startswith("/?") and "evil" not in location


def test_bulk_decisions_through_the_api(api, store):
    ids = [e["id"] for e in store.list_entries(EntryFilter(check="label.trusted_model"))]
    response = api.post("/api/decisions", json={"ids": ids, "status": "rejected", "note": "flips", "expected_status": "pending"})
    assert response.status_code == 200 and len(response.json()["decisions"]) == len(ids)
    assert store.count_entries(EntryFilter(status="rejected")) == len(ids)


# ------------------------------------------------------------ the plot


def test_histogram_plot_places_the_marker():
    histogram = {"edges": [float(e) for e in range(21)], "counts": [1] * 20}
    inside = histogram_plot("x", histogram, 5.5)
    assert inside["marker"]["side"] == "inside"
    assert inside["bars"][5]["x"] <= inside["marker"]["x"] <= inside["bars"][5]["x"] + inside["bars"][5]["width"] + 1
    above = histogram_plot("x", histogram, 1000.0)
    assert above["marker"]["side"] == "above" and above["marker"]["x"] > above["bars"][-1]["x"]
    below = histogram_plot("x", histogram, -3)
    assert below["marker"]["side"] == "below" and below["marker"]["x"] < below["bars"][0]["x"]
    assert histogram_plot("x", histogram, None)["marker"] is None
    assert histogram_plot("x", histogram, "oops")["marker"] is None
    assert histogram_plot("x", {"edges": [0, 1], "counts": [1, 2]}, 1.0) is None


# ---------------------------------------------------------------- serve


def test_serve_binds_localhost_and_prints_a_generated_token_once(monkeypatch, capsys, store_url):
    import uvicorn

    calls = {}
    monkeypatch.delenv("POISONGUARD_REVIEW_TOKEN", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: calls.update(app=app, **options))
    serve(store_url=store_url)
    out = capsys.readouterr().out
    assert calls["host"] == "127.0.0.1" and calls["port"] == 8765
    assert "http://127.0.0.1:8765/" in out
    token = re.search(r"review token \(.*\): (\S+)", out).group(1)
    assert len(token) >= 32 and out.count(token) == 1
    with TestClient(calls["app"], headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/api/entries").status_code == 200
    # A token from the environment is used and never printed.
    monkeypatch.setenv("POISONGUARD_REVIEW_TOKEN", TOKEN)
    serve(store_url=store_url, port=9000)
    out = capsys.readouterr().out
    assert TOKEN not in out and calls["port"] == 9000
    with TestClient(calls["app"], headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.get("/api/entries").status_code == 200


def test_session_lifetime_is_bounded():
    guard = Guard(TOKEN)
    cookie = guard.new_session(now=1_000_000)
    assert guard.session_nonce(cookie, now=1_000_000 + 60)
    assert guard.session_nonce(cookie, now=1_000_000 + web_security.SESSION_SECONDS + 1) is None
