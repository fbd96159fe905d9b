"""The MQTT source and sink against the real Mosquitto at 127.0.0.1:1883 (default settings).

The broker is shared with other tests: every test uses its own topic prefix and client ids,
and removes the persistent sessions it created. The burst test publishes with
``mosquitto_pub`` (a C client in another process, as fast as the broker takes it) when it is
installed, else with paho in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from forgeline.connectors.mqtt import (
    QUARANTINE_TYPE,
    Backoff,
    BrokerOptions,
    MqttSink,
    MqttSource,
    MqttTarget,
    MqttUnavailable,
    TopicRule,
)
from forgeline.envelope import Event
from forgeline.exceptions import BackendError, PermanentDeliveryError, TransientDeliveryError
from forgeline.log import EventLog, open_log
from forgeline.log.memory import MemoryLog
from tests.services import SERVICES, require

pytestmark = pytest.mark.mqtt

HOST, PORT, _ = SERVICES["mqtt"]
FAST = Backoff(initial=0.05, maximum=0.5)


@pytest.fixture(autouse=True)
def _broker() -> None:
    require("mqtt")


@pytest.fixture
def tag() -> str:
    return f"fltest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def sessions() -> AsyncIterator[list[str]]:
    """Client ids whose persistent sessions the test leaves behind; removed afterwards."""
    ids: list[str] = []
    yield ids
    for client_id in ids:
        await forget_session(client_id)


async def forget_session(client_id: str) -> None:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    client = aiomqtt.Client(
        HOST,
        PORT,
        identifier=client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=True,
        properties=properties,
    )
    async with client:
        pass


def broker(client_id: str, sessions: list[str], **options: Any) -> BrokerOptions:
    sessions.append(client_id)
    return BrokerOptions(host=HOST, port=PORT, client_id=client_id, **options)


async def publish(topic: str, payloads: Iterable[bytes | dict[str, Any]]) -> None:
    """Publish at QoS 1 from this process, each PUBACK awaited."""
    async with aiomqtt.Client(HOST, PORT, max_inflight_messages=500) as client:
        await asyncio.gather(
            *(
                client.publish(topic, p if isinstance(p, bytes) else orjson.dumps(p), qos=1)
                for p in payloads
            )
        )


_PAHO_PUBLISHER = """
import sys, paho.mqtt.client as mqtt
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
c.max_inflight_messages_set(1000)
c.connect(host, port)
c.loop_start()
infos = [c.publish(topic, line.rstrip("\\n"), qos=1) for line in sys.stdin]
for info in infos:
    info.wait_for_publish(30)
