"""The embedded default event log: one SQLite file in WAL mode with ``synchronous=FULL``.

An append returns after COMMIT, and with FULL a committed WAL frame survives power loss, so
"acknowledged" means "on disk". Concurrent appends share one transaction (group commit in
``forgeline._sqlite``); positions are assigned inside it, under SQLite's write lock, so they
are gap-free and commit in order — a reader tracking the last position seen never skips a row.

The records this process appended last are kept in memory (``_TAIL``) and answer the reads
that follow at once - the router's, moments after every append - without reading back and
parsing what was just written. The file has no other writer (an embedded hub locks its data
directory), so a run of consecutive positions held here is exactly what the file holds; a
read that starts or runs past it goes to the file. The events held are the ones appended:
their data is JSON's (what the file holds equals them), and nobody changes an event once it
was published.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson

from .._sqlite import Database, sqlite_path
from ..envelope import Event
from .base import Appended, EventLog, RecentRecords, Record

__all__ = ["SqliteLog"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    -- AUTOINCREMENT keeps the high-water mark in sqlite_sequence, so positions are never
    -- reused, even after retention emptied the table.
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL,
    source      TEXT NOT NULL,
    recorded_at REAL NOT NULL,
    body        BLOB NOT NULL
);
-- (id, source) rather than (source, id): the same index then serves lookups by id alone.
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (id, source);
CREATE INDEX IF NOT EXISTS events_recorded_at ON events (recorded_at);
"""

_COLUMNS = "position, recorded_at, body"
#: Records kept in memory after their append, for the reads that follow.
_TAIL = 4096
# Stay well under SQLite's limit of 32,766 bound parameters per statement.
_CHUNK = 400


def _record(row: tuple[int, float, bytes]) -> Record:
    return Record(row[0], row[1], Event.from_stored(orjson.loads(row[2])))


class SqliteLog(EventLog):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self._db = Database(sqlite_path(url), name="log")
        self._tail = RecentRecords(_TAIL)

    async def open(self) -> None:
        await self._db.open(SCHEMA)

    async def aclose(self) -> None:
        await self._db.aclose()

    async def _append(self, events: Sequence[Event]) -> list[Appended]:
        rows = [(event.id, event.source, event.to_json()) for event in events]
        answers, recorded_at = await self._db.write(lambda conn: _insert(conn, rows))
        self._tail.add(
            Record(answer.position, recorded_at, event)
            for event, answer in zip(events, answers, strict=True)
            if not answer.duplicate
        )
        return answers

    async def read(self, after: int = 0, limit: int = 500) -> list[Record]:
        tail = self._tail
        record = tail.get(after + 1)
        if record is not None:
            found = [record]
            while len(found) < limit and (record := tail.get(record.position + 1)) is not None:
                found.append(record)
            return found

        def query(conn: sqlite3.Connection) -> list[Record]:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
                (after, limit),
            )
            return [_record(row) for row in cursor]

        return await self._db.read(query)

    async def get(self, source: str, id: str) -> Record | None:
        def query(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id = ? AND source = ?", (id, source)
            ).fetchone()
            return None if row is None else _record(row)

        return await self._db.read(query)

    async def find(self, id: str) -> list[Record]:
        def query(conn: sqlite3.Connection) -> list[Record]:
            cursor = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE id = ? ORDER BY position", (id,)
            )
            return [_record(row) for row in cursor]

        return await self._db.read(query)

    async def get_many(self, positions: Sequence[int]) -> list[Record]:
        wanted = sorted(set(positions))

        def query(conn: sqlite3.Connection) -> list[Record]:
            found: list[Record] = []
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                cursor = conn.execute(
                    f"SELECT {_COLUMNS} FROM events WHERE position IN ({marks}) ORDER BY position",
                    chunk,
                )
                found.extend(_record(row) for row in cursor)
            return found

        return await self._db.read(query)

    async def head(self) -> int:
        return await self._db.read(_head)

    async def position_at(self, time: float) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT max(position) FROM events WHERE recorded_at < ?", (time,)
            ).fetchone()
            if row[0] is not None:
                return int(row[0])
            first = conn.execute("SELECT min(position) FROM events").fetchone()[0]
            return int(first) - 1 if first is not None else _head(conn)

        return await self._db.read(query)

    async def trim(self, before: float, *, keep_from: int | None = None) -> int:
        bound = keep_from if keep_from is not None else 2**62

        def delete(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM events WHERE recorded_at < ? AND position < ?", (before, bound)
            )
            return cursor.rowcount

        deleted = await self._db.write(delete)
        if deleted:
            self._tail.clear()  # what is held may be gone from the file now
        return deleted


def _head(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return int(row[0]) if row is not None else 0


def _insert(
    conn: sqlite3.Connection, rows: list[tuple[str, str, bytes]]
) -> tuple[list[Appended], float]:
    existing: dict[tuple[str, str], int] = {}
    for start in range(0, len(rows), _CHUNK):
        chunk = rows[start : start + _CHUNK]
        pairs = ",".join("(?,?)" for _ in chunk)
        params: list[Any] = [value for row in chunk for value in row[:2]]
        # A join, not ``(id, source) IN (VALUES …)``: SQLite plans the IN form as a scan of
        # the whole dedup index, which made every batch slower as the log grew.
        cursor = conn.execute(
            "SELECT e.id, e.source, e.position FROM (VALUES "
            + pairs
            + ") AS v JOIN events AS e ON e.id = v.column1 AND e.source = v.column2",
            params,
        )
        existing.update(((id_, source), position) for id_, source, position in cursor)
    position = _head(conn)
    now = time.time()
    answers: list[Appended] = []
    new_rows: list[tuple[int, str, str, float, bytes]] = []
    for id_, source, body in rows:
        known = existing.get((id_, source))
        if known is not None:
            answers.append(Appended(known, True))
            continue
        position += 1
        existing[(id_, source)] = position
        new_rows.append((position, id_, source, now, body))
        answers.append(Appended(position, False))
    # Rows of a chunk in one statement, not executemany: each statement step hands the GIL
    # back and must win it again from the busy event loop, once per row with executemany.
    for start in range(0, len(new_rows), _CHUNK):
        values = new_rows[start : start + _CHUNK]
        conn.execute(
            "INSERT INTO events (position, id, source, recorded_at, body) VALUES "
            + ",".join("(?,?,?,?,?)" for _ in values),
            [value for row in values for value in row],
        )
    return answers, now
