"""Alembic migrations of the quarantine store, applied when a store opens (``engine.migrate``).

To change the schema: edit ``store/schema.py``, then write the next revision
in ``versions/`` (``NNNN_what.py`` with ``down_revision`` the previous one),
by hand or with Alembic's autogenerate against a store at the previous head::

    python -c "from alembic import command; from poisonguard.pipelines.store.engine import alembic_config; \
command.revision(alembic_config('sqlite:///old.db'), message='what changed', autogenerate=True)"

and add a test that a store of the previous revision upgrades with its rows.
"""
