"""Where the simulated databases keep their rows: memory, an undo journal, optional SQLite.

Each database holds one ``Table`` per model: ``rows`` maps id → dict of stored values, in id
order (ids only grow, and loading sorts them), plus hash indexes on many2one and ``index=True``
columns so that ``=``/``in`` searches and one2many reads do not scan. Every change goes
through ``Storage`` and is journaled, so a failing RPC call is undone entirely
(``rollback``), and ``commit`` flushes the rows it touched to SQLite in one transaction.

The SQLite file (WAL, ``synchronous=FULL``) holds every database of a simulator: one row per
record as JSON (empty columns left out), keyed by (database, model, id), and the sequences.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

__all__ = ["SqliteFile", "Storage", "Table"]

Row = dict[str, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS databases (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    db TEXT NOT NULL, model TEXT NOT NULL, id INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (db, model, id)
);
CREATE TABLE IF NOT EXISTS sequences (
    db TEXT NOT NULL, code TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (db, code)
) WITHOUT ROWID;
"""


class Table:
    """The rows of one model, with hash indexes on some columns."""

    __slots__ = ("_orders", "indexes", "model", "next_id", "ordered", "rows", "version")

    def __init__(self, model: str) -> None:
        self.model = model
        self.rows: dict[int, Row] = {}
        self.indexes: dict[str, dict[Any, set[int]]] = {}
        self.next_id = 1
        # rows are kept in id order (ids only grow) until a rollback re-inserts a deleted row.
        self.ordered = True
        # Bumped on every change: sorted id lists cached for an order stay valid until then.
        self.version = 0
        self._orders: dict[Any, tuple[int, list[int]]] = {}

    def ensure_index(self, column: str) -> dict[Any, set[int]]:
        index = self.indexes.get(column)
        if index is None:
            index = {}
            for rid, row in self.rows.items():
                index.setdefault(row.get(column, False), set()).add(rid)
            self.indexes[column] = index
        return index

    def _index_add(self, rid: int, row: Row) -> None:
        for column, index in self.indexes.items():
            value = row.get(column, False)
            bucket = index.get(value)
            if bucket is None:
                index[value] = {rid}
            else:
                bucket.add(rid)

    def _index_remove(self, rid: int, row: Row) -> None:
        for column, index in self.indexes.items():
            bucket = index.get(row.get(column, False))
            if bucket is not None:
                bucket.discard(rid)

    def _reorder(self) -> None:
        if not self.ordered:
            items = sorted(self.rows.items())
            self.rows.clear()
            self.rows.update(items)
            self.ordered = True

    def ids_in_order(self, descending: bool = False) -> Iterator[int]:
        self._reorder()
        return reversed(self.rows) if descending else iter(self.rows)

    def ids_sorted_by(self, key: Any, build: Callable[[list[int]], None]) -> list[int]:
        """Every id in the order ``key``; ``build`` sorts a list in place on a cache miss."""
        cached = self._orders.get(key)
        if cached is not None and cached[0] == self.version:
            return cached[1]
        self._reorder()
        ids = list(self.rows)
        build(ids)
        self._orders[key] = (self.version, ids)
        return ids

    def ids_and_rows(self) -> Iterator[tuple[int, Row]]:
        self._reorder()
        return iter(self.rows.items())


