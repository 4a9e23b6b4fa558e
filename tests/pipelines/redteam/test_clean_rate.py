"""The whole pipeline on clean batches of several shapes flags a share within the configured rate.

``evaluate`` with no attack judges a clean batch exactly as ``run`` does
(expectations inferred from a 10 % reference or none, every default
detector, the one decision rule). The share of rows quarantined must stay
within ``detection.max_false_positive_rate``, and above a floor: a pipeline
that quarantined nothing at all would pass an upper bound alone.

With a reference the tables have 1,400 rows, so the 10 % reference (140 rows)
is one the run calls large enough (``pipelines.core.adequacy``: at least
``1 / alpha - 1`` = 99 trusted rows at this rate). From 70 trusted rows the
label detectors' tails are extrapolated from a handful of rows and the
share reached 11 % on ``many_features``; the run says so in a note.
"""
import numpy as np
import pandas as pd
import pytest

from poisonguard.pipelines.redteam.evaluate import NO_ATTACK, PIPELINE, evaluate

RATE = 0.08
# evaluate holds a fifth of the rows out for its downstream models and, with a
# reference, a tenth as trusted rows: 560 (700 rows, no reference) to 980 rows are judged.
BATCH_ROWS = 560


def gaussian_classes(rng, n_rows):
    """Three overlapping classes in four numeric features."""
    codes = rng.integers(0, 3, n_rows)
    centres = np.array([[0, 0, 0, 0], [1.5, 0, 0, 0], [0, 1.5, 0, 0]])
    frame = pd.DataFrame(np.round(centres[codes] + rng.normal(size=(n_rows, 4)), 3), columns=list("abcd"))
    frame["label"] = np.array(["p", "q", "r"])[codes]
    return frame


def mixed_imbalanced(rng, n_rows):
    """A 90 / 10 binary label, skewed and integer columns, two categories and a few empty cells."""
    positive = rng.random(n_rows) < 0.1
    frame = pd.DataFrame({
        "income": np.round(rng.lognormal(3 + 0.5 * positive, 0.6), 2),
        "visits": rng.poisson(3 + 2 * positive),
        "region": rng.choice(["north", "south", "east", "west"], n_rows, p=[0.4, 0.3, 0.2, 0.1]),
        "plan": np.where(rng.random(n_rows) < 0.3 + 0.4 * positive, "gold", "basic"),
    })
    frame.loc[rng.random(n_rows) < 0.03, "income"] = np.nan
    frame["label"] = np.where(positive, "yes", "no")
    return frame


def many_features(rng, n_rows):
    """Two classes in twelve correlated features."""
    codes = rng.integers(0, 2, n_rows)
    mixing = rng.normal(size=(12, 12)) / 3
    values = rng.normal(size=(n_rows, 12)) @ mixing + 0.8 * codes[:, None]
    frame = pd.DataFrame(np.round(values, 3), columns=[f"f{i}" for i in range(12)])
    frame["label"] = np.where(codes == 1, "one", "zero")
    return frame


SHAPES = {"gaussian_classes": gaussian_classes, "mixed_imbalanced": mixed_imbalanced, "many_features": many_features}


@pytest.fixture(scope="module")
def clean_shares(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean-rate")
    config = folder / "rate.toml"
    config.write_text(f"[detection]\nmax_false_positive_rate = {RATE}\n", encoding="utf-8")
    shares = {}
    for index, (name, make) in enumerate(SHAPES.items()):
        for self_referential in (False, True):
            data = folder / f"{name}-{'self' if self_referential else 'reference'}.csv"
            make(np.random.default_rng(index), 700 if self_referential else 1400).to_csv(data, index=False)
            evaluation = evaluate(data, label="label", attacks=[], config_path=config, seed=index,
                                  self_referential=self_referential)
            metrics = evaluation.metrics.set_index(["attack", "method"])
            shares[(name, self_referential)] = float(metrics.loc[(NO_ATTACK, PIPELINE), "fpr"])
    return shares


def test_every_clean_batch_stays_within_the_configured_rate(clean_shares):
    # The rate bounds the expected share; one batch of 560-980 clean rows may exceed
    # it by sampling noise (2.5 binomial standard deviations: 2.9 points at 8 % and 560 rows),
    # and the six batches together may not exceed it.
    noise = 2.5 * np.sqrt(RATE * (1 - RATE) / BATCH_ROWS)
    for case, share in clean_shares.items():
        assert share <= RATE + noise, f"{case}: {share:.1%} of clean rows quarantined, configured {RATE:.0%}"
    assert np.mean(list(clean_shares.values())) <= RATE


def test_the_rate_is_used_not_vacuous(clean_shares):
    # Calibrated p-values flag clean rows too: on average at least a tenth of the rate.
    assert np.mean(list(clean_shares.values())) >= RATE / 10
