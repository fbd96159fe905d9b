"""Flows: ``on``/``when``/``map``/``to``/``policy`` in the config, expanded into one subscription
per target, mapped at delivery, checked against ownership rules; every config mistake
reported with its path, every event that does not fit dead-lettered with the reason while
the rest of the flow keeps moving."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from forgeline import Settings
from forgeline.envelope import Event
from forgeline.exceptions import ConfigError
from forgeline.ownership.quarantine import QUARANTINE_TYPE
from forgeline.route.subscription import SubscriptionSpec
from forgeline.testing import Receiver, running_hub

MES_RESULT = """
name: mes-production
tables:
  outcome: {COMPLETE: completed, SCRAPPED: cancelled}
fields:
  order: data.erpOrder
  sku: data.partNo
  quantity: {path: data.qtyGood}
  status: {path: data.status, lookup: outcome}
  work_order_status: {path: data.status, lookup: mes.work_order}
"""


def _write(tmp_path: Path, config: str, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "forgeline.yaml"
    path.write_text(config)
    return path


def _load(tmp_path: Path, config: str, **files: str) -> Settings:
    path = _write(tmp_path, config, **files)
    return Settings.load(config_file=path, env={}, data_dir=tmp_path / "data")


def _problems(tmp_path: Path, config: str, **files: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, config, **files)
    return str(caught.value)


# -- the config ---------------------------------------------------------------------------


def test_a_flow_becomes_one_subscription_per_target(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        """
mappings:
  mes-production: mes.yaml
flows:
  - name: production
    on: {types: [mes.message.v1], source: "mes://*"}
    when: 'data.msgType == "PRODUCTION"'
    map: mes-production
    policy: {ordering: key}
    to:
      - publish: {type: production.completed.v1, subject: data.order}
      - http: {url: "http://127.0.0.1:9/historian"}
        when: 'data.qtyGood > 0'
        map: null
        name: historian
        policy: {timeout: 3}
""",
        **{"mes.yaml": MES_RESULT},
    )
    specs = {spec.name: spec for spec in settings.subscriptions}
    assert set(specs) == {"production.publish", "production.historian"}
    publish, historian = specs["production.publish"], specs["production.historian"]
    assert publish.flow == historian.flow == "production"
    assert publish.types == historian.types == ["mes.message.v1"]
    assert publish.source == "mes://*"
    assert publish.map == str(tmp_path / "mes.yaml")  # the name, resolved beside the config
    assert publish.policy.ordering == "key"
    assert publish.filter == 'data.msgType == "PRODUCTION"'
    # The target's condition is ANDed with the flow's; its map and policy replace the flow's.
    assert historian.filter == '(data.msgType == "PRODUCTION") and (data.qtyGood > 0)'
    assert historian.map is None
    assert historian.policy.timeout == 3
    assert historian.policy.ordering == "none"


def test_every_mistake_in_flows_is_reported_with_its_path(tmp_path: Path) -> None:
    text = _problems(
        tmp_path,
        """
flows:
  - name: a
    on: x.v1
    to:
      - odoo: {system: erp, model: NotAModel, action: upsert}
      - publish: {type: y.v1}
        http: {url: "http://h/"}
      - teleport: {}
  - name: b
    on: x.v1
    when: "data.qty >>> 1"
    to: {publish: {type: y.v1}}
  - on: x.v1
    to: []
""",
    )
    assert "flows.a.to[0].odoo.model: 'NotAModel' is not an Odoo model name" in text
    assert "flows.a.to[1]: exactly one of http, rest, publish, odoo, mqtt, file (found 2)" in text
    assert "flows.a.to[2].teleport: not a target setting" in text
    assert "flows.b.when" in text
    assert "flows[2].name: required" in text


def test_a_mapping_that_does_not_compile_is_refused_when_the_config_loads(
    tmp_path: Path,
) -> None:
    text = _problems(
        tmp_path,
        """
flows:
  - name: a
    on: x.v1
    map: bad.yaml
    to: {publish: {type: y.v1}}
  """,
        **{"bad.yaml": "fields:\n  status: {path: data.s, lookup: no_such_table}\n"},
    )
    assert "flows.a (a.publish).map: fields.status.lookup: unknown status table" in text
    missing = _problems(
        tmp_path,
        "flows:\n  - {name: a, on: x.v1, map: gone.yaml, to: {publish: {type: y.v1}}}\n",
    )
    assert "map: cannot read mapping" in missing and "gone.yaml" in missing


def test_two_targets_of_one_kind_need_names_and_entities_must_be_canonical(
    tmp_path: Path,
) -> None:
    flows = """
