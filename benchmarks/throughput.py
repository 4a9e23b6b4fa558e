"""Throughput: poisonguard beside cleanlab's label check and PyOD on the same generated rows.

For each size (100,000, 1,000,000 and 3,000,000 rows by default) one batch
is generated: 20 numeric features, 5 classes (Gaussian clusters; ``--classes``
for more, as a product-category label has), 1 % of the rows with a flipped
label and 1 % moved far out on every feature (``--poison-share 0.075``:
7.5 % of each, a heavily poisoned batch), plus a 5,000-row trusted
reference of the same distribution (``--reference-rows`` for a larger one). Each tool runs in a
process of its own on that batch, and the parent reads its wall time and
peak resident memory (``os.wait4``):

* ``poisonguard``: the real command line, ``poisonguard run BATCH --config``
  with every default check and a signed output, at
  ``max_false_positive_rate = 0.01`` (the goal: recall >= 0.95 at <= 1 % of
  clean rows flagged), in a fresh state folder, no Prefect server;
* ``poisonguard-noref``: the same without the reference, as an ad hoc run
  on a new dataset judges the batch against itself;
* ``cleanlab``: the label check people run, 5-fold out-of-fold
  probabilities of ``HistGradientBoostingClassifier`` and
  ``cleanlab.filter.find_label_issues``;
* ``ecod`` and ``iforest``: PyOD with ``contamination=0.01``, fitted on the
  batch and flagging its ``labels_``;
* ``poisonguard-csv`` and ``poisonguard-jsonl`` (only when named in
  ``--tools``): ``poisonguard`` on the same batch written as CSV or JSON Lines;
* ``poisonguard-dask`` (only when named): ``poisonguard`` with ``--dask`` on
  a ``LocalCluster`` of two single-thread worker processes that the tool's
  process starts; its peak RSS is the largest single process's, not their
  sum: the command's, a worker's, or the tool's own, where the scheduler
  holds each task's arguments until a worker has them.

The wide mixed case is 10,000 rows x 55 columns (30 numeric, 20 categorical
of 3 to 12 levels, one of 5,000 levels, two free-text columns, an id and a
label) with the same poisons and a reference of a fifth of its rows, run
through poisonguard only (``--mixed-rows 10000,200000`` for larger ones;
``--mixed-tools poisonguard,poisonguard-noref`` without the reference too).

Prints one markdown table: rows, tool, wall seconds, peak RSS, recall over
the poisoned rows, and the share of clean rows flagged.

    OMP_NUM_THREADS=2 python benchmarks/throughput.py --sizes 100000,1000000,3000000
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

FEATURES = 20
CLASSES = 5
REFERENCE_ROWS = 5_000
POISON_SHARE = 0.01
MIXED_ROWS = 10_000
TOOLS = ("poisonguard", "poisonguard-noref", "cleanlab", "ecod", "iforest")
# The same run on the batch written as CSV or JSON Lines (not in the default tools).
TEXT_FORMATS = {"poisonguard-csv": "csv", "poisonguard-jsonl": "jsonl"}
# The same batch without the trusted reference (``poisonguard-noref``).
NO_REFERENCE_CONFIG = "poisonguard-noref.toml"


def _clusters(rng, n_rows: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(centres), n_rows)
    return centres[labels] + rng.normal(0.0, 1.0, (n_rows, centres.shape[1])), labels


def _poison(rng, matrix: np.ndarray, labels: np.ndarray, classes: int = CLASSES, share: float = POISON_SHARE) -> np.ndarray:
    """Flip the labels of ``share`` of the rows (1 %) and move as many others far out; the poisoned positions."""
    n_rows = len(labels)
    chosen = rng.choice(n_rows, 2 * int(share * n_rows), replace=False)
    flipped, far = chosen[: len(chosen) // 2], chosen[len(chosen) // 2:]
    labels[flipped] = (labels[flipped] + rng.integers(1, classes, len(flipped))) % classes
    matrix[far] += rng.choice([-1.0, 1.0], (len(far), matrix.shape[1])) * 8.0
    return np.sort(chosen)


def make_numeric(folder: Path, n_rows: int, seed: int = 0, reference_rows: int = REFERENCE_ROWS,
                 classes: int = CLASSES, poison_share: float = POISON_SHARE) -> None:
    """Batch, reference, truth and config of the numeric case, in ``folder``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (classes, FEATURES))
    names = [f"f{i}" for i in range(FEATURES)]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, start in (("reference", reference_rows, 10**10), ("batch", n_rows, 0)):
        matrix, labels = _clusters(rng, rows, centres)
        poisoned = _poison(rng, matrix, labels, classes, poison_share) if name == "batch" else None
        frame = pd.DataFrame(matrix, columns=names)
        frame.insert(0, "row_id", np.arange(start, start + rows))
        frame["label"] = np.array([f"class_{c}" for c in range(classes)])[labels]
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        if poisoned is not None:
            pd.DataFrame({"row_id": poisoned}).to_csv(folder / "truth.csv", index=False)
    _write_config(folder, "reference.parquet")


