"""The event log contract: every backend runs this suite unchanged.

A backend's test module subclasses ``LogContract`` and supplies a ``log_url`` fixture; the
tests here only use the ``EventLog`` protocol.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from forgeline import Event, EventLog, open_log
from forgeline.log import Record


async def wake_latency(writer: EventLog, reader: EventLog, settle: float = 0.1) -> float:
    """Seconds from an append through ``writer`` to a stream of ``reader`` seeing it."""
    got: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def consume() -> None:
        async for _ in reader.stream(await reader.head()):
            got.set_result(time.perf_counter())
            return

    task = asyncio.create_task(consume())
    await asyncio.sleep(settle)  # the stream is waiting before the append
    sent = time.perf_counter()
    await writer.append(make(1))
    arrived = await asyncio.wait_for(got, 5)
    await task
    return arrived - sent


def make(n: int, *, source: str = "mes/line-1", subject: str | None = None) -> list[Event]:
    return [
        Event.new(
            "production.completed.v1",
            source,
            {"sku": "FG-100", "qty": i},
            subject=subject or f"MO/{i % 7:05d}",
        )
        for i in range(n)
    ]


class LogContract:
    @pytest.fixture
    async def log(self, log_url: str) -> AsyncIterator[EventLog]:
        async with open_log(log_url) as log:
            yield log

    async def test_empty_log_has_head_zero_and_reads_nothing(self, log: EventLog) -> None:
        assert await log.head() == 0
        assert await log.read(0) == []

    async def test_append_assigns_increasing_positions_in_input_order(self, log: EventLog) -> None:
        events = make(5)
        answers = await log.append(events)
        positions = [a.position for a in answers]
        assert positions == sorted(positions)
        assert len(set(positions)) == 5
        assert not any(a.duplicate for a in answers)
        records = await log.read(0)
        assert [r.event for r in records] == events
        assert [r.position for r in records] == positions
        assert await log.head() == positions[-1]

    async def test_event_round_trips_unchanged(self, log: EventLog) -> None:
        event = Event.from_dict(
            {
                "specversion": "1.0",
                "id": "ev-1",
                "source": "odoo://demo",
                "type": "sales.order.confirmed.v1",
                "subject": "SO/0042",
                "time": "2026-11-27T08:00:00.123456Z",
                "datacontenttype": "application/json",
                "data": {"lines": [{"sku": "A", "qty": 2.5}], "note": "überweisung ✓"},
                "partitionkey": "customer-7",
                "correlationid": "c-1",
                "tenant": "acme",
                "priority": 3,
                "urgent": True,
            }
        )
        await log.append([event])
        record = await log.get("odoo://demo", "ev-1")
        assert record is not None
        assert record.event == event
        assert record.event.partitionkey == "customer-7"

    async def test_same_source_and_id_is_stored_once(self, log: EventLog) -> None:
        first = make(3)
        before = await log.append(first)
        again = await log.append([first[1], *make(1)])
        assert again[0].duplicate
        assert again[0].position == before[1].position
        assert not again[1].duplicate
        assert len(await log.read(0)) == 4

    async def test_duplicates_within_one_batch_are_stored_once(self, log: EventLog) -> None:
        event = make(1)[0]
        answers = await log.append([event, event])
        assert [a.duplicate for a in answers] == [False, True]
        assert answers[0].position == answers[1].position
        assert len(await log.read(0)) == 1

    async def test_same_id_from_another_source_is_a_different_event(self, log: EventLog) -> None:
        a = Event.from_dict({"specversion": "1.0", "id": "x", "source": "a", "type": "t.v1"})
        b = Event.from_dict({"specversion": "1.0", "id": "x", "source": "b", "type": "t.v1"})
        answers = await log.append([a, b])
        assert not any(x.duplicate for x in answers)
        assert [r.event.source for r in await log.find("x")] == ["a", "b"]

    async def test_concurrent_publishes_of_the_same_event_store_one(self, log: EventLog) -> None:
        event = make(1)[0]
        answers = await asyncio.gather(*(log.append([event]) for _ in range(20)))
        positions = {batch[0].position for batch in answers}
        assert len(positions) == 1
        assert sum(not batch[0].duplicate for batch in answers) == 1
        assert len(await log.read(0)) == 1

    async def test_concurrent_batches_get_distinct_gapless_positions(self, log: EventLog) -> None:
        batches = [make(50, source=f"s{i}") for i in range(8)]
        answers = await asyncio.gather(*(log.append(b) for b in batches))
        positions = sorted(a.position for batch in answers for a in batch)
        assert positions == list(range(1, 401))

    async def test_read_pages_from_a_position(self, log: EventLog) -> None:
        await log.append(make(25))
        page = await log.read(10, limit=5)
        assert [r.position for r in page] == [11, 12, 13, 14, 15]
        assert await log.read(25) == []

    async def test_get_many_returns_existing_positions_in_order(self, log: EventLog) -> None:
        await log.append(make(10))
        records = await log.get_many([7, 3, 3, 99])
        assert [r.position for r in records] == [3, 7]

    async def test_position_at_locates_a_time(self, log: EventLog) -> None:
        await log.append(make(3))
        await asyncio.sleep(0.02)
        middle = time.time()
        await asyncio.sleep(0.02)
        await log.append(make(2))
        after = await log.position_at(middle)
        assert after == 3
        assert [r.position for r in await log.read(after)] == [4, 5]
        assert await log.position_at(0) == 0

    async def test_stream_yields_backlog_then_new_events(self, log: EventLog) -> None:
        await log.append(make(3))
        seen: list[Record] = []

        async def consume() -> None:
            async for record in log.stream(0):
                seen.append(record)
                if len(seen) == 6:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await log.append(make(3))
        await asyncio.wait_for(task, 5)
        assert [r.position for r in seen] == [1, 2, 3, 4, 5, 6]

    async def test_stream_wakes_promptly_on_append(self, log: EventLog) -> None:
        assert await wake_latency(log, log) < 0.2  # woken by the append, not by the poll

    async def test_trim_removes_old_events_but_never_reuses_positions(self, log: EventLog) -> None:
        await log.append(make(5))
        removed = await log.trim(time.time() + 1, keep_from=4)
        assert removed == 3
        assert [r.position for r in await log.read(0)] == [4, 5]
        assert await log.trim(time.time() + 1) == 2
        assert await log.head() == 5
        answers = await log.append(make(1))
        assert answers[0].position == 6

    async def test_trim_keeps_recent_events(self, log: EventLog) -> None:
        await log.append(make(4))
        assert await log.trim(time.time() - 60) == 0
        assert len(await log.read(0)) == 4

    async def test_query_filters_and_continues(self, log: EventLog) -> None:
        events = make(30)
        await log.append(events)
        wanted = {e.id for e in events if e.subject == "MO/00003"}
        page, cursor = await log.query(0, 2, match=lambda e: e.subject == "MO/00003")
        rest, _ = await log.query(cursor, 100, match=lambda e: e.subject == "MO/00003")
        assert len(page) == 2
        assert {r.event.id for r in page + rest} == wanted
