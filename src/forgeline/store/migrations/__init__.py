"""Schema migrations of the store (Alembic), one history for SQLite and PostgreSQL.

A store brings its database to ``HEAD`` when it opens, before any other work:

- at ``HEAD`` already (every start but the first): one ``SELECT`` on the version table through
  the store's own driver; neither SQLAlchemy nor Alembic is imported;
- an empty SQLite file: the head schema from ``schema.py`` and the version, in one
  transaction (what Alembic's "create, then stamp head" recipe does, without loading it);
- anything else (an older revision; a SQLite file from before migrations existed, which is
  stamped ``BASELINE``; any PostgreSQL schema not yet at head): Alembic, in one transaction.
  On PostgreSQL that transaction first takes an advisory lock, so processes starting together
  migrate once, one after the other.

A database at a revision this Forgeline does not know was written by a newer one: it is
refused with ``ConfigError`` instead of being guessed at.

A new revision: change ``schema.py``, then (with ``sqlalchemy.url`` of a database at head)
``alembic.command.revision(alembic_config(url), "what changed", autogenerate=True)``, check
the script in ``versions/`` and move ``HEAD``. A test fails while ``HEAD``, the scripts and
``schema.py`` disagree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...exceptions import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    import sqlalchemy as sa
    from alembic.config import Config

__all__ = [
    "BASELINE",
    "HEAD",
    "VERSION_TABLE",
    "alembic_config",
    "prepare_sqlite",
    "upgrade_postgres",
]

#: The newest revision; a database here needs nothing done.
HEAD = "0004"
#: The schema SQLite stores had before they recorded a version.
BASELINE = "0001"
#: Where a database records its revision (Alembic's version table, under our name).
VERSION_TABLE = "store_version"

_HERE = Path(__file__).parent


def alembic_config(url: str | None = None) -> Config:
    """Alembic's configuration for these migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_HERE))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url)
    return config


# -- SQLite --------------------------------------------------------------------------------------


def prepare_sqlite(path: str) -> None:
    """Bring the SQLite store at ``path`` to ``HEAD``. Blocking: run it in a thread, before the
    store's writer connection opens."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            if _sqlite_version(conn, VERSION_TABLE) == HEAD:
                return  # the common case: a read, no write lock
            conn.execute("BEGIN IMMEDIATE")
            current = _sqlite_version(conn, VERSION_TABLE)
            if current == HEAD:  # another opener was first
                conn.execute("COMMIT")
                return
            if current is None and not _sqlite_has_table(conn, "deliveries"):
                from ..schema import sqlite_script

                for statement in sqlite_script(HEAD):
                    conn.execute(statement)
                conn.execute("COMMIT")
                return
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise BackendUnavailable(f"cannot open SQLite store {path}: {exc}") from exc
    _alembic_sqlite(path)


def _sqlite_version(conn: sqlite3.Connection, table: str) -> str | None:
    if not _sqlite_has_table(conn, table):
        return None
    row = conn.execute(f"SELECT version_num FROM {table}").fetchone()
    return None if row is None else str(row[0])


def _sqlite_has_table(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def _alembic_sqlite(path: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(sa.URL.create("sqlite", database=path), poolclass=sa.pool.NullPool)

    # pysqlite would not put DDL in a transaction; SQLite itself can, so a migration that
    # fails halfway leaves the file as it was. IMMEDIATE: take the write lock at once.
    @sa.event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as connection:
            _upgrade(connection, schema=None)
    except sa.exc.SQLAlchemyError as exc:
        raise BackendUnavailable(f"cannot migrate SQLite store {path}: {exc}") from exc
    finally:
        engine.dispose()


# -- PostgreSQL ----------------------------------------------------------------------------------


async def upgrade_postgres(connect: Callable[[], Awaitable[Any]], schema: str) -> None:
    """Bring ``schema`` to ``HEAD`` through Alembic; ``connect`` opens an asyncpg connection.

    The caller has found the schema missing or behind (that check needs no SQLAlchemy)."""
    try:
        # SQLAlchemy's asyncio bridge would fail only at the first query without greenlet.
        import greenlet  # type: ignore[import-untyped,unused-ignore]  # noqa: F401
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine
    except ImportError as exc:
        raise ConfigError(
            f"migrating the PostgreSQL store needs {exc.name}: pip install 'forgeline[postgres]'"
        ) from exc

    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=connect, poolclass=sa.pool.NullPool
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_postgres, schema)
    except (OSError, TimeoutError) as exc:  # from connect(), unwrapped
        raise BackendUnavailable(f"cannot migrate PostgreSQL store schema {schema}: {exc}") from exc
    except sa.exc.SQLAlchemyError as exc:
        raise BackendError(f"cannot migrate PostgreSQL store schema {schema}: {exc}") from exc
    finally:
        await engine.dispose()


def _upgrade_postgres(connection: sa.Connection, schema: str) -> None:
    import sqlalchemy as sa

    # Held to the end of the transaction: a second process waits here, then finds head.
    connection.execute(
        sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
        {"key": f"forgeline-store:{schema}"},
    )
    quoted = connection.dialect.identifier_preparer.quote_identifier(schema)
    connection.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
    connection.exec_driver_sql(f"SET LOCAL search_path TO {quoted}")
    _upgrade(connection, schema=schema)


# -- both ----------------------------------------------------------------------------------------


def _upgrade(connection: sa.Connection, schema: str | None) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    script = ScriptDirectory.from_config(config)
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    current = context.get_current_heads()
    for revision in current:
        try:
            script.get_revision(revision)
        except CommandError as exc:
            where = f"schema {schema}" if schema else "database"
            raise ConfigError(
                f"the store {where} is at revision {revision!r}, which this Forgeline does not"
                f" know (its newest is {HEAD!r}): it was written by a newer Forgeline;"
                " upgrade Forgeline"
            ) from exc
    if not current and sa.inspect(connection).has_table("deliveries", schema=schema):
        command.stamp(config, BASELINE)  # made before versions were recorded
    command.upgrade(config, "head")
