"""The log contract and PostgreSQL-specific promises: commit order, NOTIFY, reconnects, URLs.

Every test works in its own schema of database ``test`` and drops it afterwards, so this file
runs beside anything else using that database.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from forgeline import open_log
from forgeline.exceptions import BackendUnavailable, ConfigError
from forgeline.log.postgres import PostgresLog

from .contract.log_contract import LogContract, make, wake_latency
from .services import require

pytestmark = pytest.mark.postgres

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require("postgres")
    name = f"fl_test_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def url(schema: str) -> str:
    return f"{SERVER}?schema={schema}&application_name={schema}"


class TestPostgresLog(LogContract):
    @pytest.fixture
    def log_url(self, url: str) -> str:
        return url


# -- the commit-order trap --------------------------------------------------------------------


class _SlowCommits:
    """A connection whose transactions linger (randomly) between their last statement and
    COMMIT: the window in which an outbox poller on a sequence skips rows."""

    def __init__(self, conn: Any, delay: float) -> None:
        self._conn = conn
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self._conn.transaction():
            yield
            await asyncio.sleep(random.uniform(0, self._delay))


class SlowCommitLog(PostgresLog):
    delay = 0.02

    async def _insert(self, conn: Any, events: list[Any]) -> Any:
        return await super()._insert(_SlowCommits(conn, self.delay), events)


async def _follow(url: str, stop: asyncio.Event, seen: list[int]) -> None:
    """A reader that remembers only the last position it saw, as every consumer does."""
    async with PostgresLog(url) as reader:
        after = 0
        while True:
            done = stop.is_set()
            for record in await reader.read(after, 1000):
                seen.append(record.position)
                after = record.position
            if done:
                return
            await asyncio.sleep(0.001)


async def test_a_sequence_outbox_skips_late_commits(schema: str) -> None:
    """The trap itself, shown on a plain table numbered by a sequence: the test below would
    catch a log built this way."""
    conn_a, conn_b, reader = [await asyncpg.connect(SERVER) for _ in range(3)]
    try:
        await reader.execute(f'CREATE SCHEMA "{schema}"')
        await reader.execute(f'CREATE TABLE "{schema}".outbox (position bigserial PRIMARY KEY)')
        slow = conn_a.transaction()
        await slow.start()
        await conn_a.execute(f'INSERT INTO "{schema}".outbox DEFAULT VALUES')  # takes 1
        await conn_b.execute(f'INSERT INTO "{schema}".outbox DEFAULT VALUES')  # 2, committed
        sql = f'SELECT position FROM "{schema}".outbox WHERE position > $1 ORDER BY position'
        first = [r[0] for r in await reader.fetch(sql, 0)]
        await slow.commit()
        later = [r[0] for r in await reader.fetch(sql, first[-1])]
        assert first == [2]
        assert later == []  # position 1 committed late and the reader never sees it
    finally:
        for conn in (conn_a, conn_b, reader):
            await conn.close()


async def test_readers_never_skip_a_late_commit(url: str) -> None:
    """Appenders on separate connections (and pools), commits delayed at random after the
    positions are taken; a reader tracking only its last position must see every position
    exactly once, in order, with no gaps."""
    writers = [SlowCommitLog(url) for _ in range(4)]
    for writer in writers:
        await writer.open()
    stop = asyncio.Event()
    seen: list[int] = []
    follower = asyncio.create_task(_follow(url, stop, seen))
    acknowledged: list[int] = []

    async def produce(log: PostgresLog, n: int) -> None:
        for i in range(30):
            batch = make(random.randint(1, 5), source=f"writer-{n}-{i}")
            acknowledged.extend(a.position for a in await log.append(batch))

    try:
        await asyncio.gather(*(produce(w, n) for n, w in enumerate(writers)))
        stop.set()
        await asyncio.wait_for(follower, 10)
    finally:
        for writer in writers:
            await writer.aclose()
    assert sorted(acknowledged) == list(range(1, len(acknowledged) + 1))
    assert seen == list(range(1, len(acknowledged) + 1))


# -- notifications, reconnects, schema ---------------------------------------------------------


async def test_an_append_in_another_process_wakes_a_stream_via_notify(url: str) -> None:
    async with PostgresLog(url) as writer, PostgresLog(url) as reader:
        assert reader.poll_interval >= 5  # so a prompt wake-up can only come from NOTIFY
        assert await wake_latency(writer, reader) < 0.2


async def _terminate(application_name: str) -> int:
    conn = await asyncpg.connect(SERVER)
    try:
        return len(
            await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = $1 AND pid <> pg_backend_pid()",
                application_name,
            )
        )
    finally:
        await conn.close()


async def test_survives_its_connections_being_terminated(url: str, schema: str) -> None:
    async with PostgresLog(url) as log:
        await log.append(make(3))
        assert await _terminate(schema) >= 2  # the pool's connection(s) and the listener
        answers = await log.append(make(2))
        assert [a.position for a in answers] == [4, 5]
        assert [r.position for r in await log.read(0)] == [1, 2, 3, 4, 5]
        # The LISTEN connection comes back too: then the slow safety-net poll is restored.
        async with asyncio.timeout(5):
            while log.poll_interval < 5:
                await asyncio.sleep(0.05)


async def test_an_append_interrupted_by_a_terminated_connection_is_retried(
    url: str, schema: str
) -> None:
    class Interrupted(PostgresLog):
        cut = True

        async def _insert(self, conn: Any, events: list[Any]) -> Any:
            if self.cut:
                self.cut = False
                await _terminate(schema)
            return await super()._insert(conn, events)

    async with Interrupted(url) as log:
        answers = await log.append(make(2))
        assert [(a.position, a.duplicate) for a in answers] == [(1, False), (2, False)]


async def test_reopening_keeps_events_and_dedup(url: str) -> None:
    events = make(5)
    async with open_log(url) as log:
        await log.append(events)
    # Several processes opening a fresh schema at once must not race on CREATE.
    logs = [PostgresLog(url) for _ in range(3)]
    await asyncio.gather(*(log.open() for log in logs))
    try:
        assert [r.event for r in await logs[0].read(0)] == events
        assert (await logs[1].append(events[:1]))[0].duplicate
    finally:
        for log in logs:
            await log.aclose()


async def test_a_schema_from_a_newer_forgeline_is_refused(url: str, schema: str) -> None:
    async with open_log(url):
        pass
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(
            f"UPDATE \"{schema}\".log_meta SET value = '99' WHERE key = 'schema_version'"
        )
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match="newer"):
        async with open_log(url):
            pass


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("postgresql://", "not a PostgreSQL URL"),
        ("postgresql:///test", "not a PostgreSQL URL"),
        ("postgresql://h/db?schema=Bad-Name", "schema 'Bad-Name'"),
        ("postgresql://h/db?schema=", "schema ''"),
    ],
)
def test_bad_urls_are_config_errors(bad: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_log(bad)


async def test_a_missing_database_is_a_config_error(schema: str) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        async with open_log(f"postgresql://postgres@127.0.0.1:5432/no_such_db_{schema}"):
            pass


async def test_an_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        async with open_log("postgresql://postgres@127.0.0.1:1/test"):
            pass


# -- the service gate every marked test goes through -----------------------------------------


@pytest.mark.parametrize(
    ("ci", "outcome"), [("", pytest.skip.Exception), ("true", pytest.fail.Exception)]
)
def test_a_missing_service_skips_locally_and_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    from . import services

    monkeypatch.setitem(services.SERVICES, "nowhere", ("127.0.0.1", 1, "start it"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="nowhere is not reachable"):
        services.require("nowhere")
