"""Who decided: the one rule for a reviewer's name, shared by the CLI, the web page and watch."""
from __future__ import annotations

import getpass
import os
from typing import Optional

from poisonguard.pipelines.core.errors import InputError

REVIEWER_VARIABLE = "POISONGUARD_REVIEWER"
MAX_REVIEWER = 100
MAX_NOTE = 2000


def reviewer_name(given: Optional[str] = None, *, fallback: Optional[str] = None) -> str:
    """The name to record for a decision.

    ``given`` when it has any text; else ``fallback`` (the web page passes
    ``"web"``); else ``$POISONGUARD_REVIEWER``; else the login name; else
    ``"unknown"`` (some containers have no login name).

    Raises
    ------
    InputError
        The name is longer than ``MAX_REVIEWER`` or holds control characters.
    """
    name = (given or "").strip() or (fallback or "").strip() or os.environ.get(REVIEWER_VARIABLE, "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except Exception:  # noqa: BLE001 - no passwd entry for this uid
            name = ""
    name = name.strip() or "unknown"
    if len(name) > MAX_REVIEWER or any(ord(character) < 32 for character in name):
        raise InputError(f"a reviewer name is at most {MAX_REVIEWER} printable characters")
    return name


def checked_note(note: Optional[str]) -> str:
    """A decision's note, stripped.

    Raises
    ------
    InputError
        The note is empty (a decision without a reason is no audit trail) or
        longer than ``MAX_NOTE``.
    """
    text = (note or "").strip()
    if not text:
        raise InputError("a note is required: say why, for the audit trail")
    if len(text) > MAX_NOTE:
        raise InputError(f"the note is longer than {MAX_NOTE} characters")
    return text
