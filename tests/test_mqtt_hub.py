"""The hub with MQTT systems against the real Mosquitto: the simulated MES's messages become
events (typed by the config's rules, identified by ``msgId``), an ``mqtt`` sink republishes
them, bad payloads are quarantined, and a restart receives what was published meanwhile.

The broker is shared: every test has its own topic prefix and client ids, and removes the
persistent session its hub created.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from forgeline import Event, Hub, Settings
from forgeline.connectors.mqtt import QUARANTINE_TYPE
from forgeline.sim.mes import MesServer
from forgeline.store import DeadLetterFilter
from forgeline.testing import running_hub
from tests.services import SERVICES, require

pytestmark = pytest.mark.mqtt

HOST, PORT, _ = SERVICES["mqtt"]
BROKER = f"mqtt://{HOST}:{PORT}"
BOM = [{"partNo": "RM-STEEL-2MM", "qtyPer": 2}, {"partNo": "RM-BOLT-M6", "qtyPer": 4}]


@pytest.fixture(autouse=True)
def _broker() -> None:
    require("mqtt")


@dataclass
class Setup:
    tag: str
    prefix: str
    config: Path
    data_dir: Path
    received: list[aiomqtt.Message] = field(default_factory=list)

    @property
    def hub_client(self) -> str:
        return f"{self.tag}-hub"

    def settings(self) -> Settings:
        return Settings.load(config_file=self.config, env={}, data_dir=self.data_dir)


def _config(tag: str, prefix: str, *, url: str = BROKER) -> str:
    rules = "".join(
        f"""
      - topic: "{prefix}/+/mes/+/{kind}"
        type: {type}
        source: "mes://{{1}}/{{2}}"
        subject: "{{data.woNumber}}"
        id_field: msgId
        time_field: ts"""
        for kind, type in (
            ("production", "production.reported.v1"),
            ("consumption", "material.consumed.v1"),
            ("state", "workorder.status.changed.v1"),
        )
    )
    return f"""
systems:
  plant-broker:
    kind: mqtt
    url: {url}
    client_id: {tag}-hub
    session_expiry: 300
    timeout: 3
    subscribe:{rules}
subscriptions:
  - name: production-out
    types: ["production.*"]
    sink: {{mqtt: {{system: plant-broker, topic: "{prefix}/out/{{subject}}", payload: event}}}}
    policy: {{ordering: key, retry: {{initial_delay: 0.05, max_attempts: 3}}}}
  - name: material-out
    types: ["material.*"]
    sink: {{mqtt: {{system: plant-broker, topic: "{prefix}/data/{{data.partNo}}", payload: data}}}}
  - name: needs-a-line
    types: [workorder.status.changed.v1]
    sink: {{mqtt: {{system: plant-broker, topic: "{prefix}/bad/{{data.shift}}"}}}}
    policy: {{retry: {{initial_delay: 0.05, max_attempts: 3}}}}
