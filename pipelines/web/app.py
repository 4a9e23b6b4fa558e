"""The review web app: the queue, a page per entry, decisions, and a JSON API.

Server-rendered Jinja pages (``pages.router``) and JSON routes
(``api.router``) over the quarantine store; every rule about decisions is
``poisonguard.pipelines.review``'s, so the routes only translate HTTP to it
and back. Who may call them is decided by ``security``; every request goes
through the guard middleware below first.

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
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader
from starlette.exceptions import HTTPException as StarletteHTTPException

from poisonguard.pipelines.core.errors import PoisonguardError, ReviewConflict, UnknownEntry
from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.web import api, pages, views
from poisonguard.pipelines.web.requests import MAX_BODY_BYTES, BodyLimit, declared_length
from poisonguard.pipelines.web.responses import WebError, error, page, wants_json
from poisonguard.pipelines.web.security import SESSION_COOKIE, Guard, safe_next

logger = logging.getLogger("poisonguard.review.web")

TEMPLATES = Path(__file__).parent / "templates"
# Paths anyone may reach: the login form itself.
PUBLIC_PATHS = frozenset({"/login"})


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

    @asynccontextmanager
    async def lifespan(_app):
        yield
        store.close()

    # No /docs, /redoc or /openapi.json: nothing is reachable that the guard did not plan for.
    app = FastAPI(title="poisonguard review", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.store = store
    app.state.guard = guard
    app.state.templates = templates
    app.state.check_menu = {}
    app.middleware("http")(_guard)
    # Added last, so it wraps everything: no route or middleware reads past the limit.
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _add_error_handlers(app, store)
    app.include_router(pages.router)
    app.include_router(api.router)
    return app


async def _guard(request: Request, call_next):
    """Every request: a CSP nonce, the body-size limit, the token check, secure headers."""
    request.state.csp_nonce = secrets.token_urlsafe(12)
    guard: Guard = request.app.state.guard
    try:
        if declared_length(request) > MAX_BODY_BYTES:
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
    if not wants_json(request) and request.method in ("GET", "HEAD"):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = page(request, "login.html", 401, next=safe_next(target), failed=False)
        response.headers["WWW-Authenticate"] = 'Bearer realm="poisonguard review"'
        return response
    return error(request, 401, "the review token is missing or wrong: send it as a bearer token or log in")


def _add_error_handlers(app: FastAPI, store: QuarantineStore) -> None:
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
