"""Test-wide environment: no telemetry, Prefect and poisonguard state in temp folders."""
import os
import tempfile

# Set before anything imports Prefect or Great Expectations.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="poisonguard-prefect-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["GX_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """Each test gets its own state folder (keys, quarantine store)."""
    monkeypatch.setenv("POISONGUARD_HOME", str(tmp_path / "state"))
    return tmp_path / "state"