"""


async def forget_session(client_id: str) -> None:
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = 0
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client(
            HOST,
            PORT,
            identifier=client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=True,
            properties=properties,
        ):
            pass


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    tag = f"flhub-{uuid.uuid4().hex[:10]}"
    prefix = f"{tag}/plant"
    config = tmp_path / "forgeline.yaml"
    config.write_text(_config(tag, prefix))
    found = Setup(tag, prefix, config, tmp_path / "data")
    # What the mqtt sinks publish: a plain subscriber, as a downstream system would be.
    async with aiomqtt.Client(
        HOST, PORT, identifier=f"{tag}-downstream", protocol=aiomqtt.ProtocolVersion.V5
    ) as downstream:
        await downstream.subscribe(f"{prefix}/out/#", qos=1)
        await downstream.subscribe(f"{prefix}/data/#", qos=1)

        async def collect() -> None:
            async for message in downstream.messages:
                found.received.append(message)

        collector = asyncio.create_task(collect())
        try:
            yield found
        finally:
            collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collector
            await forget_session(found.hub_client)


@contextlib.asynccontextmanager
async def hub_of(setup: Setup) -> AsyncIterator[Hub]:
    async with running_hub(setup.settings()) as (hub, _):
        await hub.mqtt.ready(timeout=5)
        yield hub


@contextlib.asynccontextmanager
async def publisher(setup: Setup) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        HOST, PORT, identifier=f"{setup.tag}-pub", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Until ``check()`` (a value, or an awaitable of one) is truthy; that value."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.05)


async def events(hub: Hub, type: str | None = None) -> list[Event]:
    records = await hub.log.read(0, 10_000)
    return [r.event for r in records if type is None or r.event.type == type]


def _count(hub: Hub, type: str, count: int) -> Callable[[], Any]:
    async def check() -> list[Event] | None:
        found = await events(hub, type)
        return found if len(found) >= count else None

    return check


def out_ids(setup: Setup) -> list[str]:
    """Ids of the events production-out republished, in arrival order."""
    return [
        orjson.loads(m.payload)["id"]
        for m in setup.received
        if m.topic.value.startswith(f"{setup.prefix}/out/")
    ]


def data_topics(setup: Setup) -> list[str]:
    return [
        m.topic.value for m in setup.received if m.topic.value.startswith(f"{setup.prefix}/data/")
    ]


async def test_a_mes_run_becomes_events_and_production_is_republished(setup: Setup) -> None:
    async with (
        hub_of(setup) as hub,
        MesServer(
            broker=BROKER,
            topic_prefix=setup.prefix,
            client_id=f"{setup.tag}-mes",
            tick=0.02,
            setup_seconds=0.02,
        ) as mes,
        aiohttp.ClientSession() as http,
    ):
        release = {"erpOrder": "WH/MO/00042", "partNo": "FG-BRACKET-01", "qty": 20, "bom": BOM}
        async with http.post(f"{mes.url}/api/workorders", json=release) as answer:
            assert answer.status == 201
            wo = (await answer.json())["woNumber"]
        start = f"{mes.url}/api/workorders/{wo}/start"
        async with http.post(start, json={"batchSize": 5, "scrapRate": 0}) as answer:
            assert answer.status == 202

        states = await eventually(_count(hub, "workorder.status.changed.v1", 4))
        await mes.flush()
        sent = {m.body["msgId"]: m for m in mes.sent}
        assert len(sent) == 4 + 4 * 3  # four states; per cycle two consumptions, one production

        produced = await events(hub, "production.reported.v1")
        consumed = await events(hub, "material.consumed.v1")
        assert len(produced) == 4 and len(consumed) == 8
        for event in [*states, *produced, *consumed]:
            message = sent[event.id]  # the MES's msgId is the event id
            assert event.data == message.body
            assert event.source == "mes://site1/L1"
            assert event.subject == wo
            assert event.time == message.body["ts"]  # the time of the fact, not of receipt
        assert [e.data["status"] for e in states] == ["QUEUED", "SETUP", "RUNNING", "COMPLETE"]
        assert [e.data["totalGood"] for e in produced] == [5, 10, 15, 20]

        # The production-out subscription republished each production event, in order.
        await eventually(lambda: len(out_ids(setup)) >= 4)
        assert out_ids(setup) == [e.id for e in produced]
        first = next(m for m in setup.received if m.topic.value.startswith(f"{setup.prefix}/out/"))
        assert first.topic.value == f"{setup.prefix}/out/{wo}"
        assert orjson.loads(first.payload)["data"] == produced[0].data
        # material-out publishes the data alone, the attributes as User Properties (MQTT 5).
        await eventually(lambda: len(data_topics(setup)) >= 8)
        data_message = next(m for m in setup.received if "/data/" in m.topic.value)
        body = orjson.loads(data_message.payload)
        assert body["msgType"] == "CONSUMPTION"
        assert data_message.topic.value == f"{setup.prefix}/data/{body['partNo']}"
        assert data_message.properties is not None
        properties = dict(getattr(data_message.properties, "UserProperty", []))
        assert properties["id"] == body["msgId"] and properties["type"] == "material.consumed.v1"

        # The MES resends a production message (its PUBACK was lost, say): one event still.
        again = next(m for m in mes.sent if m.kind == "production")
        marker = {**again.body, "msgId": f"{setup.tag}-marker", "qtyGood": 0}
        async with publisher(setup) as client:
            await client.publish(again.topic, orjson.dumps(again.body), qos=1)
            await client.publish(again.topic, orjson.dumps(marker), qos=1)
        # Same connection, same topic, QoS 1: the marker lands after the resend was handled.
        await eventually(_count(hub, "production.reported.v1", 5))
        assert [e.id for e in await events(hub, "production.reported.v1")].count(
            again.body["msgId"]
        ) == 1
        await eventually(lambda: f"{setup.tag}-marker" in out_ids(setup))
        assert len(out_ids(setup)) == len(set(out_ids(setup))) == 5

        # A topic the event cannot fill is a dead letter at once, not a retry.
        dead = await eventually(lambda: _dead(hub, "needs-a-line", 4))
        assert all("has no 'data.shift'" in str(letter.last_error) for letter in dead)
        assert all(letter.attempts == 1 for letter in dead)


async def _dead(hub: Hub, name: str, count: int) -> list[Any] | None:
    (sub,) = [s for s in await hub.store.list_subscriptions() if s.spec.name == name]
    found = await hub.store.list_deliveries("dead", DeadLetterFilter(sub.id), 100)
    return found if len(found) >= count else None


async def test_malformed_payloads_are_quarantined_and_the_rest_keeps_flowing(
    setup: Setup,
) -> None:
    topic = f"{setup.prefix}/site1/mes/L2/production"
    good = {"msgId": f"{setup.tag}-good", "woNumber": "WO-2026-00007", "qtyGood": 3}
    bad = [
        b"not json at all",
        b"[1, 2, 3]",
        orjson.dumps({"woNumber": "WO-2026-00007", "qtyGood": 1}),  # no msgId
        b"\xff\xfe\x00binary",
    ]
    async with hub_of(setup) as hub, publisher(setup) as client:
        for payload in bad:
            await client.publish(topic, payload, qos=1)
        await client.publish(topic, orjson.dumps(good), qos=1)

        (event,) = await eventually(_count(hub, "production.reported.v1", 1))
        assert event.id == good["msgId"] and event.data == good
        held = await eventually(_count(hub, QUARANTINE_TYPE, 4))
        reasons = [e.data["reason"] for e in held]
        assert reasons[0].startswith("not JSON")
        assert reasons[1] == "a JSON array, not an object"
        assert "no 'msgId'" in reasons[2]
        assert reasons[3].startswith("not JSON") and "payload_base64" in held[3].data
        assert all(e.subject == topic and e.data["type"] == "production.reported.v1" for e in held)
        assert held[0].data["payload"] == "not json at all"  # kept, so it can be replayed


async def test_a_restarted_hub_receives_what_was_published_while_it_was_down(
    setup: Setup,
) -> None:
    topic = f"{setup.prefix}/site1/mes/L3/state"

    def state(seq: int) -> bytes:
        return orjson.dumps(
            {"msgId": f"{setup.tag}-{seq}", "woNumber": "WO-2026-00009", "status": "RUNNING"}
        )

    async with hub_of(setup) as hub, publisher(setup) as client:
        await client.publish(topic, state(1), qos=1)
        await eventually(_count(hub, "workorder.status.changed.v1", 1))
    # The hub is stopped; its persistent session keeps what arrives meanwhile.
    async with publisher(setup) as client:
        for seq in (2, 3, 4):
            await client.publish(topic, state(seq), qos=1)
    async with hub_of(setup) as hub:
        found = await eventually(_count(hub, "workorder.status.changed.v1", 4))
        assert [e.id for e in found] == [f"{setup.tag}-{seq}" for seq in (1, 2, 3, 4)]
        assert hub.readiness() == {
            "sources": [{"system": "plant-broker", "connected": True}],
            "degraded": False,
        }


async def test_a_source_whose_broker_is_down_leaves_the_hub_ready_with_a_detail(
    tmp_path: Path,
) -> None:
    tag = f"flhub-{uuid.uuid4().hex[:10]}"
    config = tmp_path / "forgeline.yaml"
    # Port 9 (discard) refuses: the source keeps retrying while the hub serves.
    config.write_text(_config(tag, f"{tag}/plant", url="mqtt://127.0.0.1:9"))
    settings = Settings.load(config_file=config, env={}, data_dir=tmp_path / "data")
    async with running_hub(settings) as (hub, url), aiohttp.ClientSession() as http:

        async def failed() -> bool:
            (entry,) = hub.readiness()["sources"]
            return bool(entry["error"] != "connecting")

        await eventually(failed, timeout=5)
        readiness = hub.readiness()
        assert readiness["degraded"] is True
        (entry,) = readiness["sources"]
        assert entry["connected"] is False and "127.0.0.1:9" in entry["error"]
        async with http.get(f"{url}/readyz") as answer:
            assert answer.status == 200
        # The sink's broker is down too: retried on the schedule (transient), then dead.
        await hub.publish(
            [Event.new("production.reported.v1", "mes://site1/L1", {"n": 1}, subject="WO-1")]
        )
        (letter,) = await eventually(lambda: _dead(hub, "production-out", 1))
        assert letter.attempts == 3
        assert "Connection refused" in str(letter.last_error)


async def test_a_hub_stopped_in_the_middle_of_a_burst_loses_nothing(setup: Setup) -> None:
    topic = f"{setup.prefix}/site1/mes/L1/consumption"
    # Below Mosquitto's max_queued_messages (1,000 by default): beyond it the broker itself
    # drops what it holds for a disconnected session ("Outgoing messages are being dropped").
    total = 900

    async def burst() -> None:
        async with publisher(setup) as client:
            for seq in range(total):
                body = {"msgId": f"{setup.tag}-{seq}", "woNumber": "WO-1", "partNo": "RM-1"}
                await client.publish(topic, orjson.dumps(body), qos=1)

    async with hub_of(setup) as hub:
        sending = asyncio.create_task(burst())
        # Stop while messages are still arriving: the batch being appended is finished and
        # acknowledged, the rest stays in the session.
        seen = await eventually(_count(hub, "material.consumed.v1", 100))
    assert len(seen) < total
    await sending
    async with hub_of(setup) as hub:
        found = await eventually(_count(hub, "material.consumed.v1", total))
        assert sorted(e.id for e in found) == sorted(f"{setup.tag}-{n}" for n in range(total))
