"""A run killed at its dangerous points, and runs racing for one output: nothing lost, nothing doubled.

Each run here is a real process, killed with SIGKILL at a chosen point (no
``finally`` runs, no cleanup), or two processes started together. The next
run of the same store settles what the dead one left.

The processes are forked from the test process after one warm-up run, so
each starts with poisonguard and its libraries imported: a fresh
interpreter would spend most of its life importing (10 s of CPU per run),
and the points killed at come after the imports anyway.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time

import pandas as pd
import pytest

from tests import forked
from tests.cli_helpers import listing
from tests.tiny_data import write_tiny_dataset

pytestmark = pytest.mark.slow(seconds=60)


def _run_and_die_at(batch, config, out, point: str, at: float) -> None:
    """``runner.execute`` (the stages the Prefect flow runs, without Prefect), SIGKILLed at ``point``.

    ``at`` waits until a wall-clock time, so two processes start their runs together.
    """
    from poisonguard.pipelines.core.settings import make_settings
    from poisonguard.pipelines.outputs import publish
    from poisonguard.pipelines.runner import execute
    from poisonguard.pipelines.store import QuarantineStore

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "signing":  # half-way through signing the staging folder
        def sign(folder, key, signature_name="signature.sig"):
            (folder / "half-written.tmp").write_bytes(b"x")
            die()
        publish.sign_folder = sign
    elif point == "stored":  # quarantine entries committed, output not yet renamed
        real_add = QuarantineStore.add_quarantined

        def add(self, *args, **kwargs):
            real_add(self, *args, **kwargs)
            die()
        QuarantineStore.add_quarantined = add
    elif point == "revealed":  # output renamed into place, run record not yet closed
        real_finish = QuarantineStore.finish_run

        def finish_run(self, run_id, **kwargs):
            if kwargs.get("status") == "succeeded":
                die()
            return real_finish(self, run_id, **kwargs)
        QuarantineStore.finish_run = finish_run
    while time.time() < at:
        time.sleep(0.005)
    execute(make_settings([batch], out=out, config_path=config))


@pytest.fixture
def tiny(tmp_path, isolated_state, tiny_run_template):
    # tiny_run_template: one run in this process first, so forked runs start warm.
    data = write_tiny_dataset(tmp_path / "data")
    return {**data, "state": isolated_state, "tmp": tmp_path}


def start(tiny, out, point="none", at=0.0) -> forked.Child:
    stderr = tiny["tmp"] / f"stderr-{time.monotonic_ns()}.txt"
    return forked.fork(lambda: _run_and_die_at(tiny["batch"], tiny["config"], out, point, at), stderr)


def finish(child: forked.Child) -> tuple[int, str]:
    return forked.wait(child)


def runs(tiny) -> list[tuple[str, str]]:
    with sqlite3.connect(tiny["state"] / "quarantine.db") as connection:
        return connection.execute("SELECT id, status FROM runs ORDER BY started_at").fetchall()


def queue_row_ids() -> list[str]:
    return sorted(item["row_id"] for item in listing("--limit", 10_000, "--status", "pending"))


def leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("point", ["signing", "stored"])
def test_a_run_killed_before_it_published_is_discarded_by_the_next_run(tiny, point):
    out = tiny["tmp"] / "runs" / "first"
    code, _ = finish(start(tiny, out, point))
    assert code == -9
    assert not out.exists()
    [(dead, status)] = runs(tiny)
    assert status == "running"
    assert leftovers(out.parent)  # a staging folder (and a claim file) are left behind
    # Nothing of a run that did not publish reaches the review queue, even before it is settled.
    assert listing("--limit", 10_000) == []

    code, stderr = finish(start(tiny, out))  # the same --out: the dead run's claim does not block it
    assert code == 0, stderr
    assert dict(runs(tiny))[dead] == "failed"
    assert leftovers(out.parent) == []
    row_ids = queue_row_ids()
    assert row_ids and len(row_ids) == len(set(row_ids))  # every quarantined row once
    quarantined = pd.read_parquet(out / "quarantine.parquet")["id"].astype(str)
    assert row_ids == sorted(quarantined)
    with sqlite3.connect(tiny["state"] / "quarantine.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM quarantine WHERE run_id = ?", (dead,)).fetchone() == (0,)


def test_a_run_killed_after_it_published_is_recorded_as_published(tiny):
    out = tiny["tmp"] / "runs" / "first"
    code, _ = finish(start(tiny, out, "revealed"))
    assert code == -9
    assert out.is_dir()
    [(first, status)] = runs(tiny)
    assert status == "running"
    code, stderr = finish(start(tiny, tiny["tmp"] / "runs" / "second"))
    assert code == 0, stderr
    statuses = dict(runs(tiny))
    assert statuses[first] == "succeeded" and list(statuses.values()) == ["succeeded", "succeeded"]
    assert json.loads((out / "provenance.json").read_text())["run_id"] == first
    # Both runs published, so each has its own entries: the same rows twice, one per run.
    per_run = {}
    for item in listing("--limit", 10_000):
        per_run.setdefault(item["run"], []).append(item["row_id"])
    assert sorted(per_run) == sorted(statuses) and sorted(per_run[first]) == sorted(set(per_run[first]))


def test_two_runs_racing_for_one_output_folder(tiny):
    out = tiny["tmp"] / "runs" / "shared"
    at = time.time() + 1.0  # both forked and waiting by then
    first, second = start(tiny, out, at=at), start(tiny, out, at=at)
    results = sorted([finish(first), finish(second)], key=lambda result: result[0])
    (winner, _), (loser, message) = results
    assert (winner, loser) == (0, 2)
    assert f"{out}: another run" in message or f"{out}: output folder already exists" in message
    assert len(message.strip().splitlines()) == 1
    statuses = [status for _, status in runs(tiny)]
    assert statuses.count("succeeded") == 1 and "running" not in statuses
    row_ids = queue_row_ids()
    assert len(row_ids) == len(set(row_ids))
    assert leftovers(out.parent) == []
