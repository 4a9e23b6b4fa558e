"""``poisonguard watch``'s bookkeeping: batch claims and dataset leases.

One row per (dataset, batch digest) ever claimed, so a batch is processed
once whatever its file name, and one lease per dataset, so one watcher at a
time appends to a dataset's chain of versions.
"""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from poisonguard.pipelines.store.schema import CLAIM_STATUSES, batches, dataset_leases, runs, utc_now, watch_batches


class WatchState:
    """The ``watch_batches`` and ``dataset_leases`` tables (a mixin of ``QuarantineStore``)."""

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


