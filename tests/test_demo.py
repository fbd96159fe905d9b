"""``forgeline demo``: the plant's hub config (a template of flows and mappings shipped with
the package), its mappings against real samples and the catalog, and ``--smoke`` end to end:
the scenario passes its own checks, and what it leaves behind - Odoo's MOs, the log, the
written config - says the flows did the work."""

from __future__ import annotations

import base64
import io
import json
import stat
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

import forgeline.demo
from forgeline.canonical import CATALOG, validate
from forgeline.cli import app
from forgeline.config import Settings
from forgeline.demo import SMOKE, run_demo, write_plant_config
from forgeline.demo.apps import Applications
from forgeline.demo.checks import Checks
from forgeline.demo.plant import CUSTOMERS, PRODUCTS
from forgeline.demo.portal import Portal, PortalRequest, Unverified, verify
from forgeline.demo.state import ApiCall, Order
from forgeline.demo.wiring import PlantAddresses, PlantSecrets
from forgeline.exceptions import ConfigError
from forgeline.log import open_log
from forgeline.mapping import MappingError, map_test
from forgeline.route.subscription import PublishSink, RestSink
from forgeline.security.audit import VerifyResult
from forgeline.sim.odoo.service import OdooSimulator
from forgeline.sources import WEBHOOK_TYPE

RELEASED = "production.order.released.v1"
ODOO_RELEASED = "odoo.production.order.released.v1"  # Odoo's record, under Odoo's own name
MAPPINGS = Path(forgeline.demo.__file__).parent / "mappings"  # package data
SAMPLES = MAPPINGS / "samples"
XREF = SAMPLES / "xref.json"  # what the product flow binds: Odoo's product 7 is FG-PUMP-CP200
#: Mapping -> the catalog type its result is the data of (None: a target system's body).
CANONICAL = {
    "completed-to-qms-inspection": None,
    "completed-to-wms-putaway": None,
    "mes-consumption-to-consumed": "material.consumed.v1",
    "mes-production-to-completed": "production.completed.v1",
    "odoo-mo-to-mes-work-order": None,
    "odoo-mo-to-production-order": "production.order.released.v1",
    "plm-item-to-odoo-product": None,
    "qms-hold-to-hold-placed": "quality.hold.placed.v1",
    "qms-inspection-to-completed": "quality.inspection.completed.v1",
    "qms-inspection-to-lot-released": "lot.released.v1",
    "wms-putaway-to-moved": "inventory.moved.v1",
}
ADDRESSES = PlantAddresses(
    odoo_url="http://127.0.0.1:8069",
    mes_url="http://127.0.0.1:8071",
    wms_url="http://127.0.0.1:8072",
    qms_url="http://127.0.0.1:8073",
    historian_url="http://127.0.0.1:9000/historian",
    plan_prefix="PLAN/",
    uom_unit_id=1,
    uom_kg_id=12,
)


# -- the config ---------------------------------------------------------------------------------