flows:
  - name: a
    on: x.v1
    entity: {entity}
    to:
      - publish: {{type: y.v1}}
      - publish: {{type: z.v1}}
"""
    settings = _load(tmp_path, flows.format(entity="product"))
    assert sorted(s.name for s in settings.subscriptions) == ["a.publish1", "a.publish2"]
    text = _problems(tmp_path, flows.format(entity="widget"))
    assert "entity: 'widget' is not a canonical entity" in text
    clash = _problems(
        tmp_path,
        """
subscriptions:
  - {name: a.publish, types: [q.v1], sink: {publish: {type: r.v1}}}
flows:
  - {name: a, on: x.v1, to: {publish: {type: y.v1}}}
""",
    )
    assert "two subscriptions (or flow targets) are named ['a.publish']" in clash


def test_an_ownership_rule_with_a_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    text = _problems(tmp_path, "ownership:\n  - {entity: widget, owner: plm}\n")
    assert "ownership[0].entity" in text


# -- at delivery -----------------------------------------------------------------------------


async def _dead(client: httpx.AsyncClient, count: int, timeout: float = 10.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        items = (await client.get("/v1/deadletters")).json()["deadletters"]
        if len(items) >= count or time.monotonic() > deadline:
            return list(items)
        await asyncio.sleep(0.05)


async def _events_of(client: httpx.AsyncClient, type: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        found = (await client.get("/v1/events", params={"type": type})).json()["events"]
        if len(found) >= count or time.monotonic() > deadline:
            return [item["event"] for item in found]
        await asyncio.sleep(0.05)


def _mes(msg: str, status: str, qty: int, *, source: str = "mes://line-1") -> dict[str, Any]:
    return Event.new(
        "mes.message.v1",
        source,
        {"msgType": "PRODUCTION", "erpOrder": f"MO/{msg}", "partNo": "FG-1",
         "qtyGood": qty, "status": status},
        subject=f"WO-{msg}",
    ).to_dict()  # fmt: skip


async def test_map_route_and_fan_out_through_a_running_hub(tmp_path: Path) -> None:
    """The MES's words become the canonical event and the historian's payload; the target
    whose mapping fails (an unknown status word) is dead with the reason, alone."""
    async with Receiver() as receiver:
        config = f"""
mappings:
  mes-production: mes.yaml
flows:
  - name: production
    on: mes.message.v1
    when: 'data.msgType == "PRODUCTION"'
    map: mes-production
    to:
      - publish: {{type: production.completed.v1, subject: data.order}}
      - http: {{url: "{receiver.url("/historian")}"}}
        name: historian
  - name: completed
    on: production.completed.v1
    to:
      - http: {{url: "{receiver.url("/erp")}"}}
        when: 'data.status == "completed"'
        name: erp
"""
        settings = _load(tmp_path, config, **{"mes.yaml": MES_RESULT})
        async with (
            running_hub(settings) as (hub, url),
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {hub.admin_key}"}
            ) as client,
        ):
            good, odd = _mes("1", "COMPLETE", 7), _mes("2", "EXPLODED", 1)
            scrapped = _mes("3", "SCRAPPED", 0)
            for event in (good, odd, scrapped):
                assert (await client.post("/v1/events", json=event)).status_code == 201
            await receiver.wait_for(2, path="/historian")
            await receiver.wait_for(1, path="/erp")
            historian = [r.event for r in receiver.accepted if r.path == "/historian"]
            assert {e["data"]["order"] for e in historian} == {"MO/1", "MO/3"}
            first = next(e for e in historian if e["data"]["order"] == "MO/1")
            # The sink saw the mapped document; the event keeps its own id and source.
            assert first["data"] == {
                "order": "MO/1", "sku": "FG-1", "quantity": 7, "status": "completed",
                "work_order_status": "completed",
            }  # fmt: skip
            assert first["id"] == good["id"] and first["source"] == "mes://line-1"
            completed = await _events_of(client, "production.completed.v1", 2)
            by_subject = {e["subject"]: e for e in completed}
            assert set(by_subject) == {"MO/1", "MO/3"}  # the subject follows data.order
            assert by_subject["MO/1"]["causationid"] == good["id"]
            # Content-based routing: the scrapped order's completion is not the ERP's.
            erp = [r.event for r in receiver.accepted if r.path == "/erp"]
            assert [e["subject"] for e in erp] == ["MO/1"]
            dead = await _dead(client, 2)
            assert {d["subscription"] for d in dead} == {
                sub.id for sub in await hub.store.list_subscriptions()
                if sub.spec.name in ("production.publish", "production.historian")
            }  # fmt: skip
            assert {d["event_id"] for d in dead} == {odd["id"]}
            assert all(d["attempts"] == 1 for d in dead)  # permanent: no retry burnt
            assert all("'EXPLODED'" in d["last_error"] and "status" in d["last_error"]
                       for d in dead)  # fmt: skip


async def test_a_non_owners_change_is_quarantined_and_the_owners_applied(
    tmp_path: Path,
) -> None:
    """PLM owns products. Its change, turned into a canonical one by a flow, reaches the ERP
    (the derived event keeps its origin); the same change from the MES does not: it is
    quarantined with the reason, once, and dead-lettered for a replay once sorted out."""
    async with Receiver() as receiver:
        config = f"""
