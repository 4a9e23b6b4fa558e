"""The quarantine store: one object over the database of runs, entries and watch state.

Any SQLAlchemy URL works; the default is a SQLite file in the state folder.
For SQLite the store turns on WAL and a busy timeout so a pipeline run and a
review session (two processes) can share the file. Opening a store brings its
tables to the newest schema (Alembic migrations).
"""
from __future__ import annotations

from poisonguard.pipelines.store.engine import describe, make_engine, migrate
from poisonguard.pipelines.store.entries import QuarantineEntries
from poisonguard.pipelines.store.runs import RunRecords
from poisonguard.pipelines.store.watch_state import WatchState


class QuarantineStore(RunRecords, QuarantineEntries, WatchState):
    """Runs, batches, quarantine entries, decisions and watch state in the database at ``url``.

    Parameters
    ----------
    url : str
        SQLAlchemy URL, e.g. ``sqlite:///.poisonguard/quarantine.db``. Tables
        are created or upgraded if needed; for SQLite the parent folder too.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> "QuarantineStore":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def describe(self) -> str:
        """The store's location for messages (no password)."""
        return describe(self.url)
