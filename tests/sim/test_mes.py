"""The simulated MES over real loopback HTTP and the real Mosquitto: release, run, messages.

Each test uses its own topic prefix and MQTT client ids, since the broker is shared.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from forgeline.sim.mes import MesServer
from forgeline.sim.plant_faults import FaultPlan, FaultRule, PublishFaults
from tests.services import require

BOM = [{"partNo": "RM-STEEL-2MM", "qtyPer": 2}, {"partNo": "RM-BOLT-M6", "qtyPer": 4}]
RELEASE = {"erpOrder": "WH/MO/00042", "partNo": "FG-BRACKET-01", "qty": 20, "bom": BOM}


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:10]}/plant"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


async def release_and_run(
    http: aiohttp.ClientSession, mes: MesServer, **start: Any
) -> dict[str, Any]:
    status, wo = await call(http, "POST", f"{mes.url}/api/workorders", RELEASE)
    assert status == 201, wo
    status, started = await call(
        http, "POST", f"{mes.url}/api/workorders/{wo['woNumber']}/start", start or None
    )
    assert status == 202, started
    assert started["status"] == "SETUP"
    return dict(wo)


async def until_status(
    http: aiohttp.ClientSession, mes: MesServer, wo: str, status: str
) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            _, body = await call(http, "GET", f"{mes.url}/api/workorders/{wo}")
            if body["status"] == status:
                return dict(body)
            await asyncio.sleep(0.02)


def check_story(messages: list[dict[str, Any]], wo: dict[str, Any]) -> None:
    """The run's messages, in order: states, then per cycle consumption before production."""
    kinds = [m["msgType"] for m in messages]
    assert [m["status"] for m in messages if m["msgType"] == "STATE"] == [
        "QUEUED",
        "SETUP",
        "RUNNING",
        "COMPLETE",
    ]
    assert kinds[:3] == ["STATE", "STATE", "STATE"] and kinds[-1] == "STATE"
    cycles = kinds[3:-1]
    assert cycles == ["CONSUMPTION", "CONSUMPTION", "PRODUCTION"] * (len(cycles) // 3)
    seqs = [int(m["msgId"].rsplit("-", 1)[1]) for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    production = [m for m in messages if m["msgType"] == "PRODUCTION"]
    assert sum(p["qtyGood"] for p in production) == 20
    last = production[-1]
    assert last["totalGood"] == 20 and last["totalScrap"] == sum(p["qtyScrap"] for p in production)
    assert set(last) == {
        "msgId",
        "msgType",
        "woNumber",
        "erpOrder",
        "partNo",
        "qtyGood",
        "qtyScrap",
        "totalGood",
        "totalScrap",
        "qtyOrdered",
        "uom",
        "lotNo",
        "line",
        "workCenter",
        "ts",
    }
    assert last["woNumber"] == wo["woNumber"] and last["erpOrder"] == "WH/MO/00042"
    assert last["lotNo"] == wo["lotNo"] and last["uom"] == "EA"
    steel = [
        m for m in messages if m["msgType"] == "CONSUMPTION" and m["partNo"] == BOM[0]["partNo"]
    ]
    made = sum(p["qtyGood"] + p["qtyScrap"] for p in production)
    assert sum(c["qty"] for c in steel) == 2 * made
    assert {c["parentPartNo"] for c in steel} == {"FG-BRACKET-01"}
    assert all(c["lotNo"].startswith("RM") for c in steel)


@pytest.mark.mqtt
async def test_run_publishes_state_consumption_production_over_mqtt_in_order(
    prefix: str, http: aiohttp.ClientSession
) -> None:
    require("mqtt")
    import aiomqtt

    got: list[tuple[str, dict[str, Any]]] = []
    tag = uuid.uuid4().hex[:8]
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"test-mes-sub-{tag}") as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        async with MesServer(
            broker="mqtt://127.0.0.1:1883",
            topic_prefix=prefix,
            client_id=f"test-mes-{tag}",
            tick=0.01,
            seed=7,
        ) as mes:
            wo = await release_and_run(http, mes, batchSize=4, scrapRate=0.2)
            async with asyncio.timeout(10):
                async for message in sub.messages:
                    body = orjson.loads(message.payload)
                    got.append((str(message.topic), body))
                    if body.get("status") == "COMPLETE":
                        break
            assert message.qos == 1
    topics = {topic.rsplit("/", 1)[1] for topic, _ in got}
    assert topics == {"state", "consumption", "production"}
    assert all(t.startswith(f"{prefix}/site1/mes/L1/") for t, _ in got)
    check_story([body for _, body in got], wo)


async def receiver(
    script: list[int] | None = None,
) -> tuple[web.AppRunner, str, list[tuple[dict[str, str], dict[str, Any]]]]:
    got: list[tuple[dict[str, str], dict[str, Any]]] = []
    answers = list(script or [])

    async def handle(request: web.Request) -> web.Response:
        status = answers.pop(0) if answers else 200
        if status == 200:
            got.append((dict(request.headers), await request.json()))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/mes", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/mes", got


async def test_http_fallback_posts_the_same_messages_and_retries_5xx(
    http: aiohttp.ClientSession,
) -> None:
    runner, url, got = await receiver(script=[503, 503])
    try:
        async with MesServer(post_to=url, tick=0.01, seed=7) as mes:
            wo = await release_and_run(http, mes, batchSize=4, scrapRate=0.2)
            await until_status(http, mes, wo["woNumber"], "COMPLETE")
            await mes.flush()
            assert [m.body for m in mes.sent] == [body for _, body in got]
    finally:
        await runner.cleanup()
    check_story([body for _, body in got], wo)
    headers, body = got[-1]
    assert headers["X-MES-Topic"] == "plant/site1/mes/L1/state"
    assert headers["X-MES-Message-Type"] == "state" and body["status"] == "COMPLETE"


async def test_same_seed_same_run() -> None:
    async def run_once() -> list[tuple[int, int]]:
        async with MesServer(tick=0.0, seed=3) as mes, aiohttp.ClientSession() as http:
            wo = await release_and_run(http, mes, batchSize=3, scrapRate=0.3)
            await until_status(http, mes, wo["woNumber"], "COMPLETE")
            await mes.flush()
            return [
                (m.body["qtyGood"], m.body["qtyScrap"]) for m in mes.sent if m.kind == "production"
            ]

    first, second = await run_once(), await run_once()
    assert first == second and any(scrap for _, scrap in first)


async def test_release_is_idempotent_by_erp_order_and_bad_input_is_4xx(
    http: aiohttp.ClientSession,
) -> None:
    async with MesServer(tick=0.01) as mes:
        status, first = await call(http, "POST", f"{mes.url}/api/workorders", RELEASE)
        assert status == 201 and first["woNumber"].startswith("WO-")
        assert first["status"] == "QUEUED"
        status, again = await call(http, "POST", f"{mes.url}/api/workorders", RELEASE)
        assert status == 200 and again["woNumber"] == first["woNumber"]
        status, body = await call(http, "POST", f"{mes.url}/api/workorders", {**RELEASE, "qty": 99})
        assert status == 409 and body["code"] == "DUPLICATE_ERP_ORDER"
        assert body["woNumber"] == first["woNumber"]
        for bad, code, field in [
            ({**RELEASE, "erpOrder": "X/2", "qty": 0}, "INVALID_QTY", "qty"),
            ({**RELEASE, "erpOrder": "X/3", "line": "L9"}, "UNKNOWN_LINE", "line"),
            ({"partNo": "FG-1", "qty": 1}, "MISSING_FIELD", "erpOrder"),
            ({**RELEASE, "erpOrder": "X/4", "bom": [{"partNo": "A"}]}, "INVALID_BOM", "bom[0]"),
        ]:
            status, body = await call(http, "POST", f"{mes.url}/api/workorders", bad)
            assert (status, body["code"], body.get("field")) == (422, code, field), body
            assert body["error"] == "Unprocessable Entity" and body["path"] == "/api/workorders"
        async with http.post(
            f"{mes.url}/api/workorders", data=b"{nope", headers={"Content-Type": "application/json"}
        ) as response:
            assert response.status == 400 and (await response.json())["code"] == "MALFORMED_JSON"
        status, body = await call(http, "GET", f"{mes.url}/api/workorders/WO-1999-00001")
        assert (status, body["code"]) == (404, "WO_NOT_FOUND")
        status, body = await call(http, "GET", f"{mes.url}/api/nothing")
        assert (status, body["code"]) == (404, "NOT_FOUND")
        wo = first["woNumber"]
        status, body = await call(http, "POST", f"{mes.url}/api/workorders/{wo}/resume")
        assert (status, body["code"]) == (409, "INVALID_STATE")
        status, body = await call(
            http, "POST", f"{mes.url}/api/workorders/{wo}/start", {"scrapRate": 2}
        )
        assert (status, body["field"]) == (422, "scrapRate")


async def test_pause_resume_and_scrap(http: aiohttp.ClientSession) -> None:
    async with MesServer(tick=0.02) as mes:
        wo = (await release_and_run(http, mes, batchSize=1))["woNumber"]
        await until_status(http, mes, wo, "RUNNING")
        status, body = await call(
            http, "POST", f"{mes.url}/api/workorders/{wo}/pause", {"reasonCode": "JAM"}
        )
        assert (status, body["status"]) == (200, "PAUSED")
        made = body["qtyGood"] + body["qtyScrap"]
        await asyncio.sleep(0.15)
        _, body = await call(http, "GET", f"{mes.url}/api/workorders/{wo}")
        assert body["qtyGood"] + body["qtyScrap"] <= made + 1  # at most the cycle in progress
        status, body = await call(http, "POST", f"{mes.url}/api/workorders/{wo}/resume")
        assert (status, body["status"]) == (200, "RUNNING")
        status, body = await call(http, "POST", f"{mes.url}/api/workorders/{wo}/scrap")
        assert (status, body["status"]) == (200, "SCRAPPED")
        await mes.flush()
        states = [(m.body["status"], m.body["reasonCode"]) for m in mes.sent if m.kind == "state"]
        assert states[-3:] == [("PAUSED", "JAM"), ("RUNNING", None), ("SCRAPPED", None)]


async def test_publish_pause_holds_messages_in_order_and_http_faults_show(
    http: aiohttp.ClientSession,
) -> None:
    faults = FaultPlan([FaultRule(pattern="/api/lines", error_rate=1.0)])
    async with MesServer(tick=0.0, faults=faults, publish_faults=PublishFaults(paused=True)) as mes:
        wo = await release_and_run(http, mes, batchSize=5)
        await until_status(http, mes, wo["woNumber"], "COMPLETE")
        assert len(mes.sent) == 0 and len(mes.outbox.queue) > 5
        mes.publish_faults.resume()
        await mes.flush()
        assert [m.body["status"] for m in mes.sent if m.kind == "state"][-1] == "COMPLETE"
        status, body = await call(http, "GET", f"{mes.url}/api/lines")
        assert (status, body["code"]) == (503, "UNAVAILABLE")
        assert faults.stats["error"] == 1
        # Runtime changes through the admin API.
        status, _ = await call(http, "POST", f"{mes.url}/__sim__/faults", {"rules": []})
        assert status == 200
        status, body = await call(http, "GET", f"{mes.url}/api/lines")
        assert status == 200 and body["lines"][0]["line"] == "L1"
        status, body = await call(
            http, "POST", f"{mes.url}/__sim__/publish-faults", {"paused": True}
        )
        assert status == 200 and mes.publish_faults.is_paused()


class BrokerLink:
    """A TCP relay in front of Mosquitto that can be cut and restored: a broker outage as the
    MES sees it, without touching the broker other tests share."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> BrokerLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.down()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 1883)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.mark.mqtt
async def test_broker_outage_delays_but_loses_and_reorders_nothing(
    prefix: str, http: aiohttp.ClientSession
) -> None:
    require("mqtt")
    import aiomqtt

    link = BrokerLink()
    await link.up()
    tag = uuid.uuid4().hex[:8]
    bodies: list[dict[str, Any]] = []
    async with (
        aiomqtt.Client("127.0.0.1", 1883, identifier=f"test-mes-sub-{tag}") as sub,
        link,
    ):
        await sub.subscribe(f"{prefix}/#", qos=1)
        async with MesServer(
            broker=f"mqtt://127.0.0.1:{link.port}",
            topic_prefix=prefix,
            client_id=f"test-mes-{tag}",
            tick=0.03,
        ) as mes:
            await release_and_run(http, mes, batchSize=2, scrapRate=0.0)
            async with asyncio.timeout(15):
                async for message in sub.messages:
                    bodies.append(orjson.loads(message.payload))
                    if len(bodies) == 4:
                        await link.down()
                        await asyncio.sleep(0.3)  # the run goes on; its messages wait
                        assert mes.outbox.queue
                        await link.up()
                    if bodies[-1].get("status") == "COMPLETE":
                        break
    first_seen = list(dict.fromkeys(int(b["msgId"].rsplit("-", 1)[1]) for b in bodies))
    assert first_seen == list(range(1, len(first_seen) + 1))  # all of them, in order
    unique = list({b["msgId"]: b for b in bodies}.values())
    assert sum(b["qtyGood"] for b in unique if b["msgType"] == "PRODUCTION") == 20


async def test_state_file_keeps_work_orders_and_unsent_messages(tmp_path: Path) -> None:
    data = tmp_path / "mes.json"
    async with aiohttp.ClientSession() as http:
        async with MesServer(
            tick=0.02, data=data, publish_faults=PublishFaults(paused=True)
        ) as mes:
            wo = (await release_and_run(http, mes, batchSize=1))["woNumber"]
            await until_status(http, mes, wo, "RUNNING")
            await asyncio.sleep(0.1)
            unsent = len(mes.outbox.queue)
        # Restarted mid-run: the order waits PAUSED for an operator, the messages for a link.
        async with MesServer(tick=0.0, data=data) as mes:
            _, body = await call(http, "GET", f"{mes.url}/api/workorders/{wo}")
            assert body["status"] == "PAUSED"
            await mes.flush()
            assert len(mes.sent) == unsent
            status, body = await call(http, "POST", f"{mes.url}/api/workorders/{wo}/resume")
            assert (status, body["status"]) == (200, "RUNNING")
            body = await until_status(http, mes, wo, "COMPLETE")
            assert body["qtyGood"] == 20
            status, second = await call(
                http, "POST", f"{mes.url}/api/workorders", {**RELEASE, "erpOrder": "WH/MO/7"}
            )
            assert second["woNumber"].endswith("-00002")


async def test_http_fallback_sets_aside_what_the_receiver_refuses(
    http: aiohttp.ClientSession,
) -> None:
    runner, url, got = await receiver(script=[422])
    try:
        async with MesServer(post_to=url, tick=0.0) as mes:
            await call(http, "POST", f"{mes.url}/api/workorders", RELEASE)
            await call(
                http, "POST", f"{mes.url}/api/workorders", {**RELEASE, "erpOrder": "WH/MO/2"}
            )
            await mes.flush()
            assert [(m.body["msgId"], status) for m, status in mes.outbox.refused] == [
                ("site1-00000001", 422)
            ]
    finally:
        await runner.cleanup()
    assert [body["msgId"] for _, body in got] == ["site1-00000002"]