systems:
  plm: {{kind: files, path: {tmp_path / "plm"}, watch: [{{glob: "*.csv", type: plm.item.v1}}]}}
ownership:
  - {{entity: product, owner: plm}}
flows:
  - name: items
    on: plm.item.v1
    entity: product
    to: {{publish: {{type: product.changed.v1}}}}
  - name: products-to-erp
    on: product.changed.v1
    entity: product
    to: {{http: {{url: "{receiver.url("/erp")}"}}}}
"""
        settings = _load(tmp_path, config)
        async with (
            running_hub(settings) as (hub, url),
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {hub.admin_key}"}
            ) as client,
        ):
            # As the files connector stamps a PLM drop (the hub publishes it: the events API
            # would be any publisher).
            owners = Event.new("plm.item.v1", "files://plm/items.csv", {"sku": "P-1"},
                               subject="P-1")  # fmt: skip
            await hub.publish([owners])
            await receiver.wait_for(1, path="/erp")
            applied = receiver.accepted[0].event
            assert applied["type"] == "product.changed.v1" and applied["origin"] == "plm"
            rogue = Event.new("product.changed.v1", "mes://line-1", {"sku": "P-1", "x": 1},
                              subject="P-1")  # fmt: skip
            assert (await client.post("/v1/events", json=rogue.to_dict())).status_code == 201
            quarantined = await _events_of(client, QUARANTINE_TYPE, 1)
            assert len(quarantined) == 1
            reason = quarantined[0]["data"]["reason"]
            assert "mes://line-1 (no configured system) may not change product 'P-1'" in reason
            assert "plm owns product" in reason
            assert quarantined[0]["data"]["event"]["id"] == rogue.id
            dead = await _dead(client, 1)
            assert [d["event_id"] for d in dead] == [rogue.id]
            assert dead[0]["last_error"].startswith("quarantined:")
            await asyncio.sleep(0.3)
            assert [r.event["id"] for r in receiver.accepted] == [applied["id"]]
            # A publisher cannot claim to be the owner by setting the extension itself.
            forged = {**rogue.to_dict(), "id": "forged-1", "origin": "plm"}
            answer = await client.post("/v1/events", json=forged)
            assert answer.status_code == 400
            assert "'origin' extension is set by the hub" in answer.json()["detail"]


async def test_the_api_takes_inline_mappings_but_not_mapping_files(tmp_path: Path) -> None:
    async with Receiver() as receiver:
        settings = Settings.load(env={}, data_dir=tmp_path / "data")
        async with (
            running_hub(settings) as (hub, url),
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {hub.admin_key}"}
            ) as client,
        ):
            spec = {
                "name": "mapped",
                "types": ["x.v1"],
                "sink": {"url": receiver.url("/m")},
                "map": "/etc/passwd",
            }
            refused = await client.post("/v1/subscriptions", json=spec)
            assert refused.status_code == 422
            assert "map" in refused.json()["detail"]
            bad = await client.post(
                "/v1/subscriptions", json={**spec, "map": {"fields": {"n": {"nope": 1}}}}
            )
            assert bad.status_code == 422 and "map.fields.n" in bad.text
            inline = {"fields": {"n": "data.count", "kind": {"const": "x"}}}
            made = await client.post("/v1/subscriptions", json={**spec, "map": inline})
            assert made.status_code == 201, made.text
            event = Event.new("x.v1", "test/api", {"count": 3})
            await client.post("/v1/events", json=event.to_dict())
            await receiver.wait_for(1)
            assert receiver.accepted[0].event["data"] == {"n": 3, "kind": "x"}


def test_a_replayed_mapping_failure_uses_the_fixed_file(tmp_path: Path) -> None:
    """The mapping is applied at delivery from the file as it is then: editing the file is
    enough for a replay (compiled again because its size and time changed)."""
    from forgeline.mapping.cache import compiled_mapping

    path = tmp_path / "m.yaml"
    path.write_text("fields:\n  a: data.a\n")
    assert compiled_mapping(str(path))({"data": {"a": 1}}) == {"a": 1}
    path.write_text("fields:\n  a: data.a\n  b: {const: 2}\n")
    assert compiled_mapping(str(path))({"data": {"a": 1}}) == {"a": 1, "b": 2}


async def test_an_upsert_binds_the_cross_reference_that_a_later_mapping_reads(
    tmp_path: Path,
) -> None:
    """Products go into Odoo through a flow's upsert, which binds Odoo's record id to the
    canonical SKU; a flow reading an Odoo record then maps ``product_id`` back to the SKU.
    An id nobody bound is dead-lettered with the missing cross-reference named."""
    from forgeline.connectors.odoo import OdooClient
    from forgeline.sim.odoo.server import OdooServer

    async with OdooServer(version=19) as odoo, Receiver() as receiver:
        key = odoo.simulator.create_api_key("demo", 2, "forgeline hub")
        config = f"""
