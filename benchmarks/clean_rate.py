"""Clean batches only: how often the whole pipeline quarantines more than the configured rate.

``benchmarks/detection_real.py`` judges one clean batch per dataset and
seed beside eight attacked ones; its "worst clean batch" is one draw. This
runs only the clean batch (``poisonguard evaluate`` with no attack: a clean
test split, a stratified 10 % trusted reference or none, then ``run``'s
stages and decision) over many seeds, each seed a different reference and
batch, on the same ten real tables and halves. It prints, per half and
mode, the share of clean rows quarantined: the mean over datasets and
seeds, each dataset's mean over seeds (what the rate promises: it bounds
the expected share, over the draw of the reference and the batch), the
worst single batch, and how many batches exceeded the rate by more than a
batch's own sampling noise (2.5 binomial standard deviations at its size).

A second table looks inside: each detector's own p-values on those clean
rows, the share at most 0.1, 0.3, 1 and 3 %. A valid p-value has that
share at most the level, on average over references; a detector above it
is miscalibrated, a pipeline above the rate with every detector at its
level is the spread from one reference to the next.

    OMP_NUM_THREADS=1 python benchmarks/clean_rate.py --seeds 0-9 --jobs 2

``--tables anchors`` judges ``benchmarks/detection.py``'s five small
tables instead (penguins, breast cancer, wine, iris, digits: references of
15-180 rows). ``--max-rows 50000`` judges the tables whole (up to 10,000 rows, with
references of up to 1,000 rows) instead of subsampled to 3,000 rows.
``--confidence 0.9`` sets ``detection.calibration_confidence``: each
detector's level held for all but a tenth of references (the default,
0.75: a quarter); ``--confidence 0.5``: on average over references.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import BUNDLED_DATASETS, MODES, POISONGUARD, SAMPLE_DATASETS, markdown, prepare_datasets  # noqa: E402
from detection_real import MAX_ROWS, prepare_real  # noqa: E402
from poisonguard.pipelines.core.config import DEFAULT_CALIBRATION_CONFIDENCE  # noqa: E402


def parse_seeds(text: str) -> list[int]:
    """``"0-9"`` or ``"0,3,5"`` (or both, comma-separated) as a list of seeds."""
    seeds = []
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        seeds += list(range(int(first), int(last or first) + 1))
    return seeds


P_LEVELS = (0.001, 0.003, 0.01, 0.03)


def clean_share(task) -> dict:
    """One clean batch judged as ``run`` would: the share of its rows quarantined, and each detector's p-values."""
    name, dataset, mode, seed, rate, confidence, extra = task
    os.environ.setdefault("POISONGUARD_HOME", tempfile.mkdtemp(prefix="poisonguard-bench-"))
    warnings.simplefilter("ignore")
    import importlib

    from poisonguard.pipelines.core.checks import judged_arrays
    from poisonguard.pipelines.redteam.evaluate import NO_ATTACK, evaluate

    # evaluate keeps only flagged ids; its judgement (with every p-value) is
    # caught on the way out of judge_batch, in this worker process only.
    module = importlib.import_module("poisonguard.pipelines.redteam.evaluate")
    judge, judgements = module.judge_batch, []
    module.judge_batch = lambda inputs, **options: judgements.append(judge(inputs, **options)) or judgements[-1]

    with tempfile.TemporaryDirectory(prefix="poisonguard-clean-rate-") as scratch:
        config = Path(scratch) / "config.toml"
        held = "" if confidence is None else f"calibration_confidence = {confidence}\n"
        config.write_text(dataset["config"].read_text(encoding="utf-8")
                          + f"\n[detection]\nmax_false_positive_rate = {rate}\n{held}" + extra, encoding="utf-8")
        work = Path(scratch) / "work"
        try:
            evaluation = evaluate(dataset["data"], label=dataset["label"], config_path=config, attacks=[], seed=seed,
                                  self_referential=MODES[mode], workdir=work)
        finally:
            module.judge_batch = judge
        # The batch evaluate judged, as it wrote it for run's reader.
        judged = len(pd.read_csv(work / f"batch-{NO_ATTACK}.csv"))
    row = evaluation.metrics.set_index(["attack", "method"]).loc[(NO_ATTACK, POISONGUARD)]
    p_shares = {}
    for outcome in judgements[0].outcomes:
        if outcome.kind == "detector" and not outcome.details.get("skipped"):
            p = np.nan_to_num(judged_arrays(outcome)[1], nan=1.0)
            p_shares.update({f"{outcome.name}@{level}": float(np.mean(p <= level)) for level in P_LEVELS})
    return {"dataset": name, "half": dataset["half"], "mode": mode, "seed": seed, "judged": judged,
            "flagged": int(row["flagged"]), "share": float(row["fpr"]), **p_shares}


