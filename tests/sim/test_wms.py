"""The simulated WMS over real loopback HTTP: task lifecycle, idempotent create, stock, callback,
faults and bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from forgeline.sim.plant_faults import FaultPlan, FaultRule
from forgeline.sim.wms import WmsServer, serve_in_thread

TASK = {
    "clientRef": "MO/00042-putaway",
    "sku": "FG-BRACKET-01",
    "qty": 20,
    "lot": "L1-2600001",
    "fromLoc": "PROD-OUT-L1",
}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


@pytest.fixture
async def hook() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/wms-events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/wms-events", got
    await runner.cleanup()


async def test_lifecycle_stock_and_callback(
    http: aiohttp.ClientSession, hook: tuple[str, list[dict[str, Any]]]
) -> None:
    url, got = hook
    async with WmsServer(seed=1) as wms:
        api = f"{wms.url}/api/v1/putaway-tasks"
        status, task = await call(http, "POST", api, {**TASK, "callbackUrl": url})
        assert status == 201
        assert task["taskId"] == "PA-000001" and task["status"] == "NEW"
        assert task["toBin"] in wms.bins  # slotted
        tid = task["taskId"]
        status, body = await call(http, "POST", f"{api}/{tid}/start")
        assert (status, body["errors"][0]["code"]) == (409, "invalid_state")
        status, body = await call(http, "POST", f"{api}/{tid}/assign", {"operator": "op-07"})
        assert (status, body["status"], body["operator"]) == (200, "ASSIGNED", "op-07")
        status, body = await call(http, "POST", f"{api}/{tid}/start")
        assert body["status"] == "IN_PROGRESS"
        status, body = await call(http, "POST", f"{api}/{tid}/complete", {"qtyConfirmed": 18})
        assert (status, body["status"], body["qtyConfirmed"]) == (200, "DONE", 18)
        status, stock = await call(http, "GET", f"{wms.url}/api/v1/stock?sku=FG-BRACKET-01")
        assert stock == {
            "data": [
                {
                    "bin": task["toBin"],
                    "sku": "FG-BRACKET-01",
                    "lot": "L1-2600001",
                    "qty": 18,
                    "uom": "EA",
                }
            ],
            "total": 1,
        }
        _, by_bin = await call(http, "GET", f"{wms.url}/api/v1/stock?bin={task['toBin']}")
        assert by_bin["total"] == 1
        # The next task of the same sku and lot is slotted into the same bin.
        _, second = await call(http, "POST", api, {**TASK, "clientRef": "other", "qty": 2})
        assert second["toBin"] == task["toBin"]
        await wms.callbacks.drain()
    assert [(e["eventType"], e["task"]["taskId"]) for e in got] == [("PUTAWAY_CONFIRMED", tid)]
    assert got[0]["eventId"].startswith("WMS-EVT-") and got[0]["task"]["status"] == "DONE"


async def test_create_is_idempotent_by_client_ref(http: aiohttp.ClientSession) -> None:
    async with WmsServer() as wms:
        api = f"{wms.url}/api/v1/putaway-tasks"
        status, first = await call(http, "POST", api, TASK)
        assert status == 201
        async with http.post(api, json=TASK) as response:
            again = await response.json()
            assert response.status == 200
            assert response.headers["X-Idempotent-Replay"] == "true"
        assert again == first
        status, body = await call(http, "POST", api, {**TASK, "qty": 21})
        error = body["errors"][0]
        assert (status, error["code"], error["meta"]["taskId"]) == (
            409,
            "client_ref_conflict",
            first["taskId"],
        )
        _, listed = await call(http, "GET", f"{api}?clientRef={TASK['clientRef']}")
        assert listed["total"] == 1


async def test_auto_complete_and_cancel(http: aiohttp.ClientSession) -> None:
    async with WmsServer(auto_complete=0.15) as wms:
        api = f"{wms.url}/api/v1/putaway-tasks"
        _, auto = await call(http, "POST", api, TASK)
        _, doomed = await call(http, "POST", api, {**TASK, "clientRef": "r2", "toBin": "C-10-3"})
        assert doomed["toBin"] == "C-10-3"
        status, body = await call(http, "POST", f"{api}/{doomed['taskId']}/cancel", {})
        assert (status, body["errors"][0]["source"]) == (422, {"pointer": "/reason"})
        status, body = await call(
            http, "POST", f"{api}/{doomed['taskId']}/cancel", {"reason": "wrong lot"}
        )
        assert (status, body["status"]) == (200, "CANCELLED")
        seen = set()
        async with asyncio.timeout(5):
            while True:
                _, body = await call(http, "GET", f"{api}/{auto['taskId']}")
                seen.add(body["status"])
                if body["status"] == "DONE":
                    break
                await asyncio.sleep(0.02)
        assert body["operator"] == "AUTO" and {"ASSIGNED", "DONE"} <= seen
        _, done = await call(http, "GET", f"{api}?status=DONE")
        _, cancelled = await call(http, "GET", f"{api}?status=CANCELLED")
        assert (done["total"], cancelled["total"]) == (1, 1)
        _, stock = await call(http, "GET", f"{wms.url}/api/v1/stock")
        assert [row["bin"] for row in stock["data"]] == [auto["toBin"]]


async def test_bad_input_is_4xx_in_the_wms_style(http: aiohttp.ClientSession) -> None:
    async with WmsServer() as wms:
        api = f"{wms.url}/api/v1/putaway-tasks"
        for bad, code, pointer in [
            ({**TASK, "qty": -1}, "qty_invalid", "/qty"),
            ({**TASK, "qty": "5"}, "qty_invalid", "/qty"),
            ({k: v for k, v in TASK.items() if k != "sku"}, "sku_missing", "/sku"),
            (
                {k: v for k, v in TASK.items() if k != "clientRef"},
                "clientref_missing",
                "/clientRef",
            ),
            ({**TASK, "toBin": "Z-99-9"}, "bin_unknown", "/toBin"),
            ({**TASK, "uom": "PCS"}, "uom_invalid", "/uom"),
            ({**TASK, "callbackUrl": "ftp://x"}, "callback_invalid", "/callbackUrl"),
        ]:
            status, body = await call(http, "POST", api, bad)
            error = body["errors"][0]
            assert (status, error["code"], error["source"]["pointer"]) == (422, code, pointer)
            assert error["status"] == "422" and error["title"] == "Unprocessable Entity"
        async with http.post(api, data=b"[1,2]", headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400 and (await r.json())["errors"][0]["code"] == "malformed_json"
        async with http.post(api, data=b"sku=1") as r:
            assert r.status == 415
        status, body = await call(http, "GET", f"{api}/PA-999999")
        assert (status, body["errors"][0]["code"]) == (404, "task_not_found")
        status, body = await call(http, "GET", f"{api}?status=OPEN")
        assert status == 400
        status, body = await call(http, "DELETE", api)
        assert (status, body["errors"][0]["code"]) == (405, "method_not_allowed")


async def test_faults_latency_errors_and_downtime(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan(
        [
            FaultRule(pattern="/api/v1/stock", latency=0.2),
            FaultRule(pattern="/api/v1/bins", error_rate=0.5),
            FaultRule(pattern="/api/v1/putaway-tasks*", downtime=((0.0, 0.3),)),
        ],
        seed=4,
    )
    async with WmsServer(faults=plan) as wms:
        status, body = await call(http, "POST", f"{wms.url}/api/v1/putaway-tasks", TASK)
        assert (status, body["errors"][0]["code"]) == (503, "unavailable")
        assert wms.tasks == {}  # not processed
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _ = await call(http, "GET", f"{wms.url}/api/v1/stock")
        assert status == 200 and loop.time() - started >= 0.2
        statuses = [(await call(http, "GET", f"{wms.url}/api/v1/bins"))[0] for _ in range(20)]
        assert {200, 503} == set(statuses)
        await asyncio.sleep(0.3)
        status, _ = await call(http, "POST", f"{wms.url}/api/v1/putaway-tasks", TASK)
        assert status == 201
        assert plan.stats["down"] == 1 and plan.stats["latency"] == 1
        assert plan.stats["error"] == statuses.count(503)

    async def errors_of_a_fresh_server() -> list[int]:
        plan = FaultPlan([FaultRule(pattern="/api/v1/bins", error_rate=0.5)], seed=4)
        async with WmsServer(faults=plan) as wms:
            return [(await call(http, "GET", f"{wms.url}/api/v1/bins"))[0] for _ in range(20)]

    # Same seed, same sequence of errors.
    first = await errors_of_a_fresh_server()
    assert first == await errors_of_a_fresh_server() and 503 in first


def test_state_file_survives_a_restart_and_blocking_serving(tmp_path: Path) -> None:
    import httpx

    data = tmp_path / "wms.json"
    with serve_in_thread(data=data) as wms:
        task = httpx.post(f"{wms.url}/api/v1/putaway-tasks", json=TASK).json()
        httpx.post(f"{wms.url}/api/v1/putaway-tasks/{task['taskId']}/complete", json={})
    with serve_in_thread(data=data) as wms:
        stock = httpx.get(f"{wms.url}/api/v1/stock").json()
        assert stock["data"][0]["qty"] == 20
        again = httpx.post(f"{wms.url}/api/v1/putaway-tasks", json=TASK)
        assert again.status_code == 200 and again.json()["status"] == "DONE"
