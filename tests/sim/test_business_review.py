"""Business methods a review compared with Odoo's source: the sale order cancel wizard, the
action ``button_mark_done`` answers after creating backorders, the buttons that return None,
work order states and manufacturing order dates/order per version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator

DB = "demo"
ADMIN = 2


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[int, OdooSimulator]]:
    made = {v: OdooSimulator(v) for v in (16, 17, 18, 19)}
    yield made
    for sim in made.values():
        sim.close()


def call(sim: OdooSimulator, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
    return sim.execute_kw(DB, ADMIN, model, method, list(args), dict(kwargs))


def read(sim: OdooSimulator, model: str, rid: int, *names: str) -> dict[str, Any]:
    [row] = call(sim, model, "read", [rid], list(names))
    return dict(row)


def confirmed_order(sim: OdooSimulator) -> int:
    [leg] = call(sim, "product.product", "search", [("default_code", "=", "RM-LEG")])
    order = call(
        sim,
        "sale.order",
        "create",
        {"partner_id": 3, "order_line": [(0, 0, {"product_id": leg, "product_uom_qty": 1})]},
    )
    call(sim, "sale.order", "action_confirm", [order])
    return int(order)


# -- sale.order.action_cancel --------------------------------------------------------------


@pytest.mark.parametrize("version", [16, 17, 18, 19])
def test_cancelling_a_confirmed_order_opens_the_cancel_wizard(
    sims: dict[int, OdooSimulator], version: int
) -> None:
    sim = sims[version]
    order = confirmed_order(sim)
    # sale_order.py action_cancel/_show_cancel_wizard (16-18): any non-draft order.
    action = call(sim, "sale.order", "action_cancel", [order])
    assert action["type"] == "ir.actions.act_window"
    assert (action["res_model"], action["view_mode"], action["target"]) == (
        "sale.order.cancel",
        "form",
        "new",
    )
    assert action["context"]["default_order_id"] == order
    assert action["context"]["mark_so_as_canceled"] is True
    assert action["name"] == "Cancel Sales Order"
    assert read(sim, "sale.order", order, "state")["state"] == "sale"  # nothing cancelled yet
    wizard = call(sim, "sale.order.cancel", "create", {}, context=action["context"])
    assert read(sim, "sale.order.cancel", wizard, "order_id")["order_id"][0] == order
    assert call(sim, "sale.order.cancel", "action_cancel", [wizard]) is True
    assert read(sim, "sale.order", order, "state")["state"] == "cancel"


def test_cancel_without_the_wizard(sims: dict[int, OdooSimulator]) -> None:
    sim = sims[17]
    order = confirmed_order(sim)
    done = call(sim, "sale.order", "action_cancel", [order], context={"disable_cancel_warning": 1})
    assert done is True and read(sim, "sale.order", order, "state")["state"] == "cancel"
    # A draft quotation is cancelled directly.
    quote = call(sim, "sale.order", "create", {"partner_id": 3})
    assert call(sim, "sale.order", "action_cancel", [quote]) is True
    # Several non-draft orders: the wizard needs one (ensure_one), as in Odoo.
    first, second = confirmed_order(sim), confirmed_order(sim)
    with pytest.raises(ValueError, match="Expected singleton"):
        call(sim, "sale.order", "action_cancel", [first, second])


# -- button_mark_done and backorders ----------------------------------------------------


def _short_mo(sim: OdooSimulator, qty: float = 3.0) -> int:
    [table] = call(sim, "product.product", "search", [("default_code", "=", "FG-TABLE")])
    mo = int(call(sim, "mrp.production", "create", {"product_id": table, "product_qty": qty}))
    call(sim, "mrp.production", "action_confirm", [mo])
    call(sim, "mrp.production", "write", [mo], {"qty_producing": 1.0})
    return mo


@pytest.mark.parametrize("version", [16, 17, 18, 19])
def test_backorder_creation_answers_a_navigation_action(
    sims: dict[int, OdooSimulator], version: int
) -> None:
    sim = sims[version]
    mo = _short_mo(sim)
    wizard_action = call(sim, "mrp.production", "button_mark_done", [mo])
    assert (wizard_action["res_model"], wizard_action["target"]) == (
        "mrp.production.backorder",
        "new",
    )
    context = wizard_action["context"]
    wizard = call(sim, "mrp.production.backorder", "create", {}, context=context)
    action = call(sim, "mrp.production.backorder", "action_backorder", [wizard], context=context)
    name = read(sim, "mrp.production", mo, "name")["name"]
    [backorder] = call(sim, "mrp.production", "search", [("name", "=", name[:-4] + "-002")])
    # mrp_production.py button_mark_done: the backorder's form, no target "new".
    assert action["type"] == "ir.actions.act_window" and "target" not in action
    assert (action["res_model"], action["view_mode"], action["res_id"]) == (
        "mrp.production",
        "form",
        backorder,
    )
    assert action["context"]["mo_ids_to_backorder"] is None
    assert action["context"]["button_mark_done_production_ids"] is None


@pytest.mark.parametrize("version", [17, 18])
def test_several_backorders_answer_a_list(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    mos = [_short_mo(sim), _short_mo(sim)]
    action = call(
        sim,
        "mrp.production",
        "button_mark_done",
        mos,
        context={"skip_backorder": True, "mo_ids_to_backorder": mos},
    )
    assert "target" not in action and "res_id" not in action
    assert action["view_mode"] == ("tree,form" if version <= 17 else "list,form")
    assert action["name"] == "Backorder MO"
    [(field, operator, backorders)] = action["domain"]
    assert (field, operator, len(backorders)) == ("id", "in", 2)
    assert not set(backorders) & set(mos)


def test_no_backorder_answers_true(sims: dict[int, OdooSimulator]) -> None:
    sim = sims[17]
    mo = _short_mo(sim)
    assert call(sim, "mrp.production", "button_mark_done", [mo], context={"skip_backorder": 1})


# -- buttons that return None --------------------------------------------------------------


def _confirmed_purchase(sim: OdooSimulator) -> int:
    [leg] = call(sim, "product.product", "search", [("default_code", "=", "RM-LEG")])
    line = {"product_id": leg, "product_qty": 1, "price_unit": 1}
    po = int(call(sim, "purchase.order", "create", {"partner_id": 3, "order_line": [(0, 0, line)]}))
    assert call(sim, "purchase.order", "button_confirm", [po]) is True
    return po


@pytest.mark.parametrize("version", [16, 17, 18, 19])
def test_purchase_buttons_return_what_odoo_returns(
    sims: dict[int, OdooSimulator], version: int
) -> None:
    sim = sims[version]
    po = _confirmed_purchase(sim)
    # purchase_order.py: button_cancel/button_done/button_unlock end on a write (None);
    # button_draft and button_approve ``return {}``.
    assert call(sim, "purchase.order", "button_cancel", [po]) is None
    assert read(sim, "purchase.order", po, "state")["state"] == "cancel"
    assert call(sim, "purchase.order", "button_draft", [po]) == {}
    call(sim, "purchase.order", "write", [po], {"state": "to approve"})
    assert call(sim, "purchase.order", "button_approve", [po]) == {}
    if version <= 18:
        assert call(sim, "purchase.order", "button_done", [po]) is None
    else:
        assert call(sim, "purchase.order", "button_lock", [po]) is None
    assert call(sim, "purchase.order", "button_unlock", [po]) is None


@pytest.mark.parametrize("version", [16, 17])
def test_sale_lock_buttons_return_none(sims: dict[int, OdooSimulator], version: int) -> None:
    sim = sims[version]
    order = confirmed_order(sim)
    lock = "action_done" if version <= 16 else "action_lock"
    assert call(sim, "sale.order", lock, [order]) is None
    assert call(sim, "sale.order", "action_unlock", [order]) is None
    quote = call(sim, "sale.order", "create", {"partner_id": 3})
    assert call(sim, "sale.order", "action_quotation_sent", [quote]) is None


def test_account_move_cancel_returns_none(sims: dict[int, OdooSimulator]) -> None:
    sim = sims[17]
    line = {"name": "Assembly", "quantity": 1, "price_unit": 10.0}
    move = call(
        sim,
        "account.move",
        "create",
        {"move_type": "out_invoice", "partner_id": 3, "invoice_line_ids": [(0, 0, line)]},
    )
    call(sim, "account.move", "action_post", [move])
    # account_move.py button_cancel: a posted move is reset to draft, then cancelled.
    assert call(sim, "account.move", "button_cancel", [move]) is None
    assert read(sim, "account.move", move, "state")["state"] == "cancel"
    assert call(sim, "account.move", "button_draft", [move]) is None


# -- manufacturing fields per version ------------------------------------------------------


def _states(sim: OdooSimulator, model: str) -> list[str]:
    described = call(sim, model, "fields_get", ["state"], attributes=["selection"])
    return [key for key, _label in described["state"]["selection"]]


def test_workorder_states_per_version(sims: dict[int, OdooSimulator]) -> None:
    old = ["pending", "waiting", "ready", "progress", "done", "cancel"]
    new = ["blocked", "ready", "progress", "done", "cancel"]
    assert [_states(sims[v], "mrp.workorder") for v in (16, 17, 18, 19)] == [old, old, new, new]
    for version in (16, 18):
        sim = sims[version]
        [table] = call(sim, "product.product", "search", [("default_code", "=", "FG-TABLE")])
        mo = call(sim, "mrp.production", "create", {"product_id": table, "product_qty": 1})
        call(sim, "mrp.production", "action_confirm", [mo])
        wos = read(sim, "mrp.production", mo, "workorder_ids")["workorder_ids"]
        states = {r["state"] for r in call(sim, "mrp.workorder", "read", wos, ["state"])}
        assert wos and states <= set(_states(sim, "mrp.workorder"))


def test_production_dates_and_default_order(sims: dict[int, OdooSimulator]) -> None:
    for version in (16, 17, 18, 19):
        sim = sims[version]
        described = call(sim, "mrp.production", "fields_get", ["date_start", "date_finished"])
        assert set(described) == {"date_start", "date_finished"}  # 16 included
        model = sim.registry["mrp.production"]
        expected = "date_planned_start" if version <= 16 else "date_start"
        assert model._order == f"priority desc, {expected} asc,id"
    assert sims[19].registry["mrp.workorder"]._order == "date_start, sequence, id"
    # Urgent first, then by start date.
    sim = sims[17]
    [table] = call(sim, "product.product", "search", [("default_code", "=", "FG-TABLE")])
    late = call(
        sim,
        "mrp.production",
        "create",
        {"product_id": table, "date_start": "2030-01-02 00:00:00"},
    )
    early = call(
        sim,
        "mrp.production",
        "create",
        {"product_id": table, "date_start": "2030-01-01 00:00:00"},
    )
    urgent = call(
        sim,
        "mrp.production",
        "create",
        {"product_id": table, "date_start": "2030-01-03 00:00:00", "priority": "1"},
    )
    found = call(sim, "mrp.production", "search", [("id", "in", [late, early, urgent])])
    assert found == [urgent, early, late]