class Storage:
    """The tables of one database, with a journal that undoes an uncommitted transaction."""

    def __init__(self, name: str, file: SqliteFile | None = None) -> None:
        self.name = name
        self.file = file
        self.tables: dict[str, Table] = {}
        self.sequences: dict[str, int] = {}
        # Undo entries, newest last: ("insert", model, id) | ("update", model, id, old values)
        # | ("delete", model, id, row) | ("sequence", code, old value or None).
        self._journal: list[tuple[Any, ...]] = []
        self._dirty: set[tuple[str, int]] = set()
        self._dirty_sequences: set[str] = set()
        # Set for a new database: its first commit also records it in the file, atomically.
        self.register_version: int | None = None

    # -- tables --------------------------------------------------------------------------

    def table(self, model: str) -> Table:
        table = self.tables.get(model)
        if table is None:
            table = self.tables[model] = Table(model)
        return table

    def insert(self, model: str, row: Row, rid: int | None = None) -> int:
        table = self.table(model)
        if rid is None:
            rid = table.next_id
        elif rid < table.next_id:
            table.ordered = False
        table.next_id = max(table.next_id, rid + 1)
        table.rows[rid] = row
        table.version += 1
        if table.indexes:
            table._index_add(rid, row)
        self._journal.append(("insert", model, rid))
        self._dirty.add((model, rid))
        return rid

    def update(self, model: str, rid: int, values: Row) -> Row:
        """Write ``values`` into a row; returns the old values of the columns that changed."""
        table = self.tables[model]
        row = table.rows[rid]
        old = {k: row.get(k, False) for k, v in values.items() if row.get(k, False) != v}
        if not old:
            return old
        table.version += 1
        indexed = table.indexes and any(k in table.indexes for k in old)
        if indexed:
            table._index_remove(rid, row)
        row.update({k: values[k] for k in old})
        if indexed:
            table._index_add(rid, row)
        self._journal.append(("update", model, rid, old))
        self._dirty.add((model, rid))
        return old

    def delete(self, model: str, rid: int) -> None:
        table = self.tables[model]
        row = table.rows.pop(rid)
        table.version += 1
        if table.indexes:
            table._index_remove(rid, row)
        self._journal.append(("delete", model, rid, row))
        self._dirty.add((model, rid))

    def next_sequence(self, code: str) -> int:
        old = self.sequences.get(code)
        value = (old or 0) + 1
        self.sequences[code] = value
        self._journal.append(("sequence", code, old))
        self._dirty_sequences.add(code)
        return value

    # -- transactions --------------------------------------------------------------------

    def savepoint(self) -> int:
        return len(self._journal)

    def rollback(self, savepoint: int = 0) -> None:
        """Undo every change journaled since ``savepoint`` (0: the whole transaction)."""
        journal = self._journal
        while len(journal) > savepoint:
            entry = journal.pop()
            kind = entry[0]
            if kind == "sequence":
                _, code, old = entry
                if old is None:
                    self.sequences.pop(code, None)
                else:
                    self.sequences[code] = old
                continue
            table = self.tables[entry[1]]
            table.version += 1
            rid = entry[2]
            if kind == "insert":
                row = table.rows.pop(rid)
                if table.indexes:
                    table._index_remove(rid, row)
            elif kind == "update":
                row = table.rows[rid]
                if table.indexes:
                    table._index_remove(rid, row)
                row.update(entry[3])
                if table.indexes:
                    table._index_add(rid, row)
            else:
                table.rows[rid] = entry[3]
                table.ordered = False
                if table.indexes:
                    table._index_add(rid, entry[3])
        if savepoint == 0:
            # Rows touched only by the undone work are back to their committed state.
            self._dirty.clear()
            self._dirty_sequences.clear()

    def commit(self) -> None:
        if self.file is not None and (
            self._dirty or self._dirty_sequences or self.register_version is not None
        ):
            upserts: list[tuple[str, str, int, bytes]] = []
            deletes: list[tuple[str, str, int]] = []
            for model, rid in self._dirty:
                row = self.tables[model].rows.get(rid)
                if row is None:
                    deletes.append((self.name, model, rid))
                else:
                    # Empty (False) columns are left out: rows are half the size on disk.
                    compact = {k: v for k, v in row.items() if v is not False}
                    upserts.append((self.name, model, rid, orjson.dumps(compact)))
            sequences = [(self.name, code, self.sequences[code]) for code in self._dirty_sequences]
            register = (
                (self.name, self.register_version) if self.register_version is not None else None
            )
            self.file.write(upserts, deletes, sequences, register)
            self.register_version = None
        self._journal.clear()
        self._dirty.clear()
        self._dirty_sequences.clear()

    @property
    def in_transaction(self) -> bool:
        return bool(self._journal)

    # -- loading -------------------------------------------------------------------------

    def load(self, empty_rows: dict[str, Row], m2m_columns: dict[str, set[str]]) -> None:
        """Fill the tables from the file: columns left out were empty (``empty_rows`` of
        each model), many2many lists come back as tuples."""
        if self.file is None:
            return
        for model, rid, data in self.file.rows(self.name):
            row: Row = {**empty_rows.get(model, {}), **orjson.loads(data)}
            for column in m2m_columns.get(model, ()):
                value = row.get(column)
                if isinstance(value, list):
                    row[column] = tuple(value)
            table = self.table(model)
            table.rows[rid] = row
            table.next_id = max(table.next_id, rid + 1)
        self.sequences.update(self.file.sequences(self.name))


class SqliteFile:
    """The SQLite file behind a simulator: every database's committed rows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed RPC call survives power loss, as in Odoo on PostgreSQL.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)

    def databases(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT name, version FROM databases").fetchall())

    def rows(self, db: str) -> Iterable[tuple[str, int, bytes]]:
        return self._conn.execute(
            "SELECT model, id, data FROM records WHERE db = ? ORDER BY model, id", (db,)
        )

    def sequences(self, db: str) -> dict[str, int]:
        cursor = self._conn.execute("SELECT code, value FROM sequences WHERE db = ?", (db,))
        return dict(cursor.fetchall())

    def write(
        self,
        upserts: list[tuple[str, str, int, bytes]],
        deletes: list[tuple[str, str, int]],
        sequences: list[tuple[str, str, int]],
        database: tuple[str, int] | None = None,
    ) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if database is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO databases (name, version) VALUES (?, ?)", database
                )
            if upserts:
                conn.executemany(
                    "INSERT OR REPLACE INTO records (db, model, id, data) VALUES (?, ?, ?, ?)",
                    upserts,
                )
            if deletes:
                conn.executemany(
                    "DELETE FROM records WHERE db = ? AND model = ? AND id = ?", deletes
                )
            if sequences:
                conn.executemany(
                    "INSERT OR REPLACE INTO sequences (db, code, value) VALUES (?, ?, ?)",
                    sequences,
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()
