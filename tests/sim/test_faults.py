"""Fault injection: latency, proxy errors, downtime, concurrency, dropped and garbled answers."""

from __future__ import annotations

import asyncio
import json
import time
import xmlrpc.client
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.faults import FaultPlan, FaultRule
from forgeline.sim.odoo.server import OdooServer, serve_in_thread

from .conftest import ADMIN_UID, DB, execute_kw

VERSION_CALL = {
    "jsonrpc": "2.0",
    "method": "call",
    "params": {"service": "common", "method": "version", "args": []},
    "id": 1,
}


def create_call(name: str) -> dict[str, Any]:
    args = [DB, ADMIN_UID, "admin", "res.partner", "create", [{"name": name}], {}]
    params = {"service": "object", "method": "execute_kw", "args": args}
    return {"jsonrpc": "2.0", "method": "call", "params": params, "id": 1}


def count_call(name: str) -> dict[str, Any]:
    args = [DB, ADMIN_UID, "admin", "res.partner", "search_count", [[["name", "=", name]]], {}]
    params = {"service": "object", "method": "execute_kw", "args": args}
    return {"jsonrpc": "2.0", "method": "call", "params": params, "id": 1}


@pytest.fixture
async def server() -> AsyncIterator[OdooServer]:
    async with OdooServer(version=17, faults=FaultPlan(seed=7)) as s:
        yield s


