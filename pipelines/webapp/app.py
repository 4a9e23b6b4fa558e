"""The review web app: the queue, a page per entry, decisions, and a JSON API.

Server-rendered Jinja pages over :mod:`pipelines.review` (which holds every
rule about decisions; this module only translates HTTP to it and back).
Who may call it is decided by :mod:`pipelines.webapp.security`; every
request goes through :func:`_guard` first.

Routes (all need the review token; see ``security`` for how):

=======  ===============================  ===========================================
GET      /login, POST /login              the token form; sets the session cookie
POST     /logout                          ends the cookie session
GET      /                                the queue: filters, paging, bulk form
POST     /decisions                       bulk release / reject of ticked entries
GET      /entries/{id}                    one entry: values, findings, evidence, history
POST     /entries/{id}/decision           release / reject one entry
GET      /api/entries                     the queue as JSON (same filters and paging)
GET      /api/entries/{id}                one entry as JSON, with evidence and history
POST     /api/entries/{id}/decision       JSON {status, note, reviewer?, expected_status?, force?}
POST     /api/decisions                   JSON {ids, status, note, ...}: several at once
=======  ===============================  ===========================================
"""
from __future__ import annotations

import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote, urlencode

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.errors import InputError, PoisonguardError
from pipelines.review import (
    DECISIONS, STATUSES, ReviewConflict, UnknownEntry, count_entries, decide, get_entry, list_entries,
)
from pipelines.store import QuarantineStore, quarantine, runs, to_jsonable
from pipelines.webapp import views
from pipelines.webapp.security import (
    CSRF_FIELD, CSRF_HEADER, REVIEWER_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Guard, safe_next,
)

logger = logging.getLogger("poisonguard.review.web")

TEMPLATES = Path(__file__).parent / "templates"
# Paths anyone may reach: the login form itself.
PUBLIC_PATHS = frozenset({"/login"})
# How many runs the queue's run menu offers (newest first).
RUN_MENU = 50
# Forms and JSON bodies are small: a note, a reviewer name, up to 200 ids.
MAX_BODY_BYTES = 64 * 1024
# How long the queue's list of check names is reused before it is read again.
CHECK_MENU_SECONDS = 30.0