def p_value_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per mode and detector: the mean share of clean rows with p at most each of ``P_LEVELS``, and the worst dataset's."""
    columns = [c for c in results.columns if "@" in c]
    rows = []
    for mode, part in results.groupby("mode", sort=False):
        for detector in dict.fromkeys(c.split("@")[0] for c in columns):
            shares = part[[f"{detector}@{level}" for level in P_LEVELS]]
            if shares.isna().all().all():
                continue
            row = {"mode": mode, "detector": detector}
            for level in P_LEVELS:
                row[f"p <= {level:.1%}"] = f"{100 * shares[f'{detector}@{level}'].mean():.2f}%"
            worst = part.groupby("dataset")[f"{detector}@0.01"].mean()
            row["p <= 1.0%, worst dataset"] = f"{100 * worst.max():.2f}% ({worst.idxmax()})"
            rows.append(row)
    return pd.DataFrame(rows).set_index("mode")


def summarise(results: pd.DataFrame, rate: float) -> pd.DataFrame:
    """Per half and mode: mean, dataset means, worst batch, and batches over rate plus noise."""
    rows = []
    for (half, mode), part in results.groupby(["half", "mode"], sort=False):
        per_dataset = part.groupby("dataset")["share"].mean()
        noise = 2.5 * np.sqrt(rate * (1 - rate) / part["judged"])
        rows.append({
            "half": half, "mode": mode, "batches": len(part),
            "mean": f"{100 * part['share'].mean():.1f}%",
            "dataset means, lowest / highest": f"{100 * per_dataset.min():.1f}% / {100 * per_dataset.max():.1f}% "
                                               f"({per_dataset.idxmax()})",
            "worst batch": f"{100 * part['share'].max():.1f}% ({part.loc[part['share'].idxmax(), 'dataset']})",
            "over the rate": int((part["share"] > rate).sum()),
            "over the rate + noise": int((part["share"] > rate + noise).sum()),
        })
    return pd.DataFrame(rows).set_index("half")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", choices=("real", "anchors"), default="real",
                        help="The ten real tables (two halves), or benchmarks/detection.py's five anchors.")
    parser.add_argument("--halves", default="tuning,held-out", help="tuning, held-out or both (comma-separated).")
    parser.add_argument("--seeds", default="0-9", help="e.g. 0-9 or 0,1,2")
    parser.add_argument("--rate", type=float, default=0.05, help="detection.max_false_positive_rate")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--jobs", type=int, default=1, help="Processes (one evaluate run each).")
    parser.add_argument("--max-rows", type=int, default=MAX_ROWS,
                        help=f"Subsample larger tables to this many rows (default {MAX_ROWS}, as detection_real.py).")
    parser.add_argument("--confidence", type=float,
                        help=f"detection.calibration_confidence (default: the config's, {DEFAULT_CALIBRATION_CONFIDENCE}; "
                             "0.5: the rate held on average over references).")
    parser.add_argument("--config-extra", type=Path,
                        help="A TOML snippet appended to every dataset's config (as in detection_real.py), "
                             "to compare settings.")
    parser.add_argument("--save", type=Path, help="Also write every batch's share (CSV).")
    options = parser.parse_args(argv)
    halves = [h for h in options.halves.split(",") if h]
    seeds = parse_seeds(options.seeds)
    modes = [m for m in options.modes.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poisonguard-bench-clean-") as scratch:
        if options.tables == "anchors":
            datasets = prepare_datasets(Path(scratch), SAMPLE_DATASETS + BUNDLED_DATASETS)
            datasets = {n: {**d, "half": "anchors"} for n, d in datasets.items()}
        else:
            datasets = prepare_real(Path(scratch), halves, options.max_rows)
        extra = "\n" + options.config_extra.read_text(encoding="utf-8") if options.config_extra else ""
        tasks = [(n, datasets[n], m, s, options.rate, options.confidence, extra)
                 for m in modes for s in seeds for n in datasets]
        with ProcessPoolExecutor(max_workers=max(options.jobs, 1)) as pool:
            results = pd.DataFrame(list(pool.map(clean_share, tasks)))
    if options.save:
        results.to_csv(options.save, index=False)
    minutes = (time.perf_counter() - started) / 60
    held = f"calibration_confidence {options.confidence or DEFAULT_CALIBRATION_CONFIDENCE} (with a reference); "
    print(f"# Clean batches: share of clean rows quarantined\n\nmax_false_positive_rate {options.rate:.0%}; {held}"
          f"seeds {options.seeds} ({len(seeds)} references and batches per dataset and mode); tables of at most "
          f"{options.max_rows} rows; {minutes:.1f} min\n")
    print(markdown(summarise(results, options.rate)))
    per_dataset = results.pivot_table(index=["half", "dataset"], columns="mode", values="share",
                                      aggfunc=["mean", "max"])
    per_dataset.columns = [f"{stat} ({mode})" for stat, mode in per_dataset.columns]
    print("\n" + markdown(per_dataset.map(lambda v: f"{100 * v:.1f}%").reset_index(level="half")))
    print("\nEach detector's p-values on the same clean rows (mean over datasets and seeds):\n")
    print(markdown(p_value_table(results)))


if __name__ == "__main__":
    main()
