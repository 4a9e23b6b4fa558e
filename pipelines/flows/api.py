"""Is a Prefect API configured? Decides whether an ad hoc run becomes a Prefect flow run.

Prefect's own settings loader answers, so every place Prefect reads its
settings from counts (``PREFECT_API_URL`` in the environment, the active
profile, a ``prefect.toml`` or ``.env``, a test harness). Only
``prefect.settings`` is imported: the flow machinery and its ephemeral server
start only when a run needs them.
"""
from __future__ import annotations


def prefect_api_configured() -> bool:
    """True when Prefect would talk to a server someone runs (not start its own)."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)
