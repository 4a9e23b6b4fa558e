"""Evidence for reviewers: why a quarantined row looks wrong, in the data's own terms.

For each quarantined row: its nearest trusted rows and their labels (does the
neighbourhood agree with the row's label?), and the features furthest from the
trusted data with the trusted range and a small histogram to plot the row
against. Computed at run time and stored with the row, so review works even
after the reference file has moved.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from poisonguard.detectors import population_mask
from poisonguard.pipelines.core.histograms import histogram
from poisonguard.pipelines.core.jsonable import evidence_json

NEIGHBOURS = 5
TOP_FEATURES = 5
HISTOGRAM_FEATURES = 3
HISTOGRAM_BINS = 20
# The trusted (or, without a reference, batch) rows a quarantined row's neighbours are found among, at most.
EVIDENCE_POPULATION_ROWS = 20_000


def collect_evidence(inputs, features, decision) -> "QuarantineEvidence":
    """Evidence for every quarantined row, by row id, each row's text built when it is read.

    Parameters
    ----------
    inputs : poisonguard.pipelines.core.inputs.RunInputs
    features : poisonguard.pipelines.core.checks.FeatureMatrices
    decision : poisonguard.pipelines.core.decision.Decision

    Returns
    -------
    QuarantineEvidence
        A mapping of row id to the JSON text (``core.jsonable.evidence_json``) of
        ``{"population", "label", "nearest", "label_votes", "features", "histograms"}``.
    """
    if not decision.quarantined_ids:
        return QuarantineEvidence.empty()
    trusted = inputs.reference_typed.typed if inputs.reference_typed is not None else None
    population = trusted if trusted is not None else inputs.batch_typed.typed
    population_name = "trusted reference" if trusted is not None else "batch (no trusted reference)"
    # The quarantined rows are cut out before indexing by id: indexing a
    # million-row batch copied it whole to find a few thousand rows.
    typed = inputs.batch_typed.typed
    ids = inputs.batch.row_ids  # (the shared strings: converting the column again took 90 MB at 1M rows)
    mask = decision.quarantined_mask(ids)
    batch = inputs.batch.take_rows(typed, mask).set_index(ids[mask].to_numpy())
    wanted = [row_id for row_id in decision.quarantined_ids if row_id in batch.index]
    rows = batch.loc[wanted]

    if features.trusted_features is not None:
        neighbour_space, neighbour_labels = features.trusted_features, features.trusted_labels
    else:
        neighbour_space, neighbour_labels = features.batch_features, features.batch_labels
    # Neighbours are found among a seeded sample, per label (every label
    # keeps rows to vote), of a large population: every quarantined row
    # against a million batch rows took 22 of a run's 160 s, and 30,000
    # against a 200,000-row reference of 159 features 27 s and the run's peak.
    sample = population_mask(len(neighbour_labels), 0, neighbour_labels, max_rows=EVIDENCE_POPULATION_ROWS)
    if not sample.all():
        neighbour_space, neighbour_labels = neighbour_space[sample], neighbour_labels[sample]
        population_name = (f"{population_name.removesuffix(')')}; a seeded sample of {int(sample.sum()):,} of its rows)"
                           if trusted is None else f"trusted reference (a seeded sample of {int(sample.sum()):,} of its rows)")
    encoded = decision.quarantined_mask(features.batch_row_ids)
    position_of = dict(zip(np.asarray(features.batch_row_ids)[encoded], np.flatnonzero(encoded)))
    query = features.batch_features.iloc[[position_of[row_id] for row_id in wanted]]
    distances, positions = _nearest(neighbour_space, query, exclude_self=trusted is None)

    numeric = [c for c in inputs.feature_columns if inputs.kinds[c] == "numeric"]
    categorical = [c for c in inputs.feature_columns if inputs.kinds[c] == "categorical"]
    summaries = {column: _numeric_summary(population[column]) for column in numeric}
    shares = {column: population[column].astype(object).value_counts(normalize=True, dropna=False) for column in categorical}

    # Whole columns at once: per cell, pandas costs milliseconds, and a large
    # batch quarantines tens of thousands of rows.
    numbers = {column: pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float) for column in numeric}
    values = {column: rows[column].astype(object).to_numpy() for column in categorical}
    labels = rows[inputs.label].astype(object).to_numpy() if inputs.label in rows.columns else None
    inputs.batch.release_pages()  # the batch's columns are read; what follows holds copies
    # Every column's unusualness for every row first (the numbers the facts
    # hold), then facts only for each row's TOP_FEATURES: building all of
    # them per row was most of this stage's time and memory.
    summarised = [column for column in numeric if summaries[column] is not None]
    columns = summarised + categorical
    unusualness = np.column_stack(
        [_numeric_unusualness(numbers[column], summaries[column]) for column in summarised]
        + [_categorical_unusualness(values[column], shares[column]) for column in categorical]
    ) if columns else np.empty((len(wanted), 0))
    # Stable, as ``sorted`` was: ties keep the column order. A copy, kept
    # until the rows are stored: the slice would hold every column's rank.
    top = np.argsort(-unusualness, axis=1, kind="stable")[:, :TOP_FEATURES].copy()
    return QuarantineEvidence(
        row_ids=wanted, population_name=population_name, labels=labels,
        neighbour_labels=neighbour_labels, distances=distances, positions=positions, exclude_self=trusted is None,
        columns=columns, top=top, numbers={column: numbers[column] for column in summarised}, values=values,
        summaries=summaries, shares=shares,
    )


class QuarantineEvidence(Mapping):
    """The quarantined rows' evidence texts by row id, each row's built from the stage's arrays when it is read.

    Held as text for every row until stored, a heavily poisoned batch's
    evidence grew with its quarantined rows: a million rows with 155,089 of
    them quarantined took 0.6 GB for it, and lifted the run's peak past
    2 GB. The store reads the texts a block of entries at a time
    (``store.entries``), so only a block's are ever held. A row's text is
    the same whenever, and however often, it is read.
    """

    def __init__(self, *, row_ids, population_name, labels, neighbour_labels, distances, positions, exclude_self,
                 columns, top, numbers, values, summaries, shares):
        self._position_of = {row_id: position for position, row_id in enumerate(row_ids)}
        self._population_name, self._labels = population_name, labels
        self._neighbour_labels, self._exclude_self = neighbour_labels, exclude_self
        self._distances, self._positions = distances, positions
        self._columns, self._top = columns, top
        self._numbers, self._values, self._summaries, self._shares = numbers, values, summaries, shares
        # Each histogram's text, serialised once for every row that shows it (``evidence_json``).
        self._histogram_texts: dict[int, str] = {}

    @classmethod
    def empty(cls) -> "QuarantineEvidence":
        """Evidence of no rows."""
        return cls(row_ids=[], population_name="", labels=None, neighbour_labels=np.array([], dtype=object),
                   distances=np.empty((0, 0)), positions=np.empty((0, 0), dtype=int), exclude_self=False,
                   columns=[], top=np.empty((0, 0), dtype=int), numbers={}, values={}, summaries={}, shares={})

    def __len__(self) -> int:
        return len(self._position_of)

    def __iter__(self):
        return iter(self._position_of)

    def __contains__(self, row_id) -> bool:
        # Mapping's own would build the row's text to answer.
        return row_id in self._position_of

    def __getitem__(self, row_id: str) -> str:
        position = self._position_of[row_id]
        summaries, numbers, values, shares = self._summaries, self._numbers, self._values, self._shares
        ranked = [
            _numeric_fact(column, numbers[column][position].item(), summaries[column]) if column in numbers
            else _categorical_fact(column, values[column][position], shares[column])
            for column in (self._columns[i] for i in self._top[position])
        ]
        plotted = [f["column"] for f in ranked if f["kind"] == "numeric"][:HISTOGRAM_FEATURES]
        neighbours = self._neighbours(position)
        votes: dict[str, int] = {}
        for neighbour in neighbours:
            votes[neighbour["label"]] = votes.get(neighbour["label"], 0) + 1
        label = self._labels[position] if self._labels is not None else None
        return evidence_json({
            "population": self._population_name,
            "label": str(label) if label is not None else None,
            "nearest": neighbours,
            "label_votes": votes,
            "features": ranked,
            "histograms": {column: summaries[column]["histogram"] for column in plotted if summaries[column]},
        }, self._histogram_texts, text_keys=True)

    def _neighbours(self, position: int) -> list[dict]:
        pairs = list(zip(self._distances[position].tolist(), self._positions[position].tolist()))
        if self._exclude_self:
            # The batch is its own population: drop the row itself.
            pairs = [pair for pair in pairs if pair[0] > 0][:NEIGHBOURS]
        return [{"label": str(self._neighbour_labels[p]), "distance": round(d, 4)} for d, p in pairs]


def _nearest(space: pd.DataFrame, query: pd.DataFrame, *, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """Distances to, and positions in ``space`` of, each query row's nearest rows; shape (n_queries, count)."""
    count = min(NEIGHBOURS + (1 if exclude_self else 0), len(space))
    if count == 0 or query.empty:
        return np.empty((len(query), 0)), np.empty((len(query), 0), dtype=int)
    index = NearestNeighbors(n_neighbors=count).fit(space.to_numpy())
    return index.kneighbors(query.to_numpy())