def test_the_written_config_loads_and_holds_no_secret(tmp_path: Path) -> None:
    keys = PlantSecrets("odoo-key-123")
    config = write_plant_config(tmp_path, ADDRESSES, keys)

    settings = Settings.load(config_file=config, env={})
    assert settings.data_dir == tmp_path.resolve()
    assert {name: spec.kind for name, spec in settings.systems.items()} == {
        "plant-erp": "odoo",
        "plm": "webhook",
        "mes": "webhook",
        "wms": "webhook",
        "qms": "webhook",
    }
    assert [rule.describe() for rule in settings.ownership] == ["plm owns product"]
    names = {spec.name for spec in settings.subscriptions}
    assert {"products-to-erp.odoo", "release-to-mes.rest", "production-completed.erp"} <= names
    assert "erp-releases.publish" in names
    assert {"production-completed.wms", "qms-results.released", "historian.http"} <= names
    # The customer portal is a webhook endpoint made over the API at run time, not a flow;
    # the config lets webhooks reach the loopback address it listens on, and nothing else.
    assert not any(name.startswith("partner-") for name in names)
    assert settings.egress_allow == ("127.0.0.1/32",)
    # What plant applications post to /v1/transactions reaches Odoo by a flow of its own.
    (applied,) = (s for s in settings.subscriptions if s.name == "app-completions.odoo")
    assert applied.source == "api/*" and applied.types == ["production.completed.v1"]
    (release,) = (s.sink for s in settings.subscriptions if s.name == "release-to-mes.rest")
    assert isinstance(release, RestSink)
    assert release.rest.url == "http://127.0.0.1:8071/api/workorders"  # the MES of this run
    # Odoo's releases become canonical ones from the same system the connector stamps.
    (mapped,) = (s for s in settings.subscriptions if s.name == "erp-releases.publish")
    assert mapped.types == [ODOO_RELEASED]
    assert isinstance(mapped.sink, PublishSink)
    assert mapped.sink.publish.type == RELEASED
    assert mapped.sink.publish.source == "odoo://127.0.0.1:8069/demo"
    # Every flow listens to types the catalog knows, or to a system's own raw type.
    catalogued = {t for spec in settings.subscriptions for t in spec.types if t in CATALOG}
    assert {ODOO_RELEASED, "production.completed.v1"} <= catalogued

    written = [config, *(tmp_path / "mappings").iterdir()]
    texts = [path.read_text() for path in written]
    assert not any("${" in text for text in texts)  # every placeholder filled
    for value in keys.files().values():
        assert not any(value in text for text in texts)  # referenced, never inlined
    for secret in (tmp_path / "secrets").iterdir():
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert secret.read_text().strip() in keys.files().values()
    product = (tmp_path / "mappings" / "plm-item-to-odoo-product.yaml").read_text()
    assert "EA: 1" in product and "KG: 12" in product

    # forgeline check, as a person would run it on the data directory's file.
    answer = CliRunner().invoke(app, ["check", str(config)])
    assert answer.exit_code == 0, answer.output
    assert "valid" in answer.output and "app-completions" in answer.output


def test_a_kept_config_is_rewritten_with_this_runs_addresses(tmp_path: Path) -> None:
    write_plant_config(tmp_path, ADDRESSES, PlantSecrets("first"))
    moved = PlantAddresses(**{**vars(ADDRESSES), "mes_url": "http://127.0.0.1:18071"})
    config = write_plant_config(tmp_path, moved, PlantSecrets("second"))
    text = config.read_text()
    assert "127.0.0.1:18071" in text and "127.0.0.1:8071/" not in text
    assert (tmp_path / "secrets" / "odoo-api-key").read_text().strip() == "second"


def test_a_placeholder_the_demo_does_not_fill_is_a_config_error() -> None:
    from forgeline.demo import wiring

    with pytest.raises(ConfigError, match=r"plant.yaml: cannot fill 'nowhere'"):
        wiring._fill("url: ${nowhere}", {}, "plant.yaml")
    with pytest.raises(ConfigError, match=r"cannot fill Invalid placeholder"):
        wiring._fill("cost: $5", {}, "plant.yaml")


# -- the mappings -------------------------------------------------------------------------------


def test_every_mapping_has_a_sample_and_the_list_here_is_complete() -> None:
    mappings = {path.stem for path in MAPPINGS.glob("*.yaml")}
    samples = {path.stem for path in SAMPLES.glob("*.json")} - {"xref"}
    assert mappings == samples == set(CANONICAL)


@pytest.mark.parametrize("name", sorted(CANONICAL))
def test_each_mapping_maps_its_sample_into_the_catalogs_shape(name: str, tmp_path: Path) -> None:
    config = write_plant_config(tmp_path, ADDRESSES, PlantSecrets("k"))
    mapping = config.parent / "mappings" / f"{name}.yaml"
    result = json.loads(map_test(mapping, SAMPLES / f"{name}.json", XREF))
    event_type = CANONICAL[name]
    if event_type is not None:
        validate(event_type, result, path="data")  # raises InvalidPayload naming the path


