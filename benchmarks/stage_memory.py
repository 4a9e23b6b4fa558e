"""Each stage of one run, in this process: its seconds, cores used and the peak memory while it ran.

The throughput benchmark gives a run's peak; this says which stage reaches
it. A thread samples the process's resident memory every 0.05 s, and the
run's own stage announcements (``core.stages.stage_listener``) close each
stage, as the progress line does. Reading the inputs is counted as
``preload``, as ``poisonguard run`` reads them before its work starts.
"cores" is the process's CPU seconds (every thread's) over the stage's
seconds: below 2 on 2 cores, part of the stage ran on one core.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/stage_memory.py BATCH --config CONFIG --out OUT

GB are 2**30 bytes, as in ``throughput.py``.
"""
from __future__ import annotations

import argparse
import resource
import threading
import time
from pathlib import Path

SAMPLE_SECONDS = 0.05


def resident_bytes() -> int:
    """This process's resident memory now (Linux ``/proc``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmRSS line in /proc/self/status")


class StagePeaks:
    """Seconds, cores used and peak resident memory of each announced stage."""

    def __init__(self):
        self.rows: list[tuple[str, float, float, int]] = []
        self._stage, self._since, self._cpu_since, self._peak = None, time.perf_counter(), time.process_time(), 0
        self._done = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._done.wait(SAMPLE_SECONDS):
            self._peak = max(self._peak, resident_bytes())

    def __call__(self, stage: str) -> None:
        now, cpu, current = time.perf_counter(), time.process_time(), resident_bytes()
        if self._stage is not None:
            cores = (cpu - self._cpu_since) / max(now - self._since, 1e-9)
            self.rows.append((self._stage, now - self._since, cores, max(self._peak, current)))
        self._stage, self._since, self._cpu_since, self._peak = stage, now, cpu, current

    def close(self) -> None:
        self("end")
        self._done.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("batches", nargs="+", type=Path)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()

    from poisonguard.pipelines.core.inputs import preload_inputs
    from poisonguard.pipelines.core.settings import make_settings
    from poisonguard.pipelines.core.stages import stage_listener
    from poisonguard.pipelines.runner import execute

    started = time.perf_counter()
    settings = make_settings(options.batches, out=options.out, config_path=options.config)
    peaks = StagePeaks()
    with stage_listener(peaks):
        peaks("preload")
        preload_inputs(settings)
        summary = execute(settings)
        peaks.close()
    print("| stage | seconds | cores | peak RSS GB |")
    print("| --- | ---: | ---: | ---: |")
    for stage, seconds, cores, peak in peaks.rows:
        print(f"| {stage} | {seconds:.2f} | {cores:.2f} | {peak / 2**30:.2f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"\n{summary.rows_in:,} rows, {summary.quarantined:,} quarantined; {time.perf_counter() - started:.1f} s; "
          f"the process's peak {peak / 2**30:.2f} GB")


if __name__ == "__main__":
    main()
