"""Ad hoc run on every sample dataset: counts per check, catch rate, wall time split.

Runs the real command line (`poisonguard run`) in a fresh state folder, as a
user would, ``--repeats`` times per dataset, and prints:

1. per dataset: rows in / kept / quarantined, poisoned rows caught (from the
   dataset's truth.csv), clean rows quarantined, and the median wall time
   split into process start + imports, Prefect start-up and the work itself;
2. per dataset and check: rows flagged, of which poisoned and clean.

    OMP_NUM_THREADS=1 python benchmarks/demo_run.py --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

SAMPLES = Path(__file__).resolve().parent.parent / "data_samples"
# "Prefect start-up S s, work W s" for a flow run; "work W s" alone in-process (no Prefect API configured).
TIMING = re.compile(r"(?:Prefect start-up ([\d.]+) s, )?work ([\d.]+) s")


def poisonguard_command() -> list[str]:
    beside = Path(sys.executable).with_name("poisonguard")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "poisonguard.pipelines.cli.app"]


def run_once(dataset: Path, workdir: Path, prefect_home: Path) -> dict:
    out = workdir / "out"
    env = {**os.environ, "POISONGUARD_HOME": str(workdir / "state"), "PREFECT_HOME": str(prefect_home)}
    env.setdefault("OMP_NUM_THREADS", "1")
    started = time.perf_counter()
    result = subprocess.run(
        [*poisonguard_command(), "run", str(dataset / "batch.csv"), "--config", str(dataset / "poisonguard.toml"),
         "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=900, cwd=workdir,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{dataset.name}: poisonguard run failed:\n{result.stdout}\n{result.stderr}")
    match = TIMING.search(" ".join(result.stdout.split()))
    startup, work = (float(match.group(1) or 0.0), float(match.group(2))) if match else (float("nan"),) * 2
    provenance = json.loads((out / "provenance.json").read_text())
    quarantine = pd.read_parquet(out / "quarantine.parquet")
    return {"wall": wall, "startup": startup, "work": work, "provenance": provenance, "quarantine": quarantine}


def summarise(dataset: Path, runs: list[dict]) -> tuple[dict, list[dict]]:
    truth = pd.read_csv(dataset / "truth.csv", dtype=str)
    poisoned = set(truth["row_id"])
    last = runs[-1]
    counts = last["provenance"]["counts"]
    id_column = last["provenance"]["inputs"]["row_id_column"]
    quarantined = set(last["quarantine"][id_column].astype(str))
    clean_rows = counts["rows_in"] - len(poisoned)
    overview = {
        "dataset": dataset.name,
        "rows in": counts["rows_in"],
        "kept": counts["kept"],
        "quarantined": counts["quarantined"],
        "poisoned caught": f"{len(poisoned & quarantined)}/{len(poisoned)}",
        "clean quarantined": f"{len(quarantined - poisoned)}/{clean_rows} ({100 * len(quarantined - poisoned) / clean_rows:.1f}%)",
        "wall s": statistics.median(r["wall"] for r in runs),
        "prefect start-up s": statistics.median(r["startup"] for r in runs),
        "work s": statistics.median(r["work"] for r in runs),
        "start+imports+exit s": statistics.median(r["wall"] - r["startup"] - r["work"] for r in runs),
    }
    per_check = []
    flagged_by = {}
    for _, row in last["quarantine"].iterrows():
        for check in row["poisonguard_checks"]:
            flagged_by.setdefault(check, set()).add(str(row[id_column]))
    for check in counts["per_check"]:
        ids = flagged_by.get(check["check"], set())
        per_check.append(
            {
                "dataset": dataset.name,
                "check": check["check"],
                "rows checked": check["rows_checked"],
                "flagged": check["flagged"],
                "poisoned": len(ids & poisoned),
                "clean": len(ids - poisoned),
                "only this check": check["flagged_only_here"],
            }
        )
    return overview, per_check


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--datasets", nargs="*", default=sorted(p.name for p in SAMPLES.iterdir() if (p / "truth.csv").exists()))
    options = parser.parse_args()
    overviews, checks = [], []
    # One Prefect home for the whole benchmark, as a user has (~/.prefect):
    # the first run creates and migrates its database; that cold start is
    # reported apart and not counted in the medians.
    prefect_home = Path(tempfile.mkdtemp(prefix="pg-bench-prefect-"))
    cold_workdir = Path(tempfile.mkdtemp(prefix="pg-bench-cold-"))
    cold = run_once(SAMPLES / options.datasets[0], cold_workdir, prefect_home)
    shutil.rmtree(cold_workdir, ignore_errors=True)
    for name in options.datasets:
        dataset = SAMPLES / name
        runs = []
        for _ in range(options.repeats):
            workdir = Path(tempfile.mkdtemp(prefix=f"pg-bench-{name}-"))
            try:
                runs.append(run_once(dataset, workdir, prefect_home))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        overview, per_check = summarise(dataset, runs)
        overviews.append(overview)
        checks.extend(per_check)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    print(f"# ad hoc run on data_samples/ (medians of {options.repeats} runs; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')})")
    print(pd.DataFrame(overviews).to_markdown(index=False, floatfmt=".1f"))
    print(
        f"\ncold start (first run with a new PREFECT_HOME, {options.datasets[0]}): wall {cold['wall']:.1f} s, "
        f"Prefect start-up {cold['startup']:.1f} s, work {cold['work']:.1f} s"
    )
    shutil.rmtree(prefect_home, ignore_errors=True)
    print()
    print("# per check (last run)")
    print(pd.DataFrame(checks).to_markdown(index=False))


if __name__ == "__main__":
    main()
