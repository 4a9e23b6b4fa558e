"""Opening a store's database: the engine, SQLite's settings, and schema migrations."""
from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Optional

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError

from poisonguard.pipelines.core.errors import InputError

# Seconds a SQLite writer waits for another process's lock before failing.
SQLITE_BUSY_TIMEOUT = 30
MIGRATIONS = Path(__file__).parent / "migrations"
# Creating a fresh store from two processes at once: how often the loser retries.
MIGRATION_ATTEMPTS = 20
# Alembic's environment is process-global state: one migration at a time per process.
_MIGRATING = threading.Lock()


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


def make_engine(url: str) -> Engine:
    """An engine for ``url``; for SQLite, WAL, a busy timeout and the parent folder created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def migrate(engine: Engine) -> None:
    """Bring the database's tables to the newest revision (``migrations/versions``).

    A new database gets every table; one made by an older poisonguard is
    upgraded in place. Two processes opening a fresh store at once race on
    CREATE TABLE and on the revision row; the loser sees "already exists" or
    a duplicate key and tries again, finding the work done.
    """
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    for attempt in range(MIGRATION_ATTEMPTS):
        try:
            with engine.connect() as connection:
                if MigrationContext.configure(connection).get_current_revision() == head:
                    return
            with _MIGRATING, engine.begin() as connection:
                config.attributes["connection"] = connection
                try:
                    command.upgrade(config, "head")
                finally:
                    config.attributes.pop("connection", None)
            return
        except (OperationalError, ProgrammingError, IntegrityError) as error:
            racing = any(sign in str(error).lower() for sign in ("already exists", "unique", "duplicate", "locked"))
            if not racing or attempt == MIGRATION_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


@functools.lru_cache(maxsize=4)
def alembic_config(url: Optional[str] = None) -> Config:
    """Alembic's configuration for the store's migrations (no alembic.ini needed).

    ``url`` is for developers running Alembic commands (a new revision);
    ``migrate`` passes its open connection instead.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    return config


def check_url(url: str) -> None:
    """Refuse what is not a database URL, before any work is done.

    Raises
    ------
    InputError
        ``url`` does not parse, or names a database driver that is not installed.
    """
    try:
        parsed = make_url(url)
        parsed.get_dialect()
    except ArgumentError:
        raise InputError(f"{url!r} is not a database URL (e.g. sqlite:///path/quarantine.db)") from None
    except Exception as error:  # NoSuchModuleError, a missing driver package
        raise InputError(f"store URL {describe(url)}: {error}") from None


def require_existing(url: str) -> None:
    """Refuse a SQLite URL whose file does not exist (reviewing an empty store helps nobody).

    Raises
    ------
    InputError
        ``url`` is not a database URL, or names a SQLite file that is missing.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InputError(f"{url!r} is not a database URL (e.g. sqlite:///path/quarantine.db)") from None
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        if not path.is_file():
            raise InputError(f"no quarantine store at {path}: run `poisonguard run` first")


def describe(url: str) -> str:
    """``url`` for messages, without its password."""
    return make_url(url).render_as_string(hide_password=True)
