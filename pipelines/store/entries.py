"""Quarantine entries: stored with their findings, listed, decided.

An entry is one quarantined row of one run: its original values, the checks
that flagged it, their evidence, and its review status. Decisions are a
compare-and-set on that status and are appended to ``decisions``, never
rewritten; the rules around them (notes, reviewer names, bulk selection)
are ``poisonguard.pipelines.review``'s.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Optional

import pandas as pd
from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from poisonguard.detectors._unique import text_values
from poisonguard.pipelines.core.errors import InputError, ReviewConflict, UnknownEntry
from poisonguard.pipelines.core.jsonable import capped_cells, dumps, evidence_json, plain_dumps, to_jsonable
from poisonguard.pipelines.store.schema import ENTRY_STATUSES, decisions, quarantine, runs, utc_now

# Entries ``add_quarantined`` builds and inserts at a time, in its one transaction.
INSERT_BLOCK_ROWS = 2_000


@dataclass(frozen=True)
class EntryFilter:
    """Which quarantine entries to show or decide; None means any."""

    status: Optional[str] = None
    run_id: Optional[str] = None
    check: Optional[str] = None
    below_score: Optional[float] = None
    dataset: Optional[str] = None
    row_ids: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.status is not None and self.status not in ENTRY_STATUSES:
            raise InputError(f"status {self.status!r} is not one of {', '.join(ENTRY_STATUSES)}")


class QuarantineEntries:
    """The ``quarantine`` and ``decisions`` tables (a mixin of ``QuarantineStore``)."""

    def add_quarantined(
        self,
        run_id: str,
        *,
        dataset: str,
        rows: pd.DataFrame,
        findings: pd.DataFrame,
        row_id_column: str,
        batch_digest_by_row: Optional[dict] = None,
        evidence_by_row: Optional[Mapping] = None,
    ) -> int:
        """Quarantine ``rows`` with their ``findings``, all or none.

        Parameters
        ----------
        run_id : str
        dataset : str
        rows : pandas.DataFrame, shape (n_rows, n_columns)
            The quarantined rows' original columns, including ``row_id_column``.
        findings : pandas.DataFrame with columns ``FINDING_COLUMNS``
            Findings about these rows; only those with ``flagged`` true are
            kept, batch-level ones (empty ``row_id``) are ignored. Every row
            needs at least one.
        row_id_column : str
        batch_digest_by_row : dict of str to str, optional
            sha256 of the batch each row came from, by row id.
        evidence_by_row : mapping of str to dict or str, optional
            What a reviewer needs to judge each row (nearest trusted rows,
            features far from the trusted data), by row id: a dict, or its
            JSON text as ``core.jsonable.evidence_json`` writes it. Read one
            row at a time, as its block of entries is built
            (``core.evidence.QuarantineEvidence`` builds each text then).

        Returns
        -------
        int
            Number of entries stored (``n_rows``).

        Raises
        ------
        InputError
            A row has no flagged finding, a finding names an unknown row, a
            row id repeats, or a row is already quarantined in this run
            (nothing is stored then).
        """
        blocks = _quarantine_entries(
            run_id, dataset, rows, findings, row_id_column, batch_digest_by_row or {}, evidence_by_row or {}
        )
        if rows.empty:
            return 0
        try:
            # One transaction, a block of entries at a time: built and
            # inserted all at once, a million-row run's 26,675 entries
            # raised its peak by 0.25 GB (0.13 GB a block at a time).
            with self.engine.begin() as connection:
                self._require_run(connection, run_id)
                for entries in blocks:
                    connection.execute(insert(quarantine), entries)
        except IntegrityError:
            # The transaction has rolled back; say which rows collided.
            row_ids = rows[row_id_column].astype(str).tolist()
            with self.engine.connect() as connection:
                taken = connection.execute(select(quarantine.c.row_id).where(
                    quarantine.c.run_id == run_id, quarantine.c.row_id.in_(row_ids))).scalars().all()
            raise InputError(
                f"run {run_id}: rows already quarantined: {', '.join(sorted(taken)) or '(unknown)'}; "
                "none of this call's rows were stored"
            ) from None
        return len(rows)

    def list_quarantine(
        self,
        *,
        run_id: Optional[str] = None,
        status: Optional[str] = None,
        check: Optional[str] = None,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> list[dict]:
        """Every stored entry, published or not, oldest first, filtered by run, status and check.

        (The review queue, ``list_entries``, shows published runs' entries only.)
        Each dict has the table's columns with the JSON decoded: ``row``
        (original values, NaN as None), ``checks`` (list of check names) and
        ``findings`` (list of ``{check, score, p_value, reason}``).
        """
        query = select(quarantine).order_by(quarantine.c.id).offset(offset)
        where = EntryFilter(run_id=run_id, status=status, check=check)
        query = query.where(*entry_conditions(self.engine, where, published_only=False))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            records = connection.execute(query).mappings().all()
        return [decode_entry(record) for record in records]

    def count_quarantine(self, run_id: Optional[str] = None) -> int:
        """Number of quarantine entries (of one run when ``run_id`` is given)."""
        query = select(func.count()).select_from(quarantine)
        if run_id is not None:
            query = query.where(quarantine.c.run_id == run_id)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())


    def list_entries(self, where: EntryFilter = EntryFilter(), *, limit: Optional[int] = None, offset: int = 0) -> list[dict]:
        """Entries matching ``where``, most suspicious first (score, then id).

        Returns
        -------
        list of dict with ``id, run_id, dataset, row_id, status, checks, score,
        p_value, findings, row, created_at`` (``get_entry`` adds the evidence).
        """
        # Listings never show evidence; not reading it halves the time of a page.
        listed = [column for column in quarantine.c if column.name != "evidence_json"]
        query = (
            select(*listed)
            .where(*entry_conditions(self.engine, where))
            .order_by(quarantine.c.score.desc(), quarantine.c.id)
            .offset(offset)
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [decode_entry(record) for record in connection.execute(query).mappings()]

    def count_entries(self, where: EntryFilter = EntryFilter()) -> int:
        """Number of entries matching ``where``."""
        query = select(func.count()).select_from(quarantine).where(*entry_conditions(self.engine, where))
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def matching_ids(self, where: EntryFilter) -> list[int]:
        """Ids of every entry matching ``where``, oldest first (for bulk decisions)."""
        query = select(quarantine.c.id).where(*entry_conditions(self.engine, where)).order_by(quarantine.c.id)
        with self.engine.connect() as connection:
            return [int(i) for i in connection.execute(query).scalars()]

    def get_entry(self, entry_id: int) -> dict:
        """One entry with its evidence and decision history (oldest first).

        Raises
        ------
        UnknownEntry
        """
        with self.engine.connect() as connection:
            record = connection.execute(
                select(quarantine).where(quarantine.c.id == int(entry_id), *entry_conditions(self.engine, EntryFilter()))
            ).mappings().first()
            if record is None:
                raise UnknownEntry(f"no quarantine entry {entry_id} in {self.describe()}")
            history = connection.execute(
                select(decisions).where(decisions.c.quarantine_id == int(entry_id)).order_by(decisions.c.id)
            ).mappings().all()
        entry = decode_entry(record)
        entry["history"] = [dict(item) for item in history]
        return entry

    def row_ids_of(self, entry_ids: Iterable[int]) -> dict[int, str]:
        """``entry id -> row id`` for the entries that exist."""
        query = select(quarantine.c.id, quarantine.c.row_id).where(
            quarantine.c.id.in_([int(i) for i in entry_ids]), *entry_conditions(self.engine, EntryFilter())
        )
        with self.engine.connect() as connection:
            return {int(record.id): record.row_id for record in connection.execute(query)}

    def check_names(self, limit: int = 500) -> list[str]:
        """The names of the checks that quarantined entries, sorted."""
        # Distinct combinations are few (one per set of checks that fired together).
        with self.engine.connect() as connection:
            combinations = connection.execute(
                select(quarantine.c.checks).where(*entry_conditions(self.engine, EntryFilter())).distinct().limit(limit)
            ).scalars().all()
        return sorted({name for combination in combinations for name in (combination or "").split(",") if name})

    def record_decisions(
        self,
        entry_ids: list[int],
        *,
        status: str,
        note: str,
        reviewer: str,
        force: bool = False,
        expected_status: Optional[str] = None,
    ) -> list[dict]:
        """Set the status of entries and append one decision each, all or none.

        Each change is a compare-and-set on the status read in the same
        transaction, so two reviewers deciding one entry at once cannot both
        win. Validation of the note and reviewer is the caller's
        (``poisonguard.pipelines.review.decide``).

        Returns
        -------
        list of dict, one per decision: ``quarantine_id, status_before,
        status_after, reviewer, note, decided_at``.

        Raises
        ------
        UnknownEntry
            An id does not exist (nothing is decided then).
        ReviewConflict
            An entry was already decided (without ``force``), or its status is
            not ``expected_status`` (someone decided in between).
        """
        decided_at = utc_now()
        made = []
        with self.engine.begin() as connection:
            published = entry_conditions(self.engine, EntryFilter())
            current = dict(connection.execute(
                select(quarantine.c.id, quarantine.c.status).where(quarantine.c.id.in_(entry_ids), *published)
            ).all())
            missing = [i for i in entry_ids if i not in current]
            if missing:
                raise UnknownEntry(f"no quarantine entry {', '.join(map(str, missing))}; nothing was decided")
            for entry_id in entry_ids:
                before = current[entry_id]
                if expected_status is not None and before != expected_status:
                    raise ReviewConflict(_conflict_message(connection, entry_id, before, "changed while you were looking"))
                if before != "pending" and not force:
                    raise ReviewConflict(_conflict_message(connection, entry_id, before, "pass --force to change it"))
                # Compare-and-set: only if nobody changed it since we read it.
                changed = connection.execute(
                    update(quarantine)
                    .where(quarantine.c.id == entry_id, quarantine.c.status == before)
                    .values(status=status)
                ).rowcount
                if changed != 1:
                    raise ReviewConflict(_conflict_message(connection, entry_id, None, "decided by someone else just now"))
                decision = {
                    "quarantine_id": entry_id,
                    "status_before": before,
                    "status_after": status,
                    "reviewer": reviewer,
                    "note": note,
                    "decided_at": decided_at,
                }
                connection.execute(insert(decisions).values(**decision))
                made.append(decision)
        return made

    def decisions_of_runs(self, run_ids: list[str]) -> list[dict]:
        """Every decision on the runs' entries, oldest first.

        Returns
        -------
        list of dict with ``entry_id, row_id, run_id, status, status_before,
        reviewer, note, decided_at`` (ISO time).
        """
        query = (
            select(decisions, quarantine.c.row_id, quarantine.c.run_id)
            .join(quarantine, quarantine.c.id == decisions.c.quarantine_id)
            .where(quarantine.c.run_id.in_(run_ids))
            .order_by(decisions.c.id)
        )
        with self.engine.connect() as connection:
            records = connection.execute(query).mappings().all()
        return [
            {
                "entry_id": int(r["quarantine_id"]),
                "row_id": r["row_id"],
                "run_id": r["run_id"],
                "status": r["status_after"],
                "status_before": r["status_before"],
                "reviewer": r["reviewer"],
                "note": r["note"],
                "decided_at": r["decided_at"].isoformat() if r["decided_at"] else None,
            }
            for r in records
        ]


def _conflict_message(connection, entry_id: int, status: Optional[str], advice: str) -> str:
    last = connection.execute(
        select(decisions).where(decisions.c.quarantine_id == entry_id).order_by(decisions.c.id.desc()).limit(1)
    ).mappings().first()
    if last is None:
        return f"entry {entry_id} is {status or 'no longer pending'}: {advice}"
    when = last["decided_at"].isoformat(timespec="seconds") if last["decided_at"] else "?"
    return f"entry {entry_id} was already {last['status_after']} by {last['reviewer']} at {when}: {advice}"


def decode_entry(record) -> dict:
    hidden = ("row_json", "findings_json", "evidence_json", "checks")
    entry = {key: value for key, value in record.items() if key not in hidden}
    entry["row"] = json.loads(record["row_json"])
    if "evidence_json" in record:
        entry["evidence"] = json.loads(record["evidence_json"] or "{}")
    entry["checks"] = record["checks"].split(",") if record["checks"] else []
    entry["findings"] = json.loads(record["findings_json"])
    return entry


def entry_conditions(engine: Engine, where: EntryFilter, *, published_only: bool = True) -> list:
    """SQL conditions selecting the entries ``where`` describes.

    Only entries of published runs unless ``published_only`` is False: a run
    commits its entries just before it reveals its output, so until then (or
    for good, if it was interrupted) nobody may review or emit them.
    """
    conditions = []
    if published_only:
        conditions.append(quarantine.c.run_id.in_(select(runs.c.id).where(runs.c.status == "succeeded")))
    if where.run_id is not None:
        conditions.append(quarantine.c.run_id == where.run_id)
    if where.status is not None:
        conditions.append(quarantine.c.status == where.status)
    if where.dataset is not None:
        conditions.append(quarantine.c.dataset == where.dataset)
    if where.below_score is not None:
        conditions.append(quarantine.c.score < where.below_score)
    if where.row_ids is not None:
        conditions.append(quarantine.c.row_id.in_(list(where.row_ids)))
    if where.check is not None:
        # Exact name match inside the comma-joined list (no prefix hits).
        padded = literal(",") + quarantine.c.checks + literal(",")
        needle = f",{where.check},"
        if engine.dialect.name == "sqlite":
            # SQLite's LIKE ignores case; instr() compares exactly.
            conditions.append(func.instr(padded, needle) > 0)
        else:
            conditions.append(padded.contains(needle, autoescape=True))
    return conditions


def entry_score(p_values) -> float:
    """One suspicion score per entry in [0, 1], comparable across checks.

    Detectors' raw scores have scales of their own (an ECOD score of 26 is
    not "more" than a label score of 0.98), so the entry score is
    ``1 - smallest p-value``; a broken hard rule (p-value NaN: a cell that
    does not parse, an empty or unknown label) counts as 1. Rules inferred
    from the reference carry their error rate as a p-value and count like
    detectors.
    """
    values = [_optional_float(p) for p in p_values]
    return max(1.0 if p is None else 1.0 - p for p in values) if values else 1.0


def _optional_float(value) -> Optional[float]:
    value = to_jsonable(value)
    return None if value is None else float(value)


def _quarantine_entries(
    run_id: str, dataset: str, rows: pd.DataFrame, findings: pd.DataFrame,
    row_id_column: str, batch_digest_by_row: dict, evidence_by_row: Mapping,
) -> Iterator[list[dict]]:
    """One insert dict per row, ``INSERT_BLOCK_ROWS`` at a time; validated before touching the database."""
    if row_id_column not in rows.columns:
        raise InputError(f"quarantined rows have no id column {row_id_column!r}")
    # The strings as they are: ``astype(str)`` is pandas 3's own text, read
    # back as a new Python string per value (0.36 GB more while storing a
    # heavily poisoned million-row batch's 155,089 rows).
    row_ids = pd.Series(text_values(rows[row_id_column]), index=rows.index, dtype=object)
    repeated = sorted(set(row_ids[row_ids.duplicated()]))
    if repeated:
        raise InputError(f"row ids repeat among the quarantined rows: {', '.join(repeated)}")
    flagged = findings[findings["flagged"].astype(bool)] if "flagged" in findings.columns else findings
    flagged = flagged.assign(row_id=text_values(flagged["row_id"]))
    # Batch-level findings (empty row id) describe the run, not a row.
    flagged = flagged[flagged["row_id"] != ""]
    unknown = sorted(set(flagged["row_id"]) - set(row_ids))
    if unknown:
        raise InputError(f"findings name rows that are not being quarantined: {', '.join(unknown)}")
    checks_of = text_values(flagged["check"])
    bad_checks = sorted({name for name in set(checks_of.tolist()) if "," in name})
    if bad_checks:
        raise InputError(f"check names may not contain commas: {', '.join(bad_checks)}")
    # Positions per row and plain arrays, not a DataFrame per row: a large
    # batch quarantines tens of thousands of rows.
    flagged = flagged.reset_index(drop=True)
    by_row = flagged.groupby("row_id", sort=False).indices
    unexplained = next((row_id for row_id in row_ids if row_id not in by_row), None)
    if unexplained is not None:
        raise InputError(f"row {unexplained}: no flagged finding says why it is quarantined")
    # Python floats, which the JSON writer takes as they are (numpy's it converts one by one).
    scores_of = flagged["score"].to_numpy(dtype=float).tolist()
    p_values_of = flagged["p_value"].to_numpy(dtype=float).tolist()
    reasons_of = text_values(flagged["reason"])
    created_at = utc_now()
    histogram_texts: dict[int, str] = {}
    # Cells and findings are nearly all str, float and int: ``plain_dumps``
    # writes those as ``dumps`` would, without converting each value first
    # (the conversion was half of storing 28,000 rows). Its promise is str keys.
    dump_row = plain_dumps if all(isinstance(column, str) for column in rows.columns) else dumps

    def entry(row_id: str, values: dict) -> dict:
        positions = by_row[row_id]
        row_p_values = [_optional_float(p_values_of[i]) for i in positions]
        p_values = [p for p in row_p_values if p is not None]
        checks = list(dict.fromkeys(checks_of[positions]))  # unique, first-seen order
        return {
            "run_id": run_id, "dataset": dataset, "row_id": row_id,
            "batch_digest": batch_digest_by_row.get(row_id),
            "row_json": dump_row(capped_cells(values)),
            "checks": ",".join(checks),
            "score": entry_score(row_p_values),
            "p_value": min(p_values) if p_values else None,
            "findings_json": plain_dumps([
                {"check": checks_of[i], "score": scores_of[i], "p_value": p_values_of[i], "reason": reasons_of[i]}
                for i in positions
            ]),
            "evidence_json": _evidence_text(evidence_by_row.get(row_id, {}), histogram_texts),
            "status": "pending",
            "created_at": created_at,
        }

    def blocks() -> Iterator[list[dict]]:
        for start in range(0, len(rows), INSERT_BLOCK_ROWS):
            block = slice(start, start + INSERT_BLOCK_ROWS)
            yield [entry(row_id, values)
                   for row_id, values in zip(row_ids.iloc[block], rows.iloc[block].to_dict(orient="records"))]

    return blocks()


def _evidence_text(evidence, histogram_texts: dict[int, str]) -> str:
    """A row's stored evidence: JSON text as given (``core.evidence`` writes it), or a dict serialised."""
    return evidence if isinstance(evidence, str) else evidence_json(evidence, histogram_texts)
