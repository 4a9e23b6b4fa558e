"""Judging a batch a chunk at a time against judging it whole: time, peak memory, same findings.

For each size (1,000,000 and 3,000,000 rows by default) the throughput
benchmark's numeric batch is generated (20 features, 1 % flipped labels and
1 % far rows, a 5,000-row reference), written as Parquet in row groups of
``--chunk-rows`` rows. Each detector that ``batch_judge`` takes a chunk at
a time (``detectors.judges``) is fitted on the reference and judges the
batch twice, each in a process of its own:

* ``whole``: the batch's feature columns read whole, one ``findings`` call;
* ``chunks``: the Parquet file read a record batch at a time
  (``pyarrow.parquet.ParquetFile.iter_batches``, its default 65,536 rows,
  within row groups of ``--chunk-rows``), each added to the judge.

Each prints wall seconds (reading included), the process's peak resident
memory, the rows flagged, and whether the two findings tables are the same
(a SHA-256 over every column of the findings, in the child).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/chunked_judging.py --sizes 1000000,3000000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import FEATURES, make_numeric  # noqa: E402

DETECTORS = ("outlier.ecod", "outlier.iforest", "outlier.cellwise", "label.trusted_model")
MODES = ("whole", "chunks")
CHUNK_ROWS = 100_000
FEATURE_NAMES = [f"f{i}" for i in range(FEATURES)]


def findings_digest(findings) -> str:
    """SHA-256 over the findings' columns: ids, check, the floats' bytes, flags, reasons."""
    digest = hashlib.sha256()
    for column in ("row_id", "check", "reason"):
        digest.update("\x1f".join(findings[column].astype(str)).encode())
    for column in ("score", "p_value"):
        digest.update(findings[column].to_numpy(dtype=float).tobytes())
    digest.update(findings["flagged"].to_numpy(dtype=bool).tobytes())
    return digest.hexdigest()


def judge(detector_name: str, mode: str, folder: Path) -> dict:
    """In the child: fit on the reference, judge the batch as ``mode`` says."""
    import pandas as pd
    import pyarrow.parquet as pq

    from poisonguard.detectors.registry import get_detector

    reference = pd.read_parquet(folder / "reference.parquet")
    detector = get_detector(detector_name).fit(reference[FEATURE_NAMES], reference["label"].to_numpy())
    del reference
    started = time.perf_counter()
    columns = ["row_id", "label", *FEATURE_NAMES]
    if mode == "whole":
        batch = pd.read_parquet(folder / "batch.parquet", columns=columns)
        findings = detector.findings(batch[FEATURE_NAMES], batch["label"].to_numpy(), batch["row_id"].astype(str).to_numpy(dtype=object))
        del batch
    else:
        judge = detector.batch_judge()
        for record_batch in pq.ParquetFile(folder / "batch.parquet").iter_batches(columns=columns):
            chunk = record_batch.to_pandas()
            judge.add(chunk[FEATURE_NAMES], chunk["label"].to_numpy(), chunk["row_id"].astype(str).to_numpy(dtype=object))
        findings = judge.findings()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "flagged": int(findings["flagged"].sum()), "digest": findings_digest(findings)}


def measure(detector_name: str, mode: str, folder: Path) -> dict:
    result = folder / f"{detector_name}-{mode}.json"
    child = subprocess.Popen([
        sys.executable, __file__, "--worker", detector_name, "--mode", mode, "--data", str(folder),
        "--result", str(result),
    ])
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{detector_name} ({mode}) failed")
    return {**json.loads(result.read_text()), "peak_gb": usage.ru_maxrss / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,3000000")
    parser.add_argument("--detectors", default=",".join(DETECTORS))
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.result.write_text(json.dumps(judge(args.worker, args.mode, args.data)))
        return
    print("| rows | detector | mode | judging s | peak RSS GB | flagged | same findings |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- |")
    for size in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="poisonguard-chunks-") as folder:
            folder = Path(folder)
            make_numeric(folder, size)
            # Row groups of --chunk-rows rows, which the record batches read stay within.
            import pyarrow.parquet as pq

            table = pq.read_table(folder / "batch.parquet")
            pq.write_table(table, folder / "batch.parquet", row_group_size=args.chunk_rows)
            del table
            for detector_name in args.detectors.split(","):
                results = {mode: measure(detector_name, mode, folder) for mode in MODES}
                same = "yes" if results["whole"]["digest"] == results["chunks"]["digest"] else "NO"
                for mode, result in results.items():
                    print(f"| {size:,} | {detector_name} | {mode} | {result['seconds']:.1f} | "
                          f"{result['peak_gb']:.2f} | {result['flagged']:,} | {same} |", flush=True)


if __name__ == "__main__":
    main()
