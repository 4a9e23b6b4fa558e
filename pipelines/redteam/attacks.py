"""Attack injection: poison a clean table at a known rate, with the truth.

The red team of ``poisonguard evaluate`` and ``benchmarks/detection.py``.
Every function here is pure and seeded: it takes a clean frame (one row per
record, an id column, a label column, numeric and categorical feature
columns), never changes it, and returns a :class:`Poisoned` with the poisoned
copy and a truth table ``row_id, attack, detail`` (the layout of the sample
datasets' ``truth.csv``). The same seed gives the same poison.

Families (``ATTACKS``), each poisoning exactly ``poison_count(len(frame),
rate)`` rows:

``random_flips``
    Labels of random rows changed to another label, chosen at random.
``targeted_flips``
    Rows of one source label (the most frequent) relabelled as one target.
``boundary_flips``
    The rows a clean model is least sure of (smallest cross-validated margin
    between the true label and the runner-up) relabelled as the runner-up.
``far_rows``
    New rows whose numeric features lie 0.5-2 ranges beyond the clean range.
``feature_corruption``
    A few numeric cells per row scaled by 10 or 1/10 (a unit error) or
    scrambled (replaced by a uniform draw over the column's clean range).
``backdoor``
    Rows of other labels get a trigger (three numeric features stamped with
    fixed values at the 2nd or 98th percentile: unusual but in range) and
    the target label. ``Poisoned.trigger`` stamps test rows to measure the
    attack success rate.
``duplicate_flood``
    New near-copies (noise of 1 % of a column's spread) of a few rows of
    other labels, all with one target label.
``schema_broken``
    Text in a numeric cell, an unknown category, or an empty label.

New rows get ids ``inj-<attack>-<n>``; flips and corruptions keep the row's id.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from poisonguard.detectors.features import FeatureEncoder

ATTACKS = (
    "random_flips",
    "targeted_flips",
    "boundary_flips",
    "far_rows",
    "feature_corruption",
    "backdoor",
    "duplicate_flood",
    "schema_broken",
)
TRUTH_COLUMNS = ["row_id", "attack", "detail"]
TRIGGER_FEATURES = 3
TRIGGER_QUANTILES = (0.02, 0.98)
RARE_SHARE = 0.05
CORRUPTED_CELLS = 3
FLOOD_SEEDS = 3
FLOOD_NOISE = 0.01
BROKEN_TEXT = "n/a?"
UNKNOWN_CATEGORY = "zz-unknown"


class AttackError(ValueError):
    """An attack cannot be injected into this table (names what is missing)."""


@dataclass(frozen=True)
class Trigger:
    """A backdoor trigger: feature values stamped on rows, and the label it buys.

    Attributes
    ----------
    features : tuple of str
        Numeric columns the trigger sets.
    values : tuple of float
        The value stamped in each, same order.
    target : str
        The label poisoned rows carry.
    """

    features: tuple
    values: tuple
    target: str

    def stamp(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``frame`` with the trigger values set (labels unchanged)."""
        stamped = frame.copy()
        for feature, value in zip(self.features, self.values):
            stamped[feature] = value
        return stamped

    def describe(self) -> str:
        cells = ", ".join(f"{feature}={value:g}" for feature, value in zip(self.features, self.values))
        return f"{cells} -> '{self.target}'"


class Poisoned(NamedTuple):
    """A poisoned copy of a clean table and what was done to it.

    Attributes
    ----------
    frame : pandas.DataFrame
        The clean rows (some changed) plus any injected rows, shuffled.
    truth : pandas.DataFrame, columns ``TRUTH_COLUMNS``
        One row per poisoned row.
    trigger : Trigger or None
        The backdoor trigger (``backdoor`` only).
    """

    frame: pd.DataFrame
    truth: pd.DataFrame
    trigger: Optional[Trigger] = None


@dataclass(frozen=True)
class _Table:
    frame: pd.DataFrame
    label: str
    id_column: str
    numeric: list
    categorical: list
    rng: np.random.Generator
    count: int

    @property
    def labels(self) -> np.ndarray:
        return self.frame[self.label].astype(str).to_numpy(dtype=object)


