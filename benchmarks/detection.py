"""Detection benchmark: poisonguard against cleanlab, kNN sanitisation and PyOD.

Runs ``poisonguard evaluate`` (``poisonguard.pipelines.redteam.evaluate.evaluate``) on the sample
datasets of ``data_samples/`` (their clean rows: reference plus batch minus
the rows in ``truth.csv``) and on scikit-learn's bundled iris and digits,
with a trusted reference of 10 % split off each dataset and without one, and
scores on the very same poisoned batches the tools people use today, each at
its own default threshold:

* cleanlab ``find_label_issues`` on 5-fold out-of-fold probabilities of
  ``HistGradientBoostingClassifier`` and of ``LogisticRegression``;
* kNN label sanitisation (Paudice et al. 2018): a row whose 10 nearest batch
  rows mostly (eta = 0.5) carry another label;
* PyOD ``ECOD`` and ``IForest`` with ``contamination=0.1``.

The anchors see the batch encoded as poisonguard's detectors see it
(``poisonguard.detectors.features.FeatureEncoder``) and ignore the trusted reference, as
they would be used; rows without a label are left out of the label methods.
Prints markdown tables: mean recall over the attack families and the share of
clean rows flagged, per method, with and without a reference (the median
over seeds of the mean over datasets); recall per attack family for
poisonguard; the backdoor's attack success rate after sanitising.

    OMP_NUM_THREADS=1 python benchmarks/detection.py --seeds 0,1,2 --jobs 2
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
import warnings  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data_samples"
SAMPLE_DATASETS = ("penguins", "breast_cancer", "wine")
BUNDLED_DATASETS = ("iris", "digits")
MODES = {"reference": False, "no reference": True}
POISONGUARD = "poisonguard"
ANCHORS = (
    "cleanlab (5-fold gradient boosting)",
    "cleanlab (5-fold logistic regression)",
    "kNN sanitisation (k=10, eta=0.5)",
    "PyOD ECOD (contamination 0.1)",
    "PyOD IForest (contamination 0.1)",
)


def prepare_datasets(folder: Path, names) -> dict[str, dict]:
    """Write each dataset's clean rows as CSV plus a config; return paths and label columns."""
    prepared = {}
    for name in names:
        if name in SAMPLE_DATASETS:
            config = tomllib.loads((SAMPLES / name / "poisonguard.toml").read_text())["dataset"]
            truth = set(pd.read_csv(SAMPLES / name / "truth.csv", dtype=str)["row_id"])
            reference = pd.read_csv(SAMPLES / name / "reference.csv", dtype=str)
            batch = pd.read_csv(SAMPLES / name / "batch.csv", dtype=str)
            clean = pd.concat([reference, batch[~batch[config["id"]].isin(truth)]], ignore_index=True)
            kinds = {"numeric": config.get("numeric", []), "categorical": config.get("categorical", [])}
            label, id_column = config["label"], config["id"]
        else:
            from sklearn import datasets

            bunch = getattr(datasets, f"load_{name}")(as_frame=True)
            clean = bunch.data.copy()
            clean.columns = [str(column).replace(" ", "_") for column in clean.columns]
            clean["label"] = [str(bunch.target_names[target]) for target in bunch.target]
            kinds = {"numeric": [c for c in clean.columns if c != "label"], "categorical": []}
            label, id_column = "label", None
        data = folder / f"{name}.csv"
        clean.to_csv(data, index=False)
        lines = ["[dataset]", f'name = "{name}"', f'label = "{label}"']
        if id_column:
            lines.append(f'id = "{id_column}"')
        lines.append("numeric = [" + ", ".join(f'"{c}"' for c in kinds["numeric"]) + "]")
        lines.append("categorical = [" + ", ".join(f'"{c}"' for c in kinds["categorical"]) + "]")
        config_path = folder / f"{name}.toml"
        config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        prepared[name] = {"data": data, "config": config_path, "label": label, "rows": len(clean)}
    return prepared


