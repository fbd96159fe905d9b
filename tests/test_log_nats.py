"""The log contract and JetStream-specific promises: dedup beyond the duplicate window,
partitions, wake-ups across processes, reconnects, URLs.

Every test gets its own stream (and dedup bucket) and deletes them afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.js.errors
import pytest

from forgeline import Event, open_log
from forgeline.exceptions import BackendUnavailable, ConfigError, PayloadTooLarge
from forgeline.log.nats import NatsLog, partition_of

from .contract.log_contract import LogContract, make, wake_latency
from .services import require

pytestmark = pytest.mark.nats

SERVER = "nats://127.0.0.1:4222"


@pytest.fixture
async def stream() -> AsyncIterator[str]:
    require("nats")
    name = f"FLTEST_{uuid.uuid4().hex[:12]}"
    yield name
    nc = await nats.connect(SERVER)
    js = nc.jetstream()
    for each in (name, f"KV_{name}_dedup"):
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(each)
    await nc.close()


@pytest.fixture
def url(stream: str) -> str:
    return f"{SERVER}?stream={stream}&partitions=4"


class TestNatsLog(LogContract):
    @pytest.fixture
    def log_url(self, url: str) -> str:
        return url


async def test_dedup_holds_beyond_the_duplicate_window(stream: str) -> None:
    url = f"{SERVER}?stream={stream}&partitions=2&duplicate_window=0.3"
    event = make(1)[0]
    async with open_log(url) as log:
        first = await log.append([event])
        await asyncio.sleep(1.0)  # the server has forgotten the Nats-Msg-Id by now
        again = await log.append([event])
        assert again == [type(first[0])(first[0].position, True)]
        assert await log.head() == first[0].position
        # Control: the same publish straight to JetStream is no longer caught by the server,
        # so the answer above came from Forgeline's own index.
        nc = await nats.connect(SERVER)
        try:
            ack = await nc.jetstream().publish(
                f"{stream}.0", b"{}", headers={"Nats-Msg-Id": f"{event.source} {event.id}"}
            )
        finally:
            await nc.close()
        assert not ack.duplicate


async def test_events_of_one_key_share_a_partition_subject(url: str, stream: str) -> None:
    async with NatsLog(url) as log:
        events = make(20)
        await log.append(events)
        nc = await nats.connect(SERVER)
        try:
            js = nc.jetstream()
            for record in await log.read(0, 100):
                msg = await js.get_msg(stream, seq=record.position, direct=True)
                key = record.event.partitionkey
                assert msg.subject == f"{stream}.{partition_of(key, 4, record.event.id)}"
        finally:
            await nc.close()
    assert partition_of("MO/00001", 4, "x") == partition_of("MO/00001", 4, "y")
    assert len({partition_of(f"MO/{i}", 4, "") for i in range(50)}) == 4


async def test_an_append_in_another_process_wakes_a_stream(url: str) -> None:
    async with NatsLog(url) as writer, NatsLog(url) as reader:
        assert reader.poll_interval >= 5  # a prompt wake-up can only come from the consumer
        assert await wake_latency(writer, reader) < 0.2


async def test_survives_its_connection_being_cut(url: str) -> None:
    async with NatsLog(url) as log:
        await log.append(make(3))
        log._nc._transport._io_writer.transport.abort()  # the TCP connection, gone
        answers = await log.append(make(2))
        assert [a.position for a in answers] == [4, 5]
        assert [r.position for r in await log.read(0)] == [1, 2, 3, 4, 5]


async def test_reopening_keeps_events_and_dedup(url: str) -> None:
    events = make(5)
    async with open_log(url) as log:
        await log.append(events)
    async with open_log(url) as log:
        assert [r.event for r in await log.read(0)] == events
        assert (await log.append(events[:1]))[0].duplicate


async def test_a_different_partition_count_is_refused(url: str, stream: str) -> None:
    async with open_log(url):
        pass
    with pytest.raises(ConfigError, match="partition"):
        async with open_log(f"{SERVER}?stream={stream}&partitions=8"):
            pass


async def test_a_trimmed_event_can_be_appended_again(stream: str) -> None:
    # As on every backend, dedup covers what the log still holds. (Within the duplicate
    # window the server would still answer with the trimmed copy; retention trims events far
    # older than that.)
    url = f"{SERVER}?stream={stream}&duplicate_window=0.3"
    async with open_log(url) as log:
        event = make(1)[0]
        await log.append([event])
        await asyncio.sleep(1.0)
        assert await log.trim(time.time() + 1) == 1
        assert await log.get(event.source, event.id) is None
        again = await log.append([event])
        assert again[0].position == 2 and not again[0].duplicate


async def test_find_sees_every_source_of_an_id(url: str) -> None:
    events = [
        Event.from_dict({"specversion": "1.0", "id": "same", "source": s, "type": "t.v1"})
        for s in ("a", "b", "c")
    ]
    async with open_log(url) as log:
        await log.append(make(3))
        await log.append(events)
        assert [r.event.source for r in await log.find("same")] == ["a", "b", "c"]
        assert await log.find("nope") == []


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("nats://", "not a NATS log URL"),
        ("nats://h:4222?stream=a.b", "stream 'a.b'"),
        ("nats://h:4222?partitions=0", "partitions must be"),
        ("nats://h:4222?partitions=many", "must be numbers"),
        ("nats://h:4222?duplicate_window=0", "duplicate_window > 0"),
        ("nats://h:4222?strem=X", "unknown parameters"),
    ],
)
def test_bad_urls_are_config_errors(bad: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_log(bad)


async def test_an_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        async with open_log("nats://127.0.0.1:1?stream=X"):
            pass


async def test_an_oversized_event_refuses_the_whole_batch(url: str) -> None:
    async with NatsLog(url) as log:
        huge = Event.new("t.v1", "s", {"blob": "x" * (log._nc.max_payload + 1)})
        with pytest.raises(PayloadTooLarge):
            await log.append([*make(2), huge])
        assert await log.head() == 0


async def test_concurrent_appenders_on_separate_connections_leave_no_gaps(url: str) -> None:
    """Positions are stream sequences, assigned as messages are stored: a reader that tracks
    only its last position sees every event of several concurrent publishers exactly once."""
    writers = [NatsLog(url) for _ in range(3)]
    for writer in writers:
        await writer.open()
    seen: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        async with NatsLog(url) as reader:
            after = 0
            while True:
                finished = done.is_set()
                for record in await reader.read(after, 1000):
                    seen.append(record.position)
                    after = record.position
                if finished:
                    return
                await asyncio.sleep(0.001)

    async def produce(log: NatsLog, n: int) -> list[int]:
        answers = [await log.append(make(5, source=f"w{n}-{i}")) for i in range(20)]
        return [a.position for batch in answers for a in batch]

    follower = asyncio.create_task(follow())
    try:
        positions = await asyncio.gather(*(produce(w, n) for n, w in enumerate(writers)))
    finally:
        done.set()
        for writer in writers:
            await writer.aclose()
    await asyncio.wait_for(follower, 10)
    for own in positions:
        assert own == sorted(own)  # each batch, and each writer's batches, in order
    assert sorted(p for own in positions for p in own) == list(range(1, 301))
    assert seen == list(range(1, 301))


async def test_wake_ups_resume_after_the_server_restarts(tmp_path: Path) -> None:
    # A restarted server forgets ephemeral consumers; nats-py reconnects the connection only.
    # Without a new wake-up subscription a reader would fall back to its slow poll for good.
    from .faults.processes import PrivateNats, until

    if not PrivateNats.available():
        pytest.skip("no nats-server binary to run a private server")
    server = PrivateNats(tmp_path)
    await server.start()
    url = f"{server.url}?stream=WAKE_{uuid.uuid4().hex[:8].upper()}&partitions=2"
    try:
        async with open_log(url) as writer, open_log(url) as reader:
            assert isinstance(reader, NatsLog)
            server.terminate()
            await until(lambda: reader.poll_interval < 5.0, 20, "the reader to notice")
            await server.start()  # same port, same store
            await until(lambda: reader.poll_interval == 5.0, 20, "a new wake-up subscription")
            signal = reader.changed()
            await writer.append(make(1))
            await asyncio.wait_for(signal.wait(), 1.0)  # woken, not polled 5 s later
    finally:
        server.terminate()