def poison_count(n_rows: int, rate: float) -> int:
    """Rows an attack poisons in a table of ``n_rows``: ``round(rate * n_rows)``, at least 1."""
    if not 0.0 < rate < 1.0:
        raise AttackError(f"rate must be between 0 and 1, got {rate!r}")
    return max(1, int(round(rate * n_rows)))


def inject(
    attack: str,
    frame: pd.DataFrame,
    *,
    label: str,
    id_column: str,
    rate: float = 0.05,
    seed: int = 0,
    numeric: Optional[Sequence[str]] = None,
    categorical: Optional[Sequence[str]] = None,
) -> Poisoned:
    """Inject one attack family into a clean frame.

    Parameters
    ----------
    attack : str
        One of ``ATTACKS``.
    frame : pandas.DataFrame, shape (n_rows, n_columns)
        Clean rows with unique ids in ``id_column`` and labels in ``label``.
    label, id_column : str
    rate : float
        Fraction of ``n_rows`` to poison (see ``poison_count``).
    seed : int
    numeric, categorical : sequence of str, optional
        Feature columns by kind; inferred from dtypes when omitted (every
        other column that is not the label or the id is a feature).

    Returns
    -------
    Poisoned
    """
    if attack not in ATTACKS:
        raise AttackError(f"unknown attack {attack!r}; known attacks: {', '.join(ATTACKS)}")
    table = _table(frame, label, id_column, numeric, categorical, rate, seed, attack)
    return globals()[f"_{attack}"](table)


def random_flips(frame, **options) -> Poisoned:
    """Random label flips; see ``inject`` for the parameters."""
    return inject("random_flips", frame, **options)


def targeted_flips(frame, **options) -> Poisoned:
    """Class-targeted flips; see ``inject``."""
    return inject("targeted_flips", frame, **options)


def boundary_flips(frame, **options) -> Poisoned:
    """Near-boundary flips; see ``inject``."""
    return inject("boundary_flips", frame, **options)


def far_rows(frame, **options) -> Poisoned:
    """Far-away injected rows; see ``inject``."""
    return inject("far_rows", frame, **options)


def feature_corruption(frame, **options) -> Poisoned:
    """Scaled or scrambled cells; see ``inject``."""
    return inject("feature_corruption", frame, **options)


def backdoor(frame, **options) -> Poisoned:
    """A backdoor trigger; see ``inject``."""
    return inject("backdoor", frame, **options)


def duplicate_flood(frame, **options) -> Poisoned:
    """A near-duplicate flood; see ``inject``."""
    return inject("duplicate_flood", frame, **options)


def schema_broken(frame, **options) -> Poisoned:
    """Schema-broken rows; see ``inject``."""
    return inject("schema_broken", frame, **options)


def trigger_test_rows(frame: pd.DataFrame, trigger: Trigger, *, label: str) -> pd.DataFrame:
    """Rows of ``frame`` whose label is not the target, with the trigger stamped.

    The share of them a model assigns to ``trigger.target`` is the backdoor's
    attack success rate.
    """
    others = frame[frame[label].astype(str) != trigger.target]
    return trigger.stamp(others)


# --- the families -----------------------------------------------------------


def _random_flips(table: _Table) -> Poisoned:
    labels = table.labels
    classes = np.unique(labels)
    rows = table.rng.choice(len(labels), table.count, replace=False)
    new = [table.rng.choice(classes[classes != labels[row]]) for row in rows]
    return _relabel(table, rows, new, "random_flips", "label '{old}' changed to '{new}' at random")


def _targeted_flips(table: _Table) -> Poisoned:
    labels = table.labels
    classes, counts = np.unique(labels, return_counts=True)
    source = classes[np.argmax(counts)]
    target = table.rng.choice(classes[classes != source])
    candidates = np.flatnonzero(labels == source)
    if len(candidates) < table.count:
        raise AttackError(f"targeted_flips: label '{source}' has {len(candidates)} rows, need {table.count}")
    rows = table.rng.choice(candidates, table.count, replace=False)
    return _relabel(table, rows, [target] * len(rows), "targeted_flips", "label '{old}' changed to '{new}' (targeted)")


