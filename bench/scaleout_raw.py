"""The raw floors of ``bench.scaleout``: the same relay work done with the bare drivers.

Each floor takes the bench's events, stores them durably, claims them and POSTs each to the
same receiver (``bench.receiver``) as Forgeline does, with at most as many POSTs in flight as
the subscription's concurrency (``Target.slots``, 32 by default), then marks it done. No
HTTP ingest in front, no routing, no retry bookkeeping: what is left is the floor that the
engine and the client libraries set.

- PostgreSQL (asyncpg): batches inserted with ``unnest`` into one table with a unique event
  id (the dedup key), in the statement that also ``NOTIFY``s; one claimer takes
  ``FOR UPDATE SKIP LOCKED`` batches up to the free slots and marks them ``inflight`` with a
  lease in the same statement; finished ones are marked ``delivered`` in batches. Run with
  the POST and without it (``post=False``: claim, then mark, nothing between; the database's
  own ceiling for this work).
- NATS JetStream (nats-py): ``publish_async`` with ``Nats-Msg-Id`` on a file-storage stream
  over 8 partition subjects, PubAcks awaited per batch; one durable pull consumer with
  explicit ack, fetched up to the free slots, each message acked after its POST.

Each runs in this (the load generator's) process, while no Forgeline process runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import nats
import orjson
from nats.js import api

from .events import make_event
from .relay import STRUCTURED_TYPE, Client, percentile, receiver_latencies, wait_delivered

SLOTS = 32  # POSTs in flight: the subscription's delivery concurrency
DB_ONLY_CLAIM = 256  # claim size without POSTs (Forgeline's own claim cap)
PARTITIONS = 8


@dataclass
class Target:
    """Where the floors send: the receiver, and the session to use."""

    session: aiohttp.ClientSession
    sink: str  # the receiver's base URL
    slots: int = SLOTS  # POSTs in flight, as the subscription's concurrency

    async def post(self, body: bytes, event_id: str) -> None:
        headers = {"Content-Type": STRUCTURED_TYPE, "Idempotency-Key": event_id}
        async with self.session.post(f"{self.sink}/sink", data=body, headers=headers) as resp:
            await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"receiver answered {resp.status}")


class Slots:
    """At most ``SLOTS`` deliveries in flight, and who is waiting for one to finish."""

    def __init__(self, size: int = SLOTS) -> None:
        self.size = size
        self.busy = 0
        self.freed = asyncio.Event()

    @property
    def room(self) -> int:
        return self.size - self.busy

    def release(self) -> None:
        self.busy -= 1
        self.freed.set()

    async def wait(self) -> None:
        self.freed.clear()
        await self.freed.wait()


# -- PostgreSQL ----------------------------------------------------------------------------


class PgFloor:
    def __init__(self, dsn: str, schema: str, target: Target) -> None:
        self.dsn = dsn
        self.s = f'"{schema}"'
        self.channel = f"{schema}_raw"
        self.target = target
        self.pool: Any = None
        self.listener: Any = None
        self.arrived = asyncio.Event()

    async def open(self) -> None:
        self.pool = await asyncpg.create_pool(self.dsn, min_size=10, max_size=10)
        await self.pool.execute(
            f"CREATE SCHEMA {self.s};"
            f" CREATE TABLE {self.s}.events (id bigserial PRIMARY KEY, event_id text NOT NULL"
            "  UNIQUE, body bytea NOT NULL, state text NOT NULL DEFAULT 'pending',"
            "  lease_until float8, updated_at float8);"
            f" CREATE INDEX ON {self.s}.events (id) WHERE state IN ('pending', 'inflight')"
        )
        self.listener = await asyncpg.connect(self.dsn)
        await self.listener.add_listener(self.channel, lambda *_: self.arrived.set())

    async def aclose(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.pool is not None:
            await self.pool.execute(f"DROP SCHEMA IF EXISTS {self.s} CASCADE")
            await self.pool.close()

    async def insert(self, events: list[dict[str, Any]]) -> None:
        await self.pool.execute(
            f"WITH added AS (INSERT INTO {self.s}.events (event_id, body)"
            " SELECT * FROM unnest($1::text[], $2::bytea[]) ON CONFLICT DO NOTHING)"
            " SELECT pg_notify($3, '')",
            [e["id"] for e in events],
            [orjson.dumps(e) for e in events],
            self.channel,
        )

    async def consume(self, total: int, *, post: bool = True) -> float:
        """Claim, POST (or not) and mark ``total`` events; answer when the last was marked."""
        slots = Slots(self.target.slots if post else DB_ONLY_CLAIM)
        done: list[int] = []
        marked = 0
        flush = asyncio.Event()
        claim_sql = (
            f"WITH picked AS (SELECT id FROM {self.s}.events WHERE state = 'pending'"
            "  ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)"
            f" UPDATE {self.s}.events t SET state = 'inflight', lease_until = $2"
            " FROM picked WHERE t.id = picked.id RETURNING t.id, t.event_id, t.body"
        )
        mark_sql = (
            f"UPDATE {self.s}.events SET state = 'delivered', lease_until = NULL,"
            " updated_at = $2 WHERE id = ANY($1::bigint[]) AND state = 'inflight'"
        )

        async def deliver(row: Any) -> None:
            try:
                if post:
                    await self.target.post(row[2], row[1])
            finally:
                done.append(row[0])
                slots.release()
                flush.set()

        async def marker() -> None:
            nonlocal marked
            while marked < total:
                await flush.wait()
                flush.clear()
                batch, done[:] = list(done), []
                if batch:
                    await self.pool.execute(mark_sql, batch, time.time())
                    marked += len(batch)

        tasks: set[asyncio.Task[None]] = set()
        marking = asyncio.create_task(marker())
        claimed = 0
        while claimed < total:
            if slots.room <= 0:
                await slots.wait()
                continue
            self.arrived.clear()
            rows = await self.pool.fetch(claim_sql, slots.room, time.time() + 30)
            if not rows:
                # Woken by the inserts' NOTIFY; the timeout only guards a lost one.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.arrived.wait(), 0.05)
                continue
            claimed += len(rows)
            slots.busy += len(rows)
            for row in rows:
                task = asyncio.create_task(deliver(row))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await marking
        return time.time()


# -- NATS JetStream ------------------------------------------------------------------------


class NatsFloor:
    def __init__(self, server: str, stream: str, target: Target) -> None:
        self.server = server
        self.stream = stream
        self.target = target
        self.nc: Any = None
        self.js: Any = None
        self.sub: Any = None

    async def open(self) -> None:
        self.nc = await nats.connect(self.server, name="forgeline-bench-raw")
        self.js = self.nc.jetstream(timeout=10)
        await self.js.add_stream(
            api.StreamConfig(
                name=self.stream,
                subjects=[f"{self.stream}.*"],
                storage=api.StorageType.FILE,
                duplicate_window=120,
            )
        )
        self.sub = await self.js.pull_subscribe(
            f"{self.stream}.*",
            durable="raw",
            stream=self.stream,
            config=api.ConsumerConfig(
                ack_policy=api.AckPolicy.EXPLICIT, ack_wait=30, max_ack_pending=10_000
            ),
        )

    async def aclose(self) -> None:
        if self.js is not None:
            try:
                await self.js.delete_stream(self.stream)
            finally:
                await self.nc.close()

    async def insert(self, events: list[dict[str, Any]]) -> None:
        futures = []
        for event in events:
            partition = zlib.crc32(event["subject"].encode()) % PARTITIONS
            futures.append(
                await self.js.publish_async(
                    f"{self.stream}.{partition}",
                    orjson.dumps(event),
                    headers={"Nats-Msg-Id": f"{event['source']} {event['id']}"},
                )
            )
        await asyncio.gather(*futures)

    async def consume(self, total: int, *, post: bool = True) -> float:
        slots = Slots(self.target.slots)
        acked = 0
        finished = asyncio.Event()

        async def deliver(msg: Any) -> None:
            nonlocal acked
            try:
                event_id = orjson.loads(msg.data)["id"]
                await self.target.post(msg.data, event_id)
                await msg.ack()
            finally:
                acked += 1
                slots.release()
                if acked >= total:
                    finished.set()

        tasks: set[asyncio.Task[None]] = set()
        fetched = 0
        while fetched < total:
            if slots.room <= 0:
                await slots.wait()
                continue
            try:
                msgs = await self.sub.fetch(slots.room, timeout=1.0)
            except TimeoutError:
                continue
            fetched += len(msgs)
            slots.busy += len(msgs)
            for msg in msgs:
                task = asyncio.create_task(deliver(msg))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        await finished.wait()
        return time.time()


# -- the measurements ----------------------------------------------------------------------

Floor = PgFloor | NatsFloor


async def throughput(
    floor: Floor,
    phase: str,
    events: int,
    batch: int,
    producers: int,
    client: Client,
    *,
    post: bool = True,
) -> dict[str, Any]:
    """Insert ``events`` in batches (``producers`` at once) while consuming them; events/s
    from the first insert to the last delivery (the receiver's last arrival with POSTs)."""
    batches = -(-events // batch)
    sent = time.time()

    async def produce(index: int) -> None:
        first = index * batch
        items = [make_event(i, phase, sent) for i in range(first, min(events, first + batch))]
        await floor.insert(items)

    start = time.time()
    consumer = asyncio.create_task(floor.consume(events, post=post))
    insert_seconds = await client.closed_loop(batches, producers, produce)
    marked_at = await consumer
    target = floor.target
    last = marked_at
    if post:
        stats = await wait_delivered(target.session, target.sink, phase, events, 60)
        if stats["unique"] < events:
            raise RuntimeError(f"raw {phase}: {stats['unique']} of {events} arrived")
        last = stats["last"]
    return {
        "events": events,
        "post": post,
        "insert_events_per_s": events / insert_seconds,
        "events_per_s": events / (last - start),
    }


async def latency(
    floor: Floor, phase: str, rate: float, duration: float, client: Client
) -> dict[str, Any]:
    """One event per insert at ``rate``/s, open loop; p50/p99 of arrival minus send time."""
    total = int(rate * duration)
    consumer = asyncio.create_task(floor.consume(total))

    async def send(index: int) -> None:
        await floor.insert([make_event(index, phase)])

    sent, _ = await client.paced(rate, duration, send)
    await asyncio.wait_for(consumer, 60)
    target = floor.target
    await wait_delivered(target.session, target.sink, phase, sent, 30)
    values = await receiver_latencies(target.session, target.sink, phase)
    return {
        "rate": rate,
        "sent": sent,
        "delivered": len(values),
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
    }


async def measure(
    make: Callable[[], Floor],
    name: str,
    *,
    events: int,
    batch: int,
    producers: int,
    rate: float,
    duration: float,
    client: Client,
    db_only: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Throughput (with POST, and without when ``db_only``) and latency, each on a fresh
    table or stream so that no run reads what another left."""

    async def fresh(run: Callable[[Floor], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        floor = make()
        await floor.open()
        try:
            return await run(floor)
        finally:
            await floor.aclose()

    out: dict[str, Any] = {}
    out["throughput"] = await fresh(
        lambda f: throughput(f, f"raw-{name}-tput", events, batch, producers, client)
    )
    log(f"raw {name}: {out['throughput']['events_per_s']:,.0f} events/s delivered")
    if db_only:
        out["db_only"] = await fresh(
            lambda f: throughput(f, f"raw-{name}-db", events, batch, producers, client, post=False)
        )
        log(f"raw {name} without POST: {out['db_only']['events_per_s']:,.0f} events/s")
    out["latency"] = await fresh(lambda f: latency(f, f"raw-{name}-lat", rate, duration, client))
    log(f"raw {name}: p99 {out['latency']['p99_ms']:.1f} ms at {rate:g}/s")
    return out
