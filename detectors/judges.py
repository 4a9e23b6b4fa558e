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

    ``add`` is two steps, which may run in different processes: :meth:`score`
    computes what the judge keeps of a chunk and changes nothing (a copy of
    the judge on a Dask worker gives the same), and :meth:`add_scored`
    keeps it. Scored parts must be added in batch order.
    """

    def __init__(self, detector):
        self.detector = detector
        self.n_rows = 0
        self._parts: list = []
        self._done = False

    def add(self, X, y=None, row_ids=None) -> None:
        """Add the next chunk of the batch.

        Parameters
        ----------
        X : pandas.DataFrame or array-like, shape (n_chunk_rows, n_features)
        y : array-like, shape (n_chunk_rows,), optional
        row_ids : array-like of str, shape (n_chunk_rows,), optional
        """
        self._refuse_when_done()
        self.add_scored(self.score(X, y, row_ids, first_row=self.n_rows))

    def score(self, X, y=None, row_ids=None, *, first_row: int):
        """What the judge keeps of the chunk whose first row is batch row ``first_row``; the judge is unchanged.

        Parameters
        ----------
        X, y, row_ids
            As for :meth:`add`.
        first_row : int
            The chunk's place in the batch: the rows added (or to be added) before it.

        Returns
        -------
        object
            The part to give :meth:`add_scored`.
        """
        if row_ids is None and not isinstance(X, pd.DataFrame):
            row_ids = np.arange(first_row, first_row + len(X))
        return self._score(X, y, row_ids, first_row)

    def add_scored(self, part) -> None:
        """Keep a chunk's part from :meth:`score` (scored at ``first_row`` = the rows added so far)."""
        self._refuse_when_done()
        self._parts.append(part)
        self.n_rows += self._rows_in(part)

    def findings(self) -> pd.DataFrame:
        """The batch's findings: ``FINDING_COLUMNS``, one row per added row, in the order added."""
        self._done = True
        if not self._parts:
            return no_findings(self.detector)
        parts, self._parts = self._parts, []  # once joined, the chunks' own arrays can go
        return self._findings(parts)

    def _refuse_when_done(self) -> None:
        if self._done:
            raise DetectorError(f"{self.detector.name}: the batch was judged already; start a new batch_judge()")

    def _score(self, X, y, row_ids, first_row: int):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _rows_in(part) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _findings(self, parts: list) -> pd.DataFrame:  # pragma: no cover - abstract
        raise NotImplementedError


class ConcatenatingJudge(BatchJudge):
    """For a detector that judges each row alone: each chunk's findings, one after another."""

    def _score(self, X, y, row_ids, first_row: int) -> pd.DataFrame:
        return self.detector.findings(X, y, row_ids)

    @staticmethod
    def _rows_in(part: pd.DataFrame) -> int:
        return len(part)

    def _findings(self, parts: list) -> pd.DataFrame:
        return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


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

    def _score(self, X, y, row_ids, first_row: int) -> dict:
        return self.detector._score_chunk(X, y, row_ids, first_row=first_row)

    @staticmethod
    def _rows_in(part: dict) -> int:
        return len(part["row_ids"])

    def _findings(self, parts: list) -> pd.DataFrame:
        joined = joined_arrays(parts)
        del parts[:]  # what is joined is all the detector needs
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
