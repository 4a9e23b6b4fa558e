"""The ``poisonguard-run`` flow: one batch, each stage of ``runner.execute`` a task."""
from __future__ import annotations

import inspect
import ipaddress
import socket
from contextlib import contextmanager
from typing import Optional

from prefect import flow

from poisonguard.pipelines.core.errors import ConfigError
from poisonguard.pipelines.core.settings import RunSettings
from poisonguard.pipelines.flows.artifacts import publish_run_artifacts
from poisonguard.pipelines.flows.tasks import as_parallel_tasks, as_task, mark_flow_started
from poisonguard.pipelines.outputs.publish import RunSummary
from poisonguard.pipelines.runner import execute


NEEDS_PREFECT_DASK = "--dask needs prefect-dask: pip install 'poisonguard[dask]' (or pip install prefect-dask)"


@flow(name="poisonguard-run", persist_result=False)
def run_flow(settings: RunSettings, parallel: bool = False) -> RunSummary:
    """Sanitise one batch: expectations, detectors, quarantine, signed output.

    ``parallel``: submit the detectors' fits, then their chunks, at once to
    the flow's task runner (``run_flow_on_dask``), rather than one detector
    after another.
    """
    mark_flow_started()
    summary = execute(settings, run_stage=as_task, run_stages=as_parallel_tasks if parallel else None)
    publish_run_artifacts(settings.config.dataset.name, summary, batch=", ".join(p.name for p in settings.batches))
    return summary


def run_flow_on_dask(settings: RunSettings, address: str) -> RunSummary:
    """``run_flow`` with its detectors on the Dask cluster whose scheduler is at ``address``.

    Loading, the decision and publishing stay in this process (they hold the
    batch and the signing key); the detectors, which need nothing of each
    other, are fitted and then score the batch on the cluster's workers, a
    chunk per task where they can (``core.parallel_detectors``).
    """
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ConfigError(NEEDS_PREFECT_DASK) from None
    with _workers_report_here(address):
        return run_flow.with_options(task_runner=DaskTaskRunner(address=address))(settings, parallel=True)


@contextmanager
def _workers_report_here(address: str):
    """Name the flow's Prefect API in the settings every detector task carries to its worker.

    A task on a Dask worker runs under the settings the flow sends with it.
    With no API configured, the flow started Prefect's temporary server, but
    its settings named none: every worker process then started a server of
    its own (a uvicorn process for as long as the worker lives, orphaned when
    the worker is killed), and recorded the detectors' task runs there rather
    than with the flow run. A cluster on this machine reaches the flow's
    server, so it is started here and named. A remote one could not; its
    workers keep their own (``remote_cluster_note``).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED, temporary_settings

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value() or not on_this_machine(address):
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the one Prefect itself would start for this process
    server.start()
    # A run killed before its own drain left the workers' events client on its server.
    _drain_worker_events(address)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            yield
    finally:
        _drain_worker_events(address)


def _drain_worker_events(address: str) -> None:
    """Send the workers' pending task events to the server they were built for, and start afresh next run.

    Prefect keeps one events client per process, built with the API of the
    first run that emitted: on a cluster that outlives this run, the next
    run's task events went to this run's server, gone by then.
    """
    try:
        from distributed import Client

        with Client(address, timeout="10s") as client:
            client.run(_drain_events)
    except Exception:  # noqa: BLE001 - the run's own outcome matters; a cluster gone by now has no events to send
        pass


async def _drain_events() -> None:
    # A coroutine function, which ``Client.run`` awaits on the worker's event
    # loop: there ``drain_all`` returns its wait as an awaitable, and a plain
    # function let it go unawaited (workers logged "coroutine 'wait' was never
    # awaited"), so the run went on without the events being sent.
    from prefect.events.worker import EventsWorker

    pending = EventsWorker.drain_all(timeout=10, at_exit=False)
    if inspect.isawaitable(pending):
        await pending


# Seconds to wait for a --dask scheduler to answer (Dask's own default is 30).
SCHEDULER_TIMEOUT = 10.0


def check_scheduler(address: str) -> None:
    """Refuse, before any work, a ``--dask`` address where no Dask scheduler answers.

    Without this the batch was read and checked first, and the first
    detector task then waited 30 s for the connection and ended the run with
    a page of Prefect's and Dask's tracebacks.

    Raises
    ------
    ConfigError
        prefect-dask is not installed, or nothing answers at ``address`` within ``SCHEDULER_TIMEOUT`` seconds.
    """
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError(NEEDS_PREFECT_DASK) from None
    try:
        with Client(address, timeout=f"{SCHEDULER_TIMEOUT}s"):
            pass
    except (OSError, ValueError, TypeError) as error:  # refused, timed out, or not an address at all
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"--dask {address}: no Dask scheduler answers there ({reason})") from None


def on_this_machine(address: str) -> bool:
    """Whether the Dask scheduler at ``address`` listens on a loopback address (a local cluster)."""
    from distributed.comm import get_address_host

    try:
        found = socket.getaddrinfo(get_address_host(address), None)
        return bool(found) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in found)
    except (ValueError, OSError, UnicodeError):  # not an address Dask reads (inproc://), or no such host
        return False


def remote_cluster_note(address: str) -> Optional[str]:
    """What a person should know before a run on a remote cluster with no Prefect API configured; None otherwise."""
    from poisonguard.pipelines.flows.api import prefect_api_configured

    if on_this_machine(address) or prefect_api_configured():
        return None
    return (
        "no Prefect API is configured, so each of the cluster's workers starts a Prefect server of its own and "
        "records the detector tasks there, not with this flow run. Run `prefect server start` where the workers "
        "reach it and set PREFECT_API_URL here and on the workers."
    )
