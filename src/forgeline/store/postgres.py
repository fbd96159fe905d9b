"""The store on PostgreSQL (``postgresql://user@host:port/db?schema=NAME``), for scale-out.

Same tables (``schema.py``) and migrations as the SQLite store, same semantics; what changes
is that several worker processes claim from it at once. A claim is one statement: it picks
due deliveries in log order with ``FOR UPDATE OF d SKIP LOCKED`` (rows another claimer is
taking are passed over, never waited for, never taken twice) and marks them ``inflight``
with this owner's lease. A delivery whose lease ran out is claimable like a due one, so a
crashed or stalled worker's work is taken over; its late outcome is then dropped, because
outcomes only apply to rows still leased to the owner that reports them.

Per-key ordering holds across processes without locks of its own: a delivery is claimable
only while no earlier delivery of its key is unfinished, and an earlier one counts as
unfinished from the moment it is routed (``pending``), so whichever snapshot a claimer sees,
it never finds two open deliveries of one key both free.

Outcomes of a batch are applied in one statement (``unnest`` of arrays, the attempt history
inserted from the same CTE). Driver errors become ``BackendUnavailable`` (the server cannot
be reached) or ``BackendError`` here; the dispatcher and router retry those.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]
from ulid import ULID

from .._postgres import DRIVER_ERRORS, PostgresUrl, create_pool, translate
from ..exceptions import (
    BackendError,
    BackendUnavailable,
    Conflict,
    ForgelineError,
    NotFound,
)
from ..route.subscription import SubscriptionSpec
from .base import (
    Attempt,
    Claim,
    DeadLetterFilter,
    Delivery,
    DeliveryState,
    Outcome,
    Routed,
    Store,
    Subscription,
)
from .migrations import HEAD, VERSION_TABLE, upgrade_postgres

__all__ = ["PostgresStore", "parse_url"]

T = TypeVar("T")

_DEFAULT_POOL = 10

_OPEN = "('pending', 'retrying', 'inflight')"
_OPEN_OR_DEAD = "('pending', 'retrying', 'inflight', 'dead')"
_STATE = {"delivered": "delivered", "retry": "retrying", "dead": "dead"}
_DELIVERY_COLUMNS = (
    "id, sub_id, position, event_id, event_source, event_type, pkey, state, attempts, due_at,"
    " created_at, updated_at, last_status, last_error, reason"
)
_SUBSCRIPTION_COLUMNS = "id, spec, created_at, updated_at, start_position"


def parse_url(url: str) -> tuple[str, str, int]:
    """The DSN for asyncpg, the schema the store lives in and the pool size, from ``url``."""
    parsed = PostgresUrl(url, own=("pool_size",))
    return parsed.dsn, parsed.schema, parsed.pool_size(_DEFAULT_POOL)


def _count(status: str) -> int:
    """Rows touched, from a command tag such as ``INSERT 0 12`` or ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[1])


def _subscription(row: Sequence[Any]) -> Subscription:
    id_, spec, created_at, updated_at, start = row
    return Subscription(
        id_, SubscriptionSpec.model_validate_json(spec), created_at, updated_at, start
    )


def _like(glob: str) -> str:
    """A type glob (``production.*``) as a LIKE pattern: ``*`` is the only wildcard."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _columns(rows: Sequence[tuple[Any, ...]]) -> list[list[Any]]:
    """Rows as one list per column: what ``unnest($1::…[], $2::…[], …)`` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