def anchor_methods(seed: int) -> dict:
    """Name -> function(FeatureMatrices) -> flagged row ids, for each anchor."""

    def labelled(features):
        keep = features.batch_labels != ""
        matrix = features.batch_features.to_numpy()[keep]
        return matrix, features.batch_labels[keep].astype(str), features.batch_row_ids[keep]

    def cleanlab_with(make_model):
        def method(features):
            from cleanlab.filter import find_label_issues
            from sklearn.model_selection import StratifiedKFold, cross_val_predict
            from sklearn.preprocessing import LabelEncoder

            matrix, labels, ids = labelled(features)
            codes = LabelEncoder().fit_transform(labels)
            # Labels on fewer rows than folds (an injected empty or unknown
            # label) cannot be cross-validated; they are left out, unflagged.
            counts = np.bincount(codes)
            usable = counts[codes] >= 5
            codes = LabelEncoder().fit_transform(labels[usable])
            folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
            probabilities = cross_val_predict(make_model(), matrix[usable], codes, cv=folds, method="predict_proba")
            issues = find_label_issues(codes, probabilities, n_jobs=1)
            return ids[usable][issues]

        return method

    def knn_sanitisation(features, k=10, eta=0.5):
        from sklearn.neighbors import NearestNeighbors

        matrix, labels, ids = labelled(features)
        _, neighbours = NearestNeighbors(n_neighbors=min(k + 1, len(matrix))).fit(matrix).kneighbors(matrix)
        flagged = []
        for row, found in enumerate(neighbours):
            others = labels[[n for n in found if n != row][:k]]
            values, counts = np.unique(others, return_counts=True)
            top = int(np.argmax(counts))
            if values[top] != labels[row] and counts[top] / len(others) >= eta:
                flagged.append(ids[row])
        return flagged

    def pyod_with(make_model):
        def method(features):
            model = make_model().fit(features.batch_features.to_numpy())
            return features.batch_row_ids[model.labels_ == 1]

        return method

    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    return dict(
        zip(
            ANCHORS,
            (
                cleanlab_with(lambda: HistGradientBoostingClassifier(random_state=seed)),
                cleanlab_with(lambda: LogisticRegression(max_iter=2000)),
                knn_sanitisation,
                pyod_with(lambda: ECOD(contamination=0.1, n_jobs=1)),
                pyod_with(lambda: IForest(contamination=0.1, random_state=seed, n_jobs=1)),
            ),
        )
    )


def run_one(task) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """One evaluate run (dataset, mode, seed): metrics and downstream rows, and seconds."""
    name, dataset, mode, seed, rate, alpha, detectors, *rest = task
    # An optional eighth entry names the anchors to score (default: all).
    wanted = rest[0] if rest else ANCHORS
    os.environ.setdefault("POISONGUARD_HOME", tempfile.mkdtemp(prefix="poisonguard-bench-"))
    warnings.simplefilter("ignore")
    from poisonguard.pipelines.redteam.evaluate import evaluate

    started = time.perf_counter()
    evaluation = evaluate(
        dataset["data"], label=dataset["label"], config_path=dataset["config"], rate=rate, seed=seed,
        self_referential=MODES[mode], alpha=alpha,
        methods={n: m for n, m in anchor_methods(seed).items() if n in wanted},
        detectors=detectors,
    )
    labels = {"dataset": name, "mode": mode, "seed": seed}
    return (
        evaluation.metrics.assign(**labels),
        evaluation.downstream.assign(**labels),
        time.perf_counter() - started,
    )


def summarise(metrics: pd.DataFrame) -> pd.DataFrame:
    """Method x mode: mean recall over attacks and clean-row FPR (median over seeds of dataset means)."""
    attacked = metrics[metrics["attack"] != "none"]
    per_run = attacked.groupby(["mode", "seed", "dataset", "method"]).agg(recall=("recall", "mean"), fpr=("fpr", "mean"))
    per_seed = per_run.groupby(["mode", "seed", "method"]).mean()
    return per_seed.groupby(["mode", "method"]).median()