def _numeric_summary(values: pd.Series) -> Optional[dict]:
    finite = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return None
    q05, q25, median, q75, q95 = np.quantile(finite, [0.05, 0.25, 0.5, 0.75, 0.95])
    counts, edges = histogram(finite, HISTOGRAM_BINS)
    # Shown to a person, stored with every quarantined row: to a thousandth
    # of a bin, not to 17 digits (a third of each stored row at a million rows).
    decimals = _display_decimals(float(edges[1] - edges[0]))
    return {
        "min": float(finite.min()),
        "q05": float(q05),
        "median": float(median),
        "q95": float(q95),
        "max": float(finite.max()),
        "scale": float(q75 - q25) or float(np.std(finite)) or 1.0,
        # The range outward, so a row at the trusted minimum is shown within it.
        "shown": {"min": _rounded(finite.min(), decimals, np.floor), "max": _rounded(finite.max(), decimals, np.ceil),
                  "median": _rounded(median, decimals, np.round)},
        "histogram": {"edges": [_rounded(e, decimals, np.round) for e in edges], "counts": [int(c) for c in counts]},
    }


def _rounded(value: float, decimals: Optional[int], direction) -> float:
    """``value`` to ``decimals`` places, rounded by ``direction`` (``np.floor``, ``np.ceil``, ``np.round``); exact for None."""
    if decimals is None:
        return float(value)
    scale = 10.0 ** decimals
    return round(float(direction(value * scale) / scale), decimals)