def make_mixed(folder: Path, n_rows: int = MIXED_ROWS, seed: int = 0) -> None:
    """The wide mixed case: 55 columns with a 5,000-level categorical and free text."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (CLASSES, 30))
    level_counts = rng.integers(3, 13, 20)
    words = np.array("poison guard data batch row label model train clean trusted value note".split())
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows, start in (("reference", n_rows // 5, 10**10), ("batch", n_rows, 0)):
        matrix, labels = _clusters(rng, rows, centres)
        poisoned = _poison(rng, matrix, labels) if name == "batch" else None
        frame = pd.DataFrame(matrix, columns=[f"num_{i}" for i in range(30)])
        frame.insert(0, "row_id", np.arange(start, start + rows))
        for i, levels in enumerate(level_counts):
            # Categories that depend on the class, as real ones do.
            codes = (labels * (i + 1) + rng.integers(0, 2, rows)) % levels
            frame[f"cat_{i}"] = np.char.add(f"c{i}_", codes.astype(str))
        frame["merchant"] = np.char.add("m", rng.zipf(1.3, rows).clip(max=5_000).astype(str))
        for column in ("description", "comment"):
            frame[column] = [" ".join(rng.choice(words, rng.integers(3, 12))) + f" #{rng.integers(10**6)}"
                             for _ in range(rows)]
        frame["label"] = np.array([f"class_{c}" for c in range(CLASSES)])[labels]
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        if poisoned is not None:
            pd.DataFrame({"row_id": poisoned}).to_csv(folder / "truth.csv", index=False)
    _write_config(folder, "reference.parquet")


def generate(kind: str, folder: Path, n_rows: int, reference_rows: int = REFERENCE_ROWS, text_formats: bool = False,
             classes: int = CLASSES, poison_share: float = POISON_SHARE) -> None:
    """``make_numeric`` or ``make_mixed`` in a child process, so that this one stays small.

    A child's peak memory (``ru_maxrss``) starts from its parent's: the
    kernel carries the parent's high-water mark through fork (or vfork) and
    exec. A parent that had built a million rows (0.56 GB) lifted every
    smaller tool's figure to that.
    """
    subprocess.run(
        [sys.executable, __file__, "--generate", kind, "--data", str(folder), "--rows", str(n_rows),
         "--reference-rows", str(reference_rows), "--classes", str(classes), "--poison-share", str(poison_share),
         *(["--text-formats"] if text_formats else [])],
        check=True,
    )


def _write_config(folder: Path, reference: str) -> None:
    # And one without the reference: the ad hoc run on a new dataset, which
    # judges the batch against itself.
    for name, line in (("poisonguard.toml", f'reference = "{reference}"\n'), (NO_REFERENCE_CONFIG, "")):
        (folder / name).write_text(
            f'[dataset]\nname = "{folder.name}"\nlabel = "label"\nid = "row_id"\n{line}\n'
            "[detection]\nmax_false_positive_rate = 0.01\n"
        )


# --- one tool, in its own process -------------------------------------------------------------


def run_poisonguard(folder: Path, workdir: Path, config: str = "poisonguard.toml", batch: str = "batch.parquet",
                    options: tuple[str, ...] = ()) -> list[str]:
    out = workdir / "out"
    beside = Path(sys.executable).with_name("poisonguard")
    command = [str(beside)] if beside.exists() else [sys.executable, "-m", "poisonguard.pipelines.cli.app"]
    env = {**os.environ, "POISONGUARD_HOME": str(workdir / "state"), "PREFECT_HOME": str(workdir / "prefect")}
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [*command, "run", str(folder / batch), "--config", str(folder / config),
         "--out", str(out), *options],
        env=env, capture_output=True, text=True,
    )
    if done.returncode not in (0, 1):
        raise SystemExit(f"poisonguard run failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return pd.read_parquet(out / "quarantine.parquet", columns=["row_id"])["row_id"].astype(str).tolist()


def run_poisonguard_on_dask(folder: Path, workdir: Path) -> list[str]:
    """``poisonguard run --dask`` on a ``LocalCluster`` of two single-thread worker processes started here."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR) as cluster:
        return run_poisonguard(folder, workdir, options=("--dask", cluster.scheduler_address))


