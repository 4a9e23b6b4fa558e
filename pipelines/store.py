"""The quarantine store: runs, batches and quarantined rows in a SQL database.

Every run of the pipeline is recorded (``runs``), with the batches it read
(``batches``) and one ``quarantine`` entry per quarantined row: its original
values, the checks that flagged it and their evidence. Reviewers later release
or reject entries; each such decision is kept in ``decisions``.

Any SQLAlchemy URL works; the default is a SQLite file in the state folder.
For SQLite the store turns on WAL and a busy timeout so a pipeline run and a
review session (two processes) can share the file.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column, DateTime, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
    UniqueConstraint, create_engine, event, func, insert, literal, select, text, update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.types import TypeDecorator

from pipelines.errors import InputError

RUN_STATUSES = ("running", "succeeded", "failed", "rejected", "held")
FINISHED_STATUSES = RUN_STATUSES[1:]
# Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT = 30


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zones and returns naive values; this stores UTC and
    hands back aware UTC datetimes so callers never guess.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; the store needs timezone-aware datetimes")
        return value.astimezone(dt.timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


metadata = MetaData()

runs = Table(
    "runs", metadata,
    Column("id", String(36), primary_key=True),
    Column("dataset", Text, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Column("status", String(16), nullable=False),
    Column("output_dir", Text),
    Column("reference_digest", String(64)),
    Column("config_json", Text, nullable=False),
    Column("counts_json", Text, nullable=False),
    Column("tool_version", String(64), nullable=False),
)

batches = Table(
    "batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False, index=True),
    Column("path", Text, nullable=False),
    Column("digest", String(64), nullable=False, index=True),
    Column("rows", Integer, nullable=False),
)

quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("dataset", Text, nullable=False),
    Column("row_id", Text, nullable=False),
    Column("batch_digest", String(64)),
    Column("row_json", Text, nullable=False),
    Column("checks", Text, nullable=False),
    Column("score", Float),
    Column("p_value", Float),
    Column("findings_json", Text, nullable=False),
    Column("evidence_json", Text, nullable=False, default="{}"),
    Column("status", String(16), nullable=False, default="pending", index=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "row_id", name="uq_quarantine_run_row"),
    # The review queue is read most suspicious first, a page at a time; without
    # these SQLite sorts every whole row to reach a deep page (150 ms for the
    # last page of 10,000 rows, 5 ms with them).
    Index("ix_quarantine_queue", text("score DESC"), "id"),
    Index("ix_quarantine_status_queue", "status", text("score DESC"), "id"),
)

decisions = Table(
    "decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("quarantine_id", Integer, ForeignKey("quarantine.id"), nullable=False, index=True),
    Column("status_before", String(16), nullable=False),
    Column("status_after", String(16), nullable=False),
    Column("reviewer", Text, nullable=False),
    Column("note", Text),
    Column("decided_at", UTCDateTime, nullable=False),
)

# ``poisonguard watch``: one row per (dataset, batch digest) ever claimed, so a
# batch is processed once whatever its file name, and one lease per dataset,
# so one watcher at a time appends to a dataset's chain of versions.
CLAIM_STATUSES = ("processing", "published", "rejected", "held", "failed")

watch_batches = Table(
    "watch_batches", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("source", Text),
    Column("name", Text),
    Column("run_id", String(36), index=True),
    Column("version", String(32)),
    Column("attempts", Integer, nullable=False, default=0),
    Column("message", Text),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("flow_run_id", String(36)),
    Column("review", String(16)),
    Column("reviewer", Text),
    Column("review_note", Text),
    Column("reviewed_at", UTCDateTime),
    UniqueConstraint("dataset", "digest", name="uq_watch_batches_dataset_digest"),
)

dataset_leases = Table(
    "dataset_leases", metadata,
    Column("dataset", String(255), primary_key=True),
    Column("owner", Text, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)


def utc_now() -> dt.datetime:
    """The current time as an aware UTC datetime."""
    return dt.datetime.now(dt.timezone.utc)


def to_jsonable(value: Any) -> Any:
    """Convert ``value`` to plain JSON types, recursively.

    numpy scalars become Python numbers, NaN / NA / NaT / None become
    ``None``, timestamps and dates ISO 8601 strings, bytes hex, and anything
    else unknown its ``str``, so a stored row never fails to serialise.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (dt.datetime, dt.date, dt.time, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta, dt.timedelta)):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    return str(value)


