"""Who may use the review web app: the review token, login sessions and CSRF.

Every request carries the review token, either as ``Authorization: Bearer
<token>`` (tools, scripts) or as a session cookie set by the login page
(browsers). The cookie never holds the token: it holds an issue time and a
random nonce signed with HMAC-SHA256 keyed by the token, so it can be checked
without server-side state, expires, and stops working when the token changes.

Cookie sessions need a CSRF token on every state-changing request: an HMAC of
the session nonce, sent as a form field (``csrf_token``) or an
``X-CSRF-Token`` header. Bearer requests are exempt, because a browser never
attaches a bearer header on its own. All comparisons use
``secrets.compare_digest``.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Optional

from poisonguard.pipelines.core.errors import InputError

SESSION_COOKIE = "poisonguard_review_session"
REVIEWER_COOKIE = "poisonguard_reviewer"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
# A login lasts a working day; then the reviewer pastes the token again.
SESSION_SECONDS = 12 * 60 * 60
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Access:
    """How a request proved it holds the token."""

    method: str  # "bearer" or "cookie"
    csrf_token: str  # what forms rendered for this request must send back


class Guard:
    """Checks tokens, issues and verifies session cookies and CSRF tokens.

    Parameters
    ----------
    token : str
        The review token; at least ``MIN_TOKEN_LENGTH`` characters.
    """

    def __init__(self, token: str) -> None:
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise InputError(
                f"the review token must be at least {MIN_TOKEN_LENGTH} characters "
                "(leave POISONGUARD_REVIEW_TOKEN unset to get a generated one)"
            )
        self._token = token.encode("utf-8")

    def token_matches(self, candidate: Optional[str]) -> bool:
        """True if ``candidate`` is the review token (constant time)."""
        if not candidate:
            return False
        return secrets.compare_digest(candidate.encode("utf-8"), self._token)

    def _sign(self, purpose: str, *parts: str) -> str:
        message = "|".join((purpose, *parts)).encode("utf-8")
        return hmac.new(self._token, message, hashlib.sha256).hexdigest()

    def new_session(self, now: Optional[float] = None) -> str:
        """A fresh session cookie value: ``issued.nonce.signature``."""
        issued = str(int(now if now is not None else time.time()))
        nonce = secrets.token_urlsafe(16)
        return f"{issued}.{nonce}.{self._sign('session', issued, nonce)}"

    def session_nonce(self, cookie: Optional[str], now: Optional[float] = None) -> Optional[str]:
        """The nonce of a valid, unexpired session cookie, else None."""
        if not cookie or cookie.count(".") != 2:
            return None
        issued, nonce, signature = cookie.split(".")
        if not secrets.compare_digest(signature.encode("ascii", "replace"), self._sign("session", issued, nonce).encode()):
            return None
        try:
            age = (now if now is not None else time.time()) - int(issued)
        except ValueError:
            return None
        return nonce if 0 <= age <= SESSION_SECONDS else None

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of the session with ``nonce``."""
        return self._sign("csrf", nonce)

    def check(self, authorization: Optional[str], cookie: Optional[str]) -> Optional[Access]:
        """How the request is authenticated, or None if it is not.

        A request that sends an ``Authorization`` header is judged by it alone,
        so a wrong bearer token is refused even beside a valid cookie.
        """
        if authorization is not None:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
                # Forms rendered for bearer clients still need a field; any value works.
                return Access("bearer", "bearer")
            return None
        nonce = self.session_nonce(cookie)
        if nonce is None:
            return None
        return Access("cookie", self.csrf_token(nonce))


def safe_next(target: Optional[str]) -> str:
    """Where to go after login: a path on this site, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(character) < 32 for character in target):
        return "/"
    return target