c.disconnect()
c.loop_stop()
"""


async def publish_flat_out(topic: str, lines: Sequence[bytes]) -> float:
    """Publish one message per line from another process as fast as the broker takes them;
    answer the seconds it took."""
    if shutil.which("mosquitto_pub"):
        argv = ["mosquitto_pub", "-h", HOST, "-p", str(PORT), "-t", topic, "-q", "1", "-l"]
        argv += ["-M", "1000"]
    else:
        argv = [sys.executable, "-c", _PAHO_PUBLISHER, HOST, str(PORT), topic]
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, stdin=subprocess.PIPE)
    await process.communicate(b"\n".join(lines) + b"\n")
    assert process.returncode == 0
    return time.perf_counter() - started


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def events(log: EventLog) -> list[Event]:
    found: list[Event] = []
    after = 0
    while batch := await log.read(after, 5000):
        found.extend(record.event for record in batch)
        after = batch[-1].position
    return found


async def count_is(log: EventLog, expected: int) -> bool:
    return await log.head() >= expected


def seqs(found: Iterable[Event]) -> list[int]:
    return sorted(event.data["seq"] for event in found if event.type != QUARANTINE_TYPE)


# -- the source ------------------------------------------------------------------------------


async def test_topics_become_typed_events_with_templates(tag: str, sessions: list[str]) -> None:
    log = MemoryLog()
    rules = [
        TopicRule(
            f"{tag}/+/mes/+/production",
            "production.completed.v1",
            source="mes://{1}",
            subject="{data.woNumber}",
            id_field="msgId",
        ),
        TopicRule(f"{tag}/+/mes/+/state", "machine.state.v1", source="mes://{1}/{2}"),
    ]
    async with MqttSource(
        broker(f"{tag}-src", sessions), rules, log.append, backoff=FAST
    ) as source:
        await source.ready(5)
        produced = {"msgId": "s1-1", "woNumber": "WO-42", "qtyGood": 5}
        await publish(f"{tag}/s1/mes/L1/production", [produced, produced])  # a publisher retry
        await publish(f"{tag}/s1/mes/L2/state", [{"status": "RUNNING"}, {"status": "RUNNING"}])
        await eventually(lambda: count_is(log, 3))
        await asyncio.sleep(0.1)
        found = await events(log)
    assert len(found) == 3
    production = next(e for e in found if e.type == "production.completed.v1")
    assert (production.id, production.source, production.subject) == ("s1-1", "mes://s1", "WO-42")
    assert production.data == produced
    states = [e for e in found if e.type == "machine.state.v1"]
    # Two identical readings are two events; the retried production report is one.
    assert [e.source for e in states] == ["mes://s1/L2", "mes://s1/L2"]
    assert states[0].id != states[1].id
    assert source.stats.duplicates == 1


async def test_malformed_payloads_are_quarantined_and_the_flow_goes_on(
    tag: str, sessions: list[str]
) -> None:
    log = MemoryLog()
    rule = TopicRule(f"{tag}/line/+", "machine.reading.v1", subject="{data.machine}")
    async with MqttSource(broker(f"{tag}-src", sessions), [rule], log.append) as source:
        await source.ready(5)
        topic = f"{tag}/line/L1"
        bad = [b"not json", b"[1, 2]", b"\xff\xfe\x00", b'{"temp": 20}']
        await publish(topic, [*bad, {"machine": "press-1", "temp": 21}])
        await eventually(lambda: count_is(log, 5))
        found = await events(log)
    held = [e for e in found if e.type == QUARANTINE_TYPE]
    reasons = [e.data["reason"] for e in held]
    assert len(held) == 4
    assert reasons[0].startswith("not JSON") and reasons[2].startswith("not JSON")
    assert reasons[1] == "a JSON array, not an object"
    assert "has no 'machine'" in reasons[3]
    assert held[2].data["payload_base64"] == "//4A"
    assert all(e.data["topic"] == topic for e in held)
    assert found[-1].type == "machine.reading.v1" and found[-1].subject == "press-1"
    assert source.stats.quarantined == 4


async def test_a_burst_of_20000_qos1_messages_all_reach_the_log(
    tag: str, sessions: list[str], tmp_path: Path
) -> None:
    """DESIGN.md §6: a consumer that falls behind a burst loses what overflows Mosquitto's
    per-client queue (1,000 by default). Every message id must reach the (SQLite) log."""
    total = 20_000
    rule = TopicRule(f"{tag}/burst/+", "test.reading.v1", source="plc://{1}")
    async with open_log(f"sqlite:///{tmp_path / 'log.db'}") as log:
        source = MqttSource(broker(f"{tag}-src", sessions), [rule], log.append)
        async with source:
            await source.ready(5)
            lines = [b'{"seq": %d, "value": 20.5}' % i for i in range(total)]
            started = time.perf_counter()
            published_in = await publish_flat_out(f"{tag}/burst/plc1", lines)
            await eventually(lambda: count_is(log, total), timeout=40)
            ingested_in = time.perf_counter() - started
        found = await events(log)
    print(f"\npublished {total} in {published_in:.2f}s, in the log after {ingested_in:.2f}s")
    assert seqs(found) == list(range(total))  # every message id, once
    assert source.stats.received == total and source.stats.batches < total / 5


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_messages_published_while_the_source_is_down_wait_in_its_session(
    tag: str, sessions: list[str], protocol: str
) -> None:
    log = MemoryLog()
    rule = TopicRule(f"{tag}/m/+", "test.reading.v1")
    options = broker(f"{tag}-src", sessions, protocol=protocol)
    async with MqttSource(options, [rule], log.append) as first:
        await first.ready(5)
        await publish(f"{tag}/m/a", [{"seq": i} for i in range(100)])
        await eventually(lambda: count_is(log, 100))
    # The source is stopped (a clean DISCONNECT): its session stays on the broker.
    await publish(f"{tag}/m/a", [{"seq": i} for i in range(100, 400)])
    async with MqttSource(options, [rule], log.append) as second:
        await eventually(lambda: count_is(log, 400))
        await asyncio.sleep(0.1)
    assert seqs(await events(log)) == list(range(400))
    assert second.stats.received == 300 and second.stats.duplicates == 0


async def test_a_shared_group_splits_the_messages_without_loss(
    tag: str, sessions: list[str]
) -> None:
    log = MemoryLog()
    rule = TopicRule(f"{tag}/shared/+", "test.reading.v1")
    workers = [
        MqttSource(broker(f"{tag}-w{n}", sessions), [rule], log.append, group=f"{tag}-g")
        for n in (1, 2)
    ]
    async with workers[0], workers[1]:
        await asyncio.gather(*(worker.ready(5) for worker in workers))
        assert workers[0].filters == [f"$share/{tag}-g/{tag}/shared/+"]
        await publish_flat_out(f"{tag}/shared/x", [b'{"seq": %d}' % i for i in range(3000)])
        await eventually(lambda: count_is(log, 3000))
        await asyncio.sleep(0.1)
    assert seqs(await events(log)) == list(range(3000))
    shares = [worker.stats.appended for worker in workers]
    assert sum(shares) == 3000 and min(shares) > 300, shares


_CRASHING_SOURCE = """
import asyncio, sys
from pathlib import Path
from forgeline.connectors.mqtt import BrokerOptions, MqttSource, TopicRule
from forgeline.log import open_log

