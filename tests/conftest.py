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
# One test process per core already (-n auto): a thread pool per process on
# top (OpenMP, OpenBLAS) oversubscribes the cores, and OpenMP threads spin
# while they wait. Set before numpy or scikit-learn load; runs started in
# subprocesses inherit it. Set, not defaulted: the tests that fork a run
# (``tests/forked.py``) fork after a warm-up run, and a child forked from a
# process whose OpenMP pool has threads waits forever on the first parallel
# loop (with OMP_NUM_THREADS=2 in the shell, six such tests hung 240 s each
# in scikit-learn's neighbour search).
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import shutil  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

BARE_PACKAGES = ("pipelines", "detectors", "expectations")


class _RefuseBareImports:
    """Fail ``import pipelines`` (and detectors, expectations) in the test session.

    Inside the checkout those folders are importable by their bare names too,
    which would load a second copy of every module beside
    ``poisonguard.pipelines``: two registries, two stores' metadata, patches
    that miss. Only the installed ``poisonguard.`` names are allowed.
    """

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BARE_PACKAGES:
            raise ImportError(f"import poisonguard.{name}, not {name}: the bare name loads a second copy")
        return None


sys.meta_path.insert(0, _RefuseBareImports())


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """Each test gets its own state folder (keys, quarantine store)."""
    monkeypatch.setenv("POISONGUARD_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture(scope="module")
def tiny_run_template(tmp_path_factory):
    """One real run (about 4 s), shared; each test gets its own copy of its state."""
    from poisonguard.pipelines.runner import execute
    from poisonguard.pipelines.core.settings import make_settings
    from tests.tiny_data import write_tiny_dataset

    base = tmp_path_factory.mktemp("tiny-run")
    data = write_tiny_dataset(base / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POISONGUARD_HOME", str(base / "state"))
        settings = make_settings([data["batch"]], out=base / "out", config_path=data["config"])
        summary = execute(settings)
    return {"state": base / "state", "out": summary.out, "run_id": summary.run_id}


@pytest.fixture
def tiny_run(tiny_run_template, tmp_path, isolated_state):
    """This test's own copy of the shared tiny run: keys, store and signed output."""
    return copy_tiny_run(tiny_run_template, tmp_path, isolated_state)


def copy_tiny_run(template, tmp_path, state):
    """Copy the template run's keys, store and signed output into this test's folders."""
    shutil.copytree(template["state"] / "keys", state / "keys")
    out = tmp_path / "runs" / "first"
    shutil.copytree(template["out"], out)
    database = state / "quarantine.db"
    source, target = sqlite3.connect(template["state"] / "quarantine.db"), sqlite3.connect(database)
    try:
        source.backup(target)  # a consistent copy, write-ahead log included
        target.execute("UPDATE runs SET output_dir = ? WHERE id = ?", (str(out), template["run_id"]))
        target.commit()
    finally:
        source.close()
        target.close()
    return {"run_id": template["run_id"], "out": out, "database": database, "store_url": f"sqlite:///{database}"}


def pytest_collection_modifyitems(config, items):
    """The slowest files first, each file's tests in their order.

    pytest-xdist hands whole files to one worker per core, in collection
    order (``--no-loadscope-reorder``; by default it starts with the files
    that hold the most tests): a two-minute file picked up last runs alone
    while the other core idles. Started first, it overlaps the many short
    files. A file's weight is the largest ``seconds`` of its
    ``pytest.mark.slow(seconds=...)`` marks (30 when a slow mark gives none).
    """
    weights: dict = {}
    for item in items:
        for mark in item.iter_markers("slow"):
            weights[item.path] = max(weights.get(item.path, 0), mark.kwargs.get("seconds", 30))
    items.sort(key=lambda item: -weights.get(item.path, 0))
