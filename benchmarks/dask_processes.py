"""A ``poisonguard run --dask`` on a local cluster: its wall time and each process's peak memory.

``throughput.py``'s ``poisonguard-dask`` tool gives one peak, the largest
process's. This says whose it is. It starts a ``LocalCluster`` of two
single-thread worker processes in this process (which then hosts the
scheduler and the workers' nannies), runs the command on a batch under
``/usr/bin/time -v`` (the command's peak), and reads each worker's and
this process's ``VmHWM`` (peak resident memory) at the end. This process
reads no batch: its peak is what the scheduler held. The run's output is
left under ``--work``, to compare with a local run's.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dask_processes.py BATCH --config CONFIG --work DIR

GB are 2**30 bytes, as in ``throughput.py``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def peak_gb(pid: int) -> float:
    """A process's peak resident memory so far (Linux ``VmHWM``)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    raise OSError(f"no VmHWM line for process {pid}")


def main() -> None:
    from distributed import Client, LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batch", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True, help="Emptied, then holds the state, Prefect home and output.")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    command = Path(sys.executable).with_name("poisonguard")
    env = {**os.environ, "POISONGUARD_HOME": str(args.work / "state"), "PREFECT_HOME": str(args.work / "prefect")}
    env.pop("PREFECT_API_URL", None)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        started = time.perf_counter()
        done = subprocess.run(
            ["/usr/bin/time", "-v", str(command), "run", str(args.batch), "--config", str(args.config),
             "--out", str(args.work / "out"), "--dask", cluster.scheduler_address],
            env=env, capture_output=True, text=True,
        )
        wall = time.perf_counter() - started
        workers = sorted(client.run(lambda: peak_gb(os.getpid())).values())
    if done.returncode not in (0, 1):
        raise SystemExit(f"poisonguard run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    command_kb = next(int(line.split()[-1]) for line in done.stderr.splitlines() if "Maximum resident" in line)
    print("| wall s | command's peak GB | workers' peaks GB | this process's (the scheduler's) peak GB |")
    print("| ---: | ---: | --- | ---: |")
    print(f"| {wall:.1f} | {command_kb / 2**20:.2f} | {', '.join(f'{gb:.2f}' for gb in workers)} "
          f"| {peak_gb(os.getpid()):.2f} |")


if __name__ == "__main__":
    main()