def test_the_work_order_mapping_names_the_part_only_through_the_cross_reference(
    tmp_path: Path,
) -> None:
    """An Odoo product the product flow never bound fails with the field and the reason
    (a dead letter saying so), rather than sending the MES a guess."""
    config = write_plant_config(tmp_path, ADDRESSES, PlantSecrets("k"))
    mapping = config.parent / "mappings" / "odoo-mo-to-mes-work-order.yaml"
    sample = SAMPLES / "odoo-mo-to-mes-work-order.json"
    with pytest.raises(MappingError, match="partNo") as failure:
        map_test(mapping, sample)
    assert "no canonical id for plant-erp product '7'" in str(failure.value)

    bad = json.loads(sample.read_text())
    bad["data"]["record"]["product_uom_id"] = [4, "Dozens"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(MappingError, match="uom") as failure:
        map_test(mapping, tmp_path / "bad.json", XREF)
    assert "'Dozens'" in str(failure.value)


def test_the_release_mapping_speaks_the_hubs_words_or_fails_naming_the_field(
    tmp_path: Path,
) -> None:
    """Odoo's state goes through Odoo 19's status table and its product through the
    cross-reference: a state the table does not know or a product never bound is a mapping
    error naming the field (a dead letter), never Odoo's word under a canonical name."""
    config = write_plant_config(tmp_path, ADDRESSES, PlantSecrets("k"))
    mapping = config.parent / "mappings" / "odoo-mo-to-production-order.yaml"
    sample = SAMPLES / "odoo-mo-to-production-order.json"
    mapped = json.loads(map_test(mapping, sample, XREF))
    assert mapped["status"] == "released" and mapped["product"] == "FG-PUMP-CP200"
    with pytest.raises(MappingError, match="product") as failure:
        map_test(mapping, sample)
    assert "no canonical id for plant-erp product '7'" in str(failure.value)

    for state, canonical in (("progress", "in_progress"), ("to_close", "completed")):
        moved = json.loads(sample.read_text())
        moved["data"]["record"]["state"] = state
        (tmp_path / "moved.json").write_text(json.dumps(moved))
        assert json.loads(map_test(mapping, tmp_path / "moved.json", XREF))["status"] == canonical
    moved["data"]["record"]["state"] = "approved"  # not an mrp.production state in Odoo 19
    (tmp_path / "bad.json").write_text(json.dumps(moved))
    with pytest.raises(MappingError, match="status") as failure:
        map_test(mapping, tmp_path / "bad.json", XREF)
    assert "'approved'" in str(failure.value)


# -- the checks ---------------------------------------------------------------------------------


def test_a_check_fails_on_what_it_guards() -> None:
    """The checks are the demo's verdict: fed a plant that went wrong, they say so."""
    checks = Checks(SMOKE, Console(file=io.StringIO()), Path("."))
    checks.refused_change = {"id": "MES-FIX-1"}
    refused = {"event_id": "MES-FIX-1", "event_type": "product.changed.v1"}
    checks.verify_dead_left([{**refused, "reason": "quarantined: mes may not change product"}])
    checks.verify_dead_left(
        [
            {**refused, "reason": "quarantined: mes may not change product"},
            {"event_id": "x", "event_type": "lot.released.v1", "reason": "HTTP 500"},
        ]
    )
    checks.verify_dead_left([{**refused, "reason": "HTTP 500"}])
    checks.verify_quarantine([])
    assert [check.ok for check in checks.checks] == [True, False, False, False]


def test_the_release_check_fails_unless_each_odoo_release_became_one_canonical_one() -> None:
    checks = Checks(SMOKE, Console(file=io.StringIO()), Path("."))
    checks.odoo_source = "odoo://127.0.0.1:8069/demo"
    pump = PRODUCTS[0]
    checks.orders = [Order(0, "WH/MO/00001", pump, 12.0)]
    odoo = {"id": "o1", "type": ODOO_RELEASED, "source": checks.odoo_source,
            "subject": "WH/MO/00001"}  # fmt: skip
    data = {"number": "WH/MO/00001", "product": pump.sku, "quantity": 12.0, "uom": pump.uom,
            "status": "released"}  # fmt: skip
    good = {"id": "c1", "type": RELEASED, "source": checks.odoo_source,
            "subject": "WH/MO/00001", "causationid": "o1", "data": data}  # fmt: skip
    checks.verify_erp_releases([odoo, good])
    checks.verify_erp_releases([odoo])  # never mapped
    checks.verify_erp_releases([odoo, good, {**good, "id": "c2"}])  # mapped twice
    checks.verify_erp_releases([odoo, {**good, "data": {**data, "product": "7"}}])  # Odoo's id
    checks.verify_erp_releases([odoo, {**good, "data": {**data, "status": "confirmed"}}])
    checks.verify_erp_releases([{**good, "causationid": None}])  # not from Odoo's event
    assert [check.ok for check in checks.checks] == [True, False, False, False, False, False]


def _applications() -> Applications:
    return Applications(SMOKE, Console(file=io.StringIO()), Path("."))


def test_the_business_api_checks_fail_on_what_they_guard() -> None:
    """Fed what a broken hub could answer, the checks of step 8 say so."""
    level = {"sku": "CMP-X", "on_hand": 10.0, "available": 10.0, "stale": False}
    stale = {**level, "stale": True, "age_seconds": SMOKE.cache_ttl + 0.1}
    in_time = SMOKE.erp_deadline + 0.05

    def availability(
        third: dict[str, object], *, fetches: int = 1, seconds: float = in_time, odoo: float = 10.0
    ) -> bool:
        checks = _applications()
        checks.apis.odoo_on_hand, checks.apis.odoo_fetches = odoo, fetches
        warning = {"warning": '110 - "Response is Stale"'}
        checks.apis.availability = [
            ApiCall(200, {}, level), ApiCall(200, {}, level), ApiCall(200, warning, third, seconds)
        ]  # fmt: skip
        checks.check_availability()
        return checks.checks[0].ok

    assert availability(stale)
    assert not availability(stale, fetches=2)  # the second answer was not the cache's
    assert not availability(level)  # a slow Odoo was waited for
    assert not availability(stale, seconds=3 * SMOKE.erp_deadline)  # ... past the deadline
    assert not availability(stale, odoo=9.0)  # not what Odoo says is on hand

    purchase = _applications()
    purchase.apis.purchase = {"lines": [{"sku": "RAW-TUBE-40X40", "qty": 400.0, "uom": "EA"}]}
    answer = {"reference": "P00002", "status": "draft"}
    replayed = ApiCall(201, {"idempotent-replayed": "true"}, answer)
    purchase.apis.purchases = [ApiCall(201, {}, answer), replayed]
    rfq = {"name": "P00002", "state": "draft", "supplier": "S-TUBEX",
           "lines": [("RAW-TUBE-40X40", 400.0, "Units")]}  # fmt: skip
    purchase.check_purchase([rfq])
    purchase.check_purchase([rfq, {**rfq, "name": "P00003"}])  # the retry made a second RFQ
    purchase.check_purchase([{**rfq, "lines": [("RAW-TUBE-40X40", 40.0, "Units")]}])
    purchase.apis.purchases[1] = ApiCall(201, {}, {**answer, "reference": "P00003"})
    purchase.check_purchase([rfq])  # answered anew, not replayed
    assert [check.ok for check in purchase.checks] == [True, False, False, False]

    customers = _applications()
    good, held = CUSTOMERS
    fine = {"account_status": "active", "credit_hold": False, "credit_used": good.invoiced,
            "credit_limit": good.credit_limit, "reasons": []}  # fmt: skip
    over = {"account_status": "active", "credit_hold": True, "credit_used": held.invoiced,
            "credit_limit": held.credit_limit,
            "reasons": [{"code": "credit_limit_exceeded"}]}  # fmt: skip
    customers.apis.customers = {good.ref: ApiCall(200, {}, fine), held.ref: ApiCall(200, {}, over)}
    customers.check_customers()
    customers.apis.customers[held.ref] = ApiCall(200, {}, {**over, "credit_hold": False})
    customers.check_customers()
    assert [check.ok for check in customers.checks] == [True, False]

    bounds = _applications()
    bounds.apis.transaction_status = ApiCall(200, {}, {"state": "applied"})
    refused = {"admin": ApiCall(403, {}, None), "other tenant": ApiCall(404, {}, None)}
    for admin, other in ((403, 404), (202, 404), (403, 200)):
        bounds.apis.refused = {
            **refused, "admin": ApiCall(admin, {}, None), "other tenant": ApiCall(other, {}, None)
        }  # fmt: skip
        bounds.check_boundaries()
    assert [check.ok for check in bounds.checks] == [True, False, False]

    identities = _applications()
    apis = identities.apis
    apis.app, apis.partner = {"id": "pr_app"}, {"id": "pr_portal"}
    apis.token = {"access_token": "t"}
    apis.credentials = {"app key id": "cr_key", "secret id": "cr_secret"}
    entries = [
        {"seq": 1, "tenant": "plant-1", "action": "principal.create", "target": "pr_app"},
        {"seq": 2, "tenant": "plant-1", "action": "api_key.create", "target": "cr_key",
         "detail": {"principal": "pr_app"}},
        {"seq": 3, "tenant": "portal", "action": "principal.create", "target": "pr_portal"},
        {"seq": 4, "tenant": "portal", "action": "client_secret.create", "target": "cr_secret",
         "detail": {"principal": "pr_portal"}},
    ]  # fmt: skip
    audit = [{**entry, "outcome": "success", "actor": "operator"} for entry in entries]
    apis.audit = {"plant-1": audit[:2], "portal": audit[2:]}
    identities.check_identities(VerifyResult(ok=True, checked=4))
    identities.check_identities(VerifyResult(ok=False, checked=2, first_bad_seq=3, reason="x"))
    apis.audit = {"plant-1": audit[:1], "portal": audit[2:]}  # the key's creation not recorded
    identities.check_identities(VerifyResult(ok=True, checked=3))
    assert [check.ok for check in identities.checks] == [True, False, False]


def test_the_portal_verifies_with_the_reference_package_and_refuses_the_rest() -> None:
    from standardwebhooks.webhooks import Webhook

    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    body = b'{"id": "lot-1", "type": "lot.released.v1"}'
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign("msg_1", now, body.decode()),
    }
    assert verify(secret, body, headers)["id"] == "lot-1"
    with pytest.raises(Unverified, match="No matching signature"):
        verify(secret, body.replace(b"lot-1", b"lot-2"), headers)  # tampered
    other = "whsec_" + base64.b64encode(b"x" * 32).decode()
    with pytest.raises(Unverified):
        verify(other, body, headers)  # signed by someone else
    with pytest.raises(Unverified, match="Missing required headers"):
        verify(secret, body, {"webhook-id": "msg_1"})
    with pytest.raises(Unverified):
        verify(secret, body, {**headers, "webhook-signature": "v1"})  # garbled
    with pytest.raises(Unverified, match="no secret"):
        verify(None, body, headers)


