"""The simulated plant's business flows, in-process through the ORM: make-to-order sales into
manufacturing and delivery, purchases into stock, and the wizards Odoo answers with."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator
from forgeline.sim.odoo.errors import UserError

DB = "demo"


@pytest.fixture(params=[16, 17, 18, 19], ids=lambda v: f"odoo{v}")
def env(request: pytest.FixtureRequest) -> Iterator[Any]:
    sim = OdooSimulator(int(request.param))
    with sim.transaction(DB) as env:
        yield env
    sim.close()


def on_hand(env: Any, xmlid: str, lot: Any = None) -> tuple[float, float]:
    product = env.ref(xmlid)
    domain = [("product_id", "=", product.id), ("location_id.usage", "=", "internal")]
    if lot is not None:
        domain.append(("lot_id", "=", lot.id))
    quants = env["stock.quant"].search(domain)
    return sum(quants.mapped("quantity")), sum(quants.mapped("reserved_quantity"))


def mark_done(production: Any) -> Any:
    """Click "Produce All" the way each version needs (16 asks through a wizard)."""
    result = production.button_mark_done()
    if isinstance(result, dict) and result["res_model"] == "mrp.immediate.production":
        wizard = production.env["mrp.immediate.production"].with_context(result["context"])
        result = wizard.create({}).process()
    return result


def validate(picking: Any) -> Any:
    result = picking.button_validate()
    if isinstance(result, dict) and result["res_model"] == "stock.immediate.transfer":
        wizard = picking.env["stock.immediate.transfer"].with_context(result["context"])
        result = wizard.create({}).process()
    return result


def test_mto_sale_manufactures_then_delivers(env: Any) -> None:
    table = env.ref("product.product_dining_table")
    customer = env.ref("base.res_partner_2")
    order = env["sale.order"].create(
        {
            "partner_id": customer.id,
            "order_line": [(0, 0, {"product_id": table.id, "product_uom_qty": 1.0})],
        }
    )
    legs_before = on_hand(env, "product.product_table_leg")
    order.action_confirm()

    assert order.state == "sale"
    production = env["mrp.production"].search([("origin", "=", order.name)])
    assert len(production) == 1
    assert production.state == "confirmed" and production.product_qty == 1.0
    delivery = order.picking_ids
    assert delivery.picking_type_code == "outgoing" and delivery.state == "waiting"
    # Confirmation reserved the components (operation types reserve at confirmation).
    production.action_assign()
    assert production.reservation_state == "assigned"
    assert on_hand(env, "product.product_table_leg")[1] == legs_before[1] + 4.0
    assert len(production.workorder_ids) == 2

    assert mark_done(production) is True
    assert production.state == "done" and production.qty_produced == 1.0
    assert on_hand(env, "product.product_table_leg") == (legs_before[0] - 4.0, legs_before[1])
    # The finished table went to stock and is already reserved for the waiting delivery.
    assert on_hand(env, "product.product_dining_table") == (1.0, 1.0)
    assert delivery.state == "assigned"

    assert validate(delivery) is True
    assert delivery.state == "done"
    assert on_hand(env, "product.product_dining_table") == (0.0, 0.0)
    customers = env.ref("stock.stock_location_customers")
    delivered = env["stock.quant"].search(
        [("product_id", "=", table.id), ("location_id", "=", customers.id)]
    )
    assert delivered.quantity == 1.0
    assert order.order_line[0].qty_delivered == 1.0
    assert order.invoice_status == "to invoice"


def test_tracked_product_needs_a_lot(env: Any) -> None:
    cabinet = env.ref("product.product_cabinet")
    production = env["mrp.production"].create({"product_id": cabinet.id, "product_qty": 2.0})
    production.action_confirm()
    if env.version >= 17:
        with pytest.raises(UserError, match="Lot/Serial Number for the final product"):
            production.button_mark_done()
        production.action_generate_serial()
        assert production.button_mark_done() is True
    else:
        production.write({"qty_producing": 2.0})
        with pytest.raises(UserError, match="Lot/Serial Number for the final product"):
            production.button_mark_done()
        production.action_generate_serial()
        assert production.button_mark_done() is True
    lot = production.lot_producing_ids if env.version >= 19 else production.lot_producing_id
    assert lot and lot.product_id == cabinet
    assert on_hand(env, "product.product_cabinet", lot)[0] == 2.0
    assert lot.product_qty == 2.0


def test_mark_done_short_returns_the_backorder_wizard(env: Any) -> None:
    production = env["mrp.production"].create(
        {"product_id": env.ref("product.product_dining_table").id, "product_qty": 3.0}
    )
    production.action_confirm()
    production.write({"qty_producing": 1.0})
    action = production.button_mark_done()
    assert action["type"] == "ir.actions.act_window"
    assert action["res_model"] == "mrp.production.backorder"
    assert action["target"] == "new"  # a wizard opens in a dialog
    wizard = env["mrp.production.backorder"].with_context(action["context"]).create({})
    navigate = wizard.action_backorder()
    assert production.state == "done" and production.product_qty == 1.0
    backorder = env["mrp.production"].search([("name", "=like", production.name[:-4] + "-%")])
    assert sorted(backorder.mapped("name")) == [production.name, production.name[:-4] + "-002"]
    rest = backorder - production
    assert rest.product_qty == 2.0 and rest.state == "confirmed"
    # Having created a backorder, Odoo answers with the backorder's form (mrp_production.py
    # button_mark_done): a navigation action, not a wizard - no target "new".
    assert navigate["type"] == "ir.actions.act_window" and "target" not in navigate
    assert (navigate["res_model"], navigate["view_mode"]) == ("mrp.production", "form")
    assert navigate["res_id"] == rest.id
    context = navigate["context"]
    assert context["mo_ids_to_backorder"] is None
    assert context["button_mark_done_production_ids"] is None
    assert context["skip_backorder"] is False  # skip_* keys are reset
    assert not any(key.startswith("default_") for key in context)

    # skip_backorder without mo_ids_to_backorder closes the remainder instead.
    rest.write({"qty_producing": 1.0})
    assert rest.with_context(skip_backorder=True).button_mark_done() is True
    assert rest.state == "done" and rest.product_qty == 1.0
    assert env["mrp.production"].search_count([("name", "=like", production.name[:-4] + "-%")]) == 2


def _delivery(env: Any, qty: float) -> Any:
    leg = env.ref("product.product_table_leg")
    order = env["sale.order"].create(
        {
            "partner_id": env.ref("base.res_partner_1").id,
            "order_line": [(0, 0, {"product_id": leg.id, "product_uom_qty": qty})],
        }
    )
    order.action_confirm()
    picking = order.picking_ids
    assert picking.state == "assigned"
    return picking


def _set_done(picking: Any, qty: float) -> None:
    move = picking.move_ids
    move.write({"quantity": qty} if picking.env.version >= 17 else {"quantity_done": qty})


def test_partial_delivery_backorder_wizard_process(env: Any) -> None:
    picking = _delivery(env, 10.0)
    _set_done(picking, 4.0)
    action = picking.button_validate()
    assert action["res_model"] == "stock.backorder.confirmation"
    assert action["target"] == "new" and action["view_mode"] == "form"
    assert action["context"]["button_validate_picking_ids"] == [picking.id]
    assert action["context"]["default_pick_ids"] == [[4, picking.id]]
    wizard = env["stock.backorder.confirmation"].with_context(action["context"]).create({})
    assert wizard.process() is True
    assert picking.state == "done"
    backorder = env["stock.picking"].search([("backorder_id", "=", picking.id)])
    assert backorder.move_ids.product_uom_qty == 6.0
    assert backorder.state == "assigned"
    assert on_hand(env, "product.product_table_leg")[0] == 36.0


def test_partial_delivery_cancel_backorder(env: Any) -> None:
    picking = _delivery(env, 10.0)
    _set_done(picking, 4.0)
    action = picking.button_validate()
    wizard = env["stock.backorder.confirmation"].with_context(action["context"]).create({})
    assert wizard.process_cancel_backorder() is True
    assert picking.state == "done"
    assert not env["stock.picking"].search([("backorder_id", "=", picking.id)])
    assert sorted(picking.move_ids.mapped("state")) == ["cancel", "done"]
    # Nothing stays reserved for the cancelled rest.
    assert on_hand(env, "product.product_table_leg")[0] == 36.0


def test_skip_backorder_context(env: Any) -> None:
    picking = _delivery(env, 10.0)
    _set_done(picking, 3.0)
    ctx = {"skip_backorder": True, "picking_ids_not_to_backorder": [picking.id]}
    if env.version <= 16:
        ctx["skip_immediate"] = True
    assert picking.with_context(**ctx).button_validate() is True
    assert picking.state == "done"
    assert not picking.backorder_ids


def test_validate_cancelled_or_done_picking_raises(env: Any) -> None:
    picking = _delivery(env, 2.0)
    picking.action_cancel()
    assert picking.state == "cancel"
    with pytest.raises(
        UserError, match=r"You cannot validate a transfer if no quantities|Transfer trouble"
    ):
        picking.button_validate()
    done = _delivery(env, 1.0)
    validate(done)
    with pytest.raises(UserError):
        done.button_validate()


def test_purchase_receipt_increases_stock(env: Any) -> None:
    purchase = env["purchase.order"].search([("state", "=", "draft")], limit=1)
    assert purchase.button_confirm() is True
    assert purchase.state == "purchase"
    receipt = purchase.picking_ids
    assert receipt.picking_type_code == "incoming" and receipt.state == "assigned"
    before = on_hand(env, "product.product_table_top")[0]
    assert validate(receipt) is True
    assert on_hand(env, "product.product_table_top")[0] == before + 10.0
    assert purchase.order_line[0].qty_received == 10.0
    with pytest.raises(UserError, match="some receptions have already been done"):
        purchase.button_cancel()


def test_mto_buy_creates_an_rfq_that_feeds_the_delivery(env: Any) -> None:
    lamp = env.ref("product.product_desk_lamp")
    order = env["sale.order"].create(
        {
            "partner_id": env.ref("base.res_partner_1").id,
            "order_line": [(0, 0, {"product_id": lamp.id, "product_uom_qty": 3.0})],
        }
    )
    order.action_confirm()
    rfq = env["purchase.order"].search([("origin", "=", order.name)])
    assert rfq.state == "draft" and rfq.partner_id == env.ref("base.res_partner_4")
    rfq.button_confirm()
    validate(rfq.picking_ids)
    delivery = order.picking_ids
    assert delivery.state == "assigned"
    assert validate(delivery) is True
    assert order.order_line.qty_delivered == 3.0


def test_cancelled_order_cannot_be_confirmed(env: Any) -> None:
    order = env["sale.order"].search([("state", "=", "draft")], limit=1)
    order.action_cancel()
    with pytest.raises(UserError, match=r"not in a state requiring confirmation|not allowed"):
        order.action_confirm()


def test_invoice_posting_errors(env: Any) -> None:
    partner = env.ref("base.res_partner_1")
    empty = env["account.move"].create({"move_type": "out_invoice", "partner_id": partner.id})
    with pytest.raises(UserError, match="You need to add a line before posting"):
        empty.action_post()
    invoice = env["account.move"].create(
        {
            "move_type": "out_invoice",
            "partner_id": partner.id,
            "invoice_line_ids": [(0, 0, {"name": "Assembly", "quantity": 2, "price_unit": 60.0})],
        }
    )
    invoice.action_post()
    assert invoice.state == "posted" and invoice.payment_state == "not_paid"
    assert invoice.name.startswith("INV/") and invoice.amount_total == 120.0
    with pytest.raises(UserError, match=r"is already posted\."):
        invoice.action_post()
    bill = env["account.move"].create(
        {
            "move_type": "in_invoice",
            "partner_id": partner.id,
            "invoice_line_ids": [(0, 0, {"name": "Wood", "price_unit": 5.0})],
        }
    )
    with pytest.raises(UserError, match="Bill/Refund date is required"):
        bill.action_post()


def test_sale_invoice_wizard(env: Any) -> None:
    order = env["sale.order"].search([("state", "=", "sale")], limit=1)
    wizard = env["sale.advance.payment.inv"].create({"sale_order_ids": [(6, 0, order.ids)]})
    # The demo table is invoiced on delivery: only the service line is invoiceable.
    wizard.create_invoices()
    invoice = order.invoice_ids
    assert invoice.move_type == "out_invoice" and invoice.invoice_origin == order.name
    assert invoice.invoice_line_ids.mapped("quantity") == [1.0]
    with pytest.raises(UserError, match="There is no invoiceable line"):
        env["sale.advance.payment.inv"].create(
            {"sale_order_ids": [(6, 0, order.ids)]}
        ).create_invoices()


def test_order_changes_after_confirmation(env: Any) -> None:
    picking = _delivery(env, 2.0)
    order = picking.sale_id
    before = order.write_date
    line = order.order_line
    line.write({"product_uom_qty": 5.0})
    assert picking.move_ids.mapped("product_uom_qty") == [5.0]  # merged, as Odoo does
    assert order.write_date >= before
    with pytest.raises(UserError, match="you can't remove one of its lines"):
        line.unlink()
    with pytest.raises(UserError, match="You must first cancel it"):
        order.unlink()
    # A confirmed order answers with the sale.order.cancel wizard (Odoo 16-18
    # sale_order.py _show_cancel_wizard); its action_cancel cancels.
    action = order.action_cancel()
    assert (action["res_model"], action["target"]) == ("sale.order.cancel", "new")
    assert action["context"]["default_order_id"] == order.id
    assert order.state == "sale"
    wizard = env["sale.order.cancel"].with_context(action["context"]).create({})
    assert wizard.order_id == order
    assert wizard.action_cancel() is True
    assert order.state == "cancel" and picking.state == "cancel"
    assert on_hand(env, "product.product_table_leg")[1] == 8.0  # only the demo MO's reservation
    order.unlink()
    done_mo = env["mrp.production"].search([("origin", "=", False)], limit=1)
    done_mo.action_generate_serial()
    mark_done(done_mo)
    with pytest.raises(UserError, match="done state"):
        done_mo.unlink()


def test_quantities_by_location_context(env: Any) -> None:
    leg = env.ref("product.product_table_leg")
    assert (leg.qty_available, leg.free_qty) == (40.0, 32.0)
    output = env["stock.location"].search([("complete_name", "=", "WH/Output")])
    assert leg.with_context(location=output.id).qty_available == 0.0
    warehouse = env.ref("stock.warehouse0")
    assert leg.with_context(warehouse=warehouse.id).qty_available == 40.0
    assert leg.product_tmpl_id.qty_available == 40.0


def test_short_components_reserve_partially_and_consume_into_negative(env: Any) -> None:
    production = env["mrp.production"].create(
        {"product_id": env.ref("product.product_dining_table").id, "product_qty": 10.0}
    )
    production.action_confirm()
    assert production.action_assign() is True  # missing stock is not an error
    top_move = production.move_raw_ids.filtered(
        lambda m: m.product_id == env.ref("product.product_table_top")
    )
    assert top_move.state == "partially_available"  # 6 free of the 10 needed
    assert production.reservation_state == "confirmed"
    assert mark_done(production) is True
    # Like Odoo, consuming more than is on hand leaves a negative quant.
    assert on_hand(env, "product.product_table_top")[0] == 8.0 - 10.0
    # The other MO's reservation of table tops survived the over-consumption.
    demo_mo = env["mrp.production"].search([("origin", "!=", False)], limit=1)
    assert demo_mo.reservation_state == "assigned"
    assert on_hand(env, "product.product_table_top")[1] == 2.0


def test_a_purchase_orders_amounts_are_readable(env: Any) -> None:
    """``amount_total`` over RPC reads the lines' computed totals (it once recursed)."""
    purchase = env["purchase.order"].search([("state", "=", "draft")], limit=1)
    line = purchase.order_line[0]
    line.write({"product_qty": 4.0, "price_unit": 2.5})
    assert line.price_subtotal == line.price_total == 10.0
    assert purchase.amount_total == sum(purchase.order_line.mapped("price_subtotal"))