def markdown(frame: pd.DataFrame) -> str:
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join([frame.index.name or "", *columns]) + " |", "|" + " --- |" * (len(columns) + 1)]
    for index, row in frame.iterrows():
        lines.append("| " + " | ".join([str(index), *[str(v) for v in row]]) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(SAMPLE_DATASETS + BUNDLED_DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rate", type=float, default=0.05)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--jobs", type=int, default=1, help="Processes (one run each).")
    parser.add_argument("--alpha", type=float, help="Per-detector alpha (default: the config's; lowered to fit the budget).")
    parser.add_argument("--detectors", help="Comma-separated detector names (default: the config's).")
    parser.add_argument("--save", type=Path, help="Also write the raw metrics and downstream tables (CSV prefix).")
    options = parser.parse_args(argv)
    names = [n for n in options.datasets.split(",") if n]
    seeds = [int(s) for s in options.seeds.split(",") if s]
    modes = [m for m in options.modes.split(",") if m]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poisonguard-bench-") as scratch:
        datasets = prepare_datasets(Path(scratch), names)
        detectors = [d for d in options.detectors.split(",") if d] if options.detectors else None
        tasks = [
            (n, datasets[n], m, s, options.rate, options.alpha, detectors) for m in modes for s in seeds for n in names
        ]
        if options.jobs > 1:
            with ProcessPoolExecutor(max_workers=options.jobs) as pool:
                results = list(pool.map(run_one, tasks))
        else:
            results = [run_one(task) for task in tasks]
    metrics = pd.concat([r[0] for r in results], ignore_index=True)
    downstream = pd.concat([r[1] for r in results], ignore_index=True)
    if options.save:
        metrics.to_csv(f"{options.save}-metrics.csv", index=False)
        downstream.to_csv(f"{options.save}-downstream.csv", index=False)
    print_report(metrics, downstream, datasets, seeds, options.rate, options.alpha, time.perf_counter() - started)


def per_attack_table(attacked: pd.DataFrame) -> pd.DataFrame:
    """poisonguard's recall per attack family and mode: median over seeds of the mean over datasets."""
    per_attack = attacked.groupby(["mode", "seed", "attack"])["recall"].mean().groupby(["mode", "attack"]).median()
    per_attack = per_attack.unstack("mode").map(lambda v: f"{v:.2f}")
    per_attack.index.name = "attack (poisonguard recall)"
    return per_attack


def print_report(metrics, downstream, datasets, seeds, rate, alpha, seconds) -> None:
    summary = summarise(metrics)
    methods = [POISONGUARD, "detectors", "expectations", *ANCHORS]
    table = pd.DataFrame(index=pd.Index(methods, name="method"))
    for mode in summary.index.get_level_values("mode").unique():
        part = summary.loc[mode]
        table[f"mean recall ({mode})"] = part["recall"].reindex(methods).map(lambda v: f"{v:.2f}")
        table[f"FPR on clean rows ({mode})"] = part["fpr"].reindex(methods).map(lambda v: f"{100 * v:.1f}%")
    table.index = [
        {POISONGUARD: "**poisonguard** (every check, as `run` quarantines)",
         "detectors": "poisonguard detectors only",
         "expectations": "poisonguard inferred expectation suite only"}.get(m, m)
        for m in methods
    ]
    table.index.name = "method"
    names = ", ".join(f"{n} ({d['rows']} rows)" for n, d in datasets.items())
    print(f"# Detection benchmark\n\ndatasets: {names}; attack rate {rate:.0%}; one decision over every check "
          f"within max_false_positive_rate (0.05 by default; detectors' own alpha "
          f"{alpha if alpha is not None else 'from the config'}); seeds {seeds} "
          f"(median over seeds of the mean over datasets); {seconds / 60:.1f} min\n")
    print(markdown(table.fillna("–")))
    attacked = metrics[(metrics["attack"] != "none") & (metrics["method"] == POISONGUARD)]
    print("\n" + markdown(per_attack_table(attacked)))
    per_dataset = attacked.groupby(["mode", "seed", "dataset"])[["recall", "fpr"]].mean()
    per_dataset = per_dataset.groupby(["mode", "dataset"]).median().unstack("mode")
    per_dataset.columns = [f"{stat} ({mode})" for stat, mode in per_dataset.columns]
    per_dataset = per_dataset.map(lambda v: f"{v:.2f}")
    per_dataset.index.name = "dataset (poisonguard)"
    print("\n" + markdown(per_dataset))
    backdoor = downstream[downstream["attack"] == "backdoor"]
    if len(backdoor):
        success = backdoor.groupby(["mode", "trained_on"])["attack_success"].median().unstack("mode")
        accuracy = downstream[downstream["attack"] != "none"].groupby(["mode", "trained_on"])["accuracy"].median()
        success = success.map(lambda v: f"{100 * v:.0f}%")
        success.index.name = "backdoor success, trained on"
        print("\n" + markdown(success))
        accuracy = accuracy.unstack("mode").map(lambda v: f"{v:.3f}")
        accuracy.index.name = "test accuracy (median over attacks), trained on"
        print("\n" + markdown(accuracy))


if __name__ == "__main__":
    main()
