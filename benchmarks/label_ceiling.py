"""How many label flips any label-plausibility test could catch on the real tables, at a given clean-row share.

The detection benchmark (``benchmarks/detection_real.py``) measures what
poisonguard catches. This one measures a ceiling it cannot pass: an *oracle*
score, ``1 - P(given label | features)`` from models cross-fitted on the
table's **true** labels (so no flip ever teaches the model anything, and
every model is fitted on 80 % of the table), then the recall of the flipped
rows at the threshold that flags exactly 1, 2 or 5 % of the clean rows.
No detector that judges a row by how well its features predict its label
(confident learning, a trusted model, neighbours) can beat a well-fitted
model of the clean labels by much on the same features: a flip to a label
the features make plausible is, to any such test, a clean row.

Same tables, same subsampling and the same attacks (``poisonguard evaluate``'s
``inject``, 5 %, seed per ``--seeds``) as the detection benchmark. Two model
families, logistic regression and gradient boosting (the better one per table
and attack is the ceiling). Prints recall per table and the mean per half.

    OMP_NUM_THREADS=1 python benchmarks/label_ceiling.py --seeds 0
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection import markdown  # noqa: E402
from detection_real import DATASETS, load_frame  # noqa: E402

from poisonguard.detectors._crossfit import cross_fitted_probabilities  # noqa: E402
from poisonguard.detectors.features import FeatureEncoder  # noqa: E402
from poisonguard.pipelines.redteam.attacks import AttackError, inject  # noqa: E402

FLIP_ATTACKS = ("random_flips", "targeted_flips", "boundary_flips")
MODELS = {
    "logistic": lambda: LogisticRegression(max_iter=2000),
    "gradient boosting": lambda: HistGradientBoostingClassifier(random_state=0),
}
ROW_ID = "row_id"


def clean_label_probabilities(matrix: np.ndarray, codes: np.ndarray, make_model, seed: int) -> np.ndarray:
    """Out-of-fold class probabilities from 5-fold models fitted on the true labels."""
    return cross_fitted_probabilities(matrix, codes, make_classifier=make_model, n_folds=5, random_state=seed)


def recall_at(score: np.ndarray, poisoned: np.ndarray, clean_share: float) -> float:
    """Share of poisoned rows scored above the clean rows' ``1 - clean_share`` quantile."""
    threshold = np.quantile(score[~poisoned], 1.0 - clean_share)
    return float(np.mean(score[poisoned] > threshold))


def table_ceilings(name: str, spec, half: str, seed: int, clean_shares) -> list[dict]:
    source, package, item, label, drop = spec
    frame = load_frame(source, package, item, label, drop)
    frame[label] = frame[label].astype(str)
    frame.insert(0, ROW_ID, [f"row-{index:06d}" for index in range(len(frame))])
    features = [c for c in frame.columns if c not in (label, ROW_ID)]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in features if c not in numeric]
    encoder = FeatureEncoder(numeric=numeric, categorical=categorical).fit(frame)
    matrix = np.nan_to_num(encoder.transform(frame).to_numpy(dtype=float))
    classes, codes = np.unique(frame[label].to_numpy(), return_inverse=True)
    probabilities = {model: clean_label_probabilities(matrix, codes, make, seed) for model, make in MODELS.items()}
    rows = []
    for attack in FLIP_ATTACKS:
        try:
            poisoned = inject(attack, frame, label=label, id_column=ROW_ID, rate=0.05, seed=seed,
                              numeric=numeric, categorical=categorical)
        except AttackError:
            continue
        given = poisoned.frame.set_index(ROW_ID).loc[frame[ROW_ID], label].astype(str).to_numpy()
        given_codes = np.searchsorted(classes, given)
        truth = frame[ROW_ID].isin(set(poisoned.truth["row_id"])).to_numpy()
        for model, probability in probabilities.items():
            score = 1.0 - probability[np.arange(len(codes)), given_codes]
            rows.append({"half": half, "dataset": name, "attack": attack, "model": model, "seed": seed,
                         **{f"{share:.0%}": recall_at(score, truth, share) for share in clean_shares}})
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--halves", default="tuning,held-out")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--clean-shares", default="0.01,0.02,0.05", help="Shares of clean rows flagged.")
    options = parser.parse_args(argv)
    shares = [float(s) for s in options.clean_shares.split(",")]
    started = time.perf_counter()
    rows = []
    # Logistic regression may stop short of convergence on a few tables; the ceiling takes the better model.
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    for half in options.halves.split(","):
        for name, spec in DATASETS[half].items():
            for seed in (int(s) for s in options.seeds.split(",")):
                rows.extend(table_ceilings(name, spec, half, seed, shares))
    results = pd.DataFrame(rows)
    columns = [f"{share:.0%}" for share in shares]
    # The ceiling: the better model per table, attack and seed, then the mean over seeds.
    best = results.groupby(["half", "dataset", "attack", "seed"])[columns].max().groupby(["half", "dataset", "attack"]).mean()
    print(f"# Ceiling of label-flip recall at a share of clean rows flagged\n\n"
          f"oracle models cross-fitted on the true labels (better of {', '.join(MODELS)}); "
          f"attack rate 5 %; seeds {options.seeds}; {(time.perf_counter() - started) / 60:.1f} min")
    for half in [h for h in options.halves.split(",") if h in best.index.get_level_values("half")]:
        part = best.loc[half]
        per_attack = part.groupby("attack").mean()
        print(f"\n## {half} half: mean over tables\n")
        print(markdown(per_attack.map(lambda v: f"{v:.2f}").rename_axis("attack (recall at clean rows flagged)")))
        print(f"\n## {half} half: per table\n")
        table = part.map(lambda v: f"{v:.2f}")
        table.index = pd.Index([f"{dataset}, {attack}" for dataset, attack in table.index], name="table, attack")
        print(markdown(table))


if __name__ == "__main__":
    main()
