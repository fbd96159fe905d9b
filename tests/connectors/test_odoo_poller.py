"""The write-date poller against the simulated Odoo with a clock the test moves: records that
share a second, records committed late (stamped before the watermark, inside the overlap),
and a crash between poll and commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forgeline.connectors.odoo import (
    JsonFileState,
    MemoryState,
    OdooClient,
    OdooProtocolError,
    WriteDatePoller,
    odoo_source,
    record_to_event,
    values_digest,
)

from .conftest import Recorder

Connect = Callable[..., Any]
T0 = datetime(2026, 11, 27, 8, 0, 0)
STAMP = "%Y-%m-%d %H:%M:%S"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = T0 + timedelta(seconds=seconds)


def _stamp(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime(STAMP)


@pytest.fixture
async def timed() -> AsyncIterator[tuple[Any, Clock]]:
    from forgeline.sim.odoo import OdooSimulator
    from forgeline.sim.odoo.server import OdooServer

    clock = Clock()
    simulator = OdooSimulator(17, clock=clock)
    server = OdooServer(simulator, faults=Recorder())
    async with server:
        yield server, clock
    simulator.close()


async def _tag(client: OdooClient, clock: Clock, at: float, names: list[str]) -> list[int]:
    clock.at(at)
    return await client.create("res.partner", [{"name": n, "ref": "poll"} for n in names])


DOMAIN = [("ref", "=", "poll")]


async def test_same_second_records_are_paged_without_loss_or_repeat(
    timed: tuple[Any, Clock], connect: Connect
) -> None:
    server, clock = timed
    client = await connect(server)
    created = await _tag(client, clock, 10, [f"S{i}" for i in range(7)])
    poller = WriteDatePoller(client, "res.partner", ["name"], domain=DOMAIN, page_size=3)
    batches = []
    while batch := await poller.poll():
        batches.append([r["id"] for r in batch])
        await poller.commit()
    assert [len(b) for b in batches] == [3, 3, 1]
    assert sorted(i for b in batches for i in b) == sorted(created)
    assert poller.watermark == _stamp(10)
    more = await _tag(client, clock, 10, ["S7"])  # same second, after the watermark was saved
    assert [r["id"] for r in await poller.poll()] == more
    await poller.commit()
    assert await poller.poll() == []
    # A change to a record already seen is a new change (new write_date): yielded again.
    clock.at(11)
    await client.write("res.partner", [created[0]], {"name": "S0 renamed"})
    assert [(r["id"], r["name"]) for r in await poller.poll()] == [(created[0], "S0 renamed")]


async def test_two_changes_in_the_same_second_are_two_changes(
    timed: tuple[Any, Clock], connect: Connect
) -> None:
    # write_date has one-second resolution: an MO confirmed and done within one second keeps
    # the same stamp, and both states must still come out (the values tell them apart).
    server, clock = timed
    client = await connect(server)
    [partner] = await _tag(client, clock, 20, ["first"])
    poller = WriteDatePoller(client, "res.partner", ["name"], domain=DOMAIN)
    assert [r["name"] for r in await poller.poll()] == ["first"]
    await poller.commit()
    await client.write("res.partner", [partner], {"name": "second"})  # still second 20
    [again] = await poller.poll()
    assert again["name"] == "second" and again["write_date"] == _stamp(20)
    await poller.commit()
    assert await poller.poll() == []
    source = odoo_source(server.url, "demo")
    first = record_to_event("res.partner", {**again, "name": "first"}, source=source)
    assert record_to_event("res.partner", again, source=source).id != first.id


async def test_late_commit_inside_the_overlap_is_found(
    timed: tuple[Any, Clock], connect: Connect
) -> None:
    server, clock = timed
    client = await connect(server)
    [too_old] = await _tag(client, clock, 0, ["older than the overlap"])
    [late] = await _tag(client, clock, 7, ["committed late"])
    [seen] = await _tag(client, clock, 10, ["seen before"])
    # The state a poller saves when it polled at 10 s, before the transaction that wrote
    # "committed late" (stamped 7 s: its start time) had committed.
    [row] = await client.search_read("res.partner", [("id", "=", seen)], ["name", "write_date"])
    state = MemoryState({"watermark": _stamp(10), "seen": [[seen, _stamp(10), values_digest(row)]]})
    poller = WriteDatePoller(
        client, "res.partner", ["name"], domain=DOMAIN, overlap=timedelta(seconds=5), state=state
    )
    assert [r["id"] for r in await poller.poll()] == [late]
    await poller.commit()
    assert poller.watermark == _stamp(10)  # an older stamp never moves the watermark back
    assert await poller.poll() == []
    assert state.state is not None
    assert too_old not in {i for i, *_ in state.state["seen"]}  # outside the overlap: the limit


async def test_crash_before_commit_yields_again(
    timed: tuple[Any, Clock], connect: Connect, tmp_path: Path
) -> None:
    server, clock = timed
    client = await connect(server)
    ids = await _tag(client, clock, 5, ["C1", "C2", "C3"])
    path = tmp_path / "watermarks" / "res.partner.json"
    first = WriteDatePoller(
        client, "res.partner", ["name"], domain=DOMAIN, state=JsonFileState(path)
    )
    assert [r["id"] for r in await first.poll()] == ids
    # ... the process dies before it stored them: no commit.
    second = WriteDatePoller(
        client, "res.partner", ["name"], domain=DOMAIN, state=JsonFileState(path)
    )
    again = await second.poll()
    assert [r["id"] for r in again] == ids
    source = odoo_source(client.url, client.db)
    events = [record_to_event("res.partner", r, source=source) for r in again]
    await second.commit()
    third = WriteDatePoller(
        client, "res.partner", ["name"], domain=DOMAIN, state=JsonFileState(path)
    )
    assert await third.poll() == []
    more = await _tag(client, clock, 6, ["C4"])
    assert [r["id"] for r in await third.poll()] == more
    # What both processes yielded maps to the same event ids: the hub keeps one of each.
    replay = [record_to_event("res.partner", r, source=source) for r in again]
    assert [e.id for e in replay] == [e.id for e in events]


async def test_rewind_forgets_uncommitted(timed: tuple[Any, Clock], connect: Connect) -> None:
    server, clock = timed
    client = await connect(server)
    ids = await _tag(client, clock, 1, ["R1", "R2"])
    poller = WriteDatePoller(client, "res.partner", ["name"], domain=DOMAIN)
    assert [r["id"] for r in await poller.poll()] == ids
    poller.rewind()
    assert [r["id"] for r in await poller.poll()] == ids


class MicrosecondOdoo:
    """What the simulator does not model: Odoo 16-18 store ``write_date`` with microseconds
    (PostgreSQL compares those) but send it truncated to the second. Only ``search_read``,
    with the prefix domains the poller sends."""

    def __init__(self, stored: list[tuple[int, str]]) -> None:
        self.rows = stored
        self.calls = 0

    def _term(self, row: tuple[int, str], term: tuple[str, str, Any]) -> bool:
        field, operator, value = term
        if field == "write_date" and value is False:
            return operator == "!=" and bool(row[1])
        mine: Any = row[1] if field == "write_date" else row[0]
        return {">": mine > value, ">=": mine >= value, "<": mine < value, "=": mine == value}[
            operator
        ]

    def _match(self, row: tuple[int, str], domain: list[Any]) -> bool:
        def step(i: int) -> tuple[bool, int]:
            if domain[i] in ("|", "&"):
                left, j = step(i + 1)
                right, k = step(j)
                return (left or right) if domain[i] == "|" else (left and right), k
            return self._term(row, domain[i]), i + 1

        i, ok = 0, True
        while i < len(domain):
            value, i = step(i)
            ok = ok and value
        return ok

    async def search_read(self, model: str, domain: list[Any], fields: Any, **kw: Any) -> Any:
        self.calls += 1
        rows = sorted((r for r in self.rows if self._match(r, domain)), key=lambda r: (r[1], r[0]))
        return [{"id": i, "write_date": w[:19]} for i, w in rows[: kw["limit"]]]


async def test_a_second_with_more_records_than_a_page_is_paged_through() -> None:
    # One transaction stamped 600 records with the same microsecond time.
    odoo = MicrosecondOdoo([(i, "2026-01-01 10:00:00.482113") for i in range(1, 601)])
    poller = WriteDatePoller(odoo, "stock.move", ["id"], page_size=250)  # type: ignore[arg-type]
    seen: list[int] = []
    async with asyncio.timeout(5):
        while batch := await poller.poll():
            seen += [r["id"] for r in batch]
            await poller.commit()
    assert seen == list(range(1, 601))
    assert odoo.calls < 10  # pages, not a spin


async def test_records_never_written_are_left_out_not_fatal() -> None:
    odoo = MicrosecondOdoo([(1, ""), (2, "2026-01-01 10:00:01.1")])
    poller = WriteDatePoller(odoo, "res.partner", ["id"])  # type: ignore[arg-type]
    assert [r["id"] for r in await poller.poll()] == [2]
    await poller.commit()
    assert poller.watermark == "2026-01-01 10:00:01"


async def test_a_server_that_ignores_the_keyset_is_an_error_not_a_spin() -> None:
    # A full page that does not move the (write_date, id) cursor would be asked for again
    # and again: the poller says so instead of hammering Odoo for ever.
    class SamePage:
        calls = 0

        async def search_read(self, model: str, domain: Any, fields: Any, **kw: Any) -> Any:
            self.calls += 1
            return [{"id": 1, "write_date": "2026-01-01 10:00:00"}] * kw["limit"]

    odoo = SamePage()
    poller = WriteDatePoller(odoo, "stock.move", ["id"], page_size=2)  # type: ignore[arg-type]
    assert [r["id"] for r in await poller.poll()] == [1]  # a full page: more may follow
    with pytest.raises(OdooProtocolError, match="did not advance"):
        await poller.poll()  # ...but the next page is the same one
    assert odoo.calls == 2
