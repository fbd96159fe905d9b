"""Webhooks both ways: automations that POST to a receiver, and ``/web/hook/<uuid>``."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer
from forgeline.testing import Receiver

from .conftest import ADMIN_UID, DB


class Rpc:
    """JSON-RPC ``object.execute_kw`` as admin, on the test's own event loop."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def __call__(self, model: str, method: str, *args: Any, **kw: Any) -> Any:
        params = {
            "service": "object",
            "method": "execute_kw",
            "args": [DB, ADMIN_UID, "admin", model, method, list(args), kw],
        }
        body = (await self.http.post("/jsonrpc", json={"params": params, "id": 1})).json()
        assert "error" not in body, body["error"]["data"]["message"]
        return body.get("result")


@pytest.fixture
async def served(version: int) -> AsyncIterator[tuple[OdooServer, Rpc, httpx.AsyncClient]]:
    async with (
        OdooServer(version=version) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as http,
    ):
        yield server, Rpc(http), http


async def test_automation_on_write_posts_odoos_payload(
    served: tuple[OdooServer, Rpc, httpx.AsyncClient],
) -> None:
    server, rpc, _ = served
    async with Receiver() as receiver:
        rule_id = await rpc(
            "base.automation",
            "create",
            {
                "name": "Notify Forgeline",
                "model_name": "res.partner",
                "trigger": "on_write",
                "action": "webhook",
                "url": receiver.url("/odoo/secret-token"),
                "webhook_field_ids": ["name", "country_id"],
            },
        )
        partner_id = await rpc("res.partner", "create", {"name": "Hooked"})
        written = time.monotonic()
        assert await rpc("res.partner", "write", [partner_id], {"name": "Hooked again"}) is True
        await receiver.wait_for(1, timeout=1.0)
        assert time.monotonic() - written < 1.0
    [got] = receiver.accepted
    assert got.path == "/odoo/secret-token"
    assert got.event == {
        "_action": f"Notify Forgeline(#{rule_id})",
        "_id": partner_id,
        "_model": "res.partner",
        "country_id": False,
        "id": partner_id,
        "name": "Hooked again",
    }
    assert got.headers["Content-Type"] == "application/json"
    assert not {"Authorization", "X-Odoo-Signature"} & set(got.headers)
    [attempt] = server.webhooks.attempts
    assert attempt.ok and attempt.body == json.dumps(got.event, sort_keys=True).encode()


async def test_unreachable_receiver_does_not_fail_the_write(
    served: tuple[OdooServer, Rpc, httpx.AsyncClient],
) -> None:
    server, rpc, _ = served
    await rpc(
        "base.automation",
        "create",
        {
            "name": "Dead end",
            "model_name": "res.partner",
            "trigger": "on_create_or_write",
            "action": "webhook",
            "url": "http://127.0.0.1:9/unreachable",  # discard port: refused
        },
    )
    partner_id = await rpc("res.partner", "create", {"name": "Still saved"})
    assert await rpc("res.partner", "search_count", [["id", "=", partner_id]]) == 1
    await server.webhooks.drain(timeout=2)
    [attempt] = server.webhooks.attempts
    assert attempt.status is None and attempt.error is not None


async def test_incoming_webhook(
    served: tuple[OdooServer, Rpc, httpx.AsyncClient], version: int
) -> None:
    _, rpc, http = served
    rule_id = await rpc(
        "base.automation",
        "create",
        {
            "name": "Inbound",
            "model_name": "res.partner",
            "trigger": "on_webhook",
            "action": "write",
            "write_values": {"comment": "touched by webhook"},
        },
    )
    [rule] = await rpc("base.automation", "read", [rule_id], ["webhook_uuid"])
    partner_id = await rpc("res.partner", "create", {"name": "Target"})
    payload = {"_model": "res.partner", "_id": partner_id}
    ok = await http.post(f"/web/hook/{rule['webhook_uuid']}", json=payload)
    assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
    [row] = await rpc("res.partner", "read", [partner_id], ["comment"])
    assert row["comment"] == "touched by webhook"
    by_get = await http.get(f"/web/hook/{rule['webhook_uuid']}", params={"_id": str(partner_id)})
    assert by_get.status_code == 200
    unknown = await http.post("/web/hook/00000000-0000-0000-0000-000000000000", json=payload)
    assert (unknown.status_code, unknown.json()) == (404, {"status": "error"})
    broken = await http.post(f"/web/hook/{rule['webhook_uuid']}", json={"_id": 99999999})
    assert (broken.status_code, broken.json()) == (500, {"status": "error"})


async def test_incoming_webhooks_need_odoo_17() -> None:
    async with OdooServer(version=16) as server, httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.post("/web/hook/anything", json={})).status_code == 404
