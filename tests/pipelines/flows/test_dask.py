"""A run with its detectors on a local two-worker Dask cluster (prefect-dask) equals a local run."""
import logging

import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from poisonguard.detectors.registry import registered_detectors
from poisonguard.pipelines.cli.app import app
from poisonguard.pipelines.core.config import DEFAULT_DETECTORS
from tests.tiny_data import POISONED, write_tiny_dataset


@pytest.mark.slow
def test_the_detectors_on_a_dask_cluster_give_the_local_run(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    common = [str(data["batch"]), "--label", "label", "--id", "id", "--reference", str(data["reference"])]
    runner = CliRunner()
    local = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "local"), "--no-prefect"])
    assert local.exit_code == 0, local.output

    cluster_options = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    with LocalCluster(**cluster_options) as cluster, Client(cluster) as client, \
            prefect_test_harness(server_startup_timeout=180):
        cluster_workers = set(client.scheduler_info()["workers"])
        with get_task_stream(client) as stream:
            on_dask = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "dask"), "--dask", cluster.scheduler_address])
        workers = {task["worker"] for task in stream.data}
    assert on_dask.exit_code == 0, on_dask.output
    # Every detector ran as a task on the cluster.
    assert len(stream.data) == len(DEFAULT_DETECTORS) and set(DEFAULT_DETECTORS) <= set(registered_detectors())
    assert workers <= cluster_workers

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
