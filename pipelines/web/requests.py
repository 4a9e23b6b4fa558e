"""Reading requests safely: form fields, body size, and the CSRF check of cookie sessions."""
from __future__ import annotations

import secrets

from fastapi import Request

from poisonguard.pipelines.store import QuarantineStore
from poisonguard.pipelines.web.responses import WebError
from poisonguard.pipelines.web.security import CSRF_FIELD, CSRF_HEADER

# Forms and JSON bodies are small: a note, a reviewer name, up to 200 ids.
MAX_BODY_BYTES = 64 * 1024


def store_of(request: Request) -> QuarantineStore:
    """The quarantine store the app serves."""
    return request.app.state.store


def declared_length(request: Request) -> int:
    try:
        return int(request.headers.get("content-length", "0"))
    except ValueError:
        return MAX_BODY_BYTES + 1


def is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("application/x-www-form-urlencoded", "multipart/form-data")


def form_text(form, name: str) -> str:
    value = form.get(name) if form else None
    return value if isinstance(value, str) else ""


async def require_csrf(request: Request) -> None:
    """Refuse cookie-session POSTs without this session's CSRF token (a route dependency)."""
    access = request.state.access
    if access.method == "bearer":
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
        raise WebError(403, "cross-site request refused")
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None and is_form(request):
        submitted = (await request.form()).get(CSRF_FIELD)
    if not isinstance(submitted, str) or not secrets.compare_digest(
        submitted.encode("utf-8"), access.csrf_token.encode("utf-8")
    ):
        raise WebError(403, "the form's CSRF token is missing or stale: reload the page and try again")


class BodyLimit:
    """ASGI middleware: read at most ``limit`` bytes of a request body, else answer 413.

    ``Content-Length`` is checked by the guard, but a chunked body declares
    no length: without counting what arrives, an authenticated client could
    send hundreds of megabytes that the form parser reads whole. The body
    (at most ``limit`` bytes, 64 KiB) is read here first and handed on.
    """

    def __init__(self, app, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break  # the client went away; the app sees that as it is
            received += len(message.get("body", b""))
            if received > self.limit:
                await _too_large(send)
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay():
            # The buffered messages first, then whatever comes (a disconnect).
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)


async def _too_large(send) -> None:
    body = b'{"detail":"request body too large"}'
    await send({
        "type": "http.response.start",
        "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body})