def _numeric_batch(folder: Path):
    batch = pd.read_parquet(folder / "batch.parquet")
    matrix = batch[[c for c in batch.columns if c.startswith("f")]].to_numpy()
    return batch, matrix


def run_cleanlab(folder: Path, workdir: Path) -> list[str]:
    from cleanlab.filter import find_label_issues
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import cross_val_predict

    batch, matrix = _numeric_batch(folder)
    codes = pd.factorize(batch["label"], sort=True)[0]
    probabilities = cross_val_predict(HistGradientBoostingClassifier(), matrix, codes, cv=5, method="predict_proba")
    issues = find_label_issues(codes, probabilities, n_jobs=1)
    return batch["row_id"].astype(str)[issues].tolist()


def run_pyod(model_name: str):
    def run(folder: Path, workdir: Path) -> list[str]:
        from pyod.models.ecod import ECOD
        from pyod.models.iforest import IForest

        batch, matrix = _numeric_batch(folder)
        model = ECOD(contamination=POISON_SHARE) if model_name == "ecod" else IForest(contamination=POISON_SHARE)
        flagged = model.fit(matrix).labels_.astype(bool)
        return batch["row_id"].astype(str)[flagged].tolist()
    return run


def write_text_formats(folder: Path) -> None:
    """The batch also as ``batch.csv`` (the same numbers) and ``batch.jsonl`` (numbers to 15 digits, as pandas writes at most)."""
    batch = pd.read_parquet(folder / "batch.parquet")
    batch.to_csv(folder / "batch.csv", index=False)
    batch.to_json(folder / "batch.jsonl", orient="records", lines=True, double_precision=15)


RUNNERS = {
    "poisonguard": run_poisonguard,
    "poisonguard-noref": lambda folder, workdir: run_poisonguard(folder, workdir, NO_REFERENCE_CONFIG),
    "cleanlab": run_cleanlab,
    "ecod": run_pyod("ecod"),
    "iforest": run_pyod("iforest"),
    **{tool: partial(run_poisonguard, batch=f"batch.{fmt}") for tool, fmt in TEXT_FORMATS.items()},
    "poisonguard-dask": run_poisonguard_on_dask,
}


def worker(tool: str, folder: Path, result: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="poisonguard-throughput-") as workdir:
        flagged = RUNNERS[tool](folder, Path(workdir))
    result.write_text(json.dumps(flagged))


# --- the parent --------------------------------------------------------------------------------


