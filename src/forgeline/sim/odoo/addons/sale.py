"""Sales orders as Odoo's ``sale``, ``sale_stock`` and ``sale_mrp`` addons behave.

Confirming an order creates its delivery (WH/OUT) and reserves what stock allows. Lines whose
product follows the "Replenish on Order (MTO)" route get a make-to-order delivery move that
waits for its supply: a confirmed manufacturing order when the product also has the
Manufacture route, or a draft purchase order (RFQ) to the first vendor when it has Buy —
both carrying the order name as origin, as Odoo's procurements do.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError, ValidationError
from forgeline.sim.odoo.orm import Model, model_method, versioned

from .common import compare
from .mrp import bom_for
from .stock import main_warehouse, route_actions
from .stock_move import assign_moves, confirm_moves

__all__: list[str] = []


def _sale_states(version: int) -> list[tuple[str, str]]:
    states = [("draft", "Quotation"), ("sent", "Quotation Sent"), ("sale", "Sales Order")]
    if version <= 16:
        states.append(("done", "Locked"))  # 17 replaced it by the `locked` flag
    return [*states, ("cancel", "Cancelled")]


INVOICE_STATUS = [
    ("upselling", "Upselling Opportunity"),
    ("invoiced", "Fully Invoiced"),
    ("to invoice", "To Invoice"),
    ("no", "Nothing to Invoice"),
]
LINE_DISPLAY = [("line_section", "Section"), ("line_note", "Note")]

# Everyone reads; writing needs the app's user group (demo/demo reads only).
_ACCESS = {"read": ("base.group_user",), "write": ("sales_team.group_sale_salesman",)}


class SaleOrder(Model):
    _name = "sale.order"
    _description = "Sales Order"
    _order = "date_order desc, id desc"
    _access = _ACCESS
    name = fields.Char("Order Reference", default="New", index=True)
    partner_id = fields.Many2one("res.partner", "Customer", required=True, index=True)
    partner_invoice_id = fields.Many2one("res.partner", "Invoice Address")
    partner_shipping_id = fields.Many2one("res.partner", "Delivery Address")
    client_order_ref = fields.Char("Customer Reference")
    origin = fields.Char("Source Document")
    date_order = fields.Datetime("Order Date", required=True, default=lambda env: env.now())
    validity_date = fields.Date("Expiration")
    commitment_date = fields.Datetime("Delivery Date")
    state = fields.Selection(_sale_states, "Status", default="draft", index=True)
    locked = fields.Boolean(since=17)
    user_id = fields.Many2one("res.users", "Salesperson", default=lambda env: env.uid)
    note = fields.Text("Terms and conditions")
    order_line = fields.One2many("sale.order.line", "order_id", "Order Lines")
    amount_untaxed = fields.Monetary("Untaxed Amount", compute="_compute_amounts")
    amount_tax = fields.Monetary("Taxes", compute="_compute_amounts")
    amount_total = fields.Monetary("Total", compute="_compute_amounts")
    invoice_status = fields.Selection(INVOICE_STATUS, compute="_compute_invoice_status")
    invoice_ids = fields.Many2many("account.move", "Invoices", compute="_compute_invoices")
    invoice_count = fields.Integer(compute="_compute_invoices")
    warehouse_id = fields.Many2one("stock.warehouse")
    picking_policy = fields.Selection(
        [("direct", "As soon as possible"), ("one", "When all products are ready")],
        "Shipping Policy",
        default="direct",
    )
    picking_ids = fields.One2many("stock.picking", "sale_id", "Transfers")
    delivery_count = fields.Integer("Delivery Orders", compute="_compute_delivery_count")
    mrp_production_ids = fields.Many2many(
        "mrp.production", "Manufacturing orders", compute="_compute_productions"
    )
    mrp_production_count = fields.Integer(compute="_compute_productions")

    def _compute_amounts(self) -> None:
        for order in self:
            untaxed = sum(order.order_line.mapped("price_subtotal"))
            order.amount_untaxed = untaxed
            order.amount_tax = 0.0  # the simulator keeps no taxes
            order.amount_total = untaxed

    def _compute_invoice_status(self) -> None:
        for order in self:
            lines = order.order_line.filtered(lambda ln: not ln.display_type)
            if order.state not in ("sale", "done") or not lines:
                order.invoice_status = "no"
            elif any(compare(ln.qty_to_invoice, 0.0) > 0 for ln in lines):
                order.invoice_status = "to invoice"
            elif all(compare(ln.qty_invoiced, ln.product_uom_qty) >= 0 for ln in lines):
                order.invoice_status = "invoiced"
            else:
                order.invoice_status = "no"

    def _compute_invoices(self) -> None:
        for order in self:
            moves = order.order_line.mapped("invoice_lines").mapped("move_id")
            order.invoice_ids = moves
            order.invoice_count = len(moves)

    def _compute_delivery_count(self) -> None:
        for order in self:
            order.delivery_count = len(order.picking_ids)

    def _compute_productions(self) -> None:
        for order in self:
            productions = self.env["mrp.production"].search([("origin", "=", order.name)])
            order.mrp_production_ids = productions
            order.mrp_production_count = len(productions)

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            if vals.get("name", "New") == "New":
                vals["name"] = self.env.next_sequence("sale.order", "S")
            partner = vals.get("partner_id")
            vals.setdefault("partner_invoice_id", partner)
            vals.setdefault("partner_shipping_id", partner)
        return super().create(vals_list)

    # -- buttons -------------------------------------------------------------------------

    def unlink(self) -> bool:
        if any(o.state not in ("draft", "cancel") for o in self):
            raise UserError(
                "You can not delete a sent quotation or a confirmed sales order. You must first "
                "cancel it."
            )
        return bool(super().unlink())

    def action_quotation_sent(self) -> None:
        # Odoo 16-18 sale_order.py: writes the state and returns nothing (None on the wire).
        if any(o.state != "draft" for o in self):
            raise UserError("Only draft orders can be marked as sent directly.")
        self.write({"state": "sent"})

    def action_confirm(self) -> bool:
        if self.env.version <= 16:
            if {"done", "cancel"} & set(self.mapped("state")):
                raise UserError(
                    "It is not allowed to confirm an order in the following states: done, cancel"
                )
        elif any(o.state not in ("draft", "sent") for o in self):
            names = ", ".join(self.mapped("display_name"))
            raise UserError(
                f"The following orders are not in a state requiring confirmation: {names}"
            )
        for order in self:
            order.write({"state": "sale", "date_order": self.env.now()})
            order.order_line._action_launch_stock_rule()
        return True

    def action_cancel(self) -> Any:
        """Cancel, or - for an order past the quotation stage - answer with the
        ``sale.order.cancel`` wizard (Odoo 16-18 ``sale_order.py`` ``action_cancel`` and
        ``_show_cancel_wizard``); the wizard cancels with context ``disable_cancel_warning``."""
        if self.env.version >= 17 and any(o.locked for o in self):
            raise UserError("You cannot cancel a locked order. Please unlock it first.")
        if self._show_cancel_wizard():
            self.ensure_one()
            context: dict[str, Any] = {
                # Odoo puts the id of sale.mail_template_sale_cancellation here; the simulator
                # has no mail templates.
                "default_template_id": False,
                "default_order_id": self.id,
                "mark_so_as_canceled": True,
                "default_email_layout_xmlid": (
                    "mail.mail_notification_layout_with_responsible_signature"
                ),
                "model_description": self._type_name(),
            }
            if self.env.version <= 16:
                context = {"default_use_template": False, **context}
            return {
                "name": f"Cancel {self._type_name()}",
                "view_mode": "form",
                "res_model": "sale.order.cancel",
                "view_id": False,  # Odoo: the id of sale.sale_order_cancel_view_form
                "type": "ir.actions.act_window",
                "context": context,
                "target": "new",
            }
        return self._action_cancel()

    def _show_cancel_wizard(self) -> bool:
        if self.env.context.get("disable_cancel_warning"):
            return False
        return any(o.state != "draft" for o in self)

    def _type_name(self) -> str:
        return "Quotation" if self.state in ("draft", "sent", "cancel") else "Sales Order"

    def _action_cancel(self) -> bool:
        for order in self:
            order.picking_ids.filtered(lambda p: p.state != "done").action_cancel()
            order.invoice_ids.filtered(lambda m: m.state == "draft").button_cancel()
        self.write({"state": "cancel"})
        return True

    def action_draft(self) -> bool:
        self.filtered(lambda o: o.state in ("cancel", "sent")).write({"state": "draft"})
        return True

    @versioned(since=17)
    def action_lock(self) -> None:
        # Odoo 17-19: ``self.locked = True``, no return value (None on the wire).
        self.write({"locked": True})

    def action_unlock(self) -> None:
        # Odoo 16: ``self.write({'state': 'sale'})``; 17-19: ``self.locked = False``. No return.
        if self.env.version <= 16:
            self.filtered(lambda o: o.state == "done").write({"state": "sale"})
        else:
            self.write({"locked": False})

    @versioned(until=16)
    def action_done(self) -> None:
        # Odoo 16: ``self.write({'state': 'done'})`` without a return (None on the wire).
        self.write({"state": "done"})

    def _delivery_picking(self) -> Any:
        picking = self.picking_ids.filtered(
            lambda p: p.state not in ("done", "cancel") and p.picking_type_code == "outgoing"
        )[:1]
        if picking:
            return picking
        wh = self.warehouse_id or main_warehouse(self.env)
        if not self.warehouse_id:
            self.write({"warehouse_id": wh.id})
        return self.env["stock.picking"].create(
            {
                "picking_type_id": wh.out_type_id.id,
                "partner_id": self.partner_shipping_id.id,
                "origin": self.name,
                "sale_id": self.id,
                "move_type": self.picking_policy,
            }
        )

    def _create_invoices(self, grouped: bool = False, final: bool = False) -> Any:
        moves = self.env["account.move"]
        for order in self:
            lines = [
                ln
                for ln in order.order_line
                if not ln.display_type and compare(ln.qty_to_invoice, 0.0) != 0
            ]
            if not lines:
                continue
            moves |= moves.create(
                {
                    "move_type": "out_invoice",
                    "partner_id": order.partner_invoice_id.id,
                    "invoice_origin": order.name,
                    "ref": order.client_order_ref or False,
                    "invoice_line_ids": [
                        (
                            0,
                            0,
                            {
                                "product_id": ln.product_id.id,
                                "name": ln.name,
                                "quantity": ln.qty_to_invoice,
                                "price_unit": ln.price_unit,
                                "discount": ln.discount,
                                "sale_line_ids": [(6, 0, [ln.id])],
                            },
                        )
                        for ln in lines
                    ],
                }
            )
        if not moves:
            raise UserError(
                "There is no invoiceable line. If a product has a Delivered quantities invoicing "
                "policy, please make sure that a quantity has been delivered."
            )
        return moves


class SaleOrderLine(Model):
    _name = "sale.order.line"
    _description = "Sales Order Line"
    _order = "order_id, sequence, id"
    order_id = fields.Many2one(
        "sale.order", "Order Reference", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=10)
    display_type = fields.Selection(LINE_DISPLAY)
    product_id = fields.Many2one("product.product", "Product", index=True)
    product_template_id = fields.Many2one("product.template", related="product_id.product_tmpl_id")
    name = fields.Text("Description", required=True)
    product_uom_qty = fields.Float("Quantity", default=1.0)
    product_uom = fields.Many2one("uom.uom", "Unit of Measure")
    price_unit = fields.Float("Unit Price")
    discount = fields.Float("Discount (%)")
    price_subtotal = fields.Monetary("Subtotal", compute="_compute_amount")
    price_total = fields.Monetary("Total", compute="_compute_amount")
    qty_delivered = fields.Float("Delivery Quantity", compute="_compute_qty_delivered")
    qty_invoiced = fields.Float("Invoiced Quantity", compute="_compute_qty_invoiced")
    qty_to_invoice = fields.Float("Quantity To Invoice", compute="_compute_qty_invoiced")
    invoice_lines = fields.Many2many("account.move.line", "Invoice Lines", compute="_compute_lines")
    state = fields.Selection(_sale_states, related="order_id.state")
    order_partner_id = fields.Many2one("res.partner", related="order_id.partner_id")
    route_id = fields.Many2one("stock.route", "Route")
    move_ids = fields.One2many("stock.move", "sale_line_id", "Stock Moves")
    customer_lead = fields.Float("Lead Time", default=0.0)

    def _compute_amount(self) -> None:
        for line in self:
            subtotal = line.product_uom_qty * line.price_unit * (1 - (line.discount or 0.0) / 100)
            line.price_subtotal = subtotal
            line.price_total = subtotal

    def _compute_qty_delivered(self) -> None:
        for line in self:
            qty = 0.0
            for move in line.move_ids.filtered(lambda m: m.state == "done"):
                if move.location_dest_id.usage == "customer":
                    qty += move.product_uom_qty
                elif move.location_id.usage == "customer":
                    qty -= move.product_uom_qty
            line.qty_delivered = qty

    def _compute_lines(self) -> None:
        for line in self:
            line.invoice_lines = self.env["account.move.line"].search(
                [("sale_line_ids", "in", [line.id])]
            )

    def _compute_qty_invoiced(self) -> None:
        for line in self:
            invoiced = 0.0
            for aml in line.invoice_lines:
                if aml.move_id.state == "cancel":
                    continue
                sign = -1 if aml.move_id.move_type == "out_refund" else 1
                invoiced += sign * aml.quantity
            line.qty_invoiced = invoiced
            if line.order_id.state not in ("sale", "done") or line.display_type:
                line.qty_to_invoice = 0.0
            elif line.product_id.invoice_policy == "delivery":
                line.qty_to_invoice = line.qty_delivered - invoiced
            else:
                line.qty_to_invoice = line.product_uom_qty - invoiced

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            product = self.env["product.product"].browse(vals.get("product_id") or ())
            if product:
                if "name" not in vals:
                    vals["name"] = product.display_name
                if "price_unit" not in vals:
                    vals["price_unit"] = product.list_price
                if "product_uom" not in vals:
                    vals["product_uom"] = product.uom_id.id
            _check_accountable(vals, "sale")
        lines = super().create(vals_list)
        lines.filtered(lambda ln: ln.order_id.state == "sale")._action_launch_stock_rule()
        touch_parents(lines, "order_id")
        return lines

    def write(self, vals: dict[str, Any]) -> bool:
        res = super().write(vals)
        if "product_uom_qty" in vals:
            self.filtered(lambda ln: ln.order_id.state == "sale")._action_launch_stock_rule()
        touch_parents(self, "order_id")
        return bool(res)

    def unlink(self) -> bool:
        if any(ln.order_id.state == "sale" and not ln.display_type for ln in self):
            raise UserError(
                "Once a sales order is confirmed, you can't remove one of its lines (we need to "
                "track if something gets invoiced or delivered).\nSet the quantity to 0 instead."
            )
        orders = self.mapped("order_id")
        res = super().unlink()
        orders.exists().write({})
        return bool(res)

    def _action_launch_stock_rule(self) -> None:
        """Deliver what is not yet planned: one delivery per order, supply for MTO lines."""
        env = self.env
        for line in self:
            product = line.product_id
            if line.display_type or not product or product.type not in ("consu", "product"):
                continue
            planned = sum(m.product_uom_qty for m in line.move_ids if m.state != "cancel")
            qty = float(line.product_uom_qty) - planned
            if compare(qty, 0.0) <= 0:
                continue
            order = line.order_id
            actions = route_actions(product)
            if line.route_id:
                actions |= {r.action for r in line.route_id.rule_ids if r.action != "pull"}
                if any(r.procure_method == "make_to_order" for r in line.route_id.rule_ids):
                    actions.add("mto")
            picking = order._delivery_picking()
            pending = [
                m
                for m in line.move_ids
                if m.picking_id == picking
                and m.state not in ("done", "cancel")
                and m.procure_method == "make_to_stock"
            ]
            if pending and "mto" not in actions:
                # Odoo merges the new procurement's move into the pending one.
                merged = pending[0]
                merged.write({"product_uom_qty": float(merged.product_uom_qty) + qty})
                assign_moves(merged)
                continue
            move = env["stock.move"].create(
                {
                    "name": line.name,
                    "product_id": product.id,
                    "product_uom_qty": qty,
                    "product_uom": line.product_uom.id,
                    "picking_id": picking.id,
                    "sale_line_id": line.id,
                    "origin": order.name,
                    "partner_id": order.partner_shipping_id.id,
                    "procure_method": "make_to_order" if "mto" in actions else "make_to_stock",
                }
            )
            if "mto" in actions:
                _procure(line, move, qty, actions)
            confirm_moves(move, reserve=True)
            picking._recompute_state()


def touch_parents(lines: Any, field: str) -> None:
    """Bump the orders' write_date when their lines change, as Odoo's stored totals do — so a
    write_date poller sees an order whose lines were edited."""
    parents = lines.mapped(field)
    if parents:
        parents.write({})


def _check_accountable(vals: dict[str, Any], kind: str) -> None:
    if not vals.get("display_type") and not vals.get("product_id"):
        raise ValidationError(
            f"The operation cannot be completed: Missing required fields on accountable {kind} "
            "order line."
        )
    # Odoo accepts negative line quantities (returns are made that way): no check here.


def _procure(line: Any, move: Any, qty: float, actions: set[str]) -> None:
    env = line.env
    product = line.product_id
    order = line.order_id
    if "manufacture" in actions:
        bom = bom_for(product)
        if not bom:
            raise UserError(
                f"There is no Bill of Material of type manufacture or kit found for the product "
                f"{product.display_name}. Please define a Bill of Material for this product."
            )
        production = env["mrp.production"].create(
            {"product_id": product.id, "product_qty": qty, "bom_id": bom.id, "origin": order.name}
        )
        production.move_finished_ids.write({"move_dest_ids": [move.id]})
        move.write({"created_production_id": production.id})
        production.action_confirm()
    elif "buy" in actions:
        sellers = product.seller_ids.filtered(lambda s: compare(s.min_qty, qty) <= 0)
        seller = sellers[:1]
        if not seller:
            raise UserError(
                "There is no matching vendor price to generate the purchase order for product "
                f"{product.display_name} (no vendor defined, minimum quantity not reached, dates "
                "not valid, ...). Go on the product form and complete the list of vendors."
            )
        purchase = env["purchase.order"].search(
            [("partner_id", "=", seller.partner_id.id), ("state", "=", "draft")], limit=1
        )
        if purchase:
            origins = (purchase.origin or "").split(", ")
            if order.name not in origins:
                purchase.write({"origin": ", ".join(o for o in [*origins, order.name] if o)})
        else:
            purchase = env["purchase.order"].create(
                {"partner_id": seller.partner_id.id, "origin": order.name}
            )
        env["purchase.order.line"].create(
            {
                "order_id": purchase.id,
                "product_id": product.id,
                "product_qty": qty,
                "price_unit": seller.price,
                "move_dest_ids": [(4, move.id)],
            }
        )
    else:
        wh = main_warehouse(env)
        raise UserError(
            f'No rule has been found to replenish "{product.display_name}" in '
            f'"{wh.lot_stock_id.display_name}".\nVerify the routes configuration on the product.'
        )


class StockPickingSale(Model):
    _inherit = "stock.picking"
    sale_id = fields.Many2one("sale.order", "Sales Order", index=True)


class StockMoveSale(Model):
    _inherit = "stock.move"
    sale_line_id = fields.Many2one("sale.order.line", "Sale Line", index=True)


class SaleOrderCancel(Model):
    """The cancel wizard ``sale.order.action_cancel`` answers with for a non-draft order
    (Odoo 16-18 ``sale/wizard/sale_order_cancel.py``; the e-mail it can send is not
    simulated)."""

    _name = "sale.order.cancel"
    _description = "Sales Order Cancel"
    order_id = fields.Many2one("sale.order", "Sale Order", required=True, ondelete="cascade")
    subject = fields.Char()
    body = fields.Text("Contents")
    display_invoice_alert = fields.Boolean(
        "Invoice Alert", compute="_compute_display_invoice_alert"
    )

    def _compute_display_invoice_alert(self) -> None:
        for wizard in self:
            invoices = wizard.order_id.invoice_ids.filtered(lambda inv: inv.state == "draft")
            wizard.display_invoice_alert = bool(invoices)

    def action_send_mail_and_cancel(self) -> Any:
        self.ensure_one()
        return self.action_cancel()

    def action_cancel(self) -> Any:
        return self.order_id.with_context(disable_cancel_warning=True).action_cancel()


class SaleAdvancePaymentInv(Model):
    _name = "sale.advance.payment.inv"
    _description = "Sales Advance Payment Invoice"
    advance_payment_method = fields.Selection(
        [
            ("delivered", "Regular invoice"),
            ("percentage", "Down payment (percentage)"),
            ("fixed", "Down payment (fixed amount)"),
        ],
        "Create Invoice",
        default="delivered",
        required=True,
    )
    sale_order_ids = fields.Many2many("sale.order", "Sales Orders")
    amount = fields.Float("Down Payment Amount")

    def create_invoices(self) -> Any:
        self.ensure_one()
        orders = self.sale_order_ids or self.env["sale.order"].browse(
            self.env.context.get("active_ids") or ()
        )
        if self.advance_payment_method != "delivered":
            raise UserError("Down payments are not simulated; use a regular invoice.")
        invoices = orders._create_invoices()
        if self.env.context.get("open_invoices"):
            return {
                "type": "ir.actions.act_window",
                "res_model": "account.move",
                "name": "Invoices",
                "view_mode": "tree,form" if self.env.version <= 16 else "list,form",
                "domain": [["id", "in", invoices.ids]],
                "context": {"default_move_type": "out_invoice"},
            }
        return {"type": "ir.actions.act_window_close"}