def _boundary_flips(table: _Table) -> Poisoned:
    labels = table.labels
    classes, codes = np.unique(labels, return_inverse=True)
    matrix = _encoded(table)
    folds = StratifiedKFold(n_splits=max(2, min(5, np.bincount(codes).min())), shuffle=True, random_state=0)
    probabilities = cross_val_predict(
        LogisticRegression(max_iter=2000), matrix, codes, cv=folds, method="predict_proba"
    )
    own = probabilities[np.arange(len(codes)), codes]
    others = probabilities.copy()
    others[np.arange(len(codes)), codes] = -1.0
    runner_up = others.argmax(axis=1)
    # Rows the model gets right but only just: flipping them to the runner-up
    # moves the boundary where it is least constrained.
    margin = own - others.max(axis=1)
    order = np.lexsort((table.rng.random(len(codes)), np.where(margin >= 0, margin, np.inf)))
    rows = order[: table.count]
    return _relabel(
        table, rows, classes[runner_up[rows]], "boundary_flips",
        "label '{old}' changed to '{new}', the clean model's runner-up for this row",
    )


def _far_rows(table: _Table) -> Poisoned:
    numeric = _require_numeric(table, "far_rows", 1)
    values = table.frame[numeric].astype(float)
    low, high = values.min().to_numpy(), values.max().to_numpy()
    span = np.where(high > low, high - low, np.maximum(np.abs(high), 1.0))
    base = table.frame.iloc[table.rng.choice(len(table.frame), table.count)].copy()
    distance = table.rng.uniform(0.5, 2.0, size=(table.count, len(numeric))) * span
    above = table.rng.random((table.count, len(numeric))) < 0.5
    far = np.where(above, high + distance, low - distance)
    base[numeric] = _rounded_like(values, far)
    labels = table.labels
    base[table.label] = table.rng.choice(np.unique(labels), table.count)
    return _added(table, base, "far_rows", "new row, numeric features 0.5-2 ranges beyond the clean range")


def _feature_corruption(table: _Table) -> Poisoned:
    numeric = _require_numeric(table, "feature_corruption", 1)
    frame = _numeric_as_float(table)
    values = frame[numeric].astype(float)
    low, high = values.min(), values.max()
    rows = table.rng.choice(len(frame), table.count, replace=False)
    details = []
    cells = min(CORRUPTED_CELLS, len(numeric))
    for position, row in enumerate(rows):
        scale = position % 2 == 0
        current = values.iloc[row]
        # A cell that the corruption would leave as it was (0 x 10, a missing
        # value) is not corrupted: choose among cells it changes.
        usable = [c for c in numeric if np.isfinite(current[c]) and (current[c] != 0 if scale else high[c] > low[c])]
        columns = table.rng.choice(usable or numeric, min(cells, len(usable or numeric)), replace=False)
        if scale:
            factors = table.rng.choice([10.0, 0.1], len(columns))
            new = current[columns].to_numpy() * factors
            how = "scaled " + ", ".join(f"{column} x{factor:g}" for column, factor in zip(columns, factors))
        else:
            new = table.rng.uniform(low[columns].to_numpy(), high[columns].to_numpy())
            how = "scrambled " + ", ".join(map(str, columns)) + " (uniform over the clean range)"
        for column, value in zip(columns, new):
            frame.iat[row, frame.columns.get_loc(column)] = _round_like(values[column], value)
        details.append(how)
    return _changed(table, frame, rows, "feature_corruption", details)


def _backdoor(table: _Table) -> Poisoned:
    numeric = _require_numeric(table, "backdoor", 1)
    values = table.frame[numeric].astype(float)
    # Prefer columns with many distinct values: a stamped value there is a
    # pattern, in a column of a few levels it is just a common level.
    distinct = values.nunique().to_numpy()
    eligible = [column for column, count in zip(numeric, distinct) if count >= 10] or list(numeric)
    features = [str(f) for f in table.rng.choice(eligible, min(TRIGGER_FEATURES, len(eligible)), replace=False)]
    stamped = [
        _unusual_value(values[feature].dropna(), TRIGGER_QUANTILES[int(table.rng.integers(0, 2))])
        for feature in features
    ]
    labels = table.labels
    classes = np.unique(labels)
    target = str(table.rng.choice(classes))
    candidates = np.flatnonzero(labels != target)
    if len(candidates) < table.count:
        raise AttackError(f"backdoor: only {len(candidates)} rows lack the target label, need {table.count}")
    rows = table.rng.choice(candidates, table.count, replace=False)
    trigger = Trigger(features=tuple(str(f) for f in features), values=tuple(stamped), target=target)
    frame = _numeric_as_float(table)
    for feature, value in zip(features, stamped):
        frame.iloc[rows, frame.columns.get_loc(feature)] = value
    frame.iloc[rows, frame.columns.get_loc(table.label)] = target
    details = [f"trigger {trigger.describe()} on a row labelled '{labels[row]}'" for row in rows]
    return _changed(table, frame, rows, "backdoor", details, trigger=trigger)


