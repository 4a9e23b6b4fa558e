"""The project's state folder: default key, default quarantine store.

``POISONGUARD_HOME`` names it; otherwise it is ``.poisonguard/`` in the
working directory, so a project's state lives beside the project.
"""
from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Return the state folder (not created here)."""
    home = os.environ.get("POISONGUARD_HOME")
    return Path(home).expanduser().resolve() if home else (Path.cwd() / ".poisonguard").resolve()


def default_store_url() -> str:
    """SQLAlchemy URL of the default quarantine store: a SQLite file in the state folder."""
    return f"sqlite:///{state_dir() / 'quarantine.db'}"


def default_public_key() -> Path:
    """Public key beside the state folder's signing key."""
    return state_dir() / "keys" / "public.pem"
