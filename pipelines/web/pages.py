"""The review pages for browsers: login, the queue, one entry, and their decision forms."""
from __future__ import annotations

import time
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.review import DECISIONS, STATUSES, decide
from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.web import views
from poisonguard.pipelines.web.requests import form_text, is_form, require_csrf, store_of
from poisonguard.pipelines.web.responses import page
from poisonguard.pipelines.web.security import REVIEWER_COOKIE, SESSION_COOKIE, SESSION_SECONDS, safe_next

router = APIRouter()

# How many runs the queue's run menu offers (newest first).
RUN_MENU = 50
# How long the queue's list of check names is reused before it is read again.
CHECK_MENU_SECONDS = 30.0


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/"):
    return page(request, "login.html", next=safe_next(next), failed=False)


@router.post("/login")
async def login(request: Request):
    guard = request.app.state.guard
    form = await request.form() if is_form(request) else {}
    target = safe_next(form_text(form, "next"))
    if not guard.token_matches(form_text(form, "token").strip()):
        return page(request, "login.html", 401, next=target, failed=True)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, guard.new_session(), max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict"
    )
    return response


@router.post("/logout", dependencies=[Depends(require_csrf)])
def logout():
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.get("/", response_class=HTMLResponse)
def queue_page(request: Request):
    store = store_of(request)
    query = views.parse_queue_query(request.query_params, default_status="pending")
    total = store.count_entries(query.queue)
    entries = store.list_entries(query.queue, limit=query.per_page, offset=query.offset)
    last_page = max(1, -(-total // query.per_page))
    return page(
        request, "queue.html",
        query=query, total=total, entries=[views.summary(e) for e in entries], last_page=last_page,
        statuses=STATUSES, runs=store.recent_runs(RUN_MENU), checks=_check_menu(request),
        reviewer=_reviewer(request), done=_done_message(request),
        return_to=urlencode(query.params()),
    )


@router.get("/entries/{entry_id}", response_class=HTMLResponse)
def entry_page(request: Request, entry_id: str):
    entry = store_of(request).get_entry(views.parse_entry_id(entry_id))
    return page(
        request, "entry.html",
        entry=entry, plots=views.entry_plots(entry), unusual=views.unusual_columns(entry),
        reviewer=_reviewer(request), done=_done_message(request), decisions=DECISIONS,
    )


@router.post("/entries/{entry_id}/decision", dependencies=[Depends(require_csrf)])
async def decide_one(request: Request, entry_id: str):
    number = views.parse_entry_id(entry_id)
    request.state.back = f"/entries/{number}"
    form = await request.form() if is_form(request) else {}
    note, reviewer = views.check_decision_text(form_text(form, "note"), form_text(form, "reviewer"))
    made = await run_in_threadpool(
        decide, store_of(request), [number], status=form_text(form, "status"), note=note, reviewer=reviewer,
        force=form_text(form, "force") in ("1", "on", "true"), expected_status=form_text(form, "expected_status") or None,
    )
    response = RedirectResponse(f"/entries/{number}?{urlencode({'done': made[0]['status_after'], 'n': 1})}", 303)
    _remember_reviewer(response, reviewer)
    return response


@router.post("/decisions", dependencies=[Depends(require_csrf)])
async def decide_many(request: Request):
    form = await request.form() if is_form(request) else None
    if form is None:
        raise InputError("send the bulk decision as a form")
    back = _queue_params(form_text(form, "return_to"))
    request.state.back = "/?" + urlencode(back)
    ids, expected = _ticked(form.getlist("ids"))
    note, reviewer = views.check_decision_text(form_text(form, "note"), form_text(form, "reviewer"))
    made = await run_in_threadpool(
        decide, store_of(request), ids, status=form_text(form, "status"), note=note, reviewer=reviewer,
        force=form_text(form, "force") in ("1", "on", "true"), expected_status=expected,
    )
    back.update({"done": made[0]["status_after"], "n": str(len(made))})
    response = RedirectResponse("/?" + urlencode(back), status_code=303)
    _remember_reviewer(response, reviewer)
    return response


def _check_menu(request: Request) -> list[str]:
    # Listing check names scans the table; they change only when a run lands.
    cache = request.app.state.check_menu
    now = time.monotonic()
    if cache.get("until", 0.0) < now:
        store: QuarantineStore = store_of(request)
        cache.update(names=store.check_names(), until=now + CHECK_MENU_SECONDS)
    return cache["names"]


def _ticked(values: list) -> tuple[list[int], Optional[str]]:
    """Entry ids and the one status they were shown with, from ``id:status`` boxes.

    The status each box was rendered with travels along, so a decision made on
    a stale page fails with a conflict instead of overwriting someone else's.
    """
    ids, seen = [], set()
    for value in values:
        text = value if isinstance(value, str) else ""
        entry_id, _, status = text.partition(":")
        ids.append(views.parse_entry_id(entry_id))
        if status and status not in STATUSES:
            raise InputError(f"expected_status {status!r} is not one of {', '.join(STATUSES)}")
        seen.add(status or None)
    if not ids:
        raise InputError("tick at least one entry to decide")
    if len(seen) > 1:
        shown = ", ".join(sorted(str(s) for s in seen))
        raise InputError(f"the ticked entries had different statuses ({shown}); filter the queue by status first")
    return ids, seen.pop()


def _queue_params(return_to: str) -> dict[str, str]:
    """The queue filters to go back to, re-validated (never a foreign URL)."""
    params = dict(parse_qsl(return_to or "", keep_blank_values=False))
    try:
        return views.parse_queue_query(params, default_status="pending").params()
    except InputError:
        return {}


def _reviewer(request: Request) -> str:
    saved = unquote(request.cookies.get(REVIEWER_COOKIE, ""))
    try:
        return views.check_decision_text("", saved)[1]
    except InputError:
        return "web"


def _remember_reviewer(response: Response, reviewer: str) -> None:
    # Quoted, so any name survives the cookie header's character rules.
    response.set_cookie(REVIEWER_COOKIE, quote(reviewer), max_age=365 * 24 * 3600, path="/", httponly=True,
                        samesite="strict")


def _done_message(request: Request) -> Optional[str]:
    """The confirmation after a decision, from the redirect's own parameters."""
    done, count = request.query_params.get("done"), request.query_params.get("n", "1")
    if done not in DECISIONS or not count.isdigit():
        return None
    return f"{done.capitalize()} {count} {'entry' if count == '1' else 'entries'}."