def _unusual_value(column: pd.Series, quantile: float) -> float:
    """The column's value at ``quantile``, moved towards the median until it is rare.

    In range by construction; "rare" means at most ``RARE_SHARE`` of the rows
    have exactly that value (a 2nd percentile that is the column's most common
    value, 0 in a sparse column, would be no trigger at all).
    """
    value = float(_round_like(column, float(np.quantile(column, quantile))))
    shares = column.round(9).value_counts(normalize=True)
    median = float(column.median())
    ordered = shares.index.to_numpy(dtype=float)
    ordered = np.sort(ordered[(ordered >= min(value, median)) & (ordered <= max(value, median))])
    if value > median:
        ordered = ordered[::-1]
    for candidate in ordered:
        if shares.get(candidate, 0.0) <= RARE_SHARE:
            return float(candidate) if shares.get(candidate, 0.0) > 0 else value
    return value


def _duplicate_flood(table: _Table) -> Poisoned:
    labels = table.labels
    classes = np.unique(labels)
    target = str(table.rng.choice(classes))
    candidates = np.flatnonzero(labels != target)
    seeds = table.rng.choice(candidates, min(FLOOD_SEEDS, len(candidates)), replace=False)
    parents = seeds[np.arange(table.count) % len(seeds)]
    copies = table.frame.iloc[parents].copy()
    if table.numeric:
        values = table.frame[table.numeric].astype(float)
        spread = (values.quantile(0.75) - values.quantile(0.25)).to_numpy()
        spread = np.where(spread > 0, spread, values.std().fillna(1.0).to_numpy() + (values.std().fillna(0) == 0))
        noise = table.rng.normal(scale=FLOOD_NOISE * spread, size=(table.count, len(table.numeric)))
        copies[table.numeric] = _rounded_like(values, copies[table.numeric].astype(float).to_numpy() + noise)
    copies[table.label] = target
    parent_ids = table.frame[table.id_column].astype(str).to_numpy()[parents]
    details = [f"near-copy of row {parent} (label '{labels[p]}') relabelled '{target}'" for parent, p in zip(parent_ids, parents)]
    return _added(table, copies, "duplicate_flood", details)


def _schema_broken(table: _Table) -> Poisoned:
    frame = table.frame.astype({column: object for column in table.frame.columns if column != table.id_column})
    kinds = []
    if table.numeric:
        kinds.append("text")
    if table.categorical:
        kinds.append("category")
    kinds.append("empty_label")
    rows = table.rng.choice(len(frame), table.count, replace=False)
    details = []
    for position, row in enumerate(rows):
        kind = kinds[position % len(kinds)]
        if kind == "text":
            column = str(table.rng.choice(table.numeric))
            frame.iat[row, frame.columns.get_loc(column)] = BROKEN_TEXT
            details.append(f"{column} = '{BROKEN_TEXT}' (text in a numeric column)")
        elif kind == "category":
            column = str(table.rng.choice(table.categorical))
            frame.iat[row, frame.columns.get_loc(column)] = UNKNOWN_CATEGORY
            details.append(f"{column} = '{UNKNOWN_CATEGORY}' (a category never seen)")
        else:
            frame.iat[row, frame.columns.get_loc(table.label)] = None
            details.append(f"empty {table.label}")
    return _changed(table, frame, rows, "schema_broken", details)


# --- helpers -------------------------------------------------------------------


