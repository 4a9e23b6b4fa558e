"""Other decision rules over the same detectors' p-values: what would they buy?

``run`` combines each row's detector p-values with Simes' rule at the level
the inferred rules leave of ``detection.max_false_positive_rate``
(``pipelines.core.decision.apply_decision_rule``). Any rule that gives one
detector a larger share of that level gives the others less. This benchmark
judges every batch of ``benchmarks/detection_real.py`` once (same tables,
halves, seeds, references and attacks), keeps what the decision rule was
given (each detector's p-values, its hard flags, the rows the expectations
quarantined, the level), and replays other rules over it in seconds:

* ``simes``: the rule ``run`` uses; it reproduces ``detection_real.py``'s
  poisonguard rows, which checks the replay;
* ``bonferroni``: ``detection.combine = "bonferroni"``;
* ``simes, a share per family``: weighted Simes (Benjamini and Hochberg
  1997; valid under positive dependence for fixed weights, Ramdas et al.
  2019) with the level split equally between the families of detectors
  (``outlier``, ``label``, ``duplicates``, ``backdoor``, read off the
  names), then equally within each;
* ``simes, weights tuned`` (``--tables real``): the weights of ``--draws`` seeded random draws
  that give the tuning half the highest mean recall without flagging more of
  its clean rows (attacked and clean batches) than ``simes``; the held-out
  half shows what they are worth on tables they were not chosen on.

    OMP_NUM_THREADS=1 python benchmarks/decision_rules.py --seeds 0,1 --jobs 2
    OMP_NUM_THREADS=1 python benchmarks/decision_rules.py --tables anchors --seeds 0,1,2 --jobs 2

``--tables anchors`` replays ``benchmarks/detection.py``'s five small
tables (penguins, breast cancer, wine, iris, digits) instead.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import pickle  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import BUNDLED_DATASETS, MODES, SAMPLE_DATASETS, markdown, prepare_datasets  # noqa: E402
from detection_real import prepare_real  # noqa: E402


def judged_batches(task) -> list[dict]:
    """Every batch of one (dataset, mode, seed) evaluate run, as its decision rule saw it."""
    name, dataset, mode, seed, rate = task
    os.environ.setdefault("POISONGUARD_HOME", tempfile.mkdtemp(prefix="poisonguard-bench-"))
    warnings.simplefilter("ignore")
    import importlib

    from poisonguard.pipelines.core.checks import judged_arrays
    from poisonguard.pipelines.core.decision import _detector_p_values, _positions, hard_flags
    from poisonguard.pipelines.redteam.evaluate import NO_ATTACK, evaluate

    # Caught on the way through, in this worker process only (as clean_rate.py does).
    module = importlib.import_module("poisonguard.pipelines.redteam.evaluate")
    stages = importlib.import_module("poisonguard.pipelines.core.stages")
    inject, rule, detect = module.inject, stages.apply_decision_rule, module._detect
    batches, current = [], {"attack": NO_ATTACK, "poisoned": set()}

    def injected(*args, **options):
        poisoned = inject(*args, **options)
        current["poisoned"] = set(map(str, poisoned.truth["row_id"]))
        return poisoned

    def judged(setup, batch, attack, folder):
        current["attack"] = attack
        if attack == NO_ATTACK:
            current["poisoned"] = set()
        return detect(setup, batch, attack, folder)

    def kept(inputs, outcomes):
        result = rule(inputs, outcomes)
        detectors = [i for i, o in enumerate(outcomes) if o.kind == "detector" and not o.details.get("skipped")]
        if not detectors:
            return result
        ids, p_values = _detector_p_values(outcomes, detectors)
        # Hard flags are outside the rule, in the replay as in the rule.
        hard = np.zeros(p_values.shape, dtype=bool)
        alpha = inputs.settings.config.detection.detector_alpha
        for column, position in enumerate(detectors):
            hard[_positions(ids, judged_arrays(outcomes[position])[0]), column] = hard_flags(outcomes[position], alpha)
        elsewhere = set()
        for outcome in result:
            if outcome.kind != "detector":
                findings = outcome.findings
                elsewhere |= set(findings.loc[findings["flagged"] & (findings["row_id"] != ""), "row_id"])
        all_ids = pd.Index(inputs.batch.row_ids.astype(str))
        batches.append({
            "dataset": name, "half": dataset["half"], "mode": mode, "seed": seed, "attack": current["attack"],
            "names": [outcomes[i].name for i in detectors], "p": p_values, "hard": hard,
            "rows": all_ids.get_indexer(pd.Index(ids).astype(str)),
            "poisoned": all_ids.isin(list(current["poisoned"])), "elsewhere": all_ids.isin(list(elsewhere)),
            "level": result[detectors[0]].details["decision"]["level"],
        })
        return result

    module.inject, module._detect, stages.apply_decision_rule = injected, judged, kept
    try:
        with tempfile.TemporaryDirectory(prefix="poisonguard-rules-") as scratch:
            config = Path(scratch) / "config.toml"
            config.write_text(dataset["config"].read_text(encoding="utf-8")
                              + f"\n[detection]\nmax_false_positive_rate = {rate}\n", encoding="utf-8")
            evaluate(dataset["data"], label=dataset["label"], config_path=config, seed=seed,
                     self_referential=MODES[mode])
    finally:
        module.inject, module._detect, stages.apply_decision_rule = inject, detect, rule
    return batches


def weighted_simes(p_values: np.ndarray, weights: np.ndarray, level: float) -> np.ndarray:
    """Rows a weighted Simes test rejects: ``p_j / w_j`` sorted, ``q_(k) <= k * level / m`` for some ``k``."""
    m = p_values.shape[1]
    if m == 0:
        return np.zeros(len(p_values), dtype=bool)
    weighted = np.sort(np.where(weights > 0, p_values / np.where(weights > 0, weights, 1.0), np.inf), axis=1)
    return (weighted <= np.arange(1, m + 1) * level / m).any(axis=1)


def family_weights(names: list[str]) -> dict[str, float]:
    """An equal share of the level per family (the name's prefix), shared equally within it."""
    families = [name.split(".")[0] for name in names]
    return {name: 1.0 / (len(set(families)) * families.count(family)) for name, family in zip(names, families)}


def replay(batches: list[dict], weigh=None, *, bonferroni: bool = False) -> pd.DataFrame:
    """Recall and clean rows flagged per batch under one rule.

    ``weigh(names) -> {name: weight}`` (a detector it leaves out weighs 1);
    None: equal weights.
    """
    rows = []
    for batch in batches:
        p_values, names = batch["p"], batch["names"]
        weights = weigh(names) if weigh is not None else {}
        w = np.array([weights.get(name, 1.0) for name in names], dtype=float)
        w = w * len(w) / w.sum()
        if bonferroni:
            rejected = (p_values / w <= batch["level"] / len(w)).any(axis=1)
        else:
            rejected = weighted_simes(p_values, w, batch["level"])
        quarantined = batch["elsewhere"].copy()
        quarantined[batch["rows"][rejected | batch["hard"].any(axis=1)]] = True
        poisoned = batch["poisoned"]
        # Missed rows that no detector gives p <= level: no split of the level would catch them.
        beyond = np.zeros(len(poisoned), dtype=bool)
        beyond[batch["rows"][p_values.min(axis=1, initial=1.0) > batch["level"]]] = True
        rows.append({
            "missed": int((poisoned & ~quarantined).sum()),
            "missed_beyond": int((poisoned & ~quarantined & beyond).sum()),
            "dataset": batch["dataset"], "half": batch["half"], "mode": batch["mode"], "seed": batch["seed"],
            "attack": batch["attack"],
            "recall": (quarantined & poisoned).sum() / poisoned.sum() if poisoned.any() else np.nan,
            "fpr": (quarantined & ~poisoned).sum() / max((~poisoned).sum(), 1),
        })
    return pd.DataFrame(rows)


def summary(scored: pd.DataFrame) -> pd.DataFrame:
    """As detection_real.py: per seed the mean over datasets of the mean over attacks, median over seeds."""
    attacked = scored[scored["attack"] != "none"]
    per_run = attacked.groupby(["half", "mode", "seed", "dataset"])[["recall", "fpr"]].mean()
    table = per_run.groupby(["half", "mode", "seed"]).mean().groupby(["half", "mode"]).median()
    clean = scored[scored["attack"] == "none"].groupby(["half", "mode"])["fpr"]
    return table.assign(clean_mean=clean.mean(), clean_worst=clean.max())


def tuned_weights(batches: list[dict], draws: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per mode, the weights that give the tuning half the most recall at no more clean rows flagged than Simes."""
    rng = np.random.default_rng(seed)
    chosen = {}
    for mode in sorted({b["mode"] for b in batches}):
        tuning = [b for b in batches if b["mode"] == mode and b["half"] == "tuning"]
        if not tuning:
            continue
        names = list(dict.fromkeys(n for b in tuning for n in b["names"]))

        def measured(weights):
            row = summary(replay(tuning, lambda names: weights)).iloc[0]
            return row["recall"], max(row["fpr"], row["clean_mean"])

        best_weights: dict = {}
        best_recall, bar = measured({})
        for _ in range(draws):
            weights = dict(zip(names, rng.dirichlet(np.ones(len(names))) * len(names)))
            recall, flagged = measured(weights)
            if flagged <= bar and recall > best_recall:
                best_recall, best_weights = recall, weights
        chosen[mode] = best_weights
    return chosen


def judge_all(options, halves, seeds, modes) -> tuple[list[dict], list[str]]:
    """Judge every batch of the chosen tables; the batches and the halves they fall in."""
    with tempfile.TemporaryDirectory(prefix="poisonguard-bench-rules-") as scratch:
        if options.tables == "anchors":
            datasets = prepare_datasets(Path(scratch), SAMPLE_DATASETS + BUNDLED_DATASETS)
            datasets = {n: {**d, "half": "anchors"} for n, d in datasets.items()}
            halves = ["anchors"]
        else:
            datasets = prepare_real(Path(scratch), halves)
        if options.datasets:
            datasets = {n: d for n, d in datasets.items() if n in set(options.datasets.split(","))}
        tasks = [(n, datasets[n], m, s, options.rate) for m in modes for s in seeds for n in datasets]
        with ProcessPoolExecutor(max_workers=max(options.jobs, 1)) as pool:
            batches = [batch for run in pool.map(judged_batches, tasks) for batch in run]
    return batches, halves


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", choices=("real", "anchors"), default="real",
                        help="detection_real.py's ten tables (two halves), or detection.py's five anchors.")
    parser.add_argument("--halves", default="tuning,held-out")
    parser.add_argument("--datasets", help="Only these datasets (comma-separated names).")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--rate", type=float, default=0.05, help="detection.max_false_positive_rate")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--jobs", type=int, default=1, help="Processes (one evaluate run each).")
    parser.add_argument("--draws", type=int, default=200, help="Random weight vectors tried on the tuning half.")
    parser.add_argument("--keep", type=Path,
                        help="Keep the judged batches in this file, and replay from it when it exists "
                             "(to try rules without judging again; the other options must match).")
    options = parser.parse_args(argv)
    halves = [h for h in options.halves.split(",") if h]
    seeds = [int(s) for s in options.seeds.split(",") if s]
    modes = [m for m in options.modes.split(",") if m]
    started = time.perf_counter()
    source = "judged in {minutes:.1f} min"
    if options.keep is not None and options.keep.exists():
        with options.keep.open("rb") as kept:
            batches, halves = pickle.load(kept)
        source = f"replayed from {options.keep}"
    else:
        batches, halves = judge_all(options, halves, seeds, modes)
        if options.keep is not None:
            with options.keep.open("wb") as kept:
                pickle.dump((batches, halves), kept)
    source = source.format(minutes=(time.perf_counter() - started) / 60)
    tuned = tuned_weights(batches, options.draws)
    rules = {"simes (run's rule)": lambda part, mode: replay(part),
             "bonferroni": lambda part, mode: replay(part, bonferroni=True),
             "simes, a share per family": lambda part, mode: replay(part, family_weights),
             "simes, weights tuned": lambda part, mode: replay(part, lambda names: tuned.get(mode, {}))}
    if not tuned:  # no tuning half to choose them on
        del rules["simes, weights tuned"]
    rows = []
    for mode in modes:
        part = [b for b in batches if b["mode"] == mode]
        scored = {rule: summary(apply(part, mode)).reset_index(level="mode", drop=True) for rule, apply in rules.items()}
        for half in halves:
            for rule, table in scored.items():
                if half not in table.index:
                    continue
                row = table.loc[half]
                rows.append({"mode": mode, "half": half, "rule": rule, "mean recall": f"{row['recall']:.3f}",
                             "clean rows flagged": f"{100 * row['fpr']:.2f}%",
                             "clean batch, mean / worst": f"{100 * row['clean_mean']:.1f}% / {100 * row['clean_worst']:.1f}%"})
    print(f"# Decision rules replayed over the same p-values\n\nmax_false_positive_rate {options.rate:.0%}; seeds "
          f"{sorted({b['seed'] for b in batches})}; {len(batches)} batches {source}; medians over seeds of the mean over datasets\n")
    print(markdown(pd.DataFrame(rows).set_index("mode")))
    for mode in modes:
        missed = replay([b for b in batches if b["mode"] == mode]).groupby("half")[["missed", "missed_beyond"]].sum()
        shares = ", ".join(f"{half} {100 * row['missed_beyond'] / max(row['missed'], 1):.0f} % of {row['missed']}"
                           for half, row in missed.iterrows())
        print(f"\npoisoned rows Simes misses ({mode}) with no detector at p <= the level: {shares}")
    for mode, weights in tuned.items():
        shown = ", ".join(f"{name} {weight:.2f}" for name, weight in weights.items()) or "none beat equal weights"
        print(f"\nweights tuned ({mode}): {shown}")


if __name__ == "__main__":
    main()