def test_the_portal_checks_fail_on_what_they_guard() -> None:
    events = [{"id": lot, "type": "lot.released.v1"} for lot in ("lot-1", "lot-2")]

    def portal_checks(
        requests: list[PortalRequest], statuses: list[int] | None = None
    ) -> list[bool]:
        checks = Checks(SMOKE, Console(file=io.StringIO()), Path("."))
        checks.portal = Portal(secret="whsec_x", requests=requests)
        checks.dead = [{"event_id": "lot-1"}, {"event_id": "lot-2"}]
        checks.replayed = 2
        failed = [{"status": s, "outcome": "retry"} for s in statuses or [500, 500, 500]]
        checks.attempts = [
            {"event_id": lot, "state": "delivered",
             "history": [*failed, {"status": 204, "outcome": "delivered"}]}
            for lot in ("lot-1", "lot-2")
        ]  # fmt: skip
        checks.verify_portal(events)
        return [check.ok for check in checks.checks]

    def took(lot: str, status: int = 204) -> PortalRequest:
        return PortalRequest(f"msg_{lot}", {"id": lot}, status, 0.0)

    forged = PortalRequest("msg_x", None, 401, 0.0, "No matching signature found")
    assert portal_checks([took("lot-1", 500), took("lot-1"), took("lot-2")]) == [True, True]
    assert portal_checks([took("lot-1")]) == [False, True]  # lot-2 never arrived
    assert portal_checks([took("lot-1"), took("lot-2"), forged]) == [False, True]
    assert portal_checks([took("lot-1"), took("lot-2")], [500]) == [True, False]  # no outage


