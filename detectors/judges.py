"""Judging a batch a chunk at a time: ``Detector.batch_judge``.

A batch too large to hold whole (or arriving as Parquet row groups, CSV
blocks) is judged by adding its chunks to a judge, in order, and reading the
findings once at the end. The findings are those of ``findings`` on the
whole batch, row for row; only where a detector cannot keep that promise is
there no judge, and ``batch_judge`` says so rather than judging each chunk as
a batch of its own.

- A detector whose finding for a row depends on that row alone
  (``tags.uses_batch`` False) judges each chunk as it comes
  (:class:`ConcatenatingJudge`).
- A detector whose rows are scored alone but judged against statistics of
  the whole batch's scores (the tail that guards extrapolated p-values, see
  ``detectors._crossfit.guarded_p_values``) keeps each row's scores and, of
  the rows themselves, only those it may have to describe
  (:class:`ScoredRowsJudge`). Its memory is a few numbers a row, not the
  rows.
- A detector that compares batch rows with each other (neighbours among
  them, exact copies, clusters of a label, models fitted on the pooled rows)
  needs them all at once: ``batch_judge`` raises ``DetectorError``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd

from poisonguard.detectors.errors import DetectorError


class BatchJudge:
    """Findings of one batch, given a chunk of rows at a time.

    Call :meth:`add` with each chunk in batch order, then :meth:`findings`
    once. Without ``row_ids``, a DataFrame's rows are named by its index
    and an array's by their position in the batch (not in the chunk), as
    ``findings`` names the whole batch's.
    """

    def __init__(self, detector):
        self.detector = detector
        self.n_rows = 0
        self._done = False

    def add(self, X, y=None, row_ids=None) -> None:
        """Add the next chunk of the batch.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_chunk_rows, n_features)
        y : array-like, shape (n_chunk_rows,), optional
        row_ids : array-like of str, shape (n_chunk_rows,), optional
        """
        if self._done:
            raise DetectorError(f"{self.detector.name}: the batch was judged already; start a new batch_judge()")
        n_chunk = len(X)
        if row_ids is None and not isinstance(X, pd.DataFrame):
            row_ids = np.arange(self.n_rows, self.n_rows + n_chunk)
        self._add(X, y, row_ids)
        self.n_rows += n_chunk

    def findings(self) -> pd.DataFrame:
        """The batch's findings: ``FINDING_COLUMNS``, one row per added row, in the order added."""
        self._done = True
        return self._findings()

    def _add(self, X, y, row_ids) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _findings(self) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError


class ConcatenatingJudge(BatchJudge):
    """For a detector that judges each row alone: each chunk's findings, one after another."""

    def __init__(self, detector):
        super().__init__(detector)
        self._parts: list[pd.DataFrame] = []

    def _add(self, X, y, row_ids) -> None:
        self._parts.append(self.detector.findings(X, y, row_ids))

    def _findings(self) -> pd.DataFrame:
        if not self._parts:
            return no_findings(self.detector)
        return self._parts[0] if len(self._parts) == 1 else pd.concat(self._parts, ignore_index=True)


class ScoredRowsJudge(BatchJudge):
    """For a detector that scores rows alone and judges them against the whole batch's scores.

    The detector provides two steps: ``_score_chunk(X, y, row_ids,
    first_row)`` returns a dict of arrays with one entry a row (its id,
    scores, what the batch's statistics are read from, p-values before
    them) or one a kept row (``kept_rows``, positions in the batch, with
    whatever the detector keeps of those rows); ``_judge_scored(parts)``
    gets those arrays joined over the chunks, row positions in batch order
    (its own to take apart, so that what it no longer needs is freed), and
    returns the findings. ``findings`` on the whole batch is the same
    two steps on one chunk, so the two cannot drift apart.
    """

    def __init__(self, detector):
        super().__init__(detector)
        self._parts: list[dict] = []

    def _add(self, X, y, row_ids) -> None:
        self._parts.append(self.detector._score_chunk(X, y, row_ids, first_row=self.n_rows))

    def _findings(self) -> pd.DataFrame:
        if not self._parts:
            return no_findings(self.detector)
        joined = joined_arrays(self._parts)
        self._parts = []  # what is joined is all the detector needs; the chunks' arrays can go
        return self.detector._judge_scored(joined)


def no_findings(detector) -> pd.DataFrame:
    """The findings table of a batch without rows, by the detector's own rule (``Detector._judged``).

    (Not ``base.empty_findings``: ``Detector.batch_judge`` imports this
    module, and it must not import ``base`` back.)
    """
    nothing = np.empty(0)
    return detector._judged(nothing, nothing, np.empty(0, dtype=object), np.empty(0, dtype=object))


def joined_arrays(parts: list[dict]) -> dict:
    """Each key's arrays of ``parts`` joined along their first axis (one part: the part itself)."""
    if len(parts) == 1:
        return parts[0]
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def described_rows(kept_positions: np.ndarray, kept_rows: np.ndarray, positions: np.ndarray,
                   name: Optional[str] = None) -> np.ndarray:
    """The kept rows at batch ``positions`` (each must be kept), shape (len(positions), ...).

    ``kept_positions`` is increasing (chunks are added in batch order).
    """
    at = np.searchsorted(kept_positions, positions)
    if len(positions) and (at.max() >= len(kept_positions) or not np.array_equal(kept_positions[at], positions)):
        raise AssertionError(f"{name or 'detector'}: a row to describe was not kept while its chunk was scored")
    return kept_rows[at]
