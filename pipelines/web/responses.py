"""Rendering pages and errors, the one way every route answers."""
from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

logger = logging.getLogger("poisonguard.review.web")


class WebError(Exception):
    """An HTTP error with a message fit to show a reviewer."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def page(request: Request, name: str, http_status: int = 200, **context) -> HTMLResponse:
    """Render template ``name`` with the request's CSRF token, session state and CSP nonce."""
    access = getattr(request.state, "access", None)
    html = request.app.state.templates.get_template(name).render(
        csrf_token=access.csrf_token if access else "",
        signed_in=access is not None and access.method == "cookie",
        csp_nonce=request.state.csp_nonce,
        **context,
    )
    return HTMLResponse(html, status_code=http_status)


def error(request: Request, status_code: int, message: str) -> Response:
    """An error as JSON for the API, as a page for browsers; never a traceback."""
    if wants_json(request):
        headers = {"WWW-Authenticate": 'Bearer realm="poisonguard review"'} if status_code == 401 else None
        return JSONResponse({"detail": message}, status_code=status_code, headers=headers)
    try:
        return page(request, "error.html", status_code, status_code=status_code, message=message,
                    back=getattr(request.state, "back", None))
    except Exception:  # the error page itself failed: still no traceback
        logger.exception("rendering the error page failed")
        return Response(f"{status_code} {message}", status_code=status_code, media_type="text/plain")
