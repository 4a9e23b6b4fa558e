"""Is the trusted reference large enough for the rates a run promises? Say so when it is not.

Two things fail on a small reference, and both can be estimated from the
reference alone:

- **Detectors.** A conformal p-value counted from ``n`` trusted rows is never
  below ``1 / (n + 1)``; below the per-detector alpha every flag rests on a
  tail extrapolated from the few most extreme trusted rows, and its error
  rate is an estimate, not a guarantee. ``n >= 1 / alpha - 1`` rows give
  every flag at least one trusted row as unusual.
- **Categories.** A value set is the categories the reference happened to
  show. By Good–Turing, the share of new rows carrying a category the
  reference never saw is about ``(categories seen exactly once) / n``, per
  column. Where that is above ``MAX_UNSEEN_MASS`` the inferred suite gives
  the feature no value set (``expectations.infer``), so its new categories go
  unchecked; the label always gets one, so its unseen labels are quarantined.
  That unseen mass shrinks roughly as ``1 / n``.
"""
from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from poisonguard.expectations.infer import MAX_CATEGORIES, MAX_UNSEEN_MASS, UNIQUE_VALUES_NO_SET
from poisonguard.pipelines.core.config import RunConfig
from poisonguard.pipelines.core.text import display



def reference_notes(reference: Optional[pd.DataFrame], kinds: dict[str, str], label: str, config: RunConfig) -> list[str]:
    """Sentences for the run's notes when the reference is too small for the promised rates.

    Parameters
    ----------
    reference : DataFrame or None
        The typed trusted rows (None: no reference, which the run notes apart).
    kinds : dict of column -> "numeric" | "categorical"
        The feature columns' kinds.
    label : str
    config : RunConfig

    Returns
    -------
    list of str, empty when the reference is large enough.
    """
    if reference is None or not len(reference):
        return []
    rows = len(reference)
    notes = []
    alpha = config.detection.detector_alpha
    enough_for_detectors = math.ceil(1.0 / alpha - 1.0)
    if rows < enough_for_detectors:
        notes.append(
            f"The trusted reference has {rows} rows, fewer than the {enough_for_detectors} that let each detector "
            f"count its false-positive rate of {alpha:.2g} on trusted rows: its flags rest on a tail extrapolated "
            "from the most unusual trusted rows, so that rate is an estimate, not a guarantee."
        )
    unseen = _unseen_shares(reference, [c for c, kind in kinds.items() if kind == "categorical" and c != label])
    unchecked = {column: share for column, share in unseen.items() if share > MAX_UNSEEN_MASS}
    if unchecked:
        worst = ", ".join(f"{display(column)} {share:.1%}" for column, share in
                          sorted(unchecked.items(), key=lambda item: -item[1])[:3])
        enough = math.ceil(rows * max(unchecked.values()) / MAX_UNSEEN_MASS)
        notes.append(
            f"The trusted reference shows many categories only once: Good–Turing expects that share of clean rows "
            f"to carry a category it never saw ({worst}), too many to quarantine, so these columns got no value set "
            f"and their new categories go unchecked; about {enough} reference rows would let them be checked."
        )
    label_unseen = _unseen_shares(reference, [label]).get(label, 0.0)
    if label_unseen > MAX_UNSEEN_MASS:
        enough = math.ceil(rows * label_unseen / MAX_UNSEEN_MASS)
        notes.append(
            f"The trusted reference shows some labels only once: about {label_unseen:.1%} of clean rows will carry "
            f"a label it never saw, and a row with such a label is always quarantined; about {enough} reference rows "
            f"would bring that under {MAX_UNSEEN_MASS:.0%}."
        )
    return notes


def _unseen_shares(reference: pd.DataFrame, columns: list[str]) -> dict[str, float]:
    """Good–Turing's unseen mass of the columns that get a value set: categories seen once / rows with a value.

    Columns the inferred suite leaves without a value set (too many
    categories, or every value distinct: ``expectations.infer``) cannot
    break one and are skipped.
    """
    shares = {}
    for column in dict.fromkeys(columns):
        if column not in reference.columns:
            continue
        counts = reference[column].dropna().astype(str).value_counts()
        present = int(counts.sum())
        id_like = len(counts) > UNIQUE_VALUES_NO_SET and len(counts) == present
        if present and len(counts) <= MAX_CATEGORIES and not id_like:
            shares[column] = float((counts == 1).sum()) / present
    return shares