systems:
  erp: {{url: "{odoo.url}", db: demo, api_key: "{key}"}}
flows:
  - name: products
    on: plm.item.v1
    to:
      odoo:
        system: erp
        model: product.product
        action: upsert
        external_id: subject
        values: {{name: data.name, default_code: subject}}
        xref: {{entity: product}}
  - name: orders
    on: erp.order.v1
    map:
      fields:
        sku: {{path: "data.product_id[0]", xref: {{system: erp, entity: product}}}}
        qty: data.product_qty
    to: {{http: {{url: "{receiver.url("/mes")}"}}}}
"""
        settings = _load(tmp_path, config)
        async with (
            running_hub(settings) as (hub, url),
            httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {hub.admin_key}"}
            ) as client,
            OdooClient(odoo.url, "demo", api_key=key) as erp,
        ):
            item = Event.new("plm.item.v1", "plm://pdm", {"name": "Pump"}, subject="SKU-9")
            await hub.publish([item])

            async def bound() -> list[int]:
                return await erp.search("product.product", [("default_code", "=", "SKU-9")])

            deadline = time.monotonic() + 10
            while not (ids := await bound()) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            (product,) = ids
            await asyncio.sleep(0.2)  # the binding follows the upsert's answer
            assert hub.xref.resolve("erp", "product", str(product)) == "SKU-9"
            # A redelivery of the same item (another id, same SKU) binds the same: no conflict.
            again = Event.new("plm.item.v1", "plm://pdm", {"name": "Pump 2"}, subject="SKU-9")
            await hub.publish([again])
            order = {"product_id": [product, "Pump"], "product_qty": 4}
            stray = {"product_id": [999_999, "Who?"], "product_qty": 1}
            for data in (order, stray):
                event = Event.new("erp.order.v1", "odoo://erp", data).to_dict()
                await client.post("/v1/events", json=event)
            await receiver.wait_for(1, path="/mes")
            assert receiver.accepted[0].event["data"] == {"sku": "SKU-9", "qty": 4}
            dead = await _dead(client, 1)
            assert len(dead) == 1
            assert "999999" in dead[0]["last_error"] and "cross-reference" in dead[0]["last_error"]
            assert await erp.search_count("product.product", [("default_code", "=", "SKU-9")]) == 1


async def test_a_flow_hands_events_to_a_tenant(tmp_path: Path) -> None:
    """The plant's events belong to no tenant; a flow may publish a partner's share into the
    partner's tenant, where the partner's own subscriptions see it (and nothing else)."""
    async with Receiver() as receiver:
        settings = _load(
            tmp_path,
            """
hub:
  egress_allow: [127.0.0.0/8]  # the partner's sink: a tenant's, checked by the egress policy
flows:
  - name: share-releases
    on: {types: [lot.released.v1], source: "qms://*"}
    to: {publish: {type: lot.released.v1, source: "forgeline/share", tenant: portal}}
""",
        )
        async with running_hub(settings) as (hub, _):
            spec = SubscriptionSpec.model_validate(
                {"name": "portal-lots", "types": ["lot.*"], "tenant": "portal",
                 "sink": {"url": receiver.url("/portal")}}
            )  # fmt: skip
            await hub.create_subscription(spec)
            lot = Event.new("lot.released.v1", "qms://lab", {"lot": "L-1"}, subject="L-1")
            other = Event.new("lot.released.v1", "erp://x", {"lot": "L-2"}, subject="L-2")
            await hub.publish([lot, other])
            await receiver.wait_for(1, path="/portal")
            await asyncio.sleep(0.3)
            (got,) = receiver.accepted
            assert got.event["tenant"] == "portal" and got.event["subject"] == "L-1"
            assert got.event["causationid"] == lot.id
