"""Alembic's environment: migrations run on the connection the store hands over.

There is no alembic.ini: ``poisonguard.pipelines.store.engine`` builds the
configuration in code. When a store opens, ``engine.migrate`` passes its open
connection in ``config.attributes["connection"]``; a developer generating a
revision passes a database URL instead (``engine.alembic_config(url)``).
"""
from alembic import context
from sqlalchemy import create_engine

from poisonguard.pipelines.store.schema import metadata


def _run(connection) -> None:
    # render_as_batch: SQLite can only alter a table by copying it, which batch mode does.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()
