"""The synchronous business APIs against a simulated Odoo 19 over real HTTP: availability
through the cache and through Odoo's outages, purchase requests under Idempotency-Key,
customer validation, and transactions applied by the delivery engine, per tenant."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from forgeline import Hub, Settings
from forgeline.api.app import create_app
from forgeline.api.business import install_business
from forgeline.business import (
    BusinessServices,
    BusinessSettings,
    ErpUnavailable,
    NoErp,
    erp_system,
)
from forgeline.business.erp import many2one, number, records
from forgeline.canonical import json_schema
from forgeline.connectors.odoo import OdooClient
from forgeline.route.subscription import SubscriptionSpec
from forgeline.security.access import Caller
from forgeline.sim.odoo.faults import FaultDecision, FaultPlan, FaultRule
from forgeline.sim.odoo.server import OdooServer
from forgeline.store import Routed, open_store
from forgeline.systems import OdooSystem

from .services import require

SCOPES = frozenset(
    {
        "inventory:read",
        "purchase-requests:write",
        "customers:read",
        "transactions:write",
        "transactions:read",
    }
)
ACME = Caller(id="pr_acme_mes", kind="plant", tenant="acme", scopes=SCOPES, via="api-key")
ACME_PORTAL = Caller(id="pr_acme_portal", kind="partner", tenant="acme", scopes=SCOPES)
GLOBEX = Caller(id="pr_globex_mes", kind="plant", tenant="globex", scopes=SCOPES)
READ_ONLY = Caller(
    id="pr_acme_viewer", kind="plant", tenant="acme", scopes=frozenset({"inventory:read"})
)
CREDENTIALS = {"acme": ACME, "portal": ACME_PORTAL, "globex": GLOBEX, "viewer": READ_ONLY}
# The deadline leaves a cold first read (the site, then the product) room on a slow VM.
FAST = BusinessSettings(availability_ttl=0.3, availability_deadline=1.0, erp_retry_after=1.0)


@dataclass
class Calls(FaultPlan):
    """Counts the requests the simulated Odoo receives, per path; drops the answer of the
    next call to a path in ``lose`` (after Odoo committed it)."""

    seen: Counter[str] = field(default_factory=Counter)
    lose: set[str] = field(default_factory=set)

    def decide(self, path: str) -> FaultDecision | None:
        self.seen[path] += 1
        if path in self.lose:
            self.lose.discard(path)
            return FaultDecision(rule=FaultRule(), drop=True)
        return super().decide(path)

    def down(self) -> None:
        self.rules[:] = [FaultRule(down=True)]

    def up(self) -> None:
        self.rules.clear()


@dataclass
class Plant:
    odoo: OdooServer
    calls: Calls
    client: OdooClient
    hub: Hub
    url: str
    business: BusinessServices

    def http(self, credential: str | None = None) -> httpx.AsyncClient:
        key = credential if credential is not None else self.hub.admin_key
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {key}"}, timeout=20
        )

    async def set_partner(self, name: str, **values: Any) -> int:
        (partner,) = await self.client.search(
            "res.partner", [("name", "=", name)], context={"active_test": False}
        )
        await self.client.write("res.partner", [partner], values)
        return partner

    async def rfqs(self, supplier: int) -> list[dict[str, Any]]:
        return await self.client.search_read(
            "purchase.order",
            [("partner_id", "=", supplier)],
            ["name", "state", "origin", "order_line"],
            order="id",
        )


@asynccontextmanager
async def serving(
    settings: Settings, business: BusinessSettings
) -> AsyncIterator[tuple[Hub, str, BusinessServices]]:
    """``forgeline.testing.running_hub`` with the business routes installed."""
    import socket

    hub = Hub(settings)
    await hub.start()
    app = create_app(hub=hub)
    services = install_business(app, business)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield hub, f"http://127.0.0.1:{sock.getsockname()[1]}", services
    finally:
        server.should_exit = True
        await task
        sock.close()
        await services.aclose()
        await hub.stop()


def apply_completions() -> SubscriptionSpec:
    """The flow a plant configures: a confirmed production marks its Odoo MO done."""
    return SubscriptionSpec.model_validate(
        {
            "name": "erp-production",
            "types": ["production.completed.v1"],
            "source": "api/*",
            "sink": {
                "odoo": {
                    "system": "erp",
                    "model": "mrp.production",
                    "action": "action",
                    "method": "button_mark_done",
                    "find": {"name": "data.production_order"},
                    "values": {"qty_producing": "data.quantity_good"},
                    "backorder": "no",
                }
            },
            "policy": {"ordering": "key", "retry": {"initial_delay": 0.05, "max_attempts": 2}},
        }
    )


@asynccontextmanager
async def plant_at(
    tmp_path: Path, version: int = 19, business: BusinessSettings = FAST
) -> AsyncIterator[Plant]:
    calls = Calls()
    async with OdooServer(version=version, faults=calls) as odoo:
        key = odoo.simulator.create_api_key("demo", 2, "forgeline hub")
        system = OdooSystem(url=odoo.url, db="demo", api_key=key, login="admin")
        settings = Settings.load(
            env={},
            data_dir=tmp_path / f"hub{version}",
            systems={"erp": system},
            subscriptions=(apply_completions(),),
        )
        async with (
            OdooClient(odoo.url, "demo", api_key=key, login="admin") as client,
            serving(settings, business) as (hub, url, services),
        ):
            yield Plant(odoo, calls, client, hub, url, services)


@pytest.fixture
async def plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Plant]:
    async with plant_at(tmp_path) as running:

        async def identify(credential: str) -> Caller | None:
            return CREDENTIALS.get(credential)

        # The hook api/auth.py asks for every credential that is not the operator's key.
        monkeypatch.setattr(running.hub, "identify", identify, raising=False)
        yield running


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


STOCK = "/json/2/product.product/search_read"
AVAILABILITY = "/v1/inventory/availability"

# -- availability ------------------------------------------------------------------------------


async def test_availability_answers_the_sites_quantities_in_canonical_units(
    plant: Plant,
) -> None:
    async with plant.http("acme") as http:
        answer = await http.get(
            "/v1/inventory/availability", params={"sku": "RM-LEG", "site": "WH"}
        )
        kilos = await http.get(
            "/v1/inventory/availability", params={"sku": "RM-VARN", "site": "WH"}
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # The demo's 40 legs, 8 of them reserved by the confirmed MO's components.
    assert {k: body[k] for k in ("sku", "site", "on_hand", "reserved", "available", "uom")} == {
        "sku": "RM-LEG",
        "site": "WH",
        "on_hand": 40.0,
        "reserved": 8.0,
        "available": 32.0,
        "uom": "EA",
    }
    assert body["stale"] is False and "age_seconds" not in body
    assert body["as_of"].endswith("Z")
    assert kilos.json()["uom"] == "KG"


async def test_a_burst_makes_one_odoo_call_and_the_cache_expires_after_its_ttl(
    plant: Plant,
) -> None:
    params = {"sku": "RM-SCREW", "site": "WH"}
    async with plant.http("acme") as http:
        burst = await asyncio.gather(
            *(http.get("/v1/inventory/availability", params=params) for _ in range(25))
        )
        assert {r.status_code for r in burst} == {200}
        assert {r.json()["on_hand"] for r in burst} == {500.0}
        assert plant.calls.seen[STOCK] == 1  # single flight: one read for 25 requests
        await http.get("/v1/inventory/availability", params=params)
        assert plant.calls.seen[STOCK] == 1  # within the TTL: from the cache
        await asyncio.sleep(FAST.availability_ttl + 0.05)
        again = await http.get("/v1/inventory/availability", params=params)
    assert again.status_code == 200 and again.json()["stale"] is False
    assert plant.calls.seen[STOCK] == 2
    cache = plant.business.availability
    assert (cache.fetches, cache.hits) == (2, 1)  # the burst shared one fetch; one hit


async def test_while_odoo_is_down_the_last_known_level_is_served_stale_then_503(
    plant: Plant,
) -> None:
    async with plant.http("acme") as http:
        known = {"sku": "RM-TOP", "site": "WH"}
        fresh = await http.get("/v1/inventory/availability", params=known)
        assert fresh.status_code == 200
        plant.calls.down()
        await asyncio.sleep(FAST.availability_ttl + 0.05)
        stale = await http.get("/v1/inventory/availability", params=known)
        assert stale.status_code == 200, stale.text
        body = stale.json()
        assert body["stale"] is True and body["on_hand"] == 8.0
        assert body["age_seconds"] >= FAST.availability_ttl
        assert body["as_of"] == fresh.json()["as_of"]
        assert stale.headers["warning"].startswith("110 ")
        assert int(stale.headers["age"]) >= 0

        # Nothing known about this one: a problem, not a guess.
        unknown = await http.get(
            "/v1/inventory/availability", params={"sku": "RM-HINGE", "site": "WH"}
        )
        assert unknown.status_code == 503
        assert unknown.headers["content-type"] == "application/problem+json"
        problem = unknown.json()
        assert problem["type"] == "urn:forgeline:problem:erp-unavailable"
        assert "RM-HINGE" in problem["detail"] and "nginx" not in unknown.text

        # The breaker is open: requests answer at once without knocking on Odoo's door. (A
        # read that outlived its caller's deadline may still be retrying: counted after it.)
        await eventually(lambda: _breaker_open(plant))
        await eventually(lambda: _no_read_running(plant))
        asked = plant.calls.seen.total()
        started = time.monotonic()
        for _ in range(5):
            again = await http.get("/v1/inventory/availability", params=known)
            assert again.json()["stale"] is True
        assert time.monotonic() - started < 1.0
        assert plant.calls.seen.total() == asked

        plant.calls.up()
        await asyncio.sleep(FAST.erp_retry_after)
        back = await http.get("/v1/inventory/availability", params=known)
    assert back.status_code == 200 and back.json()["stale"] is False


async def _no_read_running(plant: Plant) -> bool:
    return not plant.business.availability._flights


async def _breaker_open(plant: Plant) -> bool:
    return plant.business.availability._down_until > time.monotonic()


async def test_a_slow_odoo_is_answered_from_the_last_level_at_the_deadline(
    plant: Plant,
) -> None:
    params = {"sku": "RM-PANEL", "site": "WH"}
    async with plant.http("acme") as http:
        assert (await http.get("/v1/inventory/availability", params=params)).status_code == 200
        plant.calls.add(pattern=STOCK, latency=3.0)
        await asyncio.sleep(FAST.availability_ttl + 0.05)
        started = time.monotonic()
        slow = await http.get("/v1/inventory/availability", params=params)
        waited = time.monotonic() - started
        assert slow.status_code == 200 and slow.json()["stale"] is True
        assert FAST.availability_deadline <= waited < FAST.availability_deadline + 1.0
        plant.calls.up()
        # The slow read went on by itself and refreshed the cache when it landed.
        refreshed = await eventually(lambda: _fresh(http, params), timeout=5)
    assert refreshed["on_hand"] == 30.0
    assert plant.calls.seen[STOCK] == 2  # the slow read was not asked twice


async def _fresh(http: httpx.AsyncClient, params: dict[str, str]) -> dict[str, Any] | None:
    body: dict[str, Any] = (await http.get("/v1/inventory/availability", params=params)).json()
    return body if body.get("stale") is False else None


async def test_unknown_skus_and_sites_are_404_and_bad_queries_422(plant: Plant) -> None:
    async with plant.http("acme") as http:
        sku = await http.get("/v1/inventory/availability", params={"sku": "NOPE", "site": "WH"})
        site = await http.get("/v1/inventory/availability", params={"sku": "RM-LEG", "site": "X"})
        missing = await http.get("/v1/inventory/availability", params={"site": "WH"})
        control = await http.get(
            "/v1/inventory/availability", params={"sku": "RM\x01LEG", "site": "WH"}
        )
    assert sku.status_code == 404 and "'NOPE'" in sku.json()["detail"]
    assert site.status_code == 404 and "'X'" in site.json()["detail"]
    assert missing.status_code == 422 and missing.json()["errors"][0]["path"] == "query.sku"
    assert control.status_code == 422


async def test_the_business_routes_need_their_scopes(plant: Plant) -> None:
    async with plant.http("viewer") as http:
        allowed = await http.get(
            "/v1/inventory/availability", params={"sku": "RM-LEG", "site": "WH"}
        )
        refused = await http.get("/v1/customers/C-1/validation")
    async with httpx.AsyncClient(base_url=plant.url) as anonymous:
        nobody = await anonymous.get(
            "/v1/inventory/availability", params={"sku": "RM-LEG", "site": "WH"}
        )
    assert allowed.status_code == 200
    assert refused.status_code == 403 and "customers:read" in refused.json()["detail"]
    assert nobody.status_code == 401


# -- purchase requests -------------------------------------------------------------------------

REQUEST = {
    "supplier": "S-READY",
    "lines": [
        {"sku": "RM-LEG", "qty": 40, "needed_by": "2026-12-01"},
        {"sku": "RM-VARN", "qty": 2.5, "uom": "KG"},
    ],
    "note": "for WO-2026-00042",
}


@pytest.fixture
async def supplier(plant: Plant) -> int:
    return await plant.set_partner("Ready Mat", ref="S-READY")  # no RFQ in the demo data


async def test_a_purchase_request_becomes_a_draft_rfq_in_odoo(plant: Plant, supplier: int) -> None:
    async with plant.http("acme") as http:
        answer = await http.post(
            "/v1/purchase-requests", json=REQUEST, headers={"Idempotency-Key": "pr-1"}
        )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "draft" and body["supplier"] == "S-READY"
    assert body["reference"].startswith("P")
    assert body["lines"][0] == {
        "sku": "RM-LEG",
        "qty": 40.0,
        "uom": "EA",
        "needed_by": "2026-12-01",
    }
    assert body["lines"][1]["uom"] == "KG"
    assert "idempotent-replayed" not in answer.headers
    (rfq,) = await plant.rfqs(supplier)
    assert rfq["name"] == body["reference"] and rfq["state"] == "draft"
    lines = await plant.client.read(
        "purchase.order.line",
        rfq["order_line"],
        ["product_id", "product_qty", "product_uom", "date_planned"],
    )
    assert [(ln["product_id"][1], ln["product_qty"], ln["product_uom"][1]) for ln in lines] == [
        ("[RM-LEG] Table Leg", 40.0, "Units"),
        ("[RM-VARN] Varnish", 2.5, "kg"),
    ]
    assert lines[0]["date_planned"] == "2026-12-01 12:00:00"


async def test_the_same_key_and_body_replay_the_first_answer_and_make_one_rfq(
    plant: Plant, supplier: int
) -> None:
    headers = {"Idempotency-Key": "pr-replay"}
    async with plant.http("acme") as http:
        first = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        # The same JSON in another order is the same request.
        reordered = dict(reversed(list(REQUEST.items())))
        again = await http.post("/v1/purchase-requests", json=reordered, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert len(await plant.rfqs(supplier)) == 1


async def test_the_same_key_with_another_body_is_refused(plant: Plant, supplier: int) -> None:
    headers = {"Idempotency-Key": "pr-mismatch"}
    other = {**REQUEST, "note": "something else"}
    async with plant.http("acme") as http:
        assert (
            await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        ).status_code == 201
        refused = await http.post("/v1/purchase-requests", json=other, headers=headers)
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:forgeline:problem:idempotency-key-reused"
    assert len(await plant.rfqs(supplier)) == 1


async def test_a_purchase_request_without_an_idempotency_key_is_refused(
    plant: Plant, supplier: int
) -> None:
    async with plant.http("acme") as http:
        refused = await http.post("/v1/purchase-requests", json=REQUEST)
        garbled = await http.post(
            "/v1/purchase-requests", json=REQUEST, headers={"Idempotency-Key": "a b"}
        )
    assert refused.status_code == 400
    assert refused.json()["type"] == "urn:forgeline:problem:idempotency-key-required"
    assert garbled.status_code == 400
    assert await plant.rfqs(supplier) == []


async def test_a_concurrent_request_with_the_same_key_gets_409(plant: Plant, supplier: int) -> None:
    plant.calls.add(pattern="/json/2/purchase.order/create", latency=0.5)
    headers = {"Idempotency-Key": "pr-race"}
    async with plant.http("acme") as http:
        first = asyncio.create_task(
            http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        )
        await asyncio.sleep(0.2)  # the first is waiting on Odoo's create
        second = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        assert second.status_code == 409, second.text
        assert (await first).status_code == 201
        third = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
    assert third.status_code == 201 and third.headers["idempotent-replayed"] == "true"
    assert len(await plant.rfqs(supplier)) == 1


async def test_an_odoo_outage_releases_the_key_so_the_retry_runs(
    plant: Plant, supplier: int
) -> None:
    headers = {"Idempotency-Key": "pr-outage"}
    async with plant.http("acme") as http:
        plant.calls.down()
        failed = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        assert failed.status_code == 503
        assert failed.json()["type"] == "urn:forgeline:problem:erp-unavailable"
        assert "nginx" not in failed.text and "503" not in failed.json()["detail"]
        plant.calls.up()
        retried = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert len(await plant.rfqs(supplier)) == 1


async def test_a_lost_answer_to_the_create_does_not_make_a_second_rfq(
    plant: Plant, supplier: int
) -> None:
    # Odoo commits the RFQ, then the connection drops: the hub cannot know it exists.
    plant.calls.lose.add("/json/2/purchase.order/create")
    headers = {"Idempotency-Key": "pr-lost"}
    async with plant.http("acme") as http:
        lost = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        assert lost.status_code == 503
        assert len(await plant.rfqs(supplier)) == 1  # it was created all the same
        retried = await http.post("/v1/purchase-requests", json=REQUEST, headers=headers)
    assert retried.status_code == 201
    (rfq,) = await plant.rfqs(supplier)  # the retry found it instead of making another
    assert retried.json()["reference"] == rfq["name"]
    assert plant.calls.seen["/json/2/purchase.order/create"] == 1


async def test_unknown_references_are_422_naming_each_line_and_create_nothing(
    plant: Plant, supplier: int
) -> None:
    bad_lines = {
        "supplier": "S-READY",
        "lines": [
            {"sku": "RM-LEG", "qty": 1},
            {"sku": "NOPE", "qty": 1},
            {"sku": "RM-TOP", "qty": 1, "uom": "PALLET"},
        ],
    }
    async with plant.http("acme") as http:
        lines = await http.post(
            "/v1/purchase-requests", json=bad_lines, headers={"Idempotency-Key": "pr-bad-1"}
        )
        vendor = await http.post(
            "/v1/purchase-requests",
            json={**REQUEST, "supplier": "S-NOBODY"},
            headers={"Idempotency-Key": "pr-bad-2"},
        )
        shape = await http.post(
            "/v1/purchase-requests",
            json={"supplier": "S-READY", "lines": [{"sku": "RM-LEG", "qty": -1}]},
            headers={"Idempotency-Key": "pr-bad-3"},
        )
        fixed = await http.post(
            "/v1/purchase-requests", json=REQUEST, headers={"Idempotency-Key": "pr-bad-1"}
        )
    assert lines.status_code == 422
    assert [e["path"] for e in lines.json()["errors"]] == ["lines[1].sku"]
    assert vendor.status_code == 422 and vendor.json()["errors"][0]["path"] == "supplier"
    assert shape.status_code == 422 and shape.json()["errors"][0]["path"] == "body.lines.0.qty"
    # A refused request keeps nothing: its key is free for the corrected one.
    assert fixed.status_code == 201
    assert len(await plant.rfqs(supplier)) == 1


async def test_a_unit_the_erp_lacks_is_named(plant: Plant, supplier: int) -> None:
    body = {"supplier": "S-READY", "lines": [{"sku": "RM-TOP", "qty": 1, "uom": "PALLET"}]}
    async with plant.http("acme") as http:
        answer = await http.post(
            "/v1/purchase-requests", json=body, headers={"Idempotency-Key": "pr-uom"}
        )
    assert answer.status_code == 422
    assert answer.json()["errors"] == [
        {"path": "lines[0].uom", "message": "'PALLET' is not a unit of the ERP"}
    ]


async def test_idempotency_keys_belong_to_their_caller(plant: Plant, supplier: int) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    async with plant.http("acme") as acme, plant.http("globex") as globex:
        mine = await acme.post("/v1/purchase-requests", json=REQUEST, headers=headers)
        theirs = await globex.post("/v1/purchase-requests", json=REQUEST, headers=headers)
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert mine.json()["reference"] != theirs.json()["reference"]
    assert len(await plant.rfqs(supplier)) == 2


# -- customer validation -----------------------------------------------------------------------


async def _invoice(plant: Plant, partner: int, amount: float, *, post: bool = True) -> None:
    move = await plant.client.create(
        "account.move",
        {
            "move_type": "out_invoice",
            "partner_id": partner,
            "invoice_line_ids": [(0, 0, {"name": "Tables", "quantity": 1, "price_unit": amount})],
        },
    )
    if post:
        await plant.client.call("account.move", "action_post", ids=[move])


async def _use_credit_limits(plant: Plant) -> None:
    """Settings > Invoicing > Sales Credit Limit: Odoo checks limits only once it is on."""
    (company,) = await plant.client.search("res.company", [])
    await plant.client.write("res.company", [company], {"account_use_credit_limit": True})


async def test_a_customer_in_good_standing_is_active_without_hold(plant: Plant) -> None:
    await _use_credit_limits(plant)
    partner = await plant.set_partner("Wood Corner", ref="C-WOOD", credit_limit=1000.0)
    await _invoice(plant, partner, 400.0)
    async with plant.http("acme") as http:
        answer = await http.get("/v1/customers/C-WOOD/validation")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "ref": "C-WOOD",
        "name": "Wood Corner",
        "account_status": "active",
        "credit_hold": False,
        "credit_limit": 1000.0,
        "credit_used": 400.0,
        "currency": "EUR",
        "reasons": [],
    }


async def test_a_customer_over_its_credit_limit_is_on_credit_hold(plant: Plant) -> None:
    partner = await plant.set_partner("Deco Addict", ref="C-DECO", credit_limit=500.0)
    await _invoice(plant, partner, 450.0)
    await _invoice(plant, partner, 300.0)
    await _invoice(plant, partner, 9_999.0, post=False)  # a draft owes nothing yet
    # A contact orders under the company's reference: the company's books decide.
    await plant.client.create("res.partner", {"name": "Buyer", "parent_id": partner})
    async with plant.http("acme") as http:
        limits_off = (await http.get("/v1/customers/C-DECO/validation")).json()
        await _use_credit_limits(plant)
        answer = await http.get("/v1/customers/C-DECO/validation")
    assert limits_off["credit_hold"] is False and limits_off["credit_limit"] is None
    body = answer.json()
    assert body["account_status"] == "active"
    assert body["credit_hold"] is True
    assert body["credit_used"] == 750.0 and body["credit_limit"] == 500.0
    assert [r["code"] for r in body["reasons"]] == ["credit_limit_exceeded"]
    assert "750.00 EUR" in body["reasons"][0]["detail"]


async def test_an_archived_customer_is_reported_archived(plant: Plant) -> None:
    await plant.set_partner("Wood Corner", ref="C-GONE", active=False)
    async with plant.http("acme") as http:
        body = (await http.get("/v1/customers/C-GONE/validation")).json()
        missing = await http.get("/v1/customers/C-NOBODY/validation")
    assert body["account_status"] == "archived"
    assert [r["code"] for r in body["reasons"]] == ["archived"]
    assert missing.status_code == 404


async def test_odoo_16_to_18_block_customers_with_a_blocking_sales_warning(
    tmp_path: Path,
) -> None:
    async with plant_at(tmp_path, version=17) as old:
        await old.set_partner("Wood Corner", ref="C-BLOCK", sale_warn="block")
        async with old.http() as http:
            body = (await http.get("/v1/customers/C-BLOCK/validation")).json()
    assert body["account_status"] == "blocked"
    assert [r["code"] for r in body["reasons"]] == ["sales_blocked"]


async def test_customer_validation_is_never_answered_from_an_old_balance(plant: Plant) -> None:
    await plant.set_partner("Wood Corner", ref="C-WOOD")
    async with plant.http("acme") as http:
        assert (await http.get("/v1/customers/C-WOOD/validation")).status_code == 200
        plant.calls.down()
        down = await http.get("/v1/customers/C-WOOD/validation")
    assert down.status_code == 503
    assert down.json()["type"] == "urn:forgeline:problem:erp-unavailable"


# -- transactions ------------------------------------------------------------------------------


async def _confirmed_mo(plant: Plant, quantity: float = 2.0) -> tuple[int, str]:
    (product,) = await plant.client.search("product.product", [("default_code", "=", "FG-TABLE")])
    mo = await plant.client.create(
        "mrp.production", {"product_id": product, "product_qty": quantity}
    )
    await plant.client.call("mrp.production", "action_confirm", ids=[mo])
    (row,) = await plant.client.read("mrp.production", [mo], ["name"])
    return mo, str(row["name"])


def completion(mo: str, quantity: float = 2.0, **extra: Any) -> dict[str, Any]:
    data = {
        "production_order": mo,
        "product": "FG-TABLE",
        "quantity_good": quantity,
        "uom": "EA",
        "completed_at": "2026-11-27T13:48:00Z",
        **extra,
    }
    return {"type": "production.completed.v1", "subject": mo, "data": data}


async def _state_of(http: httpx.AsyncClient, url: str, state: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await http.get(url)).json()
    return body if body.get("state") == state else None


async def test_a_production_confirmation_is_applied_to_odoo_by_its_flow(plant: Plant) -> None:
    mo, name = await _confirmed_mo(plant)
    async with plant.http("acme") as http:
        posted = await http.post(
            "/v1/transactions", json=completion(name), headers={"Idempotency-Key": "tx-1"}
        )
        assert posted.status_code == 202, posted.text
        location = posted.headers["location"]
        assert location == "/v1/transactions/tx-1" == posted.json()["status_url"]
        assert posted.json()["state"] == "accepted"
        applied = await eventually(lambda: _state_of(http, location, "applied"))
    assert applied["deliveries"] == [
        {"target": "erp-production", "state": "delivered", "attempts": 1, "last_error": None}
    ]
    (row,) = await plant.client.read("mrp.production", [mo], ["state", "qty_produced"])
    assert row == {"id": mo, "state": "done", "qty_produced": 2.0}
    record = await plant.hub.log.get("api/pr_acme_mes", "tx-1")
    assert record is not None and record.event.tenant == "acme"
    assert record.event.subject == name and record.event.dataschema is not None


async def test_a_transaction_odoo_refuses_ends_failed(plant: Plant) -> None:
    async with plant.http("acme") as http, plant.http() as operator:
        posted = await http.post("/v1/transactions", json=completion("WH/MO/99999"))
        assert posted.status_code == 202
        url = posted.headers["location"]
        failed = await eventually(lambda: _state_of(http, url, "failed"))
        seen_by_operator = (await operator.get(url)).json()
    (delivery,) = failed["deliveries"]
    assert delivery["state"] == "dead"
    # The plant application reads a summary; the operator reads what the sink said.
    assert delivery["last_error"] == "the target refused the transaction"
    assert "WH/MO/99999" in seen_by_operator["deliveries"][0]["last_error"]


async def test_transactions_are_validated_against_the_catalog_with_paths(plant: Plant) -> None:
    async with plant.http("acme") as http:
        unknown = await http.post("/v1/transactions", json={"type": "made.up.v1", "data": {}})
        bad = await http.post(
            "/v1/transactions",
            json=completion("WH/MO/00001", quantity=-1, colour="red"),
        )
        shape = await http.post("/v1/transactions", json={"type": "production.completed.v1"})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["path"] == "type"
    assert bad.status_code == 422
    assert bad.json()["type"] == "urn:forgeline:problem:invalid-payload"
    assert {e["path"] for e in bad.json()["errors"]} == {"data.quantity_good", "data.colour"}
    assert shape.status_code == 422 and shape.json()["errors"][0]["path"] == "body.data"
    assert await plant.hub.log.head() == 0  # nothing was logged


async def test_a_type_no_flow_applies_is_refused_not_logged(plant: Plant) -> None:
    # Valid data, but no flow or subscription of this hub takes quality holds.
    hold = json_schema("quality.hold.placed.v1")["examples"][0]
    async with plant.http("acme") as http:
        refused = await http.post(
            "/v1/transactions", json={"type": "quality.hold.placed.v1", "data": hold}
        )
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:forgeline:problem:no-flow-for-type"
    assert await plant.hub.log.head() == 0


async def test_a_retried_transaction_is_logged_once(plant: Plant) -> None:
    _, name = await _confirmed_mo(plant)
    headers = {"Idempotency-Key": "tx-retry"}
    async with plant.http("acme") as http:
        first = await http.post("/v1/transactions", json=completion(name), headers=headers)
        again = await http.post("/v1/transactions", json=completion(name), headers=headers)
        other = await http.post(
            "/v1/transactions", json=completion(name, quantity=1.0), headers=headers
        )
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["position"] == first.json()["position"]
    assert other.status_code == 422
    assert other.json()["type"] == "urn:forgeline:problem:idempotency-key-reused"
    assert await plant.hub.log.head() == 1


async def test_another_tenants_transaction_is_not_found(plant: Plant) -> None:
    _, name = await _confirmed_mo(plant)
    async with (
        plant.http("acme") as acme,
        plant.http("portal") as colleague,
        plant.http("globex") as globex,
        plant.http() as operator,
    ):
        posted = await acme.post(
            "/v1/transactions", json=completion(name), headers={"Idempotency-Key": "tx-acme"}
        )
        url = posted.headers["location"]
        theirs = await globex.get(url)
        missing = await globex.get("/v1/transactions/never-posted")
        same_tenant = await colleague.get(url)
        everyone = await operator.get(url)
    assert theirs.status_code == 404
    assert theirs.json()["detail"] == missing.json()["detail"].replace("never-posted", "tx-acme")
    assert same_tenant.status_code == 200
    assert everyone.status_code == 200 and everyone.json()["id"] == "tx-acme"


# -- the store's read of one event's deliveries ------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_store_reads_the_deliveries_of_one_log_position(
    backend: str, tmp_path: Path
) -> None:
    if backend == "postgres":
        require("postgres")
        url = f"postgresql://root@127.0.0.1/test?schema=business_{time.time_ns()}"
    else:
        url = f"sqlite:///{tmp_path / 'state.db'}"
    store = open_store(url)
    await store.open()
    try:
        spec = SubscriptionSpec.model_validate(
            {"name": "a", "types": ["x.y.v1"], "sink": {"url": "http://127.0.0.1:9/in"}}
        )
        first = await store.create_subscription(spec, 0)
        second = await store.create_subscription(spec.model_copy(update={"name": "b"}), 0)
        routed = [
            Routed(p, 0.0, f"e{p}", "s", "x.y.v1", None, [first.id, second.id]) for p in (1, 2)
        ]
        await store.record_routes(routed, 2)
        found = await store.deliveries_of_event(2)
        assert [(d.subscription_id, d.position, d.event_id) for d in found] == [
            (first.id, 2, "e2"),
            (second.id, 2, "e2"),
        ]
        assert await store.deliveries_of_event(3) == []
    finally:
        await store.aclose()
        if backend == "postgres":
            await _drop_schema(url)


async def _drop_schema(url: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    schema = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect("postgresql://root@127.0.0.1/test")
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# -- which ERP ---------------------------------------------------------------------------------


async def test_without_an_erp_the_business_apis_say_so(tmp_path: Path) -> None:
    settings = Settings.load(env={}, data_dir=tmp_path / "hub")
    async with serving(settings, FAST) as (hub, url, _):
        headers = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers) as http:
            stock = await http.get(AVAILABILITY, params={"sku": "RM-LEG", "site": "WH"})
            customer = await http.get("/v1/customers/C-1/validation")
    for answer in (stock, customer):
        assert answer.status_code == 503
        assert answer.json()["type"] == "urn:forgeline:problem:no-erp"
        assert "no ERP is configured" in answer.json()["detail"]


def test_the_erp_is_the_named_odoo_system_or_the_only_one() -> None:
    one = OdooSystem(url="http://odoo.local", db="prod", api_key="k")
    assert erp_system({"plant-erp": one}, None) == "plant-erp"
    assert erp_system({"a": one, "b": one}, "b") == "b"
    with pytest.raises(NoErp, match=r"several Odoo systems are configured \(a, b\)"):
        erp_system({"a": one, "b": one}, None)
    with pytest.raises(NoErp, match="'c', which is not an Odoo system"):
        erp_system({"a": one}, "c")


def test_installing_twice_mounts_once_and_applies_new_settings(tmp_path: Path) -> None:
    app = create_app(Settings.load(env={}, data_dir=tmp_path / "hub"))
    first = install_business(app)
    assert install_business(app) is first
    second = install_business(app, FAST)
    assert app.state.business is second and second.availability.ttl == FAST.availability_ttl
    paths = [path for path in app.openapi()["paths"] if path.startswith("/v1/transactions")]
    assert paths == ["/v1/transactions", "/v1/transactions/{transaction_id}"]


def test_odoo_answers_are_checked_before_use() -> None:
    assert records([{"id": 1, "name": "x"}], "read") == [{"id": 1, "name": "x"}]
    assert (number(False, "read"), number(3, "read")) == (0.0, 3.0)
    assert many2one([4, "kg"], "read") == (4, "kg") and many2one(False, "read") is None
    for bad_records in ({"id": 1}, ["id"], [{"name": "no id"}], [{"id": True}]):
        with pytest.raises(ErpUnavailable, match="cannot read: the ERP answered something"):
            records(bad_records, "read")
    for bad_number in ("12", True, {"$gt": 0}, float("nan"), None):
        with pytest.raises(ErpUnavailable):
            number(bad_number, "read")
    for bad_reference in ("kg", [4], [4, 5], ["4", "kg"], 4):
        with pytest.raises(ErpUnavailable):
            many2one(bad_reference, "read")


async def test_a_garbled_odoo_answer_is_a_503_for_customers_and_purchases(
    plant: Plant, supplier: int
) -> None:
    plant.calls.add(pattern="/json/2/res.partner/search_read", garbage_rate=1.0)
    async with plant.http("acme") as http:
        customer = await http.get("/v1/customers/C-WOOD/validation")
        purchase = await http.post(
            "/v1/purchase-requests", json=REQUEST, headers={"Idempotency-Key": "pr-garbled"}
        )
    for answer in (customer, purchase):
        assert answer.status_code == 503, answer.text
        assert answer.json()["type"] == "urn:forgeline:problem:erp-unavailable"
        assert "garbage" not in answer.text
    assert await plant.rfqs(supplier) == []
