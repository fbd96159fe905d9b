"""Alembic's entry point for the store migrations (loaded by Alembic, not imported).

Forgeline runs it with the connection it opened (``config.attributes["connection"]``), inside
a transaction it already holds; a developer running ``command.revision(…, autogenerate=True)``
on ``alembic_config(url)`` gets an engine of its own. On PostgreSQL the tables live in the
schema on the ``search_path`` that the caller set, and the version table beside them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from forgeline.store.migrations import VERSION_TABLE
from forgeline.store.schema import metadata


def _run(connection: sa.Connection, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        # SQLite alters a table by copying it; Alembic's batch mode writes that for us.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    config = context.config
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"),
            target_metadata=metadata,
            version_table=VERSION_TABLE,
            literal_binds=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection, config.attributes.get("schema"))
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("set sqlalchemy.url, or pass a connection in config.attributes")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as own:
            _run(own, None)
    finally:
        engine.dispose()


main()
