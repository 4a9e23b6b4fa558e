"""Runs and the batches they read: start, finish, find, discard."""
from __future__ import annotations

import json
import uuid
from typing import Optional

from sqlalchemy import func, insert, select, update

from poisonguard.pipelines.core.errors import InputError
from poisonguard.pipelines.core.jsonable import dumps
from poisonguard.pipelines.store.schema import FINISHED_STATUSES, batches, decisions, quarantine, runs, utc_now


class RunRecords:
    """The ``runs`` and ``batches`` tables (a mixin of ``QuarantineStore``)."""

    def start_run(
        self,
        *,
        dataset: str,
        config: dict,
        tool_version: str,
        reference_digest: Optional[str] = None,
        owner: Optional[str] = None,
        output_dir: Optional[str] = None,
    ) -> str:
        """Record a new run with status ``"running"``; return its id (uuid4 text).

        ``owner`` ("host:pid") and ``output_dir`` (where the run will publish)
        let a later run settle this one if its process dies (``unfinished_runs``).
        """
        run_id = str(uuid.uuid4())
        with self.engine.begin() as connection:
            connection.execute(insert(runs).values(
                id=run_id, dataset=dataset, started_at=utc_now(), status="running",
                reference_digest=reference_digest, config_json=dumps(config),
                counts_json="{}", tool_version=tool_version, owner=owner,
                output_dir=None if output_dir is None else str(output_dir),
            ))
        return run_id

    def unfinished_runs(self) -> list[dict]:
        """Runs still marked ``"running"``, oldest first (``get_run``'s dicts)."""
        query = select(runs.c.id).where(runs.c.status == "running").order_by(runs.c.started_at)
        with self.engine.connect() as connection:
            ids = connection.execute(query).scalars().all()
        return [self.get_run(run_id) for run_id in ids]

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
            raise InputError(f"no run {run_id!r} in the quarantine store {self.describe()}")
        record = {key: value for key, value in row.items() if key not in ("config_json", "counts_json")}
        record["config"] = json.loads(row["config_json"])
        record["counts"] = json.loads(row["counts_json"])
        return record

    def _require_run(self, connection, run_id: str) -> None:
        if connection.execute(select(runs.c.id).where(runs.c.id == run_id)).first() is None:
            raise InputError(f"no run {run_id!r} in the quarantine store {self.describe()}")

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

    def resolve_run_id(self, text: str) -> str:
        """The run id equal to ``text`` or, failing that, the one starting with it.

        Raises
        ------
        InputError
            No run, or several, match.
        """
        text = str(text).strip()
        with self.engine.connect() as connection:
            if connection.execute(select(runs.c.id).where(runs.c.id == text)).first() is not None:
                return text
            found = connection.execute(
                select(runs.c.id).where(runs.c.id.startswith(text, autoescape=True)).order_by(runs.c.id).limit(6)
            ).scalars().all() if text else []
        if not found:
            raise InputError(f"no run {text!r} in the quarantine store {self.describe()}")
        if len(found) > 1:
            raise InputError(f"run {text!r} is ambiguous: it starts {', '.join(found[:5])}; give more of the id")
        return found[0]

    def latest_published_run(self, dataset: Optional[str] = None) -> Optional[str]:
        """The id of the newest run (of ``dataset``) that published a signed output, or None."""
        query = select(runs.c.id).where(runs.c.status == "succeeded", runs.c.output_dir.is_not(None))
        if dataset is not None:
            query = query.where(runs.c.dataset == dataset)
        query = query.order_by(runs.c.finished_at.desc(), runs.c.started_at.desc()).limit(1)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar()

    def recent_runs(self, limit: int) -> list[dict]:
        """The newest ``limit`` runs: ``id, dataset, started_at``, newest first."""
        query = select(runs.c.id, runs.c.dataset, runs.c.started_at).order_by(runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [dict(record) for record in connection.execute(query).mappings()]