def _where(where: DeadLetterFilter, params: list[Any]) -> str:
    """SQL over ``d`` for ``where``, appending its values to ``params`` ($n numbering)."""

    def bind(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    clauses = ["true"]
    if where.subscription_id is not None:
        clauses.append(f"d.sub_id = {bind(where.subscription_id)}")
    if where.since is not None:
        clauses.append(f"d.updated_at >= {bind(where.since)}")
    if where.until is not None:
        clauses.append(f"d.updated_at < {bind(where.until)}")
    if where.ids is not None:
        clauses.append(f"d.id = ANY({bind(list(where.ids))}::bigint[])")
    if where.subscription_ids is not None:
        clauses.append(f"d.sub_id = ANY({bind(list(where.subscription_ids))}::text[])")
    if where.type_pattern is not None:
        clauses.append(f"d.event_type LIKE {bind(_like(where.type_pattern))}")
    return " AND ".join(clauses)


class PostgresStore(Store):
    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = url
        self._dsn, self.schema, size = parse_url(url)
        self._pool_size = pool_size or size
        s = self._s = f'"{self.schema}"'
        self._pool: Any = None
        self._leader: Any = None  # the session that holds the advisory locks of our roles
        self._leading: set[str] = set()
        self._claim_sql: dict[tuple[str, str], str] = {}
        # An outcome applies only to a delivery still leased to its owner: one taken over
        # after the lease ran out is the new owner's now. A first-try success, the common
        # case, needs no history row and gets a narrower statement.
        self._delivered_sql = f"""
            UPDATE {s}.deliveries t SET state = 'delivered', lease_owner = NULL,
                lease_until = NULL, updated_at = $5, last_status = o.status,
                last_error = o.error
            FROM unnest($1::bigint[], $2::text[], $3::int[], $4::text[])
                AS o(id, owner, status, error)
            WHERE t.id = o.id AND t.lease_owner = o.owner AND t.state = 'inflight'
              AND t.attempts = 1"""
        # Any other attempt goes to the history from the same statement, for the rows updated.
        self._outcomes_sql = f"""
            WITH o AS (
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[],
                    $5::int[], $6::text[], $7::int[], $8::float8[], $9::float8[], $10::text[],
                    $11::text[])
                AS o(id, owner, state, next_due, status, error, attempt, started_at,
                     duration_ms, outcome, response)),
            done AS (
                UPDATE {s}.deliveries t SET state = o.state,
                    due_at = coalesce(o.next_due, t.due_at), lease_owner = NULL,
                    lease_until = NULL, updated_at = $12, last_status = o.status,
                    last_error = o.error,
                    reason = CASE WHEN o.state = 'dead' THEN o.error ELSE t.reason END
                FROM o
                WHERE t.id = o.id AND t.lease_owner = o.owner AND t.state = 'inflight'
                  AND t.attempts = o.attempt
                RETURNING t.id)
            INSERT INTO {s}.attempts AS a (delivery_id, attempt, started_at,
                duration_ms, outcome, status, error, response)
            SELECT o.id, o.attempt, o.started_at, o.duration_ms, o.outcome, o.status,
                o.error, o.response
            FROM o JOIN done ON done.id = o.id
            ON CONFLICT (delivery_id, attempt) DO UPDATE SET started_at = excluded.started_at,
                duration_ms = excluded.duration_ms, outcome = excluded.outcome,
                status = excluded.status, error = excluded.error, response = excluded.response"""

    # -- lifecycle --------------------------------------------------------------------------

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
            current = await pool.fetchval(f"SELECT version_num FROM {self._s}.{VERSION_TABLE}")
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            current = None
        except DRIVER_ERRORS as exc:
            raise translate(exc, "reading the store's schema version") from exc
        if current != HEAD:
            await upgrade_postgres(lambda: asyncpg.connect(self._dsn), self.schema)

    async def aclose(self) -> None:
        leader, self._leader = self._leader, None
        if leader is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await leader.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    # -- leadership: a session advisory lock on a connection of its own --------------------

    def _lock_key(self, role: str) -> int:
        digest = hashlib.sha256(f"forgeline:{self.schema}:{role}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    async def try_lead(self, role: str) -> bool:
        # The lock lives as long as this session: when the process dies, PostgreSQL closes
        # the session and the next worker's try takes the role over.
        try:
            if self._leader is None or self._leader.is_closed():
                self._leader = await asyncpg.connect(self._dsn)
                self._leading.clear()
            if role not in self._leading:
                if not await self._leader.fetchval(
                    "SELECT pg_try_advisory_lock($1)", self._lock_key(role)
                ):
                    return False
                self._leading.add(role)
            return True
        except DRIVER_ERRORS as exc:
            raise translate(exc, f"taking the {role} role") from exc

    async def still_leading(self, role: str) -> bool:
        if self._leader is None or self._leader.is_closed() or role not in self._leading:
            return False
        try:
            await self._leader.fetchval("SELECT 1")
        except DRIVER_ERRORS:
            self._leading.clear()
            with contextlib.suppress(*DRIVER_ERRORS):
                await self._leader.close()
            return False
        return True

    async def _run(self, doing: str, job: Callable[[Any], Awaitable[T]]) -> T:
        """``job`` on a pooled connection, driver errors translated."""
        if self._pool is None:
            raise BackendUnavailable("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire() as conn:
                return await job(conn)
        except ForgelineError:
            raise
        except DRIVER_ERRORS as exc:
            raise translate(exc, doing) from exc

    async def _fetch(self, doing: str, sql: str, *args: Any) -> list[Any]:
        return await self._run(doing, lambda conn: conn.fetch(sql, *args))

    async def _fetchval(self, doing: str, sql: str, *args: Any) -> Any:
        return await self._run(doing, lambda conn: conn.fetchval(sql, *args))

    async def _execute(self, doing: str, sql: str, *args: Any) -> int:
        """Run one statement; answer how many rows it touched."""
        return _count(await self._run(doing, lambda conn: conn.execute(sql, *args)))

    # -- subscriptions ---------------------------------------------------------------------

    async def create_subscription(
        self, spec: SubscriptionSpec, start_position: int
    ) -> Subscription:
        now = time.time()
        sub = Subscription(f"sub_{ULID()}", spec, now, now, start_position)
        values = (sub.id, spec.model_dump_json(), now, now, start_position, spec.name)
        try:
            await self._execute(
                "creating a subscription",
                f"INSERT INTO {self._s}.subscriptions ({_SUBSCRIPTION_COLUMNS}, name)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                *values,
            )
        except BackendError as exc:
            _name_taken(exc, spec.name)
            raise
        return sub

    async def update_subscription(self, id: str, spec: SubscriptionSpec) -> Subscription:
        try:
            rows = await self._fetch(
                "updating a subscription",
                f"UPDATE {self._s}.subscriptions SET name = $1, spec = $2, updated_at = $3"
                f" WHERE id = $4 RETURNING {_SUBSCRIPTION_COLUMNS}",
                spec.name,
                spec.model_dump_json(),
                time.time(),
                id,
            )
        except BackendError as exc:
            _name_taken(exc, spec.name)
            raise
        if not rows:
            raise NotFound(f"no subscription {id!r}")
        return _subscription(rows[0])

    async def delete_subscription(self, id: str) -> None:
        sql = f"DELETE FROM {self._s}.subscriptions WHERE id = $1"
        if await self._execute("deleting a subscription", sql, id) == 0:
            raise NotFound(f"no subscription {id!r}")

    async def get_subscription(self, id_or_name: str) -> Subscription:
        rows = await self._fetch(
            "reading a subscription",
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM {self._s}.subscriptions"
            " WHERE id = $1 OR name = $1",
            id_or_name,
        )
        if not rows:
            raise NotFound(f"no subscription {id_or_name!r}")
        return _subscription(rows[0])

    async def list_subscriptions(self) -> list[Subscription]:
        rows = await self._fetch(
            "listing subscriptions",
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM {self._s}.subscriptions ORDER BY created_at, id",
        )
        return [_subscription(row) for row in rows]

    # -- routing ---------------------------------------------------------------------------

    async def routed_up_to(self) -> int:
        sql = f"SELECT position FROM {self._s}.cursors WHERE name = 'router'"
        value = await self._fetchval("reading the routing cursor", sql)
        return 0 if value is None else int(value)

    async def record_routes(self, routed: Sequence[Routed], up_to: int) -> int:
        now = time.time()
        rows = _route_rows(routed)

        async def write(conn: Any) -> int:
            async with conn.transaction():
                created = 0
                if rows:
                    sql = self._insert_deliveries(conflict="DO NOTHING")
                    created = _count(await conn.execute(sql, *_columns(rows), now))
                # greatest(): two routers may record overlapping ranges; the cursor never
                # moves back.
                await conn.execute(
                    f"INSERT INTO {self._s}.cursors (name, position) VALUES ('router', $1)"
                    " ON CONFLICT (name) DO UPDATE"
                    " SET position = greatest(cursors.position, excluded.position)",
                    up_to,
                )
                return created

        return await self._run("recording routes", write)

    def _insert_deliveries(self, conflict: str) -> str:
        # Ordered by position, so delivery ids grow with log order as on SQLite, and two
        # routers inserting the same range take the unique index's locks in the same order.
        return f"""
            INSERT INTO {self._s}.deliveries AS t (sub_id, position, event_id, event_source,
                event_type, pkey, state, round_started_at, due_at, created_at, updated_at)
            SELECT r.sub_id, r.position, r.event_id, r.event_source, r.event_type, r.pkey,
                'pending', r.recorded_at, $8, r.recorded_at, $8
            FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                        $6::text[], $7::float8[])
                AS r(sub_id, position, event_id, event_source, event_type, pkey, recorded_at)
            ORDER BY r.position, r.sub_id
            ON CONFLICT (sub_id, position) {conflict}"""

    # -- delivery --------------------------------------------------------------------------

    def _claim_query(self, ordering: str, on_dead: str) -> str:
        key = (ordering, on_dead)
        if key not in self._claim_sql:
            where = (
                f"d.sub_id = $1 AND d.state IN {_OPEN}"
                " AND ((d.state IN ('pending', 'retrying') AND d.due_at <= $2)"
                " OR (d.state = 'inflight' AND d.lease_until < $2))"
            )
            if ordering == "key":
                blocking = _OPEN_OR_DEAD if on_dead == "block" else _OPEN
                where += f""" AND (d.pkey IS NULL OR NOT EXISTS (
                    SELECT 1 FROM {self._s}.deliveries p
                    WHERE p.sub_id = d.sub_id AND p.pkey = d.pkey AND p.position < d.position
                      AND p.state IN {blocking}))"""
            # OF d: lock the candidates only, not the earlier rows the key check reads.
            self._claim_sql[key] = f"""
                WITH picked AS (
                    SELECT d.id FROM {self._s}.deliveries d WHERE {where}
                    ORDER BY d.position LIMIT $3
                    FOR UPDATE OF d SKIP LOCKED)
                UPDATE {self._s}.deliveries t SET state = 'inflight', lease_owner = $4,
                    lease_until = $5, attempts = t.attempts + 1, updated_at = $2
                FROM picked WHERE t.id = picked.id
                RETURNING t.id, t.position, t.attempts, t.attempts - t.round_start,
                    t.round_started_at"""
        return self._claim_sql[key]

    async def claim(
        self, subscription: Subscription, owner: str, limit: int, lease: float, now: float
    ) -> list[Claim]:
        policy = subscription.spec.policy
        sql = self._claim_query(policy.ordering, policy.on_dead)
        args = (subscription.id, now, limit, owner, now + lease)
        rows = await self._fetch("claiming deliveries", sql, *args)
        return sorted(
            (Claim(row[0], subscription.id, row[1], row[2], row[3], row[4]) for row in rows),
            key=lambda claim: claim.position,
        )

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> None:
        plain: list[tuple[Any, ...]] = []
        other: list[tuple[Any, ...]] = []
        for outcome in outcomes:
            a, id_ = outcome.attempt, outcome.claim.delivery_id
            if a.outcome == "delivered" and a.attempt == 1:
                plain.append((id_, outcome.owner, a.status, a.error))
            else:
                state = _STATE[a.outcome]
                other.append(
                    (
                        id_,
                        outcome.owner,
                        state,
                        outcome.next_due,
                        a.status,
                        a.error,
                        a.attempt,
                        a.started_at,
                        a.duration_ms,
                        a.outcome,
                        a.response,
                    )
                )
        statements = [
            (sql, _columns(rows))
            for sql, rows in ((self._delivered_sql, plain), (self._outcomes_sql, other))
            if rows
        ]

        async def write(conn: Any) -> None:
            if len(statements) == 1:
                [(sql, columns)] = statements
                await conn.execute(sql, *columns, now)
                return
            async with conn.transaction():  # one batch, one commit
                for sql, columns in statements:
                    await conn.execute(sql, *columns, now)

        if statements:
            await self._run("recording outcomes", write)

    async def release(self, claims: Sequence[Claim], owner: str, now: float) -> None:
        if not claims:
            return
        # The claim counted an attempt that never happened: take it back (as sqlite.py).
        sql = f"""
            UPDATE {self._s}.deliveries t SET attempts = t.attempts - 1,
                state = CASE WHEN t.attempts - 1 > t.round_start THEN 'retrying'
                    ELSE 'pending' END,
                lease_owner = NULL, lease_until = NULL, updated_at = $4
            FROM unnest($1::bigint[], $2::int[]) AS c(id, attempt)
            WHERE t.id = c.id AND t.attempts = c.attempt AND t.lease_owner = $3
              AND t.state = 'inflight'"""
        ids = [claim.delivery_id for claim in claims]
        attempts = [claim.attempt for claim in claims]
        await self._execute("releasing claims", sql, ids, attempts, owner, now)

    async def expire_leases(self) -> int:
        sql = f"UPDATE {self._s}.deliveries SET lease_until = 0 WHERE state = 'inflight'"
        return await self._execute("expiring leases", sql)

    async def next_due(self) -> float | None:
        value = await self._fetchval(
            "reading the next due time",
            "SELECT min(CASE WHEN state = 'inflight' THEN lease_until ELSE due_at END)"
            f" FROM {self._s}.deliveries WHERE state IN {_OPEN}",
        )
        return None if value is None else float(value)

    # -- dead letters and replay -----------------------------------------------------------

    async def list_deliveries(
        self, state: DeliveryState, where: DeadLetterFilter, limit: int, after_id: int = 0
    ) -> list[Delivery]:
        params: list[Any] = [state, after_id]
        clause = _where(where, params)
        params.append(limit)
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM {self._s}.deliveries d"
            f" WHERE d.state = $1 AND d.id > $2 AND {clause} ORDER BY d.id LIMIT ${len(params)}"
        )
        return [Delivery(*row) for row in await self._fetch("listing deliveries", sql, *params)]

    async def get_delivery(self, id: int) -> Delivery:
        async def query(conn: Any) -> Delivery:
            row = await conn.fetchrow(
                f"SELECT {_DELIVERY_COLUMNS} FROM {self._s}.deliveries WHERE id = $1", id
            )
            if row is None:
                raise NotFound(f"no delivery {id}")
            delivery = Delivery(*row)
            rows = await conn.fetch(
                "SELECT attempt, started_at, duration_ms, outcome, status, error, response"
                f" FROM {self._s}.attempts WHERE delivery_id = $1 ORDER BY attempt",
                id,
            )
            delivery.history.extend(Attempt(*r) for r in rows)
            return delivery

        return await self._run("reading a delivery", query)

    async def deliveries_of_event(self, position: int) -> list[Delivery]:
        sql = (
            f"SELECT {_DELIVERY_COLUMNS} FROM {self._s}.deliveries"
            f" WHERE sub_id = ANY(ARRAY(SELECT id FROM {self._s}.subscriptions))"
            " AND position = $1 ORDER BY id"
        )
        rows = await self._fetch("reading an event's deliveries", sql, position)
        return [Delivery(*row) for row in rows]

    async def replay_dead(self, where: DeadLetterFilter, now: float) -> int:
        params: list[Any] = [now]
        sql = (
            f"UPDATE {self._s}.deliveries d SET state = 'pending', due_at = $1,"
            " round_start = attempts, round_started_at = $1, updated_at = $1, reason = NULL"
            f" WHERE d.state = 'dead' AND {_where(where, params)}"
        )
        return await self._execute("replaying dead letters", sql, *params)

    async def discard_dead(self, where: DeadLetterFilter, reason: str, now: float) -> int:
        params: list[Any] = [reason, now]
        sql = (
            f"UPDATE {self._s}.deliveries d SET state = 'discarded', reason = $1,"
            f" updated_at = $2 WHERE d.state = 'dead' AND {_where(where, params)}"
        )
        return await self._execute("discarding dead letters", sql, *params)

    async def schedule_replay(
        self, subscription_id: str, routed: Sequence[Routed], now: float
    ) -> int:
        # Due now, in a fresh round that starts now, whatever the event's age.
        rows = _route_rows(
            [replace(r, recorded_at=now, subscription_ids=[subscription_id]) for r in routed]
        )
        sql = self._insert_deliveries(
            conflict=f"""DO UPDATE SET state = 'pending', due_at = excluded.due_at,
                round_start = t.attempts, round_started_at = excluded.round_started_at,
                updated_at = excluded.updated_at, reason = NULL
                WHERE t.state NOT IN {_OPEN}"""
        )

        async def write(conn: Any) -> int:
            async with conn.transaction():
                found = await conn.fetchval(
                    f"SELECT 1 FROM {self._s}.subscriptions WHERE id = $1 FOR SHARE",
                    subscription_id,
                )
                if found is None:
                    raise NotFound(f"no subscription {subscription_id!r}")
                if not rows:
                    return 0
                return _count(await conn.execute(sql, *_columns(rows), now))

        return await self._run("scheduling a replay", write)

    # -- housekeeping ----------------------------------------------------------------------

    async def backlog(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        rows = await self._fetch(
            "counting the backlog",
            f"SELECT sub_id, state, count(*) FROM {self._s}.deliveries"
            f" WHERE state IN {_OPEN_OR_DEAD} GROUP BY sub_id, state",
        )
        for sub_id, state, count in rows:
            counts.setdefault(sub_id, {})[state] = count
        return counts

    async def oldest_needed_position(self) -> int | None:
        value = await self._fetchval(
            "finding the oldest needed position",
            f"SELECT min(position) FROM {self._s}.deliveries WHERE state IN {_OPEN_OR_DEAD}",
        )
        return None if value is None else int(value)

    async def purge_finished(self, before: float) -> int:
        return await self._execute(
            "purging finished deliveries",
            f"DELETE FROM {self._s}.deliveries"
            " WHERE state IN ('delivered', 'discarded') AND updated_at < $1",
            before,
        )


def _route_rows(routed: Sequence[Routed]) -> list[tuple[Any, ...]]:
    """One row per delivery to create: each routed record times its subscriptions."""
    return [
        (
            sub_id,
            r.position,
            r.event_id,
            r.event_source,
            r.event_type,
            r.partitionkey,
            r.recorded_at,
        )
        for r in routed
        for sub_id in r.subscription_ids
    ]


def _name_taken(exc: BackendError, name: str) -> None:
    """A unique violation on a subscription write is the caller's conflict, not a failure."""
    if isinstance(exc.__cause__, asyncpg.UniqueViolationError):
        raise Conflict(f"a subscription named {name!r} exists") from exc.__cause__
