"""Webhook endpoints in the PostgreSQL store (``postgresql://…?schema=NAME``), for scale-out.

Same tables as on SQLite, in the store's schema, migrated by the store's migrations. Where
SQLite gets atomicity from its one writer, each read-then-write here runs in a transaction
that locks the subscription's row first (``FOR UPDATE``): a PATCH from an API process and a
410 seen by a worker serialise there, and whichever comes second sees the first's spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ..exceptions import Conflict
from ..route.subscription import SubscriptionSpec
from ..store import Delivery, Subscription
from ..store.base import Attempt
from ..store.beside import BesideStore
from .endpoint_store import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    ENDPOINT_COLUMNS,
    SECRET_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    Endpoint,
    EndpointSecret,
    EndpointStore,
    delivery_from_row,
    dump_json,
    endpoint_from_row,
    endpoint_row,
    qualified,
    secret_from_row,
    secret_row,
    stored_enabled,
    subscription_row,
    with_enabled,
)

__all__ = ["PostgresEndpointStore"]

T = TypeVar("T")

_DEFAULT_POOL = 4


def _marks(count: int, start: int = 1) -> str:
    return ", ".join(f"${n}" for n in range(start, start + count))


class PostgresEndpointStore(BesideStore, EndpointStore):
    what = "PostgreSQL endpoint store"

    def __init__(self, url: str) -> None:
        BesideStore.__init__(self, url, default_pool=_DEFAULT_POOL)
        s = f'"{self.schema}"'
        self._endpoints = f"{s}.webhook_endpoints"
        self._secrets = f"{s}.webhook_secrets"
        self._subscriptions = f"{s}.subscriptions"
        self._deliveries = f"{s}.deliveries"
        self._attempts = f"{s}.attempts"
        self._joined = (
            f"SELECT {qualified(ENDPOINT_COLUMNS, 'e')}, {qualified(SUBSCRIPTION_COLUMNS, 's')}"
            f" FROM {self._endpoints} e JOIN {self._subscriptions} s ON s.id = e.sub_id"
        )
        self._lock_sql = (
            f"SELECT s.id, s.spec::text FROM {self._endpoints} e"
            f" JOIN {self._subscriptions} s ON s.id = e.sub_id WHERE e.id = $1 FOR UPDATE OF s"
        )

    async def _in_transaction(self, doing: str, job: Callable[[Any], Awaitable[T]]) -> T:
        async def run(conn: Any) -> T:
            async with conn.transaction():
                return await job(conn)

        return await self._run(doing, run)

    async def create(
        self, endpoint: Endpoint, secret: EndpointSecret, subscription: Subscription
    ) -> None:
        async def insert(conn: Any) -> None:
            try:
                await conn.execute(
                    f"INSERT INTO {self._subscriptions} ({SUBSCRIPTION_COLUMNS}, name)"
                    f" VALUES ({_marks(6)})",
                    *subscription_row(subscription),
                    subscription.spec.name,
                )
            except asyncpg.UniqueViolationError as exc:
                raise Conflict(f"a subscription named {subscription.spec.name!r} exists") from exc
            await conn.execute(
                f"INSERT INTO {self._endpoints} ({ENDPOINT_COLUMNS}) VALUES ({_marks(11)})",
                *endpoint_row(endpoint),
            )
            await conn.execute(
                f"INSERT INTO {self._secrets} ({SECRET_COLUMNS}) VALUES ({_marks(7)})",
                *secret_row(secret),
            )

        await self._in_transaction("creating a webhook endpoint", insert)

    async def get(self, id: str) -> Endpoint | None:
        return await self._run("reading a webhook endpoint", lambda conn: self._get(conn, id))

    async def page(self, tenant: str | None, after: str, limit: int) -> list[Endpoint]:
        async def query(conn: Any) -> list[Endpoint]:
            if tenant is None:
                rows = await conn.fetch(
                    f"{self._joined} WHERE e.id > $1 ORDER BY e.id LIMIT $2", after, limit
                )
            else:
                rows = await conn.fetch(
                    f"{self._joined} WHERE e.id > $1 AND e.tenant = $2 ORDER BY e.id LIMIT $3",
                    after,
                    tenant,
                    limit,
                )
            secrets = await self._secrets_of(conn, [row[0] for row in rows])
            return [_endpoint(row, secrets.get(row[0], ())) for row in rows]

        return await self._run("listing webhook endpoints", query)

    async def save(
        self,
        id: str,
        *,
        url: str,
        description: str,
        metadata: dict[str, Any],
        spec: SubscriptionSpec,
        enabled: bool | None,
        reason: str | None,
        now: float,
    ) -> Endpoint | None:
        async def write(conn: Any) -> Endpoint | None:
            row = await conn.fetchrow(self._lock_sql, id)
            if row is None:
                return None
            sub_id, stored = row
            keep = stored_enabled(stored) if enabled is None else enabled
            await conn.execute(
                f"UPDATE {self._subscriptions} SET spec = $1, updated_at = $2 WHERE id = $3",
                with_enabled(stored, keep, spec),
                now,
                sub_id,
            )
            await conn.execute(
                f"UPDATE {self._endpoints} SET url = $1, description = $2, metadata = $3,"
                " updated_at = $4 WHERE id = $5",
                url,
                description,
                dump_json(metadata),
                now,
                id,
            )
            if enabled is not None:
                await self._set_state(conn, id, enabled, reason, now)
            return await self._get(conn, id)

        return await self._in_transaction("changing a webhook endpoint", write)

    async def set_enabled(
        self, id: str, enabled: bool, reason: str | None, now: float
    ) -> Endpoint | None:
        async def write(conn: Any) -> Endpoint | None:
            row = await conn.fetchrow(self._lock_sql, id)
            if row is None or stored_enabled(row[1]) == enabled:
                return None
            await conn.execute(
                f"UPDATE {self._subscriptions} SET spec = $1, updated_at = $2 WHERE id = $3",
                with_enabled(row[1], enabled, None),
                now,
                row[0],
            )
            await self._set_state(conn, id, enabled, reason, now)
            return await self._get(conn, id)

        return await self._in_transaction("enabling or disabling a webhook endpoint", write)

    async def rotate(self, id: str, secret: EndpointSecret, overlap_until: float) -> bool:
        now = secret.created_at

        async def write(conn: Any) -> bool:
            found = await conn.fetchval(
                f"SELECT 1 FROM {self._endpoints} WHERE id = $1 FOR UPDATE", id
            )
            if found is None:
                return False
            await conn.execute(
                f"DELETE FROM {self._secrets} WHERE endpoint_id = $1 AND expires_at <= $2",
                id,
                now,
            )
            await conn.execute(
                f"UPDATE {self._secrets} SET expires_at = LEAST(coalesce(expires_at, $2), $2)"
                " WHERE endpoint_id = $1",
                id,
                overlap_until,
            )
            await conn.execute(
                f"INSERT INTO {self._secrets} ({SECRET_COLUMNS}) VALUES ({_marks(7)})",
                *secret_row(secret),
            )
            await conn.execute(
                f"UPDATE {self._endpoints} SET updated_at = $1 WHERE id = $2", now, id
            )
            return True

        return await self._in_transaction("rotating a webhook secret", write)

    async def mark_failing(self, id: str, at: float) -> float | None:
        value = await self._run(
            "marking a webhook endpoint failing",
            lambda conn: conn.fetchval(
                f"UPDATE {self._endpoints} SET failing_since = coalesce(failing_since, $1)"
                " WHERE id = $2 RETURNING failing_since",
                at,
                id,
            ),
        )
        return None if value is None else float(value)

    async def mark_healthy(self, id: str) -> None:
        await self._run(
            "marking a webhook endpoint healthy",
            lambda conn: conn.execute(
                f"UPDATE {self._endpoints} SET failing_since = NULL"
                " WHERE id = $1 AND failing_since IS NOT NULL",
                id,
            ),
        )

    async def messages(
        self, subscription_id: str, *, before: int, limit: int, state: str | None
    ) -> list[Delivery]:
        async def query(conn: Any) -> list[Delivery]:
            sql = f"SELECT {DELIVERY_COLUMNS} FROM {self._deliveries} WHERE sub_id = $1 AND id < $2"
            args: list[Any] = [subscription_id, before]
            if state is not None:
                sql += " AND state = $3"
                args.append(state)
            sql += f" ORDER BY id DESC LIMIT ${len(args) + 1}"
            found = [delivery_from_row(tuple(row)) for row in await conn.fetch(sql, *args, limit)]
            if found:
                by_id = {delivery.id: delivery for delivery in found}
                for row in await conn.fetch(
                    f"SELECT {ATTEMPT_COLUMNS} FROM {self._attempts}"
                    " WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt",
                    list(by_id),
                ):
                    by_id[row[0]].history.append(Attempt(*tuple(row)[1:]))
            return found

        return await self._run("reading a webhook endpoint's messages", query)

    # -- in a connection ---------------------------------------------------------------------

    async def _get(self, conn: Any, id: str) -> Endpoint | None:
        row = await conn.fetchrow(f"{self._joined} WHERE e.id = $1", id)
        if row is None:
            return None
        return _endpoint(row, (await self._secrets_of(conn, [id])).get(id, ()))

    async def _secrets_of(self, conn: Any, ids: Sequence[str]) -> dict[str, list[EndpointSecret]]:
        found: dict[str, list[EndpointSecret]] = {}
        if not ids:
            return found
        rows = await conn.fetch(
            f"SELECT {SECRET_COLUMNS} FROM {self._secrets} WHERE endpoint_id = ANY($1::text[])"
            " ORDER BY created_at, id",
            list(ids),
        )
        for row in rows:
            secret = secret_from_row(tuple(row))
            found.setdefault(secret.endpoint_id, []).append(secret)
        return found

    async def _set_state(
        self, conn: Any, id: str, enabled: bool, reason: str | None, now: float
    ) -> None:
        if enabled:
            await conn.execute(
                f"UPDATE {self._endpoints} SET disabled_at = NULL, disabled_reason = NULL,"
                " failing_since = NULL, updated_at = $1 WHERE id = $2",
                now,
                id,
            )
        else:
            await conn.execute(
                f"UPDATE {self._endpoints} SET disabled_at = coalesce(disabled_at, $1),"
                " disabled_reason = $2, updated_at = $1 WHERE id = $3",
                now,
                reason,
                id,
            )


def _endpoint(row: Any, secrets: Sequence[EndpointSecret]) -> Endpoint:
    """jsonb columns come back as text (asyncpg's default codec)."""
    return endpoint_from_row(tuple(row), secrets)