# -- end to end ---------------------------------------------------------------------------------


async def test_smoke_demo_passes_and_leaves_its_events_in_the_log(tmp_path: Path) -> None:
    output = io.StringIO()
    console = Console(file=output, width=120, force_terminal=False)
    started = time.monotonic()

    result = await run_demo(smoke=True, data_dir=tmp_path, console=console)

    elapsed = time.monotonic() - started
    text = output.getvalue()
    assert result, text
    assert elapsed < SMOKE.timeout
    assert f"all {len(result.checks)} checks passed" in text
    assert "FAILED" not in text
    assert len(result.checks) >= 15 and all(check.ok for check in result.checks)
    # The business APIs and the partner's webhook endpoint are among what was checked.
    assert {
        "every lot release at the portal, signed and verified",
        "the endpoint's attempt log shows the outage",
        "principals and credentials made over the API, audited",
        "availability from Odoo, cached, stale when Odoo is slow",
        "one RFQ in Odoo per Idempotency-Key, with the lines asked",
        "customers validated from Odoo's books",
        "a plant application's confirmation applied to Odoo by its flow",
        "the partner kept to its scopes and its tenant",
    } <= {check.name for check in result.checks}

    # Odoo closed every MO with what the MES made, once each.
    assert len(result.orders) == len(result.work_orders) == SMOKE.mos
    assert {row["state"] for row in result.orders} == {"done"}
    made = {wo["erpOrder"]: float(wo["qtyGood"]) for wo in result.work_orders}
    assert {row["name"]: row["qty_produced"] for row in result.orders} == made
    assert all(row["finished_moves"] == 1 for row in result.orders)
    # The MES knew each part by its number: Odoo's id went through the cross-reference.
    skus = {p.sku for p in PRODUCTS}
    assert {wo["partNo"] for wo in result.work_orders} <= skus

    # The config the run wrote is the one that ran: forgeline check accepts it.
    assert result.config == tmp_path.resolve() / "plant.yaml"
    assert Settings.load(config_file=result.config, env={}).subscriptions

    async with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        records = await log.read(0, 10_000)
    events = [r.event for r in records]
    assert len({(e.source, e.id) for e in events}) == len(events)
    odoo = [e for e in events if e.source == result.odoo_source]
    once_each = Counter({row["name"]: 1 for row in result.orders})
    assert Counter(e.subject for e in odoo if e.type == ODOO_RELEASED) == once_each
    assert Counter(e.subject for e in events if e.type == RELEASED) == once_each  # mapped
    assert any(e.type == WEBHOOK_TYPE for e in odoo)  # Odoo's automation reached the hub
    by_type = Counter(e.type for e in events)
    assert by_type["product.changed.v1"] == 13  # 12 from the PLM, 1 from the MES (refused)
    assert by_type["masterdata.change.quarantined.v1"] == 1
    assert by_type["mes.message.v1"] > 3 * SMOKE.mos
    # Canonical events are the flows' work, whoever they are about: each names the event it
    # came from. Odoo's own are named odoo.*, with Odoo's record as data; what a principal
    # posted to /v1/transactions comes from api/<its id>, in its tenant.
    causes = {e.id for e in events}
    posted = [e for e in events if e.source.startswith("api/")]
    assert [(e.type, e.tenant) for e in posted] == [("production.completed.v1", "plant-1")]
    canonical = [
        e
        for e in events
        if e.type in CATALOG and not e.type.startswith("odoo.") and e not in posted
    ]
    assert {"production.order.released.v1", "production.completed.v1"} <= {
        e.type for e in canonical
    }
    for event in canonical:
        assert event.extensions.get("causationid") in causes, event
    assert by_type["lot.released.v1"] == SMOKE.mos - 1  # the rejected lot is held
    assert by_type["quality.hold.placed.v1"] == 1


