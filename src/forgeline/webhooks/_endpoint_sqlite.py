"""Webhook endpoints in the SQLite store file (the embedded default).

A ``Database`` of its own on the store's file, as the security store has: each write job runs
inside the group's ``BEGIN IMMEDIATE`` transaction, which holds the file's write lock, so a
job that reads the subscription's spec and writes it back (disabling an endpoint after a 410,
a PATCH that keeps the stored ``enabled``) is atomic against the dispatcher, the API and other
processes without a lock of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

from .._sqlite import Database, sqlite_path
from ..exceptions import Conflict
from ..route.subscription import SubscriptionSpec
from ..store import Delivery, Subscription
from ..store.base import Attempt
from ..store.migrations import prepare_sqlite
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

__all__ = ["SqliteEndpointStore"]

_JOINED = (
    f"SELECT {qualified(ENDPOINT_COLUMNS, 'e')}, {qualified(SUBSCRIPTION_COLUMNS, 's')}"
    " FROM webhook_endpoints e JOIN subscriptions s ON s.id = e.sub_id"
)


def _marks(count: int) -> str:
    return ", ".join(["?"] * count)


class SqliteEndpointStore(EndpointStore):
    """``sqlite:///PATH`` (the store's URL), or ``database=`` an open store ``Database``."""

    def __init__(self, url: str | None = None, *, database: Database | None = None) -> None:
        if (url is None) == (database is None):
            raise ValueError("give the store's URL or its open Database, one of them")
        self._own = database is None
        self._db = database or Database(sqlite_path(url or ""), name="webhooks")
        self._opened = not self._own

    async def open(self) -> None:
        if self._opened:
            return
        if self._db.path == ":memory:":
            from ..store.migrations import HEAD
            from ..store.schema import sqlite_script

            await self._db.open(";\n".join(sqlite_script(HEAD)) + ";")
        else:
            await asyncio.to_thread(prepare_sqlite, self._db.path)
            await self._db.open("")
        self._opened = True

    async def aclose(self) -> None:
        if self._own and self._opened:
            await self._db.aclose()
            self._opened = False

    async def create(
        self, endpoint: Endpoint, secret: EndpointSecret, subscription: Subscription
    ) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}, name)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (*subscription_row(subscription), subscription.spec.name),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"a subscription named {subscription.spec.name!r} exists") from exc
            conn.execute(
                f"INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES ({_marks(11)})",
                endpoint_row(endpoint),
            )
            conn.execute(
                f"INSERT INTO webhook_secrets ({SECRET_COLUMNS}) VALUES ({_marks(7)})",
                secret_row(secret),
            )

        await self._db.write(insert)

    async def get(self, id: str) -> Endpoint | None:
        return await self._db.read(lambda conn: _get(conn, id))

    async def page(self, tenant: str | None, after: str, limit: int) -> list[Endpoint]:
        def query(conn: sqlite3.Connection) -> list[Endpoint]:
            where, params = "e.id > ?", [after]
            if tenant is not None:
                where += " AND e.tenant = ?"
                params.append(tenant)
            rows = conn.execute(
                f"{_JOINED} WHERE {where} ORDER BY e.id LIMIT ?", [*params, limit]
            ).fetchall()
            secrets = _secrets(conn, [row[0] for row in rows])
            return [endpoint_from_row(row, secrets.get(row[0], ())) for row in rows]

        return await self._db.read(query)

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
        def write(conn: sqlite3.Connection) -> Endpoint | None:
            row = conn.execute(
                "SELECT s.id, s.spec FROM webhook_endpoints e"
                " JOIN subscriptions s ON s.id = e.sub_id WHERE e.id = ?",
                (id,),
            ).fetchone()
            if row is None:
                return None
            sub_id, stored = row
            keep = stored_enabled(stored) if enabled is None else enabled
            conn.execute(
                "UPDATE subscriptions SET spec = ?, updated_at = ? WHERE id = ?",
                (with_enabled(stored, keep, spec), now, sub_id),
            )
            conn.execute(
                "UPDATE webhook_endpoints SET url = ?, description = ?, metadata = ?,"
                " updated_at = ? WHERE id = ?",
                (url, description, dump_json(metadata), now, id),
            )
            if enabled is not None:
                _set_state(conn, id, enabled, reason, now)
            return _get(conn, id)

        return await self._db.write(write)

    async def set_enabled(
        self, id: str, enabled: bool, reason: str | None, now: float
    ) -> Endpoint | None:
        def write(conn: sqlite3.Connection) -> Endpoint | None:
            row = conn.execute(
                "SELECT s.id, s.spec FROM webhook_endpoints e"
                " JOIN subscriptions s ON s.id = e.sub_id WHERE e.id = ?",
                (id,),
            ).fetchone()
            if row is None or stored_enabled(row[1]) == enabled:
                return None
            conn.execute(
                "UPDATE subscriptions SET spec = ?, updated_at = ? WHERE id = ?",
                (with_enabled(row[1], enabled, None), now, row[0]),
            )
            _set_state(conn, id, enabled, reason, now)
            return _get(conn, id)

        return await self._db.write(write)

    async def rotate(self, id: str, secret: EndpointSecret, overlap_until: float) -> bool:
        now = secret.created_at

        def write(conn: sqlite3.Connection) -> bool:
            found = conn.execute("SELECT 1 FROM webhook_endpoints WHERE id = ?", (id,))
            if found.fetchone() is None:
                return False
            conn.execute(
                "DELETE FROM webhook_secrets WHERE endpoint_id = ? AND expires_at <= ?", (id, now)
            )
            conn.execute(
                "UPDATE webhook_secrets SET expires_at = min(coalesce(expires_at, ?), ?)"
                " WHERE endpoint_id = ?",
                (overlap_until, overlap_until, id),
            )
            conn.execute(
                f"INSERT INTO webhook_secrets ({SECRET_COLUMNS}) VALUES ({_marks(7)})",
                secret_row(secret),
            )
            conn.execute("UPDATE webhook_endpoints SET updated_at = ? WHERE id = ?", (now, id))
            return True

        return await self._db.write(write)

    async def mark_failing(self, id: str, at: float) -> float | None:
        def write(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?)"
                " WHERE id = ? RETURNING failing_since",
                (at, id),
            ).fetchone()
            return None if row is None else float(row[0])

        return await self._db.write(write)

    async def mark_healthy(self, id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE webhook_endpoints SET failing_since = NULL"
                " WHERE id = ? AND failing_since IS NOT NULL",
                (id,),
            )

        await self._db.write(write)

    async def messages(
        self, subscription_id: str, *, before: int, limit: int, state: str | None
    ) -> list[Delivery]:
        def query(conn: sqlite3.Connection) -> list[Delivery]:
            where, params = "sub_id = ? AND id < ?", [subscription_id, before]
            if state is not None:
                where += " AND state = ?"
                params.append(state)
            found = [
                delivery_from_row(row)
                for row in conn.execute(
                    f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE {where}"
                    " ORDER BY id DESC LIMIT ?",
                    [*params, limit],
                )
            ]
            if found:
                by_id = {delivery.id: delivery for delivery in found}
                for row in conn.execute(
                    f"SELECT {ATTEMPT_COLUMNS} FROM attempts"
                    f" WHERE delivery_id IN ({_marks(len(by_id))}) ORDER BY delivery_id, attempt",
                    list(by_id),
                ):
                    by_id[row[0]].history.append(Attempt(*row[1:]))
            return found

        return await self._db.read(query)


def _get(conn: sqlite3.Connection, id: str) -> Endpoint | None:
    row = conn.execute(f"{_JOINED} WHERE e.id = ?", (id,)).fetchone()
    if row is None:
        return None
    return endpoint_from_row(row, _secrets(conn, [id]).get(id, ()))


def _secrets(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, list[EndpointSecret]]:
    found: dict[str, list[EndpointSecret]] = {}
    if not ids:
        return found
    cursor = conn.execute(
        f"SELECT {SECRET_COLUMNS} FROM webhook_secrets WHERE endpoint_id IN ({_marks(len(ids))})"
        " ORDER BY created_at, id",
        list(ids),
    )
    for row in cursor:
        secret = secret_from_row(row)
        found.setdefault(secret.endpoint_id, []).append(secret)
    return found


def _set_state(
    conn: sqlite3.Connection, id: str, enabled: bool, reason: str | None, now: float
) -> None:
    if enabled:
        conn.execute(
            "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL,"
            " failing_since = NULL, updated_at = ? WHERE id = ?",
            (now, id),
        )
    else:
        conn.execute(
            "UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, ?),"
            " disabled_reason = ?, updated_at = ? WHERE id = ?",
            (now, reason, now, id),
        )
