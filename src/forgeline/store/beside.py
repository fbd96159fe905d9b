"""Tables beside the store's, in its PostgreSQL database: what the cross-reference, the
security store and the webhook endpoints share - a pool of their own on the store's URL,
the store's migrations run once when opened, and driver errors translated at one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from .._postgres import DRIVER_ERRORS, PostgresUrl, create_pool, translate
from ..exceptions import BackendUnavailable, ForgelineError
from . import migrations

__all__ = ["BesideStore"]

T = TypeVar("T")


class BesideStore:
    """``open`` (pool + migrations), ``aclose`` and ``_run(doing, job)`` for a class whose
    tables live in the store's PostgreSQL schema. ``what`` names it in errors."""

    what = "PostgreSQL store"

    def __init__(self, url: str, *, default_pool: int) -> None:
        parsed = PostgresUrl(url, own=("pool_size",))
        self._dsn, self.schema = parsed.dsn, parsed.schema
        self._pool_size = parsed.pool_size(default_pool)
        self._pool: Any = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        pool = await create_pool(self._dsn, self._pool_size)
        try:
            await self._migrate(pool)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _migrate(self, pool: Any) -> None:
        try:
            current = await pool.fetchval(
                f'SELECT version_num FROM "{self.schema}".{migrations.VERSION_TABLE}'
            )
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            current = None
        except DRIVER_ERRORS as exc:
            raise translate(exc, "reading the store's schema version") from exc
        if current != migrations.HEAD:
            await migrations.upgrade_postgres(lambda: asyncpg.connect(self._dsn), self.schema)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, doing: str, job: Callable[[Any], Awaitable[T]]) -> T:
        if self._pool is None:
            raise BackendUnavailable(f"the {self.what} is not open")
        try:
            async with self._pool.acquire() as conn:
                return await job(conn)
        except ForgelineError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc, doing) from exc
