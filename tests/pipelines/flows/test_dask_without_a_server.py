"""``run --dask`` with no Prefect API configured: the workers report to the run's own server.

Before, each worker process started a Prefect server of its own (a uvicorn
child for as long as the worker lived) and recorded the detectors' task runs
there, where nobody looked; a second run on the same cluster sent its task
events to the first run's server, gone by then.
"""
import asyncio
import gc
import inspect
import logging
import os
import time

import psutil
import pytest
from distributed import Client, LocalCluster
from typer.testing import CliRunner

from poisonguard.pipelines.cli.app import app
from poisonguard.pipelines.core.config import DEFAULT_DETECTORS
from poisonguard.pipelines.flows.run import _drain_events, on_this_machine, remote_cluster_note
from tests.tiny_data import write_tiny_dataset

pytestmark = pytest.mark.slow(seconds=60)


def detector_task_runs(api_url: str) -> list[str]:
    """The names of the detector fits the Prefect server at ``api_url`` holds (one task run a detector)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}), get_client(sync_client=True) as client:
        names = [run.name for run in client.read_task_runs()]
    return sorted(name.rsplit("-", 1)[0] for name in names if name.startswith("fit-"))


def recorded_eventually(api_url: str, expected: list[str], seconds: float = 60) -> list[str]:
    """``detector_task_runs``, once they are ``expected`` or ``seconds`` have passed (the server records task runs from their events)."""
    deadline = time.monotonic() + seconds
    while True:
        names = detector_task_runs(api_url)
        if names == expected or time.monotonic() > deadline:
            return names
        time.sleep(1)


def test_runs_on_one_cluster_record_their_detector_tasks_with_their_own_server(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # The ad hoc case, whatever the shell running the tests has configured.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert PREFECT_API_URL.value() is None
        two_runs_on_one_cluster(tmp_path)


def two_runs_on_one_cluster(tmp_path):
    from prefect.events.worker import EventsWorker
    from prefect.server.api.server import SubprocessASGIServer

    data = write_tiny_dataset(tmp_path / "data")
    common = [str(data["batch"]), "--label", "label", "--id", "id", "--reference", str(data["reference"])]
    cluster_options = dict(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                           silence_logs=logging.ERROR)
    with LocalCluster(**cluster_options) as cluster, Client(cluster) as client:
        worker_pids = list(client.run(os.getpid).values())
        for number in (1, 2):
            result = CliRunner().invoke(
                app, ["run", *common, "--out", str(tmp_path / f"run{number}"), "--dask", cluster.scheduler_address]
            )
            assert result.exit_code == 0, result.output
            assert "note:" not in result.output  # a cluster on this machine needs no advice
            # The run's temporary server, which the workers were told of. Its
            # database (in PREFECT_HOME) outlives it: each run adds its own.
            server = SubprocessASGIServer()
            expected = sorted(f"fit-{name}" for name in DEFAULT_DETECTORS for _ in range(number))
            assert recorded_eventually(server.api_url, expected) == expected
            # Gone, as when the command's process ends (its own events sent
            # first): the next run starts another on another port, and the
            # workers must send there, not here.
            EventsWorker.drain_all(timeout=10)
            server.stop()
        # No worker started a Prefect server of its own.
        assert [child for pid in worker_pids for child in psutil.Process(pid).children(recursive=True)] == []


def test_the_workers_drain_is_awaited_on_their_event_loop(recwarn):
    # As distributed's Client.run calls it on a worker: on the worker's event
    # loop, awaiting what it returns. There Prefect's drain_all returns its
    # wait as a coroutine; dropped, the run went on before the events were sent.
    async def as_client_run_calls_it(function):
        result = function()
        if inspect.isawaitable(result):
            await result

    asyncio.run(as_client_run_calls_it(_drain_events))
    gc.collect()
    assert [str(warning.message) for warning in recwarn if "never awaited" in str(warning.message)] == []


@pytest.mark.parametrize(("address", "local"), [
    ("tcp://127.0.0.1:8786", True),
    ("127.0.0.1:8786", True),
    ("localhost:8786", True),
    ("tcp://[::1]:8786", True),
    ("tls://10.0.0.5:8786", False),
    ("tcp://0.0.0.0:8786", False),
    ("inproc://10.1.1.1/123/1", False),
    ("", False),
])
def test_a_cluster_is_on_this_machine_when_its_scheduler_listens_on_loopback(address, local):
    assert on_this_machine(address) is local


def test_a_remote_cluster_without_a_prefect_api_gets_advice(monkeypatch):
    monkeypatch.setattr("poisonguard.pipelines.flows.api.prefect_api_configured", lambda: False)
    assert "PREFECT_API_URL" in remote_cluster_note("tls://10.0.0.5:8786")
    assert remote_cluster_note("tcp://127.0.0.1:8786") is None
    monkeypatch.setattr("poisonguard.pipelines.flows.api.prefect_api_configured", lambda: True)
    assert remote_cluster_note("tls://10.0.0.5:8786") is None


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "not an address"])
def test_an_address_where_no_scheduler_answers_is_refused_before_any_work(tmp_path, monkeypatch, address):
    monkeypatch.setattr("poisonguard.pipelines.flows.run.SCHEDULER_TIMEOUT", 1.0)
    data = write_tiny_dataset(tmp_path / "data")
    result = CliRunner().invoke(app, [
        "run", str(data["batch"]), "--label", "label", "--id", "id", "--out", str(tmp_path / "out"),
        "--dask", address,
    ])
    assert result.exit_code == 2, result.output
    assert f"--dask {address}: no Dask scheduler answers there" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()
