"""Watching an inbox in tests: a tiny dataset and inbox, batch files dropped in it, the state checked after."""
import os
import sqlite3
from pathlib import Path

import pandas as pd

from poisonguard.pipelines.outputs.datasets import list_versions, load_dataset, staging_folders, verify_chain
from poisonguard.pipelines.watch.request import make_request
from poisonguard.pipelines.watch.watcher import watch
from tests.tiny_data import write_tiny_dataset


def watch_setup(tmp_path: Path, state: Path) -> dict:
    """A tiny dataset config, an empty inbox, and the batch rows to cut files from."""
    data = write_tiny_dataset(tmp_path / "data")
    data["config"].write_text(data["config"].read_text() + "[watch]\nsettle_seconds = 0\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    batch = pd.read_csv(data["batch"], dtype=str)
    return {"config": data["config"], "inbox": inbox, "batch": batch, "state": state,
            "root": state / "datasets" / "tiny", "public": state / "keys" / "public.pem"}


def drop(inbox: Path, name: str, rows: pd.DataFrame, at: int) -> Path:
    """Write a batch file with modification time ``at`` (oldest first)."""
    path = inbox / name
    rows.to_csv(path, index=False)
    os.utime(path, (at, at))
    return path


def one_pass(setup, **options):
    return watch(make_request(str(setup["inbox"]), dataset="tiny", config=setup["config"]), **options)


def store_rows(setup, query):
    with sqlite3.connect(setup["state"] / "quarantine.db") as connection:
        return connection.execute(query).fetchall()


def assert_consistent(setup, files: int):
    """Every batch published exactly once, nothing half-written, nothing lost."""
    versions = list_versions(setup["root"])
    assert [v.name for v in versions] == [f"v{n:04d}" for n in range(1, files + 1)]
    assert staging_folders(setup["root"]) == []
    chain = verify_chain(setup["root"], setup["public"])
    digests = [v.chain["batch"]["digest"] for v in chain]
    assert len(set(digests)) == files
    assert sorted(p.name for p in setup["inbox"].iterdir() if p.is_file()) == []
    assert store_rows(setup, "SELECT status, count(*) FROM watch_batches GROUP BY status") == [("published", files)]
    # One succeeded run per batch; quarantine entries only from those runs.
    assert store_rows(setup, "SELECT count(*) FROM runs WHERE status = 'succeeded'") == [(files,)]
    assert store_rows(setup, "SELECT count(*) FROM quarantine q JOIN runs r ON r.id = q.run_id "
                             "WHERE r.status != 'succeeded'") == [(0,)]
    frame = load_dataset(setup["root"], public_key=setup["public"])
    assert frame["id"].is_unique and len(frame) == chain[-1].chain["rows_total"]
