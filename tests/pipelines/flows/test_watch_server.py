"""A real `prefect server start`, `poisonguard serve` on a short interval, a batch dropped in the inbox.

Slow (a server and a served deployment start), but it runs in CI: it is the
only test of the path a scheduled deployment takes, from the Prefect
scheduler through the runner's subprocess to a signed version on disk. Every
process it starts is stopped at the end, whatever happens.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from poisonguard.pipelines.outputs.datasets import load_dataset, verify_chain
from tests.tiny_data import POISONED, write_tiny_dataset

REPO = Path(__file__).resolve().parents[3]
STARTUP_SECONDS = 180
VERSION_SECONDS = 300


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _tool(name: str) -> list[str]:
    beside = Path(sys.executable).with_name(name)
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-m", "poisonguard.pipelines.cli.app"] if name == "poisonguard" else [shutil.which(name)]


def _start(command, env, log: Path, cwd) -> subprocess.Popen:
    handle = log.open("w")
    return subprocess.Popen(command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    """Stop a process we started and its process group (its own session)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGINT, 15), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait(probe, seconds: float, what: str, logs=()):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(1)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    raise AssertionError(f"timed out after {seconds} s waiting for {what}\n{tails}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow(seconds=120)
def test_a_served_deployment_publishes_a_dropped_batch(tmp_path):
    data = write_tiny_dataset(tmp_path / "data")
    data["config"].write_text(data["config"].read_text() + "[watch]\nsettle_seconds = 1\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env.update({
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "POISONGUARD_HOME": str(tmp_path / "state"),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    })
    client_env = {**env, "PREFECT_API_URL": api}
    logs = {name: tmp_path / f"{name}.log" for name in ("server", "serve")}
    processes = []
    # Written under a hidden name, then renamed: an upload never seen half-written.
    # Dropped before serving starts, so the first scheduled pass finds it.
    partial = inbox / ".upload.csv"
    pd.read_csv(data["batch"], dtype=str).to_csv(partial, index=False)
    partial.rename(inbox / "batch-1.csv")
    version = tmp_path / "state" / "datasets" / "tiny" / "v0001"
    try:
        processes.append(_start([*_tool("prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                env, logs["server"], tmp_path))
        _wait(lambda: _healthy(api), STARTUP_SECONDS, "the Prefect server", logs.values())

        # Serving starts while the shipped deployment is deployed: neither needs the other.
        processes.append(_start(
            [*_tool("poisonguard"), "serve", "--dataset", "tiny", "--config", str(data["config"]),
             "--inbox", str(inbox), "--interval", "5"],
            client_env, logs["serve"], tmp_path,
        ))
        # The shipped prefect.yaml deploys (to a process work pool) against this server.
        pool = subprocess.run([*_tool("prefect"), "work-pool", "create", "poisonguard", "--type", "process"],
                              env=client_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert pool.returncode == 0, pool.stdout + pool.stderr
        deployed = subprocess.run([*_tool("prefect"), "--no-prompt", "deploy", "--all"],
                                  env=client_env, cwd=REPO, capture_output=True, text=True, timeout=180)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "poisonguard-watch/watch-penguins" in " ".join(deployed.stdout.split())

        _wait(lambda: "poisonguard-watch/watch-tiny" in " ".join(logs["serve"].read_text().split()),
              STARTUP_SECONDS, "the served deployment", logs.values())
        _wait(lambda: (inbox / "processed" / "batch-1.csv").exists(), VERSION_SECONDS,
              "the batch to be published and moved", logs.values())
    finally:
        for process in reversed(processes):
            _stop(process)
    public = tmp_path / "state" / "keys" / "public.pem"
    assert [v.name for v in verify_chain(version, public)] == ["v0001"]
    published = load_dataset(version.parent, public_key=public)
    # Every poisoned row was held back, and at most a couple of the 39 clean ones.
    assert not set(published["id"]) & set(POISONED)
    assert 37 <= len(published) <= 39
    served = logs["serve"].read_text()
    assert "Finished in state Completed" in served
    # One pass at a time (serve's limit): no pass started while the first held the dataset.
    assert "being processed by another watcher" not in served