async def test_a_kept_data_dir_can_run_the_demo_again(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    first = await run_demo(smoke=True, data_dir=tmp_path, console=console)
    assert first
    second = await run_demo(smoke=True, data_dir=tmp_path, console=console)
    assert second, [c for c in second.checks if not c.ok]

    # The second run planned new MOs in the same Odoo database, on the same products; the
    # MES, WMS and QMS kept their state (new work orders, new lots).
    names = [{row["name"] for row in run.orders} for run in (first, second)]
    assert len(names[0]) == len(names[1]) == SMOKE.mos and not names[0] & names[1]
    lots = [{wo["lotNo"] for wo in run.work_orders} for run in (first, second)]
    assert not lots[0] & lots[1]
    simulator = OdooSimulator(19, path=tmp_path / "odoo-sim.db")
    try:
        env = simulator.env("demo")
        codes = Counter(p.default_code for p in env["product.product"].search([]))
        assert codes["FG-PUMP-CP200"] == 1 and codes["RAW-TUBE-40X40"] == 1
        assert env["base.automation"].search_count([]) == 1
        done = [("state", "=", "done")]
        planned = env["mrp.production"].search_count([*done, ("origin", "=like", "PLAN/%")])
        assert planned == 2 * SMOKE.mos
        # One rework MO per run, closed by the line-side application through the API.
        assert env["mrp.production"].search_count([*done, ("origin", "=like", "REWORK/%")]) == 2
        # The customers' invoices were posted once: a rerun owes the same.
        held = env["res.partner"].search([("ref", "=", "C-AQUAFLOW")])
        assert len(held) == 1 and held.credit == 7_350.0
        # One RFQ per run's purchase request (each run sends its own Idempotency-Key twice).
        tubex = env["res.partner"].search([("ref", "=", "S-TUBEX")])
        assert env["purchase.order"].search_count([("partner_id", "=", tubex.id)]) == 2
    finally:
        simulator.close()

    async with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        records = await log.read(0, 10_000)
    assert len({(r.event.source, r.event.id) for r in records}) == len(records)
    plm = [r for r in records if r.event.source == "plm://plant-1"]
    assert len(plm) == 12  # released once: the second run's releases were duplicates
