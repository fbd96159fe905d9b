"""The simulated QMS over real loopback HTTP: scripted results, holds and releases, callbacks,
faults and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from forgeline.sim.plant_faults import FaultPlan, FaultRule
from forgeline.sim.qms import QmsServer

GOOD: dict[str, Any] = {
    "lotNo": "L1-2600001",
    "partNo": "FG-BRACKET-01",
    "plan": "AQL-1.0",
    "lotQty": 500,
}
BAD: dict[str, Any] = {**GOOD, "lotNo": "L1-2600002"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


Hook = tuple[str, list[tuple[dict[str, str], bytes, dict[str, Any]]], list[int]]


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    got: list[tuple[dict[str, str], bytes, dict[str, Any]]] = []
    script: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        status = script.pop(0) if script else 200
        raw = await request.read()
        if status == 200:
            got.append((dict(request.headers), raw, await request.json()))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/quality", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/quality", got, script
    await runner.cleanup()


async def until_closed(http: aiohttp.ClientSession, qms: QmsServer, qid: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            _, body = await call(http, "GET", f"{qms.url}/api/inspections/{qid}")
            if body["status"] == "CLOSED":
                return dict(body)
            await asyncio.sleep(0.01)


async def test_scripted_accept_and_reject_with_callbacks(
    http: aiohttp.ClientSession, hook: Hook
) -> None:
    url, got, script = hook
    script.append(503)  # the first callback fails once: it is retried
    async with QmsServer(
        lots={BAD["lotNo"]: "REJECTED"},
        decide_after=0.0,
        callback_url=url,
        callback_secret="s3cret",
    ) as qms:
        status, good = await call(http, "POST", f"{qms.url}/api/inspections", GOOD)
        assert status == 201 and good["status"] == "OPEN" and good["result"] is None
        assert good["sampleSize"] == 50 and good["inspectionId"] == "QI-000001"
        _, bad = await call(http, "POST", f"{qms.url}/api/inspections", BAD)
        good = await until_closed(http, qms, good["inspectionId"])
        bad = await until_closed(http, qms, bad["inspectionId"])
        assert (good["result"], bad["result"]) == ("ACCEPTED", "REJECTED")
        assert bad["defectsFound"] > bad["acceptNo"] >= good["defectsFound"]
        _, lot = await call(http, "GET", f"{qms.url}/api/lots/{GOOD['lotNo']}")
        assert (lot["usage"], lot["onHold"]) == ("UNRESTRICTED", False)
        _, lot = await call(http, "GET", f"{qms.url}/api/lots/{BAD['lotNo']}")
        assert (lot["usage"], lot["onHold"], lot["lastResult"]) == ("BLOCKED", True, "REJECTED")
        await qms.callbacks.drain()
        assert [a.status for a in qms.callbacks.attempts][:2] == [503, 200]
    events = [
        (body["event"], (body.get("inspection") or body["lot"])["lotNo"]) for _, _, body in got
    ]
    assert sorted(events) == sorted(
        [
            ("INSPECTION_COMPLETED", GOOD["lotNo"]),
            ("INSPECTION_COMPLETED", BAD["lotNo"]),
            ("LOT_HOLD_PLACED", BAD["lotNo"]),
        ]
    )
    headers, raw, _ = got[0]
    expected = hmac.new(b"s3cret", raw, hashlib.sha256).hexdigest()
    assert headers["X-QMS-Signature"] == f"sha256={expected}"


async def test_hold_release_and_manual_result(http: aiohttp.ClientSession, hook: Hook) -> None:
    url, got, _ = hook
    async with QmsServer(decide_after=None) as qms:
        status, insp = await call(
            http, "POST", f"{qms.url}/api/inspections", {**GOOD, "callbackUrl": url}
        )
        qid, lot_url = insp["inspectionId"], f"{qms.url}/api/lots/{GOOD['lotNo']}"
        status, body = await call(http, "POST", f"{qms.url}/api/inspections", GOOD)
        assert (status, body["fault"]["reason"], body["fault"]["inspectionId"]) == (
            409,
            "INSPECTION_OPEN",
            qid,
        )
        _, lot = await call(http, "GET", lot_url)
        assert lot["usage"] == "QUALITY_INSPECTION"
        status, body = await call(http, "POST", f"{lot_url}/hold", {"reason": "supplier alert"})
        assert status == 201 and body["lot"]["usage"] == "BLOCKED"
        status, body = await call(
            http,
            "POST",
            f"{qms.url}/api/inspections/{qid}/results",
            {"result": "CONDITIONAL", "inspector": "qa-3"},
        )
        assert (status, body["result"], body["remarks"]) == (
            200,
            "CONDITIONAL",
            "accepted with deviation",
        )
        _, lot = await call(http, "GET", lot_url)
        assert lot["usage"] == "BLOCKED"  # the hand hold still stands
        status, lot = await call(http, "POST", f"{lot_url}/release", {"by": "qa-lead"})
        assert (status, lot["usage"], lot["onHold"]) == (200, "UNRESTRICTED", False)
        status, body = await call(http, "POST", f"{lot_url}/release", {})
        assert (status, body["fault"]["reason"]) == (409, "LOT_NOT_ON_HOLD")
        status, body = await call(
            http, "POST", f"{qms.url}/api/inspections/{qid}/results", {"result": "ACCEPTED"}
        )
        assert (status, body["fault"]["code"]) == (409, "QMS-409")
        # A rejected lot is released only with a disposition.
        _, again = await call(http, "POST", f"{qms.url}/api/inspections", GOOD)
        await call(
            http,
            "POST",
            f"{qms.url}/api/inspections/{again['inspectionId']}/results",
            {"result": "REJECTED", "defectsFound": 4},
        )
        status, body = await call(http, "POST", f"{lot_url}/release", {})
        assert (status, body["fault"]["target"]) == (422, "comment")
        status, lot = await call(http, "POST", f"{lot_url}/release", {"comment": "rework ok"})
        assert status == 200 and lot["holds"][-1]["comment"] == "rework ok"
        await qms.callbacks.drain()
    assert [body["inspection"]["result"] for _, _, body in got] == ["CONDITIONAL"]


async def test_scripting_by_part_at_runtime_and_seeded_rate(http: aiohttp.ClientSession) -> None:
    async with QmsServer(decide_after=0.0, reject_rate=0.5, seed=11, admin=True) as qms:
        status, _ = await call(
            http, "POST", f"{qms.url}/__sim__/script", {"parts": {"FG-HOLD": "ON_HOLD"}}
        )
        assert status == 200
        _, held = await call(
            http, "POST", f"{qms.url}/api/inspections", {**GOOD, "partNo": "FG-HOLD", "lotNo": "H1"}
        )
        results = []
        for n in range(12):
            _, insp = await call(
                http, "POST", f"{qms.url}/api/inspections", {**GOOD, "lotNo": f"R{n}"}
            )
            results.append((await until_closed(http, qms, insp["inspectionId"]))["result"])
        held = await until_closed(http, qms, held["inspectionId"])
        assert held["result"] == "ON_HOLD" and held["defectsFound"] is None
        assert {"ACCEPTED", "REJECTED"} == set(results)
        status, body = await call(
            http, "POST", f"{qms.url}/__sim__/script", {"lots": {"X": "MAYBE"}}
        )
        assert (status, body["fault"]["reason"]) == (400, "BAD_SCRIPT")
    async with QmsServer(decide_after=0.0, reject_rate=0.5, seed=11) as qms:
        again = []
        for n in range(12):
            _, insp = await call(
                http, "POST", f"{qms.url}/api/inspections", {**GOOD, "lotNo": f"R{n}"}
            )
            again.append((await until_closed(http, qms, insp["inspectionId"]))["result"])
    assert again == results


async def test_bad_input_and_faults(http: aiohttp.ClientSession) -> None:
    plan = FaultPlan([FaultRule(pattern="/api/inspections", down=True)])
    async with QmsServer(faults=plan) as qms:
        api = f"{qms.url}/api/inspections"
        status, body = await call(http, "POST", api, GOOD)
        assert (status, body["fault"]["code"]) == (503, "QMS-503") and qms.inspections == {}
        qms.faults = None
        for bad, reason, target in [
            ({**GOOD, "plan": "AQL-9"}, "PLAN_UNKNOWN", "plan"),
            ({**GOOD, "lotQty": None}, "SAMPLE_UNDEFINED", "lotQty"),
            ({**GOOD, "sampleSize": 600}, "SAMPLE_TOO_LARGE", "sampleSize"),
            ({**GOOD, "lotNo": ""}, "FIELD_INVALID", "lotNo"),
            ({**GOOD, "lotQty": -3}, "FIELD_INVALID", "lotQty"),
        ]:
            status, body = await call(http, "POST", api, bad)
            assert (status, body["fault"]["reason"], body["fault"]["target"]) == (
                422,
                reason,
                target,
            )
        status, insp = await call(http, "POST", api, GOOD)
        status, body = await call(
            http, "POST", api, {**BAD, "lotNo": GOOD["lotNo"], "partNo": "OTHER"}
        )
        assert (status, body["fault"]["reason"]) == (422, "LOT_PART_MISMATCH")
        status, body = await call(
            http, "POST", f"{api}/{insp['inspectionId']}/results", {"result": "OK"}
        )
        assert (status, body["fault"]["reason"]) == (422, "RESULT_UNKNOWN")
        status, body = await call(http, "POST", f"{qms.url}/api/lots/NOPE/hold", {"reason": "x"})
        assert (status, body["fault"]["reason"]) == (404, "LOT_NOT_FOUND")
        status, body = await call(http, "POST", f"{qms.url}/api/lots/{GOOD['lotNo']}/hold", {})
        assert (status, body["fault"]["target"]) == (422, "reason")
        status, body = await call(http, "GET", f"{qms.url}/__sim__/faults")
        assert status == 200 and body["rules"] == [] and plan.stats["down"] == 1
    async with QmsServer() as qms:
        status, body = await call(http, "GET", f"{qms.url}/__sim__/faults")
        assert (status, body["fault"]["reason"]) == (404, "NOT_FOUND")  # no admin API by default
