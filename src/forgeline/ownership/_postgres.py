"""The cross-reference in the PostgreSQL store (``postgresql://…?schema=NAME``), for scale-out.

Same table as on SQLite, in the store's schema, migrated by the store's migrations (whoever
opens first brings the schema to head). A ``claim`` is optimistic: a read, and only for an
unknown key an ``INSERT … ON CONFLICT DO NOTHING``. When two processes insert the same key at
once, PostgreSQL makes the second wait for the first to commit and then do nothing; the loser
reads the winner's row in a statement of its own (a new snapshot under READ COMMITTED, which
sees it; a CTE in the same statement would not). So both answer one canonical id.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ..exceptions import BackendError
from ..store.beside import BesideStore
from .xref import Binding, CrossReferences, Key, already_bound

__all__ = ["PostgresCrossReferences"]

T = TypeVar("T")

_DEFAULT_POOL = 4
_COLUMNS = "system, entity, external_id, canonical_id, id, created_at"


def _binding(row: Sequence[Any]) -> Binding:
    return Binding(*row)


class PostgresCrossReferences(BesideStore, CrossReferences):
    what = "PostgreSQL cross-reference"

    def __init__(self, url: str) -> None:
        BesideStore.__init__(self, url, default_pool=_DEFAULT_POOL)
        table = f'"{self.schema}".xrefs'
        self._get_sql = (
            f"SELECT {_COLUMNS} FROM {table} WHERE system = $1 AND entity = $2 AND external_id = $3"
        )
        self._insert_sql = (
            f"INSERT INTO {table} (system, entity, external_id, canonical_id, created_at)"
            " VALUES ($1, $2, $3, $4, $5)"
            f" ON CONFLICT (system, entity, external_id) DO NOTHING RETURNING {_COLUMNS}"
        )
        self._taken_sql = (
            f"SELECT external_id FROM {table} WHERE canonical_id = $1 AND entity = $2"
            " AND system = $3"
        )
        self._lookup_sql = (
            f"SELECT {_COLUMNS} FROM {table} JOIN unnest($1::text[], $2::text[], $3::text[])"
            " AS k(system, entity, external_id) USING (system, entity, external_id)"
        )
        self._scan_sql = f"SELECT {_COLUMNS} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2"
        self._canonical_sql = f"SELECT {_COLUMNS} FROM {table} WHERE canonical_id = $1"

    async def claim(self, wanted: Binding) -> Binding:
        async def claim(conn: Any) -> Binding:
            # Twice at most: the row that won a race could only vanish if it were deleted.
            for _ in range(2):
                row = await conn.fetchrow(self._get_sql, *wanted.key)
                if row is not None:
                    return _binding(row)
                try:
                    row = await conn.fetchrow(
                        self._insert_sql, *wanted.key, wanted.canonical_id, time.time()
                    )
                except asyncpg.UniqueViolationError as exc:
                    # Not the external id (ON CONFLICT covers it): the canonical one.
                    taken = await conn.fetchval(
                        self._taken_sql, wanted.canonical_id, wanted.entity, wanted.system
                    )
                    raise already_bound(wanted, str(taken)) from exc
                if row is not None:
                    return _binding(row)
            raise BackendError(f"binding {wanted.key} did not settle; try again")

        return await self._run("binding a cross-reference", claim)

    async def lookup(self, keys: Sequence[Key]) -> list[Binding]:
        if not keys:
            return []
        systems, entities, externals = (list(part) for part in zip(*keys, strict=True))
        rows = await self._run(
            "looking up cross-references",
            lambda conn: conn.fetch(self._lookup_sql, systems, entities, externals),
        )
        return [_binding(row) for row in rows]

    async def scan(self, after: int, limit: int) -> list[Binding]:
        rows = await self._run(
            "reading cross-references", lambda conn: conn.fetch(self._scan_sql, after, limit)
        )
        return [_binding(row) for row in rows]

    async def by_canonical(self, canonical_id: str, entity: str | None) -> list[Binding]:
        sql, args = self._canonical_sql, [canonical_id]
        if entity is not None:
            sql, args = f"{sql} AND entity = $2", [canonical_id, entity]
        rows = await self._run(
            "reading a canonical id's cross-references",
            lambda conn: conn.fetch(f"{sql} ORDER BY id", *args),
        )
        return [_binding(row) for row in rows]
