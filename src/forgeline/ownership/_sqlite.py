"""The cross-reference in the SQLite store file (the embedded default).

It opens the store's file with a ``Database`` of its own (or shares one the caller opened):
writes go through the group-committing writer thread, reads through the reader. A ``claim``
reads and inserts inside one write transaction, and SQLite lets one writer in at a time (the
``BEGIN IMMEDIATE`` of every group takes the file's write lock), so two processes binding one
external id cannot both insert it.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .._sqlite import Database, sqlite_path
from ..store.migrations import prepare_sqlite
from .xref import Binding, CrossReferences, Key, already_bound

__all__ = ["SqliteCrossReferences"]

_COLUMNS = "system, entity, external_id, canonical_id, id, created_at"
# Keys per lookup statement: 3 parameters each, under SQLite's older 999-parameter limit.
_CHUNK = 300


def _binding(row: Sequence[Any]) -> Binding:
    return Binding(*row)


class SqliteCrossReferences(CrossReferences):
    """``sqlite:///PATH`` (the store's URL), or ``database=`` an open store ``Database``."""

    def __init__(self, url: str | None = None, *, database: Database | None = None) -> None:
        if (url is None) == (database is None):
            raise ValueError("give the store's URL or its open Database, one of them")
        self._own = database is None
        self._db = database or Database(sqlite_path(url or ""), name="xref")
        self._opened = not self._own  # a shared Database is opened (and closed) by its owner

    async def open(self) -> None:
        if self._opened:
            return
        if self._db.path == ":memory:":
            # A private in-memory database: the head schema, on the writer's connection.
            from ..store.migrations import HEAD
            from ..store.schema import sqlite_script

            await self._db.open(";\n".join(sqlite_script(HEAD)) + ";")
        else:
            await asyncio.to_thread(prepare_sqlite, self._db.path)
            await self._db.open("")
        self._opened = True

    async def aclose(self) -> None:
        if self._own:
            await self._db.aclose()

    async def claim(self, wanted: Binding) -> Binding:
        def claim(conn: sqlite3.Connection) -> Binding:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM xrefs WHERE system = ? AND entity = ? AND external_id = ?",
                wanted.key,
            ).fetchone()
            if row is not None:
                return _binding(row)
            now = time.time()
            try:
                cursor = conn.execute(
                    "INSERT INTO xrefs (system, entity, external_id, canonical_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (*wanted.key, wanted.canonical_id, now),
                )
            except sqlite3.IntegrityError as exc:
                # Not the external id (read above, under the write lock): the canonical one.
                (taken,) = conn.execute(
                    "SELECT external_id FROM xrefs"
                    " WHERE canonical_id = ? AND entity = ? AND system = ?",
                    (wanted.canonical_id, wanted.entity, wanted.system),
                ).fetchone()
                raise already_bound(wanted, taken) from exc
            assert cursor.lastrowid is not None
            return Binding(*wanted.key, wanted.canonical_id, cursor.lastrowid, now)

        return await self._db.write(claim)

    async def lookup(self, keys: Sequence[Key]) -> list[Binding]:
        def lookup(conn: sqlite3.Connection) -> list[Binding]:
            found: list[Binding] = []
            for start in range(0, len(keys), _CHUNK):
                chunk = keys[start : start + _CHUNK]
                values = ", ".join(["(?, ?, ?)"] * len(chunk))
                cursor = conn.execute(
                    f"SELECT {_COLUMNS} FROM xrefs"
                    f" WHERE (system, entity, external_id) IN (VALUES {values})",
                    [part for key in chunk for part in key],
                )
                found.extend(_binding(row) for row in cursor)
            return found

        return await self._db.read(lookup)

    async def scan(self, after: int, limit: int) -> list[Binding]:
        def scan(conn: sqlite3.Connection) -> list[Binding]:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM xrefs WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
            )
            return [_binding(row) for row in cursor]

        return await self._db.read(scan)

    async def by_canonical(self, canonical_id: str, entity: str | None) -> list[Binding]:
        def query(conn: sqlite3.Connection) -> list[Binding]:
            sql = f"SELECT {_COLUMNS} FROM xrefs WHERE canonical_id = ?"
            params: tuple[str, ...] = (canonical_id,)
            if entity is not None:
                sql, params = f"{sql} AND entity = ?", (canonical_id, entity)
            return [_binding(row) for row in conn.execute(f"{sql} ORDER BY id", params)]

        return await self._db.read(query)
