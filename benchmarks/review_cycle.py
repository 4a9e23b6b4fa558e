"""The review half at scale: run, list, release and reject in bulk, emit, verify.

``throughput.py`` times the run. After it a person reviews the quarantine
and emits a new signed dataset, and a training job verifies it; at a million
rows the quarantine holds about 29,000 entries. For each size one numeric
batch is generated as in ``throughput.py`` (1 % flipped labels, 1 % far
rows, a 5,000-row reference) and these commands run one after another, each
a process of its own, in one fresh state folder:

1. ``poisonguard run`` (every default check, signed output);
2. ``review list --json`` of every entry;
3. ``review release --check outlier.ecod`` (a bulk decision by check);
4. ``review reject --run RUN`` (every entry still pending);
5. ``emit --run RUN`` (kept plus released rows, signed);
6. ``verify`` of the emitted folder.

Prints a markdown table of each command's wall time and peak resident
memory (``os.wait4``) and what it did.

    OMP_NUM_THREADS=2 python benchmarks/review_cycle.py --sizes 100000,1000000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import generate  # noqa: E402

POISONGUARD = Path(sys.executable).with_name("poisonguard")


def timed(command: list[str], env: dict) -> tuple[float, float, str]:
    """Run ``poisonguard COMMAND``: wall seconds, peak RSS in GB, and its standard output."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as output:
        child = subprocess.Popen([str(POISONGUARD), *command], stdout=output, stderr=subprocess.STDOUT, env=env, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"poisonguard {' '.join(command)} failed:\n{text[-3000:]}")
    return wall, usage.ru_maxrss / 2**20, text


def cycle(folder: Path, workdir: Path) -> list[dict]:
    """The six commands on the batch in ``folder``; one row each."""
    env = {**os.environ, "POISONGUARD_HOME": str(workdir / "state"), "PREFECT_HOME": str(workdir / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "POISONGUARD_REVIEWER": "benchmark"}
    env.pop("PREFECT_API_URL", None)
    rows = []

    def step(name: str, command: list[str], what) -> str:
        wall, peak, text = timed(command, env)
        rows.append({"step": name, "wall s": wall, "peak RSS GB": peak, "what": what(text)})
        print(f"{name:>40} {wall:7.1f} s {peak:5.2f} GB  {rows[-1]['what']}", file=sys.stderr, flush=True)
        return text

    out, emitted = workdir / "out", workdir / "emitted"
    step("run", ["run", str(folder / "batch.parquet"), "--config", str(folder / "poisonguard.toml"), "--out", str(out)],
         lambda text: next(line for line in text.splitlines() if line.startswith("rows in")))
    run_id = json.loads((out / "provenance.json").read_text())["run_id"]
    step("review list --json (every entry)", ["review", "list", "--json", "--limit", "10000000"],
         lambda text: f"{len(json.loads(text))} entries")
    step("review release --check outlier.ecod",
         ["review", "release", "--check", "outlier.ecod", "--note", "benchmark: a false alarm"],
         lambda text: text.splitlines()[0].rstrip(":"))
    step("review reject --run (the rest)", ["review", "reject", "--run", run_id[:8], "--note", "benchmark: poison"],
         lambda text: text.splitlines()[0].rstrip(":"))
    step("emit --run", ["emit", "--out", str(emitted), "--run", run_id[:8]],
         lambda text: " ".join(" ".join(text.split("\n")[1:3]).split()))
    step("verify (the emitted folder)", ["verify", str(emitted)], lambda text: " ".join(text.split()).split(" in ")[0])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000")
    args = parser.parse_args()
    table = ["| rows | command | wall s | peak RSS GB | what it did |", "| --- | --- | ---: | ---: | --- |"]
    for size in (int(s) for s in args.sizes.split(",") if s):
        with tempfile.TemporaryDirectory(prefix="poisonguard-review-cycle-") as root:
            generate("numeric", Path(root) / "data", size)
            for row in cycle(Path(root) / "data", Path(root) / "work"):
                table.append(f"| {size:,} | {row['step']} | {row['wall s']:.1f} | {row['peak RSS GB']:.2f} | {row['what']} |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