host, port, client_id, pattern, db, marks = sys.argv[1:7]

async def main():
    async with open_log("sqlite:///" + db) as log:
        async def append_then_hang(events):
            answers = await log.append(events)
            Path(marks, "appended").write_text(str(len(events)))
            await asyncio.Event().wait()  # killed here: durable in the log, never acknowledged
            return answers

        options = BrokerOptions(host=host, port=int(port), client_id=client_id)
        async with MqttSource(options, [TopicRule(pattern, "test.reading.v1")], append_then_hang,
                              max_delay=0.2) as source:
            await source.ready(10)
            Path(marks, "ready").touch()
            await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_a_redelivery_after_a_crash_before_the_puback_is_not_stored_twice(
    tag: str, sessions: list[str], tmp_path: Path
) -> None:
    db, pattern, client_id = tmp_path / "log.db", f"{tag}/crash/+", f"{tag}-src"
    sessions.append(client_id)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_CRASHING_SOURCE),
        HOST, str(PORT), client_id, pattern, str(db), str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    try:
        await eventually(lambda: _exists(tmp_path / "ready"), timeout=20)
        await publish(f"{tag}/crash/a", [{"seq": i} for i in range(500)])
        await eventually(lambda: _exists(tmp_path / "appended"), timeout=10)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    stored_before_crash = int((tmp_path / "appended").read_text())
    assert stored_before_crash > 0
    async with open_log(f"sqlite:///{db}") as log:
        assert await log.head() == stored_before_crash
        rule = TopicRule(pattern, "test.reading.v1")
        options = BrokerOptions(host=HOST, port=PORT, client_id=client_id)
        async with MqttSource(options, [rule], log.append) as source:
            await eventually(lambda: count_is(log, 500))
            await asyncio.sleep(0.2)
        found = await events(log)
    assert seqs(found) == list(range(500)) and len(found) == 500
    # The broker re-sent the batch the dead process had stored: each one recognised.
    assert source.stats.duplicates == stored_before_crash


async def _exists(path: Path) -> bool:
    return path.exists()


class Proxy:
    """A TCP relay in front of the broker whose connections the test can cut at will."""

    def __init__(self) -> None:
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, PORT)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        for writer in list(self.writers):
            writer.transport.abort()


async def test_the_source_reconnects_after_connection_loss_and_loses_nothing(
    tag: str, sessions: list[str]
) -> None:
    log = MemoryLog()
    total = 3000

    async def slow_append(batch: Sequence[Event]) -> Any:
        await asyncio.sleep(0.005)  # cuts land while batches are stored and unacknowledged
        return await log.append(batch)

    rule = TopicRule(f"{tag}/loss/+", "test.reading.v1")
    async with Proxy() as proxy:
        options = BrokerOptions(host="127.0.0.1", port=proxy.port, client_id=f"{tag}-src")
        sessions.append(options.client_id or "")
        source = MqttSource(options, [rule], slow_append, max_batch=50, backoff=FAST)
        async with source:
            await source.ready(5)
            publisher = asyncio.create_task(paced(f"{tag}/loss/a", total))
            for _ in range(3):
                await eventually(lambda: _received_more(source, 200), timeout=10)
                proxy.cut()
                await source.ready(5)
            await publisher
            await eventually(lambda: count_is(log, total), timeout=20)
            await asyncio.sleep(0.2)
    assert seqs(await events(log)) == list(range(total))
    assert source.stats.failures >= 3 and source.stats.connects >= 4


async def paced(topic: str, total: int) -> None:
    """About 2,000 messages a second: what is published while the source reconnects must fit
    in the broker's queue for an offline client (max_queued_messages, 1,000 by default) -
    beyond it Mosquitto drops, whatever the client does (see bench/mqtt_ingest.py)."""
    for start in range(0, total, 100):
        await publish(topic, [{"seq": i} for i in range(start, min(total, start + 100))])
        await asyncio.sleep(0.05)