def _display_decimals(bin_width: float) -> Optional[int]:
    """Decimals that show a column's values to a thousandth of a histogram bin; None to keep them exact.

    None for bins finer than 1e-12 (the decimals would outrun a float's digits).
    """
    if not np.isfinite(bin_width) or bin_width <= 0:
        return None
    decimals = int(max(3 - np.floor(np.log10(bin_width)), 0))
    return decimals if decimals <= 15 else None


def _numeric_unusualness(numbers: np.ndarray, summary: dict) -> np.ndarray:
    """``_numeric_fact(...)["unusualness"]`` of each number, the same floats."""
    # numpy's arithmetic is Python's here (one subtraction, one division);
    # its rounding is not, so ``round`` rounds.
    z = np.abs((numbers - summary["median"]) / summary["scale"])
    unusualness = np.array([round(value, 3) for value in z.tolist()], dtype=float)
    unusualness[np.isnan(numbers)] = 50.0
    return unusualness


def _categorical_unusualness(values: np.ndarray, shares: pd.Series) -> np.ndarray:
    """``_categorical_fact(...)["unusualness"]`` of each value, the same floats."""
    found: dict = {}
    for value in values:
        if value not in found:
            share = float(shares.get(value, 0.0))
            found[value] = 10.0 if share == 0 else round(-np.log10(share), 3)
    return np.array([found[value] for value in values], dtype=float)


def _numeric_fact(column: str, number: float, summary: Optional[dict]) -> Optional[dict]:
    if summary is None:
        return None
    if np.isnan(number):
        return {
            "column": column, "kind": "numeric", "value": None, "unusualness": 50.0,
            "trusted_range": [summary["shown"]["min"], summary["shown"]["max"]], "median": summary["shown"]["median"],
            "note": "missing or not a number",
        }
    z = (float(number) - summary["median"]) / summary["scale"]
    outside = float(number) < summary["min"] or float(number) > summary["max"]
    return {
        "column": column,
        "kind": "numeric",
        "value": float(number),
        "unusualness": round(abs(z), 3),
        "robust_z": round(z, 3),
        "trusted_range": [summary["shown"]["min"], summary["shown"]["max"]],
        "median": summary["shown"]["median"],
        "note": "outside the trusted range" if outside else "within the trusted range",
    }


def _categorical_fact(column: str, value, shares: pd.Series) -> dict:
    share = float(shares.get(value, 0.0)) if value is not None else float(shares.get(None, 0.0))
    return {
        "column": column,
        "kind": "categorical",
        "value": value,
        # An unseen value is as unusual as a numeric value 10 IQRs out.
        "unusualness": 10.0 if share == 0 else round(-np.log10(share), 3),
        "trusted_share": round(share, 4),
        "note": "never seen in the trusted data" if share == 0 else f"{share:.1%} of trusted rows",
    }
