"""Purchase orders as Odoo's ``purchase`` and ``purchase_stock`` addons behave: confirming an
RFQ makes it a purchase order and creates its receipt (WH/IN), whose moves feed the
make-to-order deliveries that asked for the purchase. 19 replaced the "done" state by the
``locked`` flag."""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError
from forgeline.sim.odoo.orm import Model, model_method, versioned

from .common import compare
from .sale import INVOICE_STATUS, LINE_DISPLAY, _check_accountable, touch_parents
from .stock import main_warehouse
from .stock_move import confirm_moves

__all__: list[str] = []


def _purchase_states(version: int) -> list[tuple[str, str]]:
    states = [
        ("draft", "RFQ"),
        ("sent", "RFQ Sent"),
        ("to approve", "To Approve"),
        ("purchase", "Purchase Order"),
    ]
    if version <= 18:
        states.append(("done", "Locked"))
    return [*states, ("cancel", "Cancelled")]


# Everyone reads; writing needs the app's user group (demo/demo reads only).
_ACCESS = {"read": ("base.group_user",), "write": ("purchase.group_purchase_user",)}


class PurchaseOrder(Model):
    _name = "purchase.order"
    _description = "Purchase Order"
    _order = "priority desc, id desc"
    _access = _ACCESS
    name = fields.Char("Order Reference", default="New", index=True)
    priority = fields.Selection([("0", "Normal"), ("1", "Urgent")], default="0")
    origin = fields.Char("Source Document")
    partner_ref = fields.Char("Vendor Reference")
    partner_id = fields.Many2one("res.partner", "Vendor", required=True, index=True)
    date_order = fields.Datetime("Order Deadline", required=True, default=lambda env: env.now())
    date_approve = fields.Datetime("Confirmation Date", readonly=True)
    date_planned = fields.Datetime("Expected Arrival")
    state = fields.Selection(_purchase_states, "Status", default="draft", index=True)
    locked = fields.Boolean(since=19)
    order_line = fields.One2many("purchase.order.line", "order_id", "Order Lines")
    notes = fields.Text("Terms and Conditions")
    user_id = fields.Many2one("res.users", "Buyer", default=lambda env: env.uid)
    picking_type_id = fields.Many2one("stock.picking.type", "Deliver To")
    picking_ids = fields.One2many("stock.picking", "purchase_id", "Receptions")
    incoming_picking_count = fields.Integer(compute="_compute_picking_count")
    amount_untaxed = fields.Monetary("Untaxed Amount", compute="_compute_amounts")
    amount_tax = fields.Monetary("Taxes", compute="_compute_amounts")
    amount_total = fields.Monetary("Total", compute="_compute_amounts")
    invoice_status = fields.Selection(
        [s for s in INVOICE_STATUS if s[0] != "upselling"],
        "Billing Status",
        compute="_compute_invoice_status",
    )
    invoice_ids = fields.Many2many("account.move", "Bills", compute="_compute_invoices")
    invoice_count = fields.Integer(compute="_compute_invoices")
    receipt_status = fields.Selection(
        [
            ("pending", "Not Received"),
            ("partial", "Partially Received"),
            ("full", "Fully Received"),
        ],
        compute="_compute_receipt_status",
        since=17,
    )

    def _compute_picking_count(self) -> None:
        for order in self:
            order.incoming_picking_count = len(order.picking_ids)

    def _compute_amounts(self) -> None:
        for order in self:
            untaxed = sum(order.order_line.mapped("price_subtotal"))
            order.amount_untaxed = untaxed
            order.amount_tax = 0.0
            order.amount_total = untaxed

    def _compute_invoices(self) -> None:
        for order in self:
            bills = (
                self.env["account.move.line"]
                .search([("purchase_line_id", "in", order.order_line.ids)])
                .mapped("move_id")
            )
            order.invoice_ids = bills
            order.invoice_count = len(bills)

    def _compute_invoice_status(self) -> None:
        for order in self:
            lines = order.order_line.filtered(lambda ln: not ln.display_type)
            if order.state not in ("purchase", "done") or not lines:
                order.invoice_status = "no"
            elif any(compare(ln.qty_to_invoice, 0.0) > 0 for ln in lines):
                order.invoice_status = "to invoice"
            elif all(compare(ln.qty_invoiced, ln.product_qty) >= 0 for ln in lines):
                order.invoice_status = "invoiced"
            else:
                order.invoice_status = "no"

    def _compute_receipt_status(self) -> None:
        for order in self:
            pickings = order.picking_ids.filtered(lambda p: p.state != "cancel")
            if not pickings or all(p.state != "done" for p in pickings):
                order.receipt_status = False if not pickings else "pending"
            elif all(p.state == "done" for p in pickings):
                order.receipt_status = "full"
            else:
                order.receipt_status = "partial"

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            if vals.get("name", "New") == "New":
                vals["name"] = self.env.next_sequence("purchase.order", "P")
            if not vals.get("picking_type_id"):
                vals["picking_type_id"] = main_warehouse(self.env).in_type_id.id
        return super().create(vals_list)

    # -- buttons -------------------------------------------------------------------------

    def unlink(self) -> bool:
        if any(o.state != "cancel" for o in self):
            raise UserError("In order to delete a purchase order, you must cancel it first.")
        return bool(super().unlink())

    def button_confirm(self) -> bool:
        for order in self:
            if order.state not in ("draft", "sent"):
                continue
            order.write({"state": "to approve"})
            order.button_approve()
        return True

    # What these buttons return is Odoo's (purchase/models/purchase_order.py, 16-18):
    # button_approve and button_draft ``return {}``; button_cancel, button_done and
    # button_unlock return nothing, so None reaches the wire (an XML-RPC fault 1, no JSON-RPC
    # ``result``, JSON-2 ``null``) although the work is committed.

    def button_approve(self, force: bool = False) -> dict[str, Any]:
        orders = self.filtered(lambda o: o.state == "to approve")
        orders.write({"state": "purchase", "date_approve": self.env.now()})
        orders._create_picking()
        return {}

    def button_cancel(self) -> None:
        for order in self:
            if any(b.state not in ("cancel", "draft") for b in order.invoice_ids):
                raise UserError(
                    "Unable to cancel this purchase order. You must first cancel the related "
                    "vendor bills."
                )
            if any(m.state == "done" for m in order.order_line.mapped("move_ids")):
                raise UserError(
                    f"Unable to cancel purchase order {order.name} as some receptions have "
                    "already been done."
                )
            order.picking_ids.filtered(lambda p: p.state not in ("done", "cancel")).action_cancel()
        self.write({"state": "cancel"})

    def button_draft(self) -> dict[str, Any]:
        self.write({"state": "draft"})
        return {}

    @versioned(until=18)
    def button_done(self) -> None:
        self.write({"state": "done", "priority": "0"})

    @versioned(since=19)
    def button_lock(self) -> None:
        # 19: ``self.locked = True`` (unconfirmed against the 19 source: no return assumed).
        self.write({"locked": True})

    def button_unlock(self) -> None:
        if self.env.version >= 19:
            self.write({"locked": False})
        else:
            self.filtered(lambda o: o.state == "done").write({"state": "purchase"})

    def _create_picking(self) -> None:
        for order in self.filtered(lambda o: o.state in ("purchase", "done")):
            lines = order.order_line.filtered(
                lambda ln: ln.product_id and ln.product_id.type in ("consu", "product")
            )
            if lines:
                lines._create_stock_moves(order._receipt())

    def _receipt(self) -> Any:
        picking = self.picking_ids.filtered(lambda p: p.state not in ("done", "cancel"))[:1]
        if picking:
            return picking
        ptype = self.picking_type_id or main_warehouse(self.env).in_type_id
        return self.env["stock.picking"].create(
            {
                "picking_type_id": ptype.id,
                "partner_id": self.partner_id.id,
                "origin": self.name,
                "purchase_id": self.id,
            }
        )