async def _received_more(source: MqttSource, step: int) -> bool:
    mark = getattr(source, "_test_mark", 0)
    if source.stats.received >= mark + step:
        source._test_mark = source.stats.received  # type: ignore[attr-defined]
        return True
    return False


async def test_a_failing_log_holds_the_batch_unacknowledged_until_it_recovers(
    tag: str, sessions: list[str]
) -> None:
    log = MemoryLog()
    failures = 3

    async def flaky(batch: Sequence[Event]) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise BackendError("disk full")
        return await log.append(batch)

    rule = TopicRule(f"{tag}/flaky/+", "test.reading.v1")
    source = MqttSource(broker(f"{tag}-src", sessions), [rule], flaky, backoff=FAST)
    async with source:
        await source.ready(5)
        await publish(f"{tag}/flaky/a", [{"seq": i} for i in range(200)])
        await eventually(lambda: count_is(log, 200))
    assert seqs(await events(log)) == list(range(200))
    assert source.stats.append_failures == 3


async def test_a_source_without_a_broker_keeps_retrying_until_closed(tag: str) -> None:
    options = BrokerOptions(host="127.0.0.1", port=1, client_id=f"{tag}-src", timeout=1)
    source = MqttSource(options, [TopicRule("x/+", "a.b.v1")], MemoryLog().append, backoff=FAST)
    async with source:
        await eventually(lambda: _true(source.stats.failures >= 2))
        assert isinstance(source.last_error, MqttUnavailable)
        assert not source.connected


async def _true(value: bool) -> bool:
    return value


# -- the sink --------------------------------------------------------------------------------


async def test_the_sink_publishes_and_a_subscriber_receives(tag: str) -> None:
    received: list[aiomqtt.Message] = []
    event = Event.new("lot.released.v1", "qms://plant1", {"lot": "L-9"}, subject="LOT-9")
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    async with aiomqtt.Client(
        HOST, PORT, protocol=aiomqtt.ProtocolVersion.V5, properties=props
    ) as sub:
        await sub.subscribe(f"{tag}/out/#", qos=1)
        async with MqttSink(BrokerOptions(host=HOST, port=PORT)) as sink:
            await sink.publish(event, MqttTarget(f"{tag}/out/{{type}}/{{subject}}"))
            await sink.publish(event, MqttTarget(f"{tag}/out/data/{{subject}}", payload="data"))
        async with asyncio.timeout(5):
            async for message in sub.messages:
                received.append(message)
                if len(received) == 2:
                    break
    whole, data = received
    assert whole.topic.value == f"{tag}/out/lot.released.v1/LOT-9"
    assert orjson.loads(whole.payload) == event.to_dict()
    assert getattr(whole.properties, "ContentType", None) == "application/cloudevents+json"
    assert orjson.loads(data.payload) == {"lot": "L-9"}
    attributes = dict(getattr(data.properties, "UserProperty", []))
    assert attributes["id"] == event.id and attributes["type"] == "lot.released.v1"
    assert attributes["specversion"] == "1.0" and "data" not in attributes
    assert getattr(data.properties, "ContentType", None) == "application/json"


async def test_the_sink_reconnects_after_the_connection_is_lost(tag: str) -> None:
    event = Event.new("lot.released.v1", "qms://plant1", {"lot": "L-9"}, subject="LOT-9")
    target = MqttTarget(f"{tag}/out/{{subject}}")
    async with Proxy() as proxy:
        sink = MqttSink(BrokerOptions(host="127.0.0.1", port=proxy.port))
        async with sink:
            await sink.publish(event, target)
            proxy.cut()
            await asyncio.sleep(0.05)
            # The loss is a transient failure at worst; the next attempt reconnects.
            with contextlib.suppress(TransientDeliveryError):
                await sink.publish(event, target, timeout=2)
            await sink.publish(event, target, timeout=2)


async def test_sink_failures_are_classified(tag: str) -> None:
    event = Event.new("lot.released.v1", "qms://plant1", {"lot": "L-9"})
    async with MqttSink(BrokerOptions(host=HOST, port=PORT)) as sink:
        with pytest.raises(PermanentDeliveryError, match="subject"):
            await sink.publish(event, MqttTarget(f"{tag}/{{subject}}"))
    down = MqttSink(BrokerOptions(host="127.0.0.1", port=1, timeout=1))
    with pytest.raises(MqttUnavailable) as caught:
        await down.publish(event, MqttTarget(f"{tag}/x"))
    assert isinstance(caught.value, TransientDeliveryError)
    await down.aclose()
