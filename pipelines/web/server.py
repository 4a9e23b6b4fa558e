"""Serving the review web app with uvicorn, as ``poisonguard review serve`` does."""
from __future__ import annotations

import ipaddress
import os
import secrets
import sys
from typing import Optional

import uvicorn

from poisonguard.pipelines.web.app import create_app

TOKEN_VARIABLE = "POISONGUARD_REVIEW_TOKEN"


def serve(*, store_url: str, host: str = "127.0.0.1", port: int = 8765, token: Optional[str] = None) -> None:
    """Serve the review app until interrupted.

    Parameters
    ----------
    store_url : str
        SQLAlchemy URL of the quarantine store.
    host : str
        Interface to bind; the default is reachable from this machine only.
    port : int
    token : str, optional
        The review token. Without one, ``POISONGUARD_REVIEW_TOKEN`` is used if
        set; otherwise a new random token is generated and printed once.
    """
    generated = False
    if token is None:
        token = os.environ.get(TOKEN_VARIABLE) or None
    if token is None:
        token = secrets.token_urlsafe(32)
        generated = True
    app = create_app(store_url=store_url, token=token)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/"
    print(f"poisonguard review: {url} (Ctrl+C to stop)", flush=True)
    if generated:
        print(f"review token (log in with it, or send 'Authorization: Bearer <token>'): {token}", flush=True)
    else:
        print(f"review token: the one you gave (from {TOKEN_VARIABLE} or the caller)", flush=True)
    if not _is_loopback(host):
        print(
            f"warning: listening on {host}, not only this machine; the token and the pages travel "
            "unencrypted over plain HTTP, so put TLS in front of it",
            file=sys.stderr, flush=True,
        )
    uvicorn.run(app, host=host, port=port, log_level="warning", server_header=False)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
