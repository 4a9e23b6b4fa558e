"""End to end through Prefect's test harness (one per file: it takes 20 s to start).

`run`: verify, tamper, verify fails; the same on a Dask cluster. `watch`:
artifacts, and a pause for review that a person's answer resumes.
"""
import logging
from collections import Counter
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app
from poisonguard.pipelines.core.config import DEFAULT_DETECTORS
from poisonguard.pipelines.flows import tasks as flow_tasks
from poisonguard.pipelines.store import QuarantineStore
from tests.cli_helpers import invoke
from tests.detectors.test_contract import JUDGED_IN_CHUNKS
from tests.tiny_data import POISONED, write_tiny_dataset
from tests.watch_helpers import assert_consistent, drop, watch_setup


@pytest.fixture(scope="module")
def prefect_harness():
    with prefect_test_harness(server_startup_timeout=180):
        yield


def model_signing_command() -> str:
    beside_python = Path(sys.executable).with_name("model_signing")
    return str(beside_python) if beside_python.exists() else shutil.which("model_signing")


@pytest.mark.slow
def test_run_verify_tamper_through_prefect(prefect_harness, tmp_path):
    runner = CliRunner()
    data = write_tiny_dataset(tmp_path / "data")
    keys = tmp_path / "keys"
    assert runner.invoke(app, ["keygen", "--out", str(keys)]).exit_code == 0
    out = tmp_path / "runs" / "first"
    result = runner.invoke(
        app,
        ["run", str(data["batch"]), "--label", "label", "--id", "id", "--reference", str(data["reference"]),
         "--key", str(keys / "private.pem"), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "Prefect start-up" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "clean.parquet", "provenance.json", "quarantine.parquet", "report.html", "signature.sig",
    ]
    assert set(POISONED) <= set(pd.read_parquet(out / "quarantine.parquet")["id"])

    verified = runner.invoke(app, ["verify", str(out), "--public-key", str(keys / "public.pem")])
    assert verified.exit_code == 0, verified.output

    # The OpenSSF tool itself accepts the signature.
    openssf = subprocess.run(
        [model_signing_command(), "verify", "key", str(out), "--signature", str(out / "signature.sig"),
         "--public_key", str(keys / "public.pem"), "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=300,
    )
    assert openssf.returncode == 0, openssf.stdout + openssf.stderr

    data_bytes = bytearray((out / "clean.parquet").read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0x01
    (out / "clean.parquet").write_bytes(bytes(data_bytes))
    tampered = runner.invoke(app, ["verify", str(out), "--public-key", str(keys / "public.pem")])
    assert tampered.exit_code == 4
    assert "clean.parquet changed" in tampered.output


@pytest.mark.slow
def test_the_detectors_on_a_dask_cluster_give_the_local_run(prefect_harness, tmp_path, monkeypatch):
    # Every array and table a task is given goes to the workers first, as a large batch's do.
    monkeypatch.setattr(flow_tasks, "SCATTER_BYTES", 0)
    scattered = []
    scatter = Client.scatter
    monkeypatch.setattr(Client, "scatter", lambda self, data, **options: scattered.append(data) or scatter(self, data, **options))
    data = write_tiny_dataset(tmp_path / "data")
    # Chunks of 10 of the 45 rows: the detectors that judge in chunks score five chunks each, as tasks.
    # Its own dataset name: the watch test below reads the harness's "tiny" artifacts as its own.
    config = data["config"].read_text(encoding="utf-8").replace('name = "tiny"', 'name = "tiny-dask"')
    data["config"].write_text(config + "chunk_rows = 10\n", encoding="utf-8")
    common = [str(data["batch"]), "--config", str(data["config"])]
    runner = CliRunner()
    local = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "local"), "--no-prefect"])
    assert local.exit_code == 0, local.output

    # Two worker processes: the detectors' inputs and findings cross a process boundary, as on a real cluster.
    cluster_options = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    with LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
        cluster_workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as stream:
            on_dask = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "dask"), "--dask", cluster.scheduler_address])
        tasks = [(task["key"], task["worker"]) for task in stream.data]
    assert on_dask.exit_code == 0, on_dask.output
    # Each array or table once, however many tasks were given it (the whole batch's features to five).
    assert scattered and len({id(value) for value in scattered}) == len(scattered)
    # Every detector was fitted on the cluster's workers, then scored there: in
    # chunks where it can be (``test_parallel_detectors`` checks which task is whose).
    assert {worker for _, worker in tasks} <= cluster_workers
    functions = Counter(str(key).rsplit("-", 1)[0] for key, _ in tasks)
    chunked = len(JUDGED_IN_CHUNKS & set(DEFAULT_DETECTORS))
    assert functions == {"fit_detector": len(DEFAULT_DETECTORS), "score_chunk": 5 * chunked,
                         "judge_whole": len(DEFAULT_DETECTORS) - chunked}

    for name in ("clean.parquet", "quarantine.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / name), pd.read_parquet(tmp_path / "dask" / name))
    assert set(POISONED) <= set(pd.read_parquet(tmp_path / "dask" / "quarantine.parquet")["id"])


def test_dask_cannot_go_with_no_prefect(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    result = CliRunner().invoke(app, [
        "run", str(data["batch"]), "--label", "label", "--id", "id", "--out", str(tmp_path / "out"),
        "--dask", "tcp://127.0.0.1:1", "--no-prefect",
    ])
    assert result.exit_code != 0
    assert "--dask runs the detectors as Prefect tasks" in result.output


@pytest.mark.slow
def test_watch_flow_end_to_end_with_artifacts_and_a_pause_for_review(prefect_harness, tmp_path, isolated_state):
    import contextvars

    from prefect.client.orchestration import get_client

    from poisonguard.pipelines.flows.watch import watch_flow

    setup = watch_setup(tmp_path, isolated_state)
    batch, inbox = setup["batch"], setup["inbox"]
    drop(inbox, "first.csv", batch.iloc[:30], 1000)
    result = invoke("watch", inbox, "--dataset", "tiny", "--config", setup["config"], "--once")
    assert result.exit_code == 0, result.output
    assert "v0001" in result.output and "published" in result.output
    with get_client(sync_client=True) as client:
        artifacts = {a.key: a for a in client.read_artifacts()}
    assert "## tiny: `first.csv` — published" in artifacts["poisonguard-tiny-batch"].data
    assert "Drift and batch-level checks" in artifacts["poisonguard-tiny-batch"].data
    assert artifacts["poisonguard-tiny-quarantined"].type == "table"

    # Above the review rate, the flow pauses until a person answers.
    setup["config"].write_text(setup["config"].read_text() + "review_above = 0.05\n")
    drop(inbox, "second.csv", batch.iloc[30:], 2000)
    outcome = {}
    context = contextvars.copy_context()
    thread = threading.Thread(target=lambda: outcome.update(context.run(
        watch_flow, inbox=str(inbox), dataset="tiny", config=str(setup["config"]))))
    thread.start()
    store = QuarantineStore(f"sqlite:///{setup['state'] / 'quarantine.db'}")
    try:
        claim = _wait_for(lambda: _paused_claim(store))
    finally:
        store.close()
    answered = invoke("review", "batch", claim["run_id"], "--approve", "--reviewer", "bob")
    assert answered.exit_code == 0, answered.output
    assert f"resumed the paused Prefect flow run {claim['flow_run_id']}" in answered.output
    thread.join(timeout=180)
    assert [(r["name"], r["status"], r["version"]) for r in outcome["results"]] == [("second.csv", "published", "v0002")]
    assert_consistent(setup, files=2)


def _paused_claim(store):
    from uuid import UUID

    from prefect.client.orchestration import get_client

    claims = [c for c in store.list_claims("tiny", status="processing") if c["flow_run_id"]]
    if not claims:
        return None
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(UUID(claims[0]["flow_run_id"])).state
    return claims[0] if state is not None and state.is_paused() else None


def _wait_for(probe, seconds=120):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError("timed out waiting")
