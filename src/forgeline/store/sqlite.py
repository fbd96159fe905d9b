"""The embedded default store: subscriptions and deliveries in one SQLite file (WAL, FULL).

Kept in its own file beside the log's, so the two have separate write locks and fsyncs. The
tables are defined in ``schema.py`` and migrated by ``migrations`` when the store opens; the
queries here are hand-written for sqlite3 on the writer thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

import orjson
from ulid import ULID

from .._sqlite import Database, sqlite_path
from ..exceptions import Conflict, NotFound
from ..route.subscription import SubscriptionSpec, compile_glob
from .base import (
    Attempt,
    Claim,
    ClaimRequest,
    DeadLetterFilter,
    Delivery,
    DeliveryState,
    Outcome,
    Routed,
    Store,
    Subscription,
)
from .migrations import HEAD, prepare_sqlite

__all__ = ["SqliteStore"]

_OPEN = "('pending', 'retrying', 'inflight')"
# Due work, or work whose lease ran out because its worker died.
_CLAIMABLE = (
    "((d.state IN ('pending', 'retrying') AND d.due_at <= :now)"
    " OR (d.state = 'inflight' AND d.lease_until < :now))"
)
# A key's delivery waits while an earlier one of the same key is unfinished (and, with
# on_dead=block, while an earlier one is dead). Keyless events are never ordered.
_KEY_FREE = """NOT EXISTS (
    SELECT 1 FROM deliveries p
    WHERE p.sub_id = d.sub_id AND p.pkey = d.pkey AND p.position < d.position
      AND p.state IN {states})"""

# The claim an outcome or a release speaks for still holds the delivery: the same owner AND
# the same attempt - after a lease ran out, the same owner may hold a newer claim of it, which
# an old attempt's outcome must not settle.
_STILL_LEASED = "id = ? AND lease_owner = ? AND state = 'inflight' AND attempts = ?"

_DELIVERY_COLUMNS = (
    "id, sub_id, position, event_id, event_source, event_type, pkey, state, attempts, due_at,"
    " created_at, updated_at, last_status, last_error, reason"
)


def _subscription(row: tuple[Any, ...]) -> Subscription:
    id_, spec, created_at, updated_at, start = row
    return Subscription(
        id_, SubscriptionSpec.model_validate_json(spec), created_at, updated_at, start
    )


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(*row)


class SqliteStore(Store):
    def __init__(self, url: str) -> None:
        self.url = url
        self._db = Database(sqlite_path(url), name="store")

    async def open(self) -> None:
        path = self._db.path
        if path == ":memory:":
            # A private in-memory database lives only on the writer's connection: create the
            # head schema there (nothing to migrate, nothing to keep).
            from .schema import sqlite_script

            await self._db.open(";\n".join(sqlite_script(HEAD)) + ";")
        else:
            # Created or migrated on a connection of its own, before the writer thread starts.
            await asyncio.to_thread(prepare_sqlite, path)
            await self._db.open("")

    async def aclose(self) -> None:
        await self._db.aclose()

    # -- subscriptions ---------------------------------------------------------------------

    async def create_subscription(
        self, spec: SubscriptionSpec, start_position: int
    ) -> Subscription:
        now = time.time()
        sub = Subscription(f"sub_{ULID()}", spec, now, now, start_position)

        def insert(conn: sqlite3.Connection) -> Subscription:
            try:
                conn.execute(
                    "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?)",
                    (sub.id, spec.name, spec.model_dump_json(), now, now, start_position),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"a subscription named {spec.name!r} exists") from exc
            return sub

        return await self._db.write(insert)

    async def update_subscription(self, id: str, spec: SubscriptionSpec) -> Subscription:
        def update(conn: sqlite3.Connection) -> Subscription:
            try:
                cursor = conn.execute(
                    "UPDATE subscriptions SET name = ?, spec = ?, updated_at = ? WHERE id = ?",
                    (spec.name, spec.model_dump_json(), time.time(), id),
                )
            except sqlite3.IntegrityError as exc:
                raise Conflict(f"a subscription named {spec.name!r} exists") from exc
            if cursor.rowcount == 0:
                raise NotFound(f"no subscription {id!r}")
            return _get_subscription(conn, id)

        return await self._db.write(update)

    async def delete_subscription(self, id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            if conn.execute("DELETE FROM subscriptions WHERE id = ?", (id,)).rowcount == 0:
                raise NotFound(f"no subscription {id!r}")

        await self._db.write(delete)

    async def get_subscription(self, id_or_name: str) -> Subscription:
        return await self._db.read(lambda conn: _get_subscription(conn, id_or_name))

    async def list_subscriptions(self) -> list[Subscription]:
        def query(conn: sqlite3.Connection) -> list[Subscription]:
            cursor = conn.execute(
                "SELECT id, spec, created_at, updated_at, start_position FROM subscriptions"
                " ORDER BY created_at, id"
            )
            return [_subscription(row) for row in cursor]

        return await self._db.read(query)

    # -- routing ---------------------------------------------------------------------------

    async def routed_up_to(self) -> int:
        def query(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT position FROM cursors WHERE name = 'router'").fetchone()
            return int(row[0]) if row else 0

        return await self._db.read(query)

    async def record_routes(self, routed: Sequence[Routed], up_to: int) -> int:
        def write(conn: sqlite3.Connection) -> int:
            created = _insert_deliveries(conn, routed, time.time())
            conn.execute(
                "INSERT INTO cursors VALUES ('router', ?)"
                " ON CONFLICT (name) DO UPDATE SET position = max(position, excluded.position)",
                (up_to,),
            )
            return created

        return await self._db.write(write)

    # -- delivery --------------------------------------------------------------------------

    async def claim(
        self, subscription: Subscription, owner: str, limit: int, lease: float, now: float
    ) -> list[Claim]:
        request = ClaimRequest(subscription, limit, lease)
        return await self._db.write(lambda conn: _claim(conn, request, owner, now))

    async def record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> None:
        await self._db.write(lambda conn: _record(conn, outcomes, now))

    async def release(self, claims: Sequence[Claim], owner: str, now: float) -> None:
        await self._db.write(lambda conn: _release(conn, claims, owner, now))

    async def settle(
        self,
        owner: str,
        now: float,
        *,
        outcomes: Sequence[Outcome] = (),
        released: Sequence[Claim] = (),
        claims: Sequence[ClaimRequest] = (),
    ) -> list[list[Claim]]:
        def write(conn: sqlite3.Connection) -> list[list[Claim]]:
            _record(conn, outcomes, now)
            _release(conn, released, owner, now)
            return [_claim(conn, request, owner, now) for request in claims]

        # One job: one transaction and one fsync for the whole round.
        return await self._db.write(write)

    async def expire_leases(self) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE deliveries SET lease_until = 0 WHERE state = 'inflight'"
            ).rowcount

        return await self._db.write(write)

    async def next_due(self) -> float | None:
        def query(conn: sqlite3.Connection) -> float | None:
            row = conn.execute(
                "SELECT min(CASE WHEN state = 'inflight' THEN lease_until ELSE due_at END)"
                f" FROM deliveries WHERE state IN {_OPEN}"
            ).fetchone()
            return None if row[0] is None else float(row[0])

        return await self._db.read(query)

    # -- dead letters and replay -----------------------------------------------------------

    async def list_deliveries(
        self, state: DeliveryState, where: DeadLetterFilter, limit: int, after_id: int = 0
    ) -> list[Delivery]:
        clause, params = _where(where)

        def query(conn: sqlite3.Connection) -> list[Delivery]:
            cursor = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries d WHERE d.state = ? AND d.id > ?"
                f" AND {clause} ORDER BY d.id LIMIT ?",
                [state, after_id, *params, limit],
            )
            return [_delivery(row) for row in cursor]

        return await self._db.read(query)

    async def get_delivery(self, id: int) -> Delivery:
        def query(conn: sqlite3.Connection) -> Delivery:
            row = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE id = ?", (id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no delivery {id}")
            delivery = _delivery(row)
            cursor = conn.execute(
                "SELECT attempt, started_at, duration_ms, outcome, status, error, response"
                " FROM attempts WHERE delivery_id = ? ORDER BY attempt",
                (id,),
            )
            delivery.history.extend(Attempt(*r) for r in cursor)
            return delivery

        return await self._db.read(query)

    async def deliveries_of_event(self, position: int) -> list[Delivery]:
        def query(conn: sqlite3.Connection) -> list[Delivery]:
            cursor = conn.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
                " WHERE sub_id IN (SELECT id FROM subscriptions) AND position = ? ORDER BY id",
                (position,),
            )
            return [_delivery(row) for row in cursor]

        return await self._db.read(query)

    async def replay_dead(self, where: DeadLetterFilter, now: float) -> int:
        clause, params = _where(where)

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE deliveries AS d SET state = 'pending', due_at = ?, round_start = attempts,"
                " round_started_at = ?, updated_at = ?, reason = NULL"
                f" WHERE d.state = 'dead' AND {clause}",
                [now, now, now, *params],
            ).rowcount

        return await self._db.write(write)

    async def discard_dead(self, where: DeadLetterFilter, reason: str, now: float) -> int:
        clause, params = _where(where)

        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE deliveries AS d SET state = 'discarded', reason = ?, updated_at = ?"
                f" WHERE d.state = 'dead' AND {clause}",
                [reason, now, *params],
            ).rowcount

        return await self._db.write(write)

    async def schedule_replay(
        self, subscription_id: str, routed: Sequence[Routed], now: float
    ) -> int:
        def write(conn: sqlite3.Connection) -> int:
            _get_subscription(conn, subscription_id)
            cursor = conn.executemany(
                f"""INSERT INTO deliveries (sub_id, position, event_id, event_source, event_type,
                        pkey, state, round_started_at, due_at, created_at, updated_at)
                    VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
                    ON CONFLICT (sub_id, position) DO UPDATE SET state = 'pending',
                        due_at = excluded.due_at, round_start = attempts,
                        round_started_at = excluded.round_started_at,
                        updated_at = excluded.updated_at, reason = NULL
                    WHERE state NOT IN {_OPEN}""",
                [
                    (
                        subscription_id,
                        r.position,
                        r.event_id,
                        r.event_source,
                        r.event_type,
                        r.partitionkey,
                        now,
                        now,
                        now,
                        now,
                    )
                    for r in routed
                ],
            )
            return cursor.rowcount

        return await self._db.write(write)

    # -- housekeeping ----------------------------------------------------------------------

    async def backlog(self) -> dict[str, dict[str, int]]:
        def query(conn: sqlite3.Connection) -> dict[str, dict[str, int]]:
            counts: dict[str, dict[str, int]] = {}
            cursor = conn.execute(
                "SELECT sub_id, state, count(*) FROM deliveries"
                " WHERE state IN ('pending', 'retrying', 'inflight', 'dead') GROUP BY sub_id, state"
            )
            for sub_id, state, count in cursor:
                counts.setdefault(sub_id, {})[state] = count
            return counts

        return await self._db.read(query)

    async def oldest_needed_position(self) -> int | None:
        def query(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT min(position) FROM deliveries"
                " WHERE state IN ('pending', 'retrying', 'inflight', 'dead')"
            ).fetchone()
            return None if row[0] is None else int(row[0])

        return await self._db.read(query)

    async def purge_finished(self, before: float) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM deliveries WHERE state IN ('delivered', 'discarded')"
                " AND updated_at < ?",
                (before,),
            ).rowcount

        return await self._db.write(write)


def _get_subscription(conn: sqlite3.Connection, id_or_name: str) -> Subscription:
    row = conn.execute(
        "SELECT id, spec, created_at, updated_at, start_position FROM subscriptions"
        " WHERE id = ? OR name = ?",
        (id_or_name, id_or_name),
    ).fetchone()
    if row is None:
        raise NotFound(f"no subscription {id_or_name!r}")
    return _subscription(row)


def _insert_deliveries(conn: sqlite3.Connection, routed: Sequence[Routed], now: float) -> int:
    rows = [
        (sub_id, r.position, r.event_id, r.event_source, r.event_type, r.partitionkey,
         r.recorded_at)
        for r in routed
        for sub_id in r.subscription_ids
    ]  # fmt: skip
    if not rows:
        return 0
    # The rows as one JSON array: one statement step for all of them. (Each step hands the
    # GIL back and must win it again from the busy event loop: per row, that wait was most
    # of a round's time.)
    cursor = conn.execute(
        "INSERT OR IGNORE INTO deliveries (sub_id, position, event_id, event_source, event_type,"
        " pkey, state, round_started_at, due_at, created_at, updated_at)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),"
        " json_extract(value, '$[2]'), json_extract(value, '$[3]'),"
        " json_extract(value, '$[4]'), json_extract(value, '$[5]'), 'pending',"
        " json_extract(value, '$[6]'), :now, json_extract(value, '$[6]'), :now"
        " FROM json_each(:rows)",
        {"rows": orjson.dumps(rows).decode(), "now": now},
    )
    return cursor.rowcount


def _claim(conn: sqlite3.Connection, request: ClaimRequest, owner: str, now: float) -> list[Claim]:
    subscription = request.subscription
    policy = subscription.spec.policy
    where = f"d.sub_id = :sub AND d.state IN {_OPEN} AND {_CLAIMABLE}"
    if policy.ordering == "key":
        blocking = (
            "('pending', 'retrying', 'inflight', 'dead')" if policy.on_dead == "block" else _OPEN
        )
        where += " AND (d.pkey IS NULL OR " + _KEY_FREE.format(states=blocking) + ")"
    # Chosen, then leased, each in one statement step (see _insert_deliveries): the write
    # lock held since BEGIN IMMEDIATE keeps the two together.
    (chosen,) = conn.execute(
        "SELECT json_group_array(json_array(id, position, attempts + 1,"
        # As text: JSON keeps 15 digits of a REAL, and the claim must carry it exactly.
        " attempts + 1 - round_start, printf('%!.17g', round_started_at))) FROM ("
        " SELECT d.id, d.position, d.attempts, d.round_start, d.round_started_at"
        f" FROM deliveries d WHERE {where} ORDER BY d.position LIMIT :limit)",
        {"sub": subscription.id, "now": now, "limit": request.limit},
    ).fetchone()
    rows = sorted(orjson.loads(chosen), key=lambda row: row[1])  # an aggregate keeps no order
    if not rows:
        return []
    conn.execute(
        "UPDATE deliveries SET state = 'inflight', lease_owner = :owner,"
        " lease_until = :lease_until, attempts = attempts + 1, updated_at = :now"
        " WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:rows))",
        {"owner": owner, "lease_until": now + request.lease, "now": now, "rows": chosen},
    )
    return [Claim(row[0], subscription.id, row[1], row[2], row[3], float(row[4])) for row in rows]


_STATE = {"delivered": "delivered", "retry": "retrying", "dead": "dead"}


def _record(conn: sqlite3.Connection, outcomes: Sequence[Outcome], now: float) -> None:
    # A first-try success is the common case: one statement for all of them, no history row.
    plain = [
        (o.claim.delivery_id, o.owner, o.claim.attempt, o.attempt.status)
        for o in outcomes
        if o.attempt.outcome == "delivered" and o.attempt.attempt == 1
    ]
    if plain:
        # One statement step for them all (see _insert_deliveries).
        conn.execute(
            "UPDATE deliveries AS d SET state = 'delivered', lease_owner = NULL,"
            " lease_until = NULL, updated_at = :now,"
            " last_status = json_extract(j.value, '$[3]'), last_error = NULL"
            " FROM json_each(:rows) AS j WHERE d.id = json_extract(j.value, '$[0]')"
            " AND d.lease_owner = json_extract(j.value, '$[1]') AND d.state = 'inflight'"
            " AND d.attempts = json_extract(j.value, '$[2]')",
            {"now": now, "rows": orjson.dumps(plain).decode()},
        )
    for outcome in outcomes:
        attempt = outcome.attempt
        if attempt.outcome == "delivered" and attempt.attempt == 1:
            continue
        state = _STATE[attempt.outcome]
        cursor = conn.execute(
            "UPDATE deliveries SET state = ?, due_at = coalesce(?, due_at),"
            " lease_owner = NULL, lease_until = NULL, updated_at = ?,"
            " last_status = ?, last_error = ?,"
            " reason = CASE WHEN ? = 'dead' THEN ? ELSE reason END"
            f" WHERE {_STILL_LEASED}",
            (
                state,
                outcome.next_due,
                now,
                attempt.status,
                attempt.error,
                state,
                attempt.error,
                outcome.claim.delivery_id,
                outcome.owner,
                outcome.claim.attempt,
            ),
        )
        if cursor.rowcount == 0:
            continue  # our lease expired and another worker owns the delivery now
        conn.execute(
            "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                outcome.claim.delivery_id,
                attempt.attempt,
                attempt.started_at,
                attempt.duration_ms,
                attempt.outcome,
                attempt.status,
                attempt.error,
                attempt.response,
            ),
        )


def _release(conn: sqlite3.Connection, claims: Sequence[Claim], owner: str, now: float) -> None:
    if not claims:
        return
    # The claim counted an attempt that never happened: take it back. "retrying" when the
    # round had tries before this claim, "pending" when it had none.
    conn.executemany(
        "UPDATE deliveries SET attempts = attempts - 1,"
        " state = CASE WHEN attempts - 1 > round_start THEN 'retrying' ELSE 'pending' END,"
        " lease_owner = NULL, lease_until = NULL, updated_at = ?"
        f" WHERE {_STILL_LEASED}",
        [(now, claim.delivery_id, owner, claim.attempt) for claim in claims],
    )


def _where(where: DeadLetterFilter) -> tuple[str, list[Any]]:
    clauses = ["1 = 1"]
    params: list[Any] = []
    if where.subscription_id is not None:
        clauses.append("d.sub_id = ?")
        params.append(where.subscription_id)
    if where.since is not None:
        clauses.append("d.updated_at >= ?")
        params.append(where.since)
    if where.until is not None:
        clauses.append("d.updated_at < ?")
        params.append(where.until)
    if where.ids is not None:
        clauses.append(f"d.id IN ({','.join('?' * len(where.ids))})")
        params.extend(where.ids)
    if where.subscription_ids is not None:
        clauses.append(f"d.sub_id IN ({','.join('?' * len(where.subscription_ids))})")
        params.extend(where.subscription_ids)
    if where.type_pattern is not None:
        # Globs become a regex check in Python; SQLite's GLOB would treat [ ] specially.
        clauses.append("forgeline_match(?, d.event_type)")
        params.append(compile_glob([where.type_pattern]).pattern)
    return " AND ".join(clauses), params