def _table(frame, label, id_column, numeric, categorical, rate, seed, attack) -> _Table:
    for column, role in ((label, "label"), (id_column, "id")):
        if column not in frame.columns:
            raise AttackError(f"{attack}: no {role} column {column!r} in the frame")
    if frame[id_column].astype(str).duplicated().any():
        raise AttackError(f"{attack}: ids in {id_column!r} are not unique")
    features = [column for column in frame.columns if column not in (label, id_column)]
    if numeric is None:
        numeric = [c for c in features if c not in (categorical or ()) and pd.api.types.is_numeric_dtype(frame[c])]
    if categorical is None:
        categorical = [c for c in features if c not in numeric]
    labels = frame[label].astype(str)
    if labels.nunique() < 2:
        raise AttackError(f"{attack}: need at least two labels, got {labels.nunique()}")
    return _Table(
        frame=frame.reset_index(drop=True),
        label=label,
        id_column=id_column,
        numeric=list(numeric),
        categorical=list(categorical),
        rng=np.random.default_rng([seed, ATTACKS.index(attack)]),
        count=poison_count(len(frame), rate),
    )


def _require_numeric(table: _Table, attack: str, at_least: int) -> list:
    if len(table.numeric) < at_least:
        raise AttackError(f"{attack}: needs at least {at_least} numeric feature column(s), the table has none")
    return table.numeric


def _numeric_as_float(table: _Table) -> pd.DataFrame:
    # Poisoned values need not be whole numbers; pandas will not put 0.1 x
    # an integer into an integer column.
    return table.frame.astype({column: float for column in table.numeric})


def _encoded(table: _Table) -> np.ndarray:
    encoder = FeatureEncoder(numeric=table.numeric, categorical=table.categorical)
    return encoder.fit_transform(table.frame).to_numpy()


def _decimals(column: pd.Series) -> int:
    """Decimals needed to write 99 % of the column's clean values (at most 6)."""
    values = column.dropna().to_numpy(dtype=float)[:1000]
    for decimals in range(7):
        if np.mean(np.abs(values - np.round(values, decimals)) < 1e-9) >= 0.99:
            return decimals
    return 6


def _round_like(column: pd.Series, value):
    decimals = _decimals(column)
    rounded = np.round(value, decimals)
    return rounded if decimals else np.round(rounded).astype(float)


def _rounded_like(values: pd.DataFrame, matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float).copy()
    for index, column in enumerate(values.columns):
        matrix[:, index] = _round_like(values[column], matrix[:, index])
    return matrix


def _relabel(table: _Table, rows, new_labels, attack: str, template: str) -> Poisoned:
    frame = table.frame.copy()
    old = table.labels[rows]
    column = frame.columns.get_loc(table.label)
    frame[table.label] = frame[table.label].astype(object)
    for row, label in zip(rows, new_labels):
        frame.iat[row, column] = str(label)
    details = [template.format(old=o, new=n) for o, n in zip(old, new_labels)]
    return _changed(table, frame, rows, attack, details)


def _changed(table: _Table, frame, rows, attack, details, trigger=None) -> Poisoned:
    ids = frame[table.id_column].astype(str).to_numpy()[np.asarray(rows)]
    truth = pd.DataFrame({"row_id": ids, "attack": attack, "detail": details})[TRUTH_COLUMNS]
    return Poisoned(frame=frame, truth=truth.sort_values("row_id", ignore_index=True), trigger=trigger)


def _added(table: _Table, rows: pd.DataFrame, attack: str, details) -> Poisoned:
    width = max(5, int(math.log10(max(table.count, 1))) + 1)
    ids = [f"inj-{attack}-{index:0{width}d}" for index in range(len(rows))]
    taken = set(table.frame[table.id_column].astype(str))
    if taken & set(ids):
        raise AttackError(f"{attack}: the frame already uses ids like {ids[0]!r}")
    rows = rows.copy()
    rows[table.id_column] = ids
    if isinstance(details, str):
        details = [details] * len(rows)
    combined = pd.concat([table.frame, rows], ignore_index=True)
    order = table.rng.permutation(len(combined))
    frame = combined.iloc[order].reset_index(drop=True)
    truth = pd.DataFrame({"row_id": ids, "attack": attack, "detail": list(details)})[TRUTH_COLUMNS]
    return Poisoned(frame=frame, truth=truth, trigger=None)