@pytest.fixture
async def http(server: OdooServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        yield client


def plan(server: OdooServer) -> FaultPlan:
    assert server.faults is not None
    return server.faults


async def test_latency_applies_to_matching_paths_only(
    server: OdooServer, http: httpx.AsyncClient
) -> None:
    plan(server).add(pattern="/jsonrpc", latency=0.4)
    started = time.monotonic()
    assert (await http.post("/jsonrpc", json=VERSION_CALL)).status_code == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert (await http.post("/web/webclient/version_info", json={"params": {}})).status_code == 200
    assert time.monotonic() - started < 0.3


async def test_error_rate_is_a_proxy_error_seeded_and_not_processed(
    server: OdooServer, http: httpx.AsyncClient
) -> None:
    def outcomes_plan() -> FaultPlan:
        return FaultPlan([FaultRule(pattern="/jsonrpc", error_rate=0.5, error_status=502)], seed=42)

    plan(server).replace(outcomes_plan())
    statuses = [
        (await http.post("/jsonrpc", json=create_call("flaky"))).status_code for _ in range(30)
    ]
    assert set(statuses) == {200, 502}
    plan(server).replace(outcomes_plan())
    again = [(await http.post("/jsonrpc", json=VERSION_CALL)).status_code for _ in range(30)]
    assert again == statuses  # same seed, same faults
    plan(server).clear()
    created = (await http.post("/jsonrpc", json=count_call("flaky"))).json()["result"]
    assert created == statuses.count(200)
    page = await http.post("/jsonrpc", json=VERSION_CALL)  # cleared: back to normal
    assert page.status_code == 200


async def test_proxy_error_page_is_html(server: OdooServer, http: httpx.AsyncClient) -> None:
    plan(server).add(pattern="*", error_rate=1.0)
    response = await http.post("/jsonrpc", json=VERSION_CALL)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "503 Service Temporarily Unavailable" in response.text


async def test_downtime_window_then_recovery(server: OdooServer, http: httpx.AsyncClient) -> None:
    plan(server).replace(FaultPlan([FaultRule(downtime=((0.0, 0.5),))]))
    assert (await http.post("/jsonrpc", json=VERSION_CALL)).status_code == 503
    await asyncio.sleep(0.55)
    assert (await http.post("/jsonrpc", json=VERSION_CALL)).status_code == 200
    assert plan(server).stats["down"] == 1


async def test_downtime_reset_mode_drops_the_connection(
    server: OdooServer, http: httpx.AsyncClient
) -> None:
    plan(server).add(pattern="/jsonrpc", down=True, down_mode="reset")
    with pytest.raises(httpx.TransportError):
        await http.post("/jsonrpc", json=VERSION_CALL)


@pytest.mark.parametrize(
    ("overflow", "expected"), [("reject", [200, 503, 503]), ("queue", [200, 200, 200])]
)
async def test_max_concurrent(
    server: OdooServer, http: httpx.AsyncClient, overflow: str, expected: list[int]
) -> None:
    plan(server).add(pattern="/jsonrpc", latency=0.2, max_concurrent=1, overflow=overflow)
    started = time.monotonic()
    responses = await asyncio.gather(*(http.post("/jsonrpc", json=VERSION_CALL) for _ in range(3)))
    assert sorted(r.status_code for r in responses) == expected
    if overflow == "queue":
        assert time.monotonic() - started >= 0.6  # served one after the other


async def test_queue_timeout_answers_504(server: OdooServer, http: httpx.AsyncClient) -> None:
    plan(server).add(pattern="/jsonrpc", latency=0.3, max_concurrent=1, queue_timeout=0.05)
    responses = await asyncio.gather(*(http.post("/jsonrpc", json=VERSION_CALL) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [200, 504]


async def test_garbage_answers_200_with_unparseable_body(
    server: OdooServer, http: httpx.AsyncClient
) -> None:
    plan(server).add(pattern="/jsonrpc", garbage_rate=1.0)
    response = await http.post("/jsonrpc", json=VERSION_CALL)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


async def test_dropped_response_still_commits(server: OdooServer, http: httpx.AsyncClient) -> None:
    plan(server).add(pattern="/jsonrpc", drop_rate=1.0)
    with pytest.raises(httpx.RemoteProtocolError):
        await http.post("/jsonrpc", json=create_call("Ghost write"))
    plan(server).clear()
    found = (await http.post("/jsonrpc", json=count_call("Ghost write"))).json()["result"]
    assert found == 1  # the client saw a dropped connection, yet the write committed


def test_xmlrpc_client_silently_retries_a_dropped_call() -> None:
    # A trap worth knowing: xmlrpc.client resends a request once when the server closed the
    # connection without answering, so one create() over XML-RPC can write twice.
    faults = FaultPlan([FaultRule(pattern="/xmlrpc/2/object", drop_rate=1.0)])
    with serve_in_thread(version=17, faults=faults) as server:
        with (
            xmlrpc.client.ServerProxy(f"{server.url}/xmlrpc/2/object") as obj,
            pytest.raises(ConnectionError),
        ):
            obj.execute_kw(DB, ADMIN_UID, "admin", "res.partner", "create", [{"name": "Twice"}])
        faults.clear()
        count = execute_kw(server, "res.partner", "search_count", [["name", "=", "Twice"]])
        assert count == 2


async def test_admin_api_replaces_reads_and_clears_the_plan(
    server: OdooServer, http: httpx.AsyncClient
) -> None:
    spec = {"seed": 3, "rules": [{"pattern": "/jsonrpc", "error_rate": 1.0, "error_status": 500}]}
    assert (await http.post("/__sim__/faults", json=spec)).status_code == 200
    assert (await http.post("/jsonrpc", json=VERSION_CALL)).status_code == 500
    current = (await http.get("/__sim__/faults")).json()
    assert current["rules"][0]["error_status"] == 500 and current["stats"] == {"error": 1}
    bad = await http.post("/__sim__/faults", json={"rules": [{"nonsense": 1}]})
    assert bad.status_code == 400
    assert (await http.delete("/__sim__/faults")).status_code == 204
    assert (await http.post("/jsonrpc", json=VERSION_CALL)).status_code == 200


async def test_admin_api_is_off_without_faults() -> None:
    async with OdooServer(version=17) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/__sim__/faults")).status_code == 404
        assert server.faults is None


def test_fault_rule_validation() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        FaultRule(error_rate=2)
    with pytest.raises(ValueError, match="error_status"):
        FaultRule(error_status=418)
    with pytest.raises(ValueError, match="unknown"):
        FaultPlan.from_dict({"rules": [{"latency": 1, "typo": 2}]})
