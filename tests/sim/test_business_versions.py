"""What differs between Odoo 16, 17, 18 and 19 in the simulated business models — fields,
selections and buttons as an RPC client sees them — and the models' constraint errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator
from forgeline.sim.odoo.errors import UserError, ValidationError

DB = "demo"
ADMIN = 2


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[int, OdooSimulator]]:
    made = {v: OdooSimulator(v) for v in (16, 17, 18, 19)}
    yield made
    for sim in made.values():
        sim.close()


def fields_of(sim: OdooSimulator, model: str) -> dict[str, Any]:
    result: dict[str, Any] = sim.execute_kw(
        DB, ADMIN, model, "fields_get", [], {"attributes": ["type", "selection"]}
    )
    return result


def selection(sim: OdooSimulator, model: str, field: str) -> list[str]:
    return [key for key, _label in fields_of(sim, model)[field]["selection"]]


def test_product_type_17_vs_18(sims: dict[int, OdooSimulator]) -> None:
    for version in (16, 17):
        assert selection(sims[version], "product.template", "type") == [
            "consu",
            "service",
            "product",
        ]
        assert "is_storable" not in fields_of(sims[version], "product.template")
        assert "detailed_type" in fields_of(sims[version], "product.product")
    for version in (18, 19):
        assert selection(sims[version], "product.template", "type") == ["consu", "service", "combo"]
        assert fields_of(sims[version], "product.product")["is_storable"]["type"] == "boolean"
        assert "detailed_type" not in fields_of(sims[version], "product.template")


def test_storable_product_over_rpc(sims: dict[int, OdooSimulator]) -> None:
    sim17, sim18 = sims[17], sims[18]
    pid = sim17.execute_kw(
        DB, ADMIN, "product.product", "create", [{"name": "Bolt", "type": "product"}], {}
    )
    [row] = sim17.execute_kw(
        DB,
        ADMIN,
        "product.product",
        "read",
        [[pid], ["type", "detailed_type", "qty_available"]],
        {},
    )
    assert (row["type"], row["detailed_type"], row["qty_available"]) == ("product", "product", 0.0)
    with pytest.raises(ValueError, match="Wrong value"):
        sim18.execute_kw(
            DB, ADMIN, "product.product", "create", [{"name": "Bolt", "type": "product"}], {}
        )
    pid = sim18.execute_kw(
        DB,
        ADMIN,
        "product.product",
        "create",
        [{"name": "Bolt", "type": "consu", "is_storable": True}],
        {},
    )
    assert (
        sim18.execute_kw(
            DB,
            ADMIN,
            "product.template",
            "search_count",
            [[("is_storable", "=", True), ("name", "=", "Bolt")]],
            {},
        )
        == 1
    )


def test_production_dates_and_lot_fields(sims: dict[int, OdooSimulator]) -> None:
    mo16 = fields_of(sims[16], "mrp.production")
    assert {"date_planned_start", "date_planned_finished", "lot_producing_id"} <= set(mo16)
    # 16 has date_start/date_finished too (when the MO started/closed); 17 dropped the
    # date_planned_* pair for them (mrp/models/mrp_production.py).
    assert {"date_start", "date_finished"} <= set(mo16)
    for version in (17, 18):
        mo = fields_of(sims[version], "mrp.production")
        assert {"date_start", "date_finished", "lot_producing_id"} <= set(mo)
        assert "date_planned_start" not in mo
    mo19 = fields_of(sims[19], "mrp.production")
    assert mo19["lot_producing_ids"]["type"] == "many2many"
    assert "lot_producing_id" not in mo19
    assert selection(sims[17], "mrp.production", "state") == [
        "draft",
        "confirmed",
        "progress",
        "to_close",
        "done",
        "cancel",
    ]


def test_move_quantities_16_vs_17(sims: dict[int, OdooSimulator]) -> None:
    move16 = fields_of(sims[16], "stock.move")
    assert {"quantity_done", "reserved_availability"} <= set(move16)
    assert "picked" not in move16
    for version in (17, 18, 19):
        move = fields_of(sims[version], "stock.move")
        assert {"quantity", "picked"} <= set(move) and "quantity_done" not in move
        line = fields_of(sims[version], "stock.move.line")
        assert "quantity" in line and "qty_done" not in line


def test_sale_and_purchase_states(sims: dict[int, OdooSimulator]) -> None:
    assert "done" in selection(sims[16], "sale.order", "state")
    assert "locked" not in fields_of(sims[16], "sale.order")
    for version in (17, 18, 19):
        assert selection(sims[version], "sale.order", "state") == [
            "draft",
            "sent",
            "sale",
            "cancel",
        ]
        assert "locked" in fields_of(sims[version], "sale.order")
    assert "done" in selection(sims[18], "purchase.order", "state")
    assert "done" not in selection(sims[19], "purchase.order", "state")
    assert fields_of(sims[19], "purchase.order")["locked"]["type"] == "boolean"


def test_purchase_lock_buttons(sims: dict[int, OdooSimulator]) -> None:
    def confirmed_po(sim: OdooSimulator) -> int:
        [po] = sim.execute_kw(
            DB, ADMIN, "purchase.order", "search", [[("state", "=", "draft")]], {"limit": 1}
        )
        assert sim.execute_kw(DB, ADMIN, "purchase.order", "button_confirm", [[po]], {}) is True
        return int(po)

    po = confirmed_po(sims[18])
    sims[18].execute_kw(DB, ADMIN, "purchase.order", "button_done", [[po]], {})
    [row] = sims[18].execute_kw(DB, ADMIN, "purchase.order", "read", [[po], ["state"]], {})
    assert row["state"] == "done"
    po = confirmed_po(sims[19])
    with pytest.raises(AttributeError, match="button_done"):
        sims[19].execute_kw(DB, ADMIN, "purchase.order", "button_done", [[po]], {})
    sims[19].execute_kw(DB, ADMIN, "purchase.order", "button_lock", [[po]], {})
    [row] = sims[19].execute_kw(
        DB, ADMIN, "purchase.order", "read", [[po], ["state", "locked"]], {}
    )
    assert (row["state"], row["locked"]) == ("purchase", True)


def test_wizard_actions_travel_as_plain_dicts(sims: dict[int, OdooSimulator]) -> None:
    sim = sims[17]
    [mo] = sim.execute_kw(
        DB, ADMIN, "mrp.production", "search", [[("origin", "!=", False)]], {"limit": 1}
    )
    sim.execute_kw(DB, ADMIN, "mrp.production", "write", [[mo], {"qty_producing": 1.0}], {})
    action = sim.execute_kw(DB, ADMIN, "mrp.production", "button_mark_done", [[mo]], {})
    assert action["res_model"] == "mrp.production.backorder"
    assert action["context"]["default_mrp_production_ids"] == [mo]
    wizard = sim.execute_kw(
        DB, ADMIN, "mrp.production.backorder", "create", [{}], {"context": action["context"]}
    )
    navigate = sim.execute_kw(
        DB,
        ADMIN,
        "mrp.production.backorder",
        "action_backorder",
        [[wizard]],
        {"context": action["context"]},
    )
    [row] = sim.execute_kw(DB, ADMIN, "mrp.production", "read", [[mo], ["state", "name"]], {})
    assert row["state"] == "done" and row["name"].endswith("-001")
    [backorder] = sim.execute_kw(
        DB, ADMIN, "mrp.production", "search", [[("name", "=", row["name"][:-4] + "-002")]], {}
    )
    assert navigate["res_id"] == backorder and navigate["view_mode"] == "form"
    assert "target" not in navigate


def test_immediate_production_wizard_in_16(sims: dict[int, OdooSimulator]) -> None:
    with sims[16].transaction(DB) as env:
        production = env["mrp.production"].search([("origin", "=", False)], limit=1)
        action = production.button_mark_done()
        assert action["res_model"] == "mrp.immediate.production"
        wizard = env["mrp.immediate.production"].with_context(action["context"]).create({})
        assert wizard.process() is True
        # The cabinet is lot-tracked: 16's wizard generated the lot itself.
        assert production.state == "done" and production.lot_producing_id


@pytest.mark.parametrize("version", [16, 19])
def test_constraint_errors(sims: dict[int, OdooSimulator], version: int) -> None:
    with pytest.raises(ValidationError, match="quantity to produce must be positive"):
        sims[version].execute_kw(
            DB, ADMIN, "mrp.production", "create", [{"product_id": 1, "product_qty": 0}], {}
        )
    with sims[version].transaction(DB) as env:
        table = env.ref("product.product_dining_table")
        bom = env.ref("mrp.mrp_bom_dining_table")
        with pytest.raises(ValidationError, match="should not be the same as BoM product"):
            env["mrp.bom.line"].create({"bom_id": bom.id, "product_id": table.id})
        with pytest.raises(ValidationError, match="greater or equal to 0"):
            bom.write({"bom_line_ids": [(1, bom.bom_line_ids[0].id, {"product_qty": -1})]})
        order = env["sale.order"].search([("state", "=", "draft")], limit=1)
        with pytest.raises(ValidationError, match="Missing required fields on accountable"):
            env["sale.order.line"].create({"order_id": order.id, "name": "x"})
        move_line = env["stock.move.line"].search([], limit=1)
        key = "quantity" if version >= 17 else "qty_done"
        with pytest.raises(ValidationError, match="You can not enter negative quantities"):
            move_line.write({key: -1.0})
        lot = env["stock.lot"].create({"name": "L-1", "product_id": table.id})
        with pytest.raises(ValidationError, match="must be unique"):
            env["stock.lot"].create({"name": lot.name, "product_id": table.id})
        with pytest.raises(UserError, match="Nothing to check the availability for"):
            env["stock.picking"].create(
                {"picking_type_id": env.ref("stock.picking_type_out").id}
            ).action_assign()