def measure(tool: str, folder: Path) -> dict:
    """Run one tool in a child process: wall time, peak RSS (its own and its children's), quality."""
    result = folder / f"{tool}-flagged.json"
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, __file__, "--worker", tool, "--data", str(folder), "--result", str(result)])
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    # On Linux the child's ru_maxrss covers the descendants it reaped (the poisonguard command).
    peak_kb = usage.ru_maxrss
    if os.waitstatus_to_exitcode(status) != 0:
        return {"tool": tool, "wall s": wall, "peak RSS GB": peak_kb / 2**20, "recall": float("nan"), "clean flagged %": float("nan")}
    flagged = set(json.loads(result.read_text()))
    truth = set(pd.read_csv(folder / "truth.csv", dtype=str)["row_id"])
    rows = pq.ParquetFile(folder / "batch.parquet").metadata.num_rows  # not the rows themselves: see ``generate``
    return {
        "tool": tool,
        "wall s": wall,
        "peak RSS GB": peak_kb / 2**20,
        "recall": len(flagged & truth) / len(truth),
        "clean flagged %": 100 * len(flagged - truth) / (rows - len(truth)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000")
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--mixed", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--mixed-rows", default=str(MIXED_ROWS), help="Rows of the wide mixed cases (comma-separated).")
    parser.add_argument("--mixed-tools", default="poisonguard",
                        help="Tools run on the mixed cases: poisonguard and/or poisonguard-noref.")
    parser.add_argument("--reference-rows", type=int, default=REFERENCE_ROWS,
                        help="Trusted rows of the numeric cases (a large reference: 200000).")
    parser.add_argument("--classes", type=int, default=CLASSES,
                        help="Labels of the numeric cases (a product-category label: 1000).")
    parser.add_argument("--poison-share", type=float, default=POISON_SHARE,
                        help="Share of the numeric cases' rows flipped, and as many moved far (a heavily poisoned "
                             "batch: 0.075, 15 %% of its rows).")
    parser.add_argument("--worker", choices=tuple(RUNNERS), help=argparse.SUPPRESS)
    parser.add_argument("--text-formats", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--generate", choices=("numeric", "mixed"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.result)
        return
    if args.generate == "numeric":
        make_numeric(args.data, args.rows, reference_rows=args.reference_rows, classes=args.classes,
                     poison_share=args.poison_share)
        if args.text_formats:
            write_text_formats(args.data)
        return
    if args.generate == "mixed":
        make_mixed(args.data, args.rows)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="poisonguard-throughput-data-") as root:
        cases = []
        if args.mixed:
            for size in (int(s) for s in args.mixed_rows.split(",") if s):
                generate("mixed", Path(root) / f"mixed{size}", size)
                name = "10k x 55 mixed" if size == MIXED_ROWS else f"{size:,} x 55 mixed"
                cases.append((name, Path(root) / f"mixed{size}", args.mixed_tools.split(",")))
        for size in (int(s) for s in args.sizes.split(",") if s):
            generate("numeric", Path(root) / f"n{size}", size, args.reference_rows,
                     text_formats=any(tool in TEXT_FORMATS for tool in args.tools.split(",")), classes=args.classes,
                     poison_share=args.poison_share)
            name = f"{size:,} x 20" + ("" if args.reference_rows == REFERENCE_ROWS
                                      else f", {args.reference_rows:,}-row reference")
            name += "" if args.classes == CLASSES else f", {args.classes:,} labels"
            name += "" if args.poison_share == POISON_SHARE else f", {2 * args.poison_share:.0%} poisoned"
            cases.append((name, Path(root) / f"n{size}", args.tools.split(",")))
        for name, folder, tools in cases:
            for tool in tools:
                measured = measure(tool, folder)
                rows.append({"rows": name, **measured})
                print(f"{name:>18} {tool:12} {measured['wall s']:8.1f} s {measured['peak RSS GB']:6.2f} GB "
                      f"recall {measured['recall']:.3f} clean flagged {measured['clean flagged %']:.2f} %",
                      file=sys.stderr, flush=True)
    print(markdown_table(rows))


def markdown_table(rows: list[dict]) -> str:
    header = "| rows | tool | wall s | peak RSS GB | recall | clean rows flagged |"
    lines = [header, "| --- | --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row['rows']} | {row['tool']} | {row['wall s']:.1f} | {row['peak RSS GB']:.2f} | "
            f"{row['recall']:.3f} | {row['clean flagged %']:.2f} % |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