class WebError(Exception):
    """An HTTP error with a message fit to show a reviewer."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


class DecisionBody(BaseModel):
    """``POST /api/entries/{id}/decision``."""

    model_config = ConfigDict(extra="forbid")

    status: str
    note: str
    reviewer: Optional[str] = None
    expected_status: Optional[str] = None
    force: bool = False


class BulkDecisionBody(DecisionBody):
    """``POST /api/decisions``."""

    ids: list[int]


def create_app(*, store_url: str, token: str) -> FastAPI:
    """The review application over the quarantine store at ``store_url``.

    Parameters
    ----------
    store_url : str
        SQLAlchemy URL of the quarantine store.
    token : str
        The review token every request must prove it holds (at least 16
        characters).

    Returns
    -------
    fastapi.FastAPI
    """
    guard = Guard(token)
    store = QuarantineStore(store_url)
    templates = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    templates.filters["number"] = views.number
    templates.filters["fixed"] = views.fixed

    menu_cache: dict = {}

    def check_menu() -> list[str]:
        # Listing check names scans the table; they change only when a run lands.
        now = time.monotonic()
        if menu_cache.get("until", 0.0) < now:
            menu_cache.update(names=_check_menu(store), until=now + CHECK_MENU_SECONDS)
        return menu_cache["names"]

    @asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    # No /docs, /redoc or /openapi.json: nothing is reachable that the guard did not plan for.
    app = FastAPI(title="poisonguard review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.store = store
    app.state.guard = guard

    def page(request: Request, name: str, http_status: int = 200, **context) -> HTMLResponse:
        access = getattr(request.state, "access", None)
        html = templates.get_template(name).render(
            csrf_token=access.csrf_token if access else "",
            signed_in=access is not None and access.method == "cookie",
            csp_nonce=request.state.csp_nonce,
            **context,
        )
        return HTMLResponse(html, status_code=http_status)

    def error(request: Request, status_code: int, message: str) -> Response:
        if _wants_json(request):
            headers = {"WWW-Authenticate": 'Bearer realm="poisonguard review"'} if status_code == 401 else None
            return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
        try:
            return page(request, "error.html", status_code, status_code=status_code, message=message,
                        back=getattr(request.state, "back", None))
        except Exception:  # the error page itself failed: still no traceback
            logger.exception("rendering the error page failed")
            return Response(f"{status_code} {message}", status_code=status_code, media_type="text/plain")

    # ------------------------------------------------------------- the guard

    @app.middleware("http")
    async def _guard(request: Request, call_next):
        request.state.csp_nonce = secrets.token_urlsafe(12)
        try:
            if _declared_length(request) > MAX_BODY_BYTES:
                # Before any parsing, so not even the public login form reads a huge body.
                response = error(request, 413, "request body too large")
            elif request.url.path in PUBLIC_PATHS:
                response = await call_next(request)
            else:
                access = guard.check(request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE))
                if access is None:
                    response = _unauthorized(request)
                else:
                    request.state.access = access
                    response = await call_next(request)
        except Exception:
            logger.exception("error while answering %s %s", request.method, request.url.path)
            response = error(request, 500, "internal error")
        _secure_headers(response, request.state.csp_nonce)
        return response

    def _unauthorized(request: Request) -> Response:
        if not _wants_json(request) and request.method in ("GET", "HEAD"):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response = page(request, "login.html", 401, next=safe_next(target), failed=False)
            response.headers["WWW-Authenticate"] = 'Bearer realm="poisonguard review"'
            return response
        return error(request, 401, "the review token is missing or wrong: send it as a bearer token or log in")

    async def require_csrf(request: Request) -> None:
        """Refuse cookie-session POSTs without this session's CSRF token."""
        access = request.state.access
        if access.method == "bearer":
            return
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            raise WebError(403, "cross-site request refused")
        submitted = request.headers.get(CSRF_HEADER)
        if submitted is None and _is_form(request):
            submitted = (await request.form()).get(CSRF_FIELD)
        if not isinstance(submitted, str) or not secrets.compare_digest(
            submitted.encode("utf-8"), access.csrf_token.encode("utf-8")
        ):
            raise WebError(403, "the form's CSRF token is missing or stale: reload the page and try again")

    # ---------------------------------------------------------- error pages

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError):
        return error(request, exc.status_code, exc.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        messages = {404: f"nothing at {request.url.path}", 405: f"{request.method} is not allowed here"}
        return error(request, exc.status_code, messages.get(exc.status_code, "request refused"))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', ()) if part != 'body') or 'request'}: {item.get('msg')}"
            for item in exc.errors()
        )
        return error(request, 422, f"bad input: {problems or 'the request could not be read'}")

    @app.exception_handler(UnknownEntry)
    async def _unknown_entry(request: Request, exc: UnknownEntry):
        # The store's location is the server's business, not the page's.
        return error(request, 404, str(exc).replace(f" in {store.describe()}", ""))

    @app.exception_handler(ReviewConflict)
    async def _conflict(request: Request, exc: ReviewConflict):
        return error(request, 409, f"conflict, nothing was decided: {exc}")

    @app.exception_handler(PoisonguardError)
    async def _input_error(request: Request, exc: PoisonguardError):
        return error(request, 422, str(exc))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception):
        logger.error("error while answering %s %s", request.method, request.url.path, exc_info=exc)
        return error(request, 500, "internal error")

    # ---------------------------------------------------------------- login

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/"):
        return page(request, "login.html", next=safe_next(next), failed=False)

    @app.post("/login")
    async def login(request: Request):
        form = await request.form() if _is_form(request) else {}
        target = safe_next(_form_text(form, "next"))
        if not guard.token_matches(_form_text(form, "token").strip()):
            return page(request, "login.html", 401, next=target, failed=True)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            SESSION_COOKIE, guard.new_session(), max_age=SESSION_SECONDS, path="/", httponly=True, samesite="strict"
        )
        return response

    @app.post("/logout", dependencies=[Depends(require_csrf)])
    def logout():
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        return response

    # ---------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse)
    def queue_page(request: Request):
        query = views.parse_queue_query(request.query_params, default_status="pending")
        total = count_entries(store, query.queue)
        entries = list_entries(store, query.queue, limit=query.per_page, offset=query.offset)
        last_page = max(1, -(-total // query.per_page))
        return page(
            request, "queue.html",
            query=query, total=total, entries=[views.summary(e) for e in entries], last_page=last_page,
            statuses=STATUSES, runs=_run_menu(store), checks=check_menu(),
            reviewer=_reviewer(request), done=_done_message(request),
            return_to=urlencode(query.params()),
        )

    @app.get("/entries/{entry_id}", response_class=HTMLResponse)
    def entry_page(request: Request, entry_id: str):
        entry = get_entry(store, views.parse_entry_id(entry_id))
        return page(
            request, "entry.html",
            entry=entry, plots=views.entry_plots(entry), unusual=views.unusual_columns(entry),
            reviewer=_reviewer(request), done=_done_message(request), decisions=DECISIONS,
        )

    @app.post("/entries/{entry_id}/decision", dependencies=[Depends(require_csrf)])
    async def decide_one(request: Request, entry_id: str):
        number = views.parse_entry_id(entry_id)
        request.state.back = f"/entries/{number}"
        form = await request.form() if _is_form(request) else {}
        note, reviewer = views.check_decision_text(_form_text(form, "note"), _form_text(form, "reviewer"))
        expected = _expected_status(_form_text(form, "expected_status") or None)
        made = await run_in_threadpool(
            decide, store, [number], status=_form_text(form, "status"), note=note, reviewer=reviewer,
            force=_form_text(form, "force") in ("1", "on", "true"), expected_status=expected,
        )
        response = RedirectResponse(f"/entries/{number}?{urlencode({'done': made[0]['status_after'], 'n': 1})}", 303)
        _remember_reviewer(response, reviewer)
        return response

    @app.post("/decisions", dependencies=[Depends(require_csrf)])
    async def decide_many(request: Request):
        form = await request.form() if _is_form(request) else None
        if form is None:
            raise InputError("send the bulk decision as a form")
        back = _queue_params(_form_text(form, "return_to"))
        request.state.back = "/?" + urlencode(back)
        ids, expected = _ticked(form.getlist("ids"))
        note, reviewer = views.check_decision_text(_form_text(form, "note"), _form_text(form, "reviewer"))
        made = await run_in_threadpool(
            decide, store, ids, status=_form_text(form, "status"), note=note, reviewer=reviewer,
            force=_form_text(form, "force") in ("1", "on", "true"), expected_status=expected,
        )
        back.update({"done": made[0]["status_after"], "n": str(len(made))})
        response = RedirectResponse("/?" + urlencode(back), status_code=303)
        _remember_reviewer(response, reviewer)
        return response

    # ------------------------------------------------------------------ API

    @app.get("/api/entries")
    def api_entries(request: Request):
        query = views.parse_queue_query(request.query_params, default_status=None)
        total = count_entries(store, query.queue)
        entries = list_entries(store, query.queue, limit=query.per_page, offset=query.offset)
        return JSONResponse({
            "total": total, "page": query.page, "per_page": query.per_page,
            "entries": [views.summary(e) for e in entries],
        })

    @app.get("/api/entries/{entry_id}")
    def api_entry(entry_id: str):
        return JSONResponse(views.detail(get_entry(store, views.parse_entry_id(entry_id))))

    @app.post("/api/entries/{entry_id}/decision", dependencies=[Depends(require_csrf)])
    def api_decide(entry_id: str, body: DecisionBody):
        number = views.parse_entry_id(entry_id)
        made = _decide_body(store, [number], body)
        return JSONResponse({"decisions": made, "entry": views.summary(get_entry(store, number))})

    @app.post("/api/decisions", dependencies=[Depends(require_csrf)])
    def api_decide_many(body: BulkDecisionBody):
        for entry_id in body.ids:
            views.parse_entry_id(str(entry_id))
        return JSONResponse({"decisions": _decide_body(store, body.ids, body)})

    return app


# ------------------------------------------------------------------ helpers


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return MAX_BODY_BYTES + 1


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("application/x-www-form-urlencoded", "multipart/form-data")


def _form_text(form, name: str) -> str:
    value = form.get(name) if form else None
    return value if isinstance(value, str) else ""


def _expected_status(value: Optional[str]) -> Optional[str]:
    if value is not None and value not in STATUSES:
        raise InputError(f"expected_status {value!r} is not one of {', '.join(STATUSES)}")
    return value


def _decide_body(store: QuarantineStore, ids: list[int], body: DecisionBody) -> list[dict]:
    note, reviewer = views.check_decision_text(body.note, body.reviewer)
    made = decide(
        store, ids, status=body.status, note=note, reviewer=reviewer, force=body.force,
        expected_status=_expected_status(body.expected_status),
    )
    return [to_jsonable(decision) for decision in made]


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
        seen.add(_expected_status(status or None))
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


def _run_menu(store: QuarantineStore) -> list[dict]:
    query = select(runs.c.id, runs.c.dataset, runs.c.started_at).order_by(runs.c.started_at.desc()).limit(RUN_MENU)
    with store.engine.connect() as connection:
        return [dict(record) for record in connection.execute(query).mappings()]


def _check_menu(store: QuarantineStore) -> list[str]:
    # Distinct combinations are few (one per set of checks that fired together).
    with store.engine.connect() as connection:
        combinations = connection.execute(select(quarantine.c.checks).distinct().limit(500)).scalars().all()
    return sorted({name for combination in combinations for name in (combination or "").split(",") if name})


def _secure_headers(response: Response, nonce: str) -> None:
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cache-Control"] = "no-store"