class PurchaseOrderLine(Model):
    _name = "purchase.order.line"
    _description = "Purchase Order Line"
    _order = "order_id, sequence, id"
    order_id = fields.Many2one(
        "purchase.order", "Order Reference", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    display_type = fields.Selection(LINE_DISPLAY)
    name = fields.Text("Description", required=True)
    product_id = fields.Many2one("product.product", "Product", index=True)
    product_qty = fields.Float("Quantity", default=1.0)
    product_uom = fields.Many2one("uom.uom", "Unit of Measure")
    price_unit = fields.Float("Unit Price")
    price_subtotal = fields.Monetary("Subtotal", compute="_compute_amount")
    price_total = fields.Monetary("Total", compute="_compute_amount")
    date_planned = fields.Datetime("Expected Arrival")
    qty_received = fields.Float("Received Qty", compute="_compute_qty_received")
    qty_invoiced = fields.Float("Billed Qty", compute="_compute_qty_invoiced")
    qty_to_invoice = fields.Float("To Invoice Quantity", compute="_compute_qty_invoiced")
    state = fields.Selection(_purchase_states, related="order_id.state")
    partner_id = fields.Many2one("res.partner", related="order_id.partner_id")
    move_ids = fields.One2many("stock.move", "purchase_line_id", "Reservation")
    move_dest_ids = fields.One2many("stock.move", "created_purchase_line_id", "Downstream Moves")

    def _compute_amount(self) -> None:
        for line in self:
            # One local: reading the field back inside its own compute would recompute it.
            subtotal = line.product_qty * line.price_unit
            line.price_subtotal = subtotal
            line.price_total = subtotal

    def _compute_qty_received(self) -> None:
        for line in self:
            line.qty_received = sum(
                m.product_uom_qty if m.location_dest_id.usage != "supplier" else -m.product_uom_qty
                for m in line.move_ids
                if m.state == "done"
            )

    def _compute_qty_invoiced(self) -> None:
        for line in self:
            amls = self.env["account.move.line"].search([("purchase_line_id", "=", line.id)])
            invoiced = sum(
                (-a.quantity if a.move_id.move_type == "in_refund" else a.quantity)
                for a in amls
                if a.move_id.state != "cancel"
            )
            line.qty_invoiced = invoiced
            if line.order_id.state in ("purchase", "done"):
                # Odoo's default bill control is on received quantities for storable goods.
                line.qty_to_invoice = line.qty_received - invoiced
            else:
                line.qty_to_invoice = 0.0

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            product = self.env["product.product"].browse(vals.get("product_id") or ())
            if product:
                if "name" not in vals:
                    vals["name"] = product.display_name
                if "product_uom" not in vals:
                    vals["product_uom"] = product.uom_id.id
                if "price_unit" not in vals:
                    sellers = product.seller_ids
                    vals["price_unit"] = sellers[0].price if sellers else product.standard_price
            vals.setdefault("date_planned", self.env.now())
            _check_accountable(vals, "purchase")
        lines = super().create(vals_list)
        confirmed = lines.filtered(lambda ln: ln.order_id.state in ("purchase", "done"))
        for line in confirmed:
            line._create_stock_moves(line.order_id._receipt())
        touch_parents(lines, "order_id")
        return lines

    def write(self, vals: dict[str, Any]) -> bool:
        res = super().write(vals)
        if "product_qty" in vals:
            for line in self.filtered(lambda ln: ln.order_id.state in ("purchase", "done")):
                line._create_stock_moves(line.order_id._receipt())
        touch_parents(self, "order_id")
        return bool(res)

    def _create_stock_moves(self, picking: Any) -> None:
        moves = self.env["stock.move"]
        for line in self:
            if line.display_type or not line.product_id:
                continue
            planned = sum(m.product_uom_qty for m in line.move_ids if m.state != "cancel")
            qty = float(line.product_qty) - planned
            if compare(qty, 0.0) <= 0:
                continue
            moves |= moves.create(
                {
                    "name": line.name,
                    "product_id": line.product_id.id,
                    "product_uom_qty": qty,
                    "product_uom": line.product_uom.id,
                    "picking_id": picking.id,
                    "purchase_line_id": line.id,
                    "origin": line.order_id.name,
                    "partner_id": line.order_id.partner_id.id,
                    "move_dest_ids": line.move_dest_ids.ids,
                }
            )
        if moves:
            confirm_moves(moves, reserve=True)
            picking._recompute_state()


class StockPickingPurchase(Model):
    _inherit = "stock.picking"
    purchase_id = fields.Many2one("purchase.order", "Purchase Orders", index=True)


class StockMovePurchase(Model):
    _inherit = "stock.move"
    purchase_line_id = fields.Many2one("purchase.order.line", "Purchase Order Line", index=True)
    created_purchase_line_id = fields.Many2one("purchase.order.line", "Created Purchase Order Line")