def dumps(value: Any) -> str:
    """Strict JSON (no NaN) of ``value`` after :func:`to_jsonable`."""
    return json.dumps(to_jsonable(value), allow_nan=False, ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers and one writer work at once across processes; the busy
    # timeout makes a second writer wait instead of failing immediately.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT * 1000}")
    # Switching a fresh file to WAL takes an exclusive lock without honouring
    # the busy timeout, so two processes opening a new store at once retry.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT
    while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            break  # in-memory databases stay "memory": that is fine too
        except Exception as error:  # sqlite3.OperationalError: database is locked
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class QuarantineStore:
    """Runs, batches and quarantined rows in the database at ``url``.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///.poisonguard/quarantine.db``. Tables
        are created if missing; for SQLite the parent folder too.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        for attempt in range(20):
            try:
                metadata.create_all(self.engine)
                break
            except (OperationalError, ProgrammingError) as error:
                # Two processes creating a fresh store at once: the other one
                # created a table between our check and our CREATE. Check again.
                if "already exists" not in str(error) or attempt == 19:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "QuarantineStore":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def describe(self) -> str:
        """The store's location for messages (no password)."""
        return self._where()

    def _where(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    # ------------------------------------------------------------------ runs

    def start_run(
        self, *, dataset: str, config: dict, tool_version: str, reference_digest: Optional[str] = None
    ) -> str:
        """Record a new run with status ``"running"``; return its id (uuid4 text)."""
        run_id = str(uuid.uuid4())
        with self.engine.begin() as connection:
            connection.execute(insert(runs).values(
                id=run_id, dataset=dataset, started_at=utc_now(), status="running",
                reference_digest=reference_digest, config_json=dumps(config),
                counts_json="{}", tool_version=tool_version,
            ))
        return run_id

    def record_batch(self, run_id: str, *, path: str, digest: str, rows: int) -> None:
        """Record that run ``run_id`` read ``rows`` rows from ``path`` (sha256 ``digest``)."""
        with self.engine.begin() as connection:
            self._require_run(connection, run_id)
            connection.execute(insert(batches).values(run_id=run_id, path=str(path), digest=digest, rows=int(rows)))

    def finish_run(self, run_id: str, *, status: str, output_dir: Optional[str] = None, counts: dict) -> None:
        """Close run ``run_id`` with a final ``status`` and its ``counts``.

        ``status`` is one of ``"succeeded"``, ``"failed"``, ``"rejected"``, ``"held"``.
        """
        if status not in FINISHED_STATUSES:
            raise ValueError(f"run status {status!r}: expected one of {', '.join(FINISHED_STATUSES)}")
        with self.engine.begin() as connection:
            self._require_run(connection, run_id)
            connection.execute(update(runs).where(runs.c.id == run_id).values(
                status=status, finished_at=utc_now(),
                output_dir=None if output_dir is None else str(output_dir), counts_json=dumps(counts),
            ))

    def get_run(self, run_id: str) -> dict:
        """Return run ``run_id`` as a dict; ``config`` and ``counts`` decoded."""
        with self.engine.connect() as connection:
            row = connection.execute(select(runs).where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise InputError(f"no run {run_id!r} in the quarantine store {self._where()}")
        record = {key: value for key, value in row.items() if key not in ("config_json", "counts_json")}
        record["config"] = json.loads(row["config_json"])
        record["counts"] = json.loads(row["counts_json"])
        return record

    def _require_run(self, connection, run_id: str) -> None:
        if connection.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise InputError(f"no run {run_id!r} in the quarantine store {self._where()}")

    # ------------------------------------------------------------ quarantine

    def add_quarantined(
        self,
        run_id: str,
        *,
        dataset: str,
        rows: pd.DataFrame,
        findings: pd.DataFrame,
        row_id_column: str,
        batch_digest_by_row: Optional[dict] = None,
        evidence_by_row: Optional[dict] = None,
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
        evidence_by_row : dict of str to dict, optional
            What a reviewer needs to judge each row (nearest trusted rows,
            features far from the trusted data), by row id.

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
        entries = _quarantine_entries(
            run_id, dataset, rows, findings, row_id_column, batch_digest_by_row or {}, evidence_by_row or {}
        )
        if not entries:
            return 0
        try:
            with self.engine.begin() as connection:
                self._require_run(connection, run_id)
                connection.execute(insert(quarantine), entries)
        except IntegrityError:
            # The transaction has rolled back; say which rows collided.
            row_ids = [entry["row_id"] for entry in entries]
            with self.engine.connect() as connection:
                taken = connection.execute(select(quarantine.c.row_id).where(
                    quarantine.c.run_id == run_id, quarantine.c.row_id.in_(row_ids))).scalars().all()
            raise InputError(
                f"run {run_id}: rows already quarantined: {', '.join(sorted(taken)) or '(unknown)'}; "
                "none of this call's rows were stored"
            ) from None
        return len(entries)

    def list_quarantine(
        self,
        *,
        run_id: Optional[str] = None,
        status: Optional[str] = None,
        check: Optional[str] = None,
        limit: Optional[int] = None,
        offset: int = 0,
    ) -> list[dict]:
        """Quarantine entries, oldest first, filtered by run, status and check.

        Each dict has the table's columns with the JSON decoded: ``row``
        (original values, NaN as None), ``checks`` (list of check names) and
        ``findings`` (list of ``{check, score, p_value, reason}``).
        """
        query = select(quarantine).order_by(quarantine.c.id).offset(offset)
        query = query.where(*entry_conditions(self.engine, run_id=run_id, status=status, check=check))
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


    # ------------------------------------------------------------- watch: claims

    def claim_batch(self, dataset: str, digest: str, *, source: str, name: str) -> tuple[dict, bool]:
        """Claim batch ``digest`` of ``dataset``; return ``(claim, new)``.

        The unique (dataset, digest) constraint decides: the first claim
        inserts the row (status ``"processing"``, one attempt) and gets
        ``new = True``; any later one gets the existing row and ``False``.
        """
        now = utc_now()
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(watch_batches).values(
                    dataset=dataset, digest=digest, status="processing", source=source, name=name,
                    attempts=1, claimed_at=now, updated_at=now,
                ))
            return self.get_claim(dataset, digest), True
        except IntegrityError:
            return self.get_claim(dataset, digest), False

    def get_claim(self, dataset: str, digest: str) -> Optional[dict]:
        """The claim of batch ``digest`` of ``dataset``, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(watch_batches).where(
                watch_batches.c.dataset == dataset, watch_batches.c.digest == digest)).mappings().first()
        return dict(row) if row is not None else None

    def update_claim(self, dataset: str, digest: str, **values) -> None:
        """Set columns of a claim (``status``, ``run_id``, ``version``, ``message``, ...)."""
        if "status" in values and values["status"] not in CLAIM_STATUSES:
            raise ValueError(f"claim status {values['status']!r}: expected one of {', '.join(CLAIM_STATUSES)}")
        with self.engine.begin() as connection:
            connection.execute(update(watch_batches).where(
                watch_batches.c.dataset == dataset, watch_batches.c.digest == digest,
            ).values(updated_at=utc_now(), **values))

    def list_claims(self, dataset: Optional[str] = None, status: Optional[str] = None) -> list[dict]:
        """Claims, oldest first, filtered by dataset and status."""
        query = select(watch_batches).order_by(watch_batches.c.id)
        if dataset is not None:
            query = query.where(watch_batches.c.dataset == dataset)
        if status is not None:
            query = query.where(watch_batches.c.status == status)
        with self.engine.connect() as connection:
            return [dict(row) for row in connection.execute(query).mappings().all()]

    def claim_for_run(self, run_id: str) -> Optional[dict]:
        """The claim whose latest run is ``run_id`` (or whose batch that run read)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(watch_batches).where(watch_batches.c.run_id == run_id)).mappings().first()
            if row is None:
                run = connection.execute(select(runs.c.dataset).where(runs.c.id == run_id)).first()
                digests = connection.execute(select(batches.c.digest).where(batches.c.run_id == run_id)).scalars().all()
                if run is not None and digests:
                    row = connection.execute(select(watch_batches).where(
                        watch_batches.c.dataset == run.dataset, watch_batches.c.digest.in_(digests))).mappings().first()
        return dict(row) if row is not None else None

    def runs_of_batch(self, dataset: str, digest: str, status: Optional[str] = None) -> list[str]:
        """Ids of the runs of ``dataset`` that read batch ``digest``, oldest first."""
        query = (select(runs.c.id).join(batches, batches.c.run_id == runs.c.id)
                 .where(runs.c.dataset == dataset, batches.c.digest == digest).order_by(runs.c.started_at))
        if status is not None:
            query = query.where(runs.c.status == status)
        with self.engine.connect() as connection:
            return list(dict.fromkeys(connection.execute(query).scalars().all()))

    def discard_run(self, run_id: str, reason: str) -> int:
        """Close an interrupted run whose output was never published.

        Its quarantine entries (committed just before an interrupted rename)
        are removed unless a reviewer already decided one; the run is marked
        failed with ``reason``. Returns the number of entries removed.
        """
        with self.engine.begin() as connection:
            decided = connection.execute(
                select(func.count()).select_from(decisions.join(quarantine, quarantine.c.id == decisions.c.quarantine_id))
                .where(quarantine.c.run_id == run_id)).scalar_one()
            removed = 0
            if not decided:
                removed = connection.execute(quarantine.delete().where(quarantine.c.run_id == run_id)).rowcount
            connection.execute(update(runs).where(runs.c.id == run_id, runs.c.status == "running").values(
                status="failed", finished_at=utc_now(), counts_json=dumps({"error": reason})))
        return int(removed or 0)

    # ------------------------------------------------------------- watch: leases

    def acquire_lease(self, dataset: str, owner: str, seconds: float, *, is_stale=None) -> Optional[dict]:
        """Take the lease of ``dataset`` for ``seconds``; None when taken, else the holder.

        A lease is free when nobody holds it, when it has expired, or when
        ``is_stale(holder)`` says its holder is gone (e.g. a dead process on
        this machine). Taking it over is a compare-and-set on the old holder,
        so of two watchers racing for it exactly one wins.
        """
        now = utc_now()
        expires = now + dt.timedelta(seconds=seconds)
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(dataset_leases).values(
                    dataset=dataset, owner=owner, acquired_at=now, expires_at=expires))
            return None
        except IntegrityError:
            pass
        with self.engine.connect() as connection:
            holder = connection.execute(select(dataset_leases).where(
                dataset_leases.c.dataset == dataset)).mappings().first()
        if holder is None:  # released meanwhile: try once more
            return self.acquire_lease(dataset, owner, seconds, is_stale=is_stale)
        holder = dict(holder)
        if holder["owner"] != owner and holder["expires_at"] > now and not (is_stale and is_stale(holder)):
            return holder
        with self.engine.begin() as connection:
            taken = connection.execute(update(dataset_leases).where(
                dataset_leases.c.dataset == dataset, dataset_leases.c.owner == holder["owner"],
                dataset_leases.c.expires_at == holder["expires_at"],
            ).values(owner=owner, acquired_at=now, expires_at=expires)).rowcount
        return None if taken == 1 else self.get_lease(dataset) or holder

    def renew_lease(self, dataset: str, owner: str, seconds: float) -> bool:
        """Extend ``owner``'s lease; False when it no longer holds it."""
        with self.engine.begin() as connection:
            renewed = connection.execute(update(dataset_leases).where(
                dataset_leases.c.dataset == dataset, dataset_leases.c.owner == owner,
            ).values(expires_at=utc_now() + dt.timedelta(seconds=seconds))).rowcount
        return renewed == 1

    def release_lease(self, dataset: str, owner: str) -> None:
        """Give the lease back (nothing happens when ``owner`` does not hold it)."""
        with self.engine.begin() as connection:
            connection.execute(dataset_leases.delete().where(
                dataset_leases.c.dataset == dataset, dataset_leases.c.owner == owner))

    def get_lease(self, dataset: str) -> Optional[dict]:
        """The current lease of ``dataset`` (possibly expired), or None."""
        with self.engine.connect() as connection:
            row = connection.execute(select(dataset_leases).where(dataset_leases.c.dataset == dataset)).mappings().first()
        return dict(row) if row is not None else None

def decode_entry(record) -> dict:
    hidden = ("row_json", "findings_json", "evidence_json", "checks")
    entry = {key: value for key, value in record.items() if key not in hidden}
    entry["row"] = json.loads(record["row_json"])
    if "evidence_json" in record:
        entry["evidence"] = json.loads(record["evidence_json"] or "{}")
    entry["checks"] = record["checks"].split(",") if record["checks"] else []
    entry["findings"] = json.loads(record["findings_json"])
    return entry


def entry_conditions(
    engine: Engine,
    *,
    run_id: Optional[str] = None,
    status: Optional[str] = None,
    check: Optional[str] = None,
    below_score: Optional[float] = None,
    dataset: Optional[str] = None,
) -> list:
    """SQL conditions selecting quarantine entries; None means "any"."""
    conditions = []
    if run_id is not None:
        conditions.append(quarantine.c.run_id == run_id)
    if status is not None:
        conditions.append(quarantine.c.status == status)
    if dataset is not None:
        conditions.append(quarantine.c.dataset == dataset)
    if below_score is not None:
        conditions.append(quarantine.c.score < below_score)
    if check is not None:
        # Exact name match inside the comma-joined list (no prefix hits).
        padded = literal(",") + quarantine.c.checks + literal(",")
        needle = f",{check},"
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
    ``1 - smallest p-value``; a broken rule (an expectation, p-value NaN)
    counts as 1.
    """
    values = [_optional_float(p) for p in p_values]
    return max(1.0 if p is None else 1.0 - p for p in values) if values else 1.0


def _optional_float(value) -> Optional[float]:
    value = to_jsonable(value)
    return None if value is None else float(value)


def _quarantine_entries(
    run_id: str, dataset: str, rows: pd.DataFrame, findings: pd.DataFrame,
    row_id_column: str, batch_digest_by_row: dict, evidence_by_row: dict,
) -> list[dict]:
    """Build one insert dict per row; validate before touching the database."""
    if row_id_column not in rows.columns:
        raise InputError(f"quarantined rows have no id column {row_id_column!r}")
    row_ids = rows[row_id_column].astype(str)
    repeated = sorted(set(row_ids[row_ids.duplicated()]))
    if repeated:
        raise InputError(f"row ids repeat among the quarantined rows: {', '.join(repeated)}")
    flagged = findings[findings["flagged"].astype(bool)] if "flagged" in findings.columns else findings
    flagged = flagged.assign(row_id=flagged["row_id"].astype(str))
    # Batch-level findings (empty row id) describe the run, not a row.
    flagged = flagged[flagged["row_id"] != ""]
    unknown = sorted(set(flagged["row_id"]) - set(row_ids))
    if unknown:
        raise InputError(f"findings name rows that are not being quarantined: {', '.join(unknown)}")
    bad_checks = sorted({name for name in flagged["check"].astype(str) if "," in name})
    if bad_checks:
        raise InputError(f"check names may not contain commas: {', '.join(bad_checks)}")
    by_row = {row_id: group for row_id, group in flagged.groupby("row_id", sort=False)}
    created_at = utc_now()
    entries = []
    for row_id, values in zip(row_ids, rows.to_dict(orient="records")):
        group = by_row.get(row_id)
        if group is None:
            raise InputError(f"row {row_id}: no flagged finding says why it is quarantined")
        p_values = [p for p in (_optional_float(v) for v in group["p_value"]) if p is not None]
        checks = list(dict.fromkeys(group["check"].astype(str)))  # unique, first-seen order
        entries.append({
            "run_id": run_id, "dataset": dataset, "row_id": row_id,
            "batch_digest": batch_digest_by_row.get(row_id),
            "row_json": dumps(values),
            "checks": ",".join(checks),
            "score": entry_score(group["p_value"]),
            "p_value": min(p_values) if p_values else None,
            "findings_json": dumps([
                {"check": str(f["check"]), "score": f["score"], "p_value": f["p_value"], "reason": str(f["reason"])}
                for f in group.to_dict(orient="records")
            ]),
            "evidence_json": dumps(evidence_by_row.get(row_id, {})),
            "status": "pending",
            "created_at": created_at,
        })
    return entries
