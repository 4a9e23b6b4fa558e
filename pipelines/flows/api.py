"""Is a Prefect API configured? Decides whether an ad hoc run becomes a Prefect flow run.

Prefect's own settings loader answers, so every place Prefect reads its
settings from counts (``PREFECT_API_URL`` in the environment, the active
profile, a ``prefect.toml`` or ``.env``, a test harness). But importing it
costs 1-1.5 s (``prefect.settings`` loads the whole client package), paid on
every ad hoc run by a user who has no Prefect server. So the places Prefect
could read an API URL from are looked at first, without importing it; only
when one of them exists does Prefect's loader decide.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Container, Mapping, Optional

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport (a dependency there)
    import tomli as tomllib

# Prefect settings in the environment that cannot name an API for the
# client: where its home is, and how its logging and a local server behave.
# Any other PREFECT_* variable (PREFECT_API_URL, PREFECT_PROFILE, a test
# mode...) sends the question to Prefect's loader.
_HARMLESS_ENVIRONMENT = re.compile(r"PREFECT_(HOME|LOGGING_\w+|SERVER_\w+)", re.IGNORECASE)


def prefect_api_configured() -> bool:
    """True when Prefect would talk to a server someone runs (not start its own)."""
    try:
        if no_prefect_settings_source(os.environ, Path.cwd(), Path.home()):
            return False
    except (OSError, RuntimeError, KeyError):  # no working folder or home to look in: Prefect decides
        pass
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def no_prefect_settings_source(
    environ: Mapping[str, str], cwd: Path, home: Path, modules: Container[str] = sys.modules
) -> bool:
    """True when nothing Prefect reads its settings from could name an API (so none is configured).

    Prefect 3 reads settings from, in order: the process's own overrides (a
    test harness; only once Prefect is imported), ``PREFECT_*`` environment
    variables, ``.env``, ``prefect.toml`` and ``pyproject.toml``'s
    ``[tool.prefect]`` in the working directory, and the active profile of
    ``$PREFECT_HOME/profiles.toml`` (``~/.prefect``), else of its own
    bundled profiles, whose default names no API. False means "ask Prefect":
    one of those exists, not that it names an API. ``modules`` are the
    imported modules' names (with Prefect imported, a harness may hold settings).
    """
    if "prefect" in modules:
        return False
    if any(name.upper().startswith("PREFECT_") and not _HARMLESS_ENVIRONMENT.fullmatch(name) for name in environ):
        return False
    if (cwd / ".env").exists() or (cwd / "prefect.toml").exists():
        return False
    if _pyproject_prefect_table(cwd / "pyproject.toml") is not False:
        return False
    prefect_home = Path(environ["PREFECT_HOME"]).expanduser() if environ.get("PREFECT_HOME") else home / ".prefect"
    return not (prefect_home / "profiles.toml").exists()


def _pyproject_prefect_table(path: Path) -> Optional[bool]:
    """Whether ``pyproject.toml`` has a ``[tool.prefect]`` table; False without the file, None if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        return "prefect" in tomllib.loads(text).get("tool", {})
    except (tomllib.TOMLDecodeError, AttributeError):
        return None
