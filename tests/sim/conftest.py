"""Fixtures for the simulated Odoo over real loopback HTTP: one fresh simulator per test.

The client libraries (xmlrpc.client, odoorpc, odoo-client-lib, odooly) are blocking, so the
server runs on a background event loop (``serve_in_thread``); ``server.call`` runs code on that
loop when a test inspects the simulator directly.
"""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer, serve_in_thread

DB = "demo"
ADMIN_UID = 2


@pytest.fixture(params=[17, 19], ids=lambda v: f"odoo{v}")
def version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def odoo(version: int) -> Iterator[OdooServer]:
    with serve_in_thread(version=version) as server:
        yield server


@pytest.fixture
def odoo17() -> Iterator[OdooServer]:
    with serve_in_thread(version=17) as server:
        yield server


@pytest.fixture
def odoo19() -> Iterator[OdooServer]:
    with serve_in_thread(version=19) as server:
        yield server


def api_key_for(server: OdooServer, uid: int = ADMIN_UID) -> str:
    return server.call(server.simulator.create_api_key, DB, uid, "tests")


_proxies: list[xmlrpc.client.ServerProxy] = []


@pytest.fixture(autouse=True)
def _close_proxies() -> Iterator[None]:
    # An unclosed ServerProxy leaks its socket: a ResourceWarning, an error under pytest's
    # filterwarnings=error.
    yield
    while _proxies:
        _proxies.pop()("close")()


def xmlrpc_proxy(
    server: OdooServer, service: str, *, legacy: bool = False
) -> xmlrpc.client.ServerProxy:
    proxy = xmlrpc.client.ServerProxy(f"{server.url}/xmlrpc/{'' if legacy else '2/'}{service}")
    _proxies.append(proxy)
    return proxy


def execute_kw(server: OdooServer, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
    """One call over XML-RPC as admin, as a user's script would make it."""
    with xmlrpc_proxy(server, "object") as obj:
        return obj.execute_kw(DB, ADMIN_UID, "admin", model, method, list(args), kwargs)


def jsonrpc(
    server: OdooServer, path: str, params: dict[str, Any], client: httpx.Client | None = None
) -> dict[str, Any]:
    payload = {"jsonrpc": "2.0", "method": "call", "params": params, "id": 7}
    http = client or httpx.Client(timeout=10)
    try:
        response = http.post(f"{server.url}{path}", json=payload)
    finally:
        if client is None:
            http.close()
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def snapshot(server: OdooServer, models: tuple[str, ...] = ("res.partner",)) -> str:
    """The visible state of some models, to prove a failed call changed nothing."""
    state = {
        model: execute_kw(server, model, "search_read", [], fields=["write_date", "display_name"])
        for model in models
    }
    return json.dumps(state, sort_keys=True)
