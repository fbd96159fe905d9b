"""Group commit: writes queued together share one transaction, but not one fate."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from forgeline._sqlite import Database
from forgeline.exceptions import BackendError


async def test_a_failing_write_does_not_undo_its_neighbours(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "t.db"))
    await db.open("CREATE TABLE t (v INTEGER UNIQUE);")
    try:

        def insert(value: int):  # type: ignore[no-untyped-def]
            return lambda conn: conn.execute("INSERT INTO t VALUES (?)", (value,)).rowcount

        results = await asyncio.gather(
            db.write(insert(1)), db.write(insert(1)), db.write(insert(2)), return_exceptions=True
        )
        assert results[0] == 1 and results[2] == 1
        assert isinstance(results[1], BackendError)  # translated, with the driver error chained
        assert isinstance(results[1].__cause__, sqlite3.IntegrityError)
        rows = await db.read(lambda conn: conn.execute("SELECT v FROM t ORDER BY v").fetchall())
        assert rows == [(1,), (2,)]
    finally:
        await db.aclose()


async def test_a_write_that_breaks_fails_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A bug in one write (any exception, not only the driver's) is that write's error: its
    neighbours commit and later writes still run (the writer does not stop for good)."""
    db = Database(str(tmp_path / "t.db"))
    await db.open("CREATE TABLE t (v INTEGER);")
    try:

        def broken(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (99)")
            raise KeyError("a bug")

        def insert(conn: sqlite3.Connection) -> int:
            return conn.execute("INSERT INTO t VALUES (1)").rowcount

        results = await asyncio.gather(db.write(broken), db.write(insert), return_exceptions=True)
        assert isinstance(results[0], KeyError) and results[1] == 1
        assert await db.write(insert) == 1
        rows = await db.read(lambda conn: conn.execute("SELECT v FROM t").fetchall())
        assert rows == [(1,), (1,)]  # the broken write's row was rolled back with it
    finally:
        await db.aclose()


async def test_a_write_alone_in_its_group_that_fails_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    """A write with no neighbours runs without a savepoint: when it fails, the transaction is
    rolled back whole, its caller gets the error, and the next write starts clean."""
    db = Database(str(tmp_path / "t.db"))
    await db.open("CREATE TABLE t (v INTEGER UNIQUE);")
    try:

        def half_done(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("INSERT INTO t VALUES (1)")  # the second insert breaks the write

        with pytest.raises(BackendError):
            await db.write(half_done)
        assert await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (2)").rowcount) == 1
        rows = await db.read(lambda conn: conn.execute("SELECT v FROM t").fetchall())
        assert rows == [(2,)]  # the failed write's first row went with it
    finally:
        await db.aclose()


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    db = Database(str(tmp_path / "t.db"))
    await db.open("CREATE TABLE t (v INTEGER);")
    await db.aclose()
    with pytest.raises(BackendError, match="closed"):
        await db.write(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
