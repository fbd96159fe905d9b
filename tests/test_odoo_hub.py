"""The hub with a simulated Odoo 19 over real HTTP: events in (poller, webhooks) and effects
out (the Odoo sink), including the answer lost after Odoo committed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgeline import Event, Hub, Settings
from forgeline.connectors.odoo import OdooClient
from forgeline.route.subscription import SubscriptionSpec
from forgeline.sim.odoo.faults import LoseAnswers
from forgeline.sim.odoo.server import OdooServer
from forgeline.sources import WEBHOOK_TYPE
from forgeline.store import DeadLetterFilter
from forgeline.systems import OdooPoll, OdooSystem
from forgeline.testing import running_hub

TOKEN = "hook-secret-1234"
MES = "mes://plant-1/line-1"


@dataclass
class Plant:
    odoo: OdooServer
    faults: LoseAnswers
    client: OdooClient
    hub: Hub
    url: str

    async def new_mo(
        self, quantity: float = 2.0, *, confirm: bool = True, product: str = "FG-TABLE"
    ) -> tuple[int, str]:
        (product_id,) = await self.client.search(
            "product.product", [("default_code", "=", product)]
        )
        mo = await self.client.create(
            "mrp.production", {"product_id": product_id, "product_qty": quantity}
        )
        if confirm:
            await self.client.call("mrp.production", "action_confirm", ids=[mo])
        (row,) = await self.client.read("mrp.production", [mo], ["name"])
        return mo, str(row["name"])

    async def mo(self, mo: int) -> dict[str, Any]:
        (row,) = await self.client.read(
            "mrp.production", [mo], ["state", "qty_produced", "move_finished_ids"]
        )
        return row

    async def events(self, type: str, subject: str | None = None) -> list[Event]:
        records = await self.hub.log.read(0, 10_000)
        return [
            r.event
            for r in records
            if r.event.type == type and (subject is None or r.event.subject == subject)
        ]


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


def _subscription(**odoo: Any) -> SubscriptionSpec:
    target = {
        "system": "erp",
        "model": "mrp.production",
        "action": "action",
        "method": "button_mark_done",
        "find": {"name": "data.mo"},
        "values": {"qty_producing": "data.quantity"},
        **odoo,
    }
    return SubscriptionSpec.model_validate(
        {
            "name": "erp-confirm",
            "types": ["production.completed.v1"],
            "source": "mes://*",
            "sink": {"odoo": target},
            "policy": {"ordering": "key", "retry": {"initial_delay": 0.05, "max_attempts": 4}},
        }
    )


@pytest.fixture
async def plant(tmp_path: Path) -> AsyncIterator[Plant]:
    faults = LoseAnswers(("/mrp.production/button_mark_done",))
    async with OdooServer(version=19, faults=faults) as odoo:
        key = odoo.simulator.create_api_key("demo", 2, "forgeline hub")
        system = OdooSystem(
            url=odoo.url,
            db="demo",
            api_key=key,
            poll=[OdooPoll(model="mrp.production", every=0.2, overlap=2)],
            webhook_token=TOKEN,
        )
        settings = Settings.load(
            env={}, data_dir=tmp_path, systems={"erp": system}, subscriptions=(_subscription(),)
        )
        async with (
            OdooClient(odoo.url, "demo", api_key=key) as client,
            running_hub(settings) as (hub, url),
        ):
            yield Plant(odoo, faults, client, hub, url)


async def test_a_confirmed_mo_is_published_once_by_the_poller(plant: Plant) -> None:
    _, name = await plant.new_mo()

    released = await eventually(lambda: plant.events("odoo.production.order.released.v1", name))
    assert released[0].source == f"odoo://{plant.odoo.url.removeprefix('http://')}/demo"
    assert released[0].data["record"]["state"] == "confirmed"
    await asyncio.sleep(0.6)  # three more polls: the overlap window re-reads the MO
    assert len(await plant.events("odoo.production.order.released.v1", name)) == 1
    # Odoo's record never travels under the canonical name: that one comes from a flow.
    assert await plant.events("production.order.released.v1") == []


async def test_production_reported_by_the_mes_closes_the_mo_once_despite_a_lost_answer(
    plant: Plant,
) -> None:
    mo, name = await plant.new_mo(quantity=3)
    event = Event.new("production.completed.v1", MES, {"mo": name, "quantity": 3.0}, subject=name)
    await plant.hub.publish([event])

    async def done() -> dict[str, Any] | None:
        row = await plant.mo(mo)
        return row if row["state"] == "done" else None

    row = await eventually(done)
    assert plant.faults.lost  # Odoo committed the first call, and its answer never came
    assert row["qty_produced"] == 3.0
    assert len(row["move_finished_ids"]) == 1  # one production, not two
    (sub,) = await plant.hub.store.list_subscriptions()
    (delivery,) = await eventually(lambda: _delivered(plant.hub, sub.id))
    assert delivery.attempts == 2  # the lost answer was retried, and found the MO done
    # The poller then reports the MO done, from Odoo's side, under Odoo's own type (the
    # MES's production.completed.v1 is the only canonical one).
    (reported,) = await eventually(lambda: plant.events("odoo.production.completed.v1", name))
    assert reported.data["record"]["state"] == "done"
    assert reported.data["record"]["qty_produced"] == 3.0
    assert [e.source for e in await plant.events("production.completed.v1", name)] == [MES]


async def _delivered(hub: Hub, subscription: str) -> list[Any]:
    return await hub.store.list_deliveries("delivered", DeadLetterFilter(subscription), 10)


async def test_odoo_business_errors_become_dead_letters_with_odoos_message(
    plant: Plant,
) -> None:
    # A lot-tracked product cannot be produced without a lot: Odoo refuses.
    mo, name = await plant.new_mo(product="FG-CAB")
    await plant.hub.publish(
        [
            Event.new("production.completed.v1", MES, {"mo": name, "quantity": 2.0}, subject=name),
            Event.new(
                "production.completed.v1",
                MES,
                {"mo": "WH/MO/99999", "quantity": 1.0},
                subject="WH/MO/99999",
            ),
            Event.new("production.completed.v1", MES, {"quantity": 1.0}, subject="no-mo"),
        ]
    )

    async def dead() -> list[Any]:
        found = await plant.hub.store.list_deliveries("dead", DeadLetterFilter(), 10)
        return found if len(found) == 3 else []

    reasons = sorted(str(d.last_error) for d in await eventually(dead))
    assert any("WH/MO/99999" in r for r in reasons)  # nothing to act on
    assert any("'data.mo'" in r for r in reasons)  # the event does not fit the target
    (refused,) = [r for r in reasons if "WH/MO/99999" not in r and "data.mo" not in r]
    assert "lot/serial number" in refused.lower()  # Odoo's own words reach the dead letter
    row = await plant.mo(mo)
    # Nothing was produced; the quantity written before the refused call stays, as it would
    # after the same refusal in Odoo's own form (and writing it again is harmless).
    assert row["state"] != "done" and row["qty_produced"] == 0


async def test_odoo_webhooks_are_taken_fast_and_authenticated_by_their_token(
    plant: Plant,
) -> None:
    mo, name = await plant.new_mo(confirm=False)
    payload = {"_model": "mrp.production", "_id": mo, "_action": "Notify(#1)", "id": mo}
    async with httpx.AsyncClient(base_url=plant.url) as http:
        answer = await http.post(f"/hooks/odoo/erp/{TOKEN}", json=payload)
        assert answer.status_code == 202, answer.text
        again = await http.post(f"/hooks/odoo/erp/{TOKEN}", json=payload)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        for path in (f"/hooks/odoo/erp/{TOKEN}x", f"/hooks/odoo/nope/{TOKEN}"):
            refused = await http.post(path, json=payload)
            assert refused.status_code == 404
            assert "token" not in refused.text.lower()
        bad = await http.post(f"/hooks/odoo/erp/{TOKEN}", json={"id": 1})
        assert bad.status_code == 400
        assert "_model" in bad.json()["detail"]
    raw = await plant.events(WEBHOOK_TYPE)
    assert len(raw) == 1 and raw[0].data == payload
    # The notification woke the poller: the draft MO is in the log as a change.
    await eventually(lambda: plant.events("odoo.record.changed.v1", name), timeout=3)


async def test_an_odoo_sink_naming_an_unknown_system_is_refused(plant: Plant) -> None:
    spec = _subscription(system="nope").model_dump()
    spec["name"] = "other"
    async with httpx.AsyncClient(
        base_url=plant.url, headers={"Authorization": f"Bearer {plant.hub.admin_key}"}
    ) as http:
        answer = await http.post("/v1/subscriptions", json=spec)
    assert answer.status_code == 422
    assert "no system named 'nope'" in answer.json()["detail"]


async def test_an_empty_selector_selects_nothing(plant: Plant) -> None:
    # {"mo": null} must not become [("name", "=", False)]: that selects every unnamed record.
    mo, _ = await plant.new_mo()
    await plant.hub.publish(
        [Event.new("production.completed.v1", MES, {"mo": None, "quantity": 1.0}, subject="x")]
    )

    async def dead() -> list[Any]:
        return await plant.hub.store.list_deliveries("dead", DeadLetterFilter(), 10)

    (letter,) = await eventually(dead)
    assert "'data.mo' is None: not a value that selects a record" in str(letter.last_error)
    assert (await plant.mo(mo))["state"] == "confirmed"


async def test_every_webhook_is_followed_up_even_with_the_same_body(plant: Plant) -> None:
    # res.partner has no poller here: the follow-up read is the only path. Odoo sends the
    # same body for each change when no field is chosen: the second must not be dropped.
    partner = await plant.client.create("res.partner", {"name": "Before"})
    payload = {"_model": "res.partner", "_id": partner, "_action": "Notify(#2)", "id": partner}

    async def names() -> set[str]:
        events = await plant.events("odoo.record.changed.v1", None)
        return {str(e.data["record"]["display_name"]) for e in events if e.data["id"] == partner}

    async with httpx.AsyncClient(base_url=plant.url) as http:
        assert (await http.post(f"/hooks/odoo/erp/{TOKEN}", json=payload)).status_code == 202
        await eventually(lambda: _has(names, "Before"))
        await plant.client.write("res.partner", [partner], {"name": "After"})
        assert (await http.post(f"/hooks/odoo/erp/{TOKEN}", json=payload)).status_code == 200
    await eventually(lambda: _has(names, "After"))
    assert await names() == {"Before", "After"}


async def _has(names: Callable[[], Any], name: str) -> bool:
    return name in await names()


async def test_a_delivery_that_fails_outside_the_connector_ends_dead_not_in_flight(
    tmp_path: Path,
) -> None:
    # The system's password is a reference nobody set: every attempt fails before Odoo.
    system = OdooSystem(url="http://127.0.0.1:9", db="demo", login="a", password="env:NOPE_X1")
    spec = _subscription().model_dump()
    spec["policy"]["retry"] = {"initial_delay": 0.05, "max_attempts": 2}
    settings = Settings.load(
        env={},
        data_dir=tmp_path,
        systems={"erp": system},
        subscriptions=(SubscriptionSpec.model_validate(spec),),
    )
    async with running_hub(settings) as (hub, _):
        await hub.publish(
            [Event.new("production.completed.v1", MES, {"mo": "M", "quantity": 1}, subject="M")]
        )

        async def dead() -> list[Any]:
            return await hub.store.list_deliveries("dead", DeadLetterFilter(), 10)

        (letter,) = await eventually(dead)
        assert letter.attempts == 2
        assert "'env:NOPE_X1' is not set" in str(letter.last_error)
