"""Transfers (``stock.picking``) and the wizards ``button_validate`` answers with.

``button_validate`` follows Odoo's order: confirm drafts, sanity checks (no moves, nothing
to process, missing lots), then — unless the context skips them — the immediate-transfer
wizard (16 only) and the backorder wizard, and finally processing, with a backorder for what
is left or its cancellation (context ``picking_ids_not_to_backorder``, or operation types that
never backorder).
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError
from forgeline.sim.odoo.orm import Model, model_method

from .common import compare, is_zero
from .stock_move import (
    assign_moves,
    cancel_moves,
    confirm_moves,
    done_moves,
    move_done_qty,
    move_reserved_qty,
    set_move_done_qty,
    unreserve_moves,
)

__all__: list[str] = []

PICKING_STATES = [
    ("draft", "Draft"),
    ("waiting", "Waiting Another Operation"),
    ("confirmed", "Waiting"),
    ("assigned", "Ready"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
]


def _without_quantities_message(version: int) -> str:
    if version <= 16:
        return (
            "You cannot validate a transfer if no quantities are reserved nor done. To force the "
            "transfer, switch in edit mode and encode the done quantities."
        )
    if version == 17:
        return (
            "You cannot validate a transfer if no quantities are reserved. To force the "
            "transfer, encode quantities."
        )
    return (
        "Transfer trouble alert! Validating a zero quantity transfer? You're not moving "
        "invisible goods around are you?\nSet some quantities and let's get moving!"
    )


class StockPicking(Model):
    _name = "stock.picking"
    _description = "Transfer"
    _order = "priority desc, scheduled_date asc, id desc"
    name = fields.Char("Reference", default="/", index=True)
    origin = fields.Char("Source Document", index=True)
    note = fields.Text("Notes")
    priority = fields.Selection([("0", "Normal"), ("1", "Urgent")], default="0")
    state = fields.Selection(PICKING_STATES, "Status", default="draft", index=True)
    move_type = fields.Selection(
        [("direct", "As soon as possible"), ("one", "When all products are ready")],
        "Shipping Policy",
        default="direct",
    )
    picking_type_id = fields.Many2one("stock.picking.type", "Operation Type", required=True)
    picking_type_code = fields.Selection(
        [
            ("incoming", "Receipt"),
            ("outgoing", "Delivery"),
            ("internal", "Internal Transfer"),
            ("mrp_operation", "Manufacturing"),
        ],
        related="picking_type_id.code",
    )
    location_id = fields.Many2one("stock.location", "Source Location", required=True)
    location_dest_id = fields.Many2one("stock.location", "Destination Location", required=True)
    partner_id = fields.Many2one("res.partner", "Contact")
    scheduled_date = fields.Datetime()
    date_deadline = fields.Datetime("Deadline")
    date_done = fields.Datetime("Date of Transfer", readonly=True)
    backorder_id = fields.Many2one("stock.picking", "Back Order of", index=True)
    backorder_ids = fields.One2many("stock.picking", "backorder_id", "Back Orders")
    move_ids = fields.One2many("stock.move", "picking_id", "Stock Moves")
    move_ids_without_package = fields.One2many("stock.move", "picking_id", "Stock Moves")
    move_line_ids = fields.One2many("stock.move.line", "picking_id", "Operations")
    user_id = fields.Many2one("res.users", "Responsible")
    products_availability = fields.Char(compute="_compute_products_availability")

    def _compute_products_availability(self) -> None:
        for picking in self:
            if picking.state not in ("confirmed", "waiting", "assigned"):
                picking.products_availability = False
            elif picking.state == "assigned":
                picking.products_availability = "Available"
            else:
                picking.products_availability = "Not Available"

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            ptype = self.env["stock.picking.type"].browse(vals.get("picking_type_id") or ())
            if ptype:
                vals.setdefault("location_id", ptype.default_location_src_id.id)
                vals.setdefault("location_dest_id", ptype.default_location_dest_id.id)
                if vals.get("name", "/") == "/":
                    prefix = f"{ptype.warehouse_id.code}/{ptype.sequence_code}/"
                    vals["name"] = self.env.next_sequence(f"picking.{ptype.id}", prefix)
            vals.setdefault("scheduled_date", self.env.now())
        pickings = super().create(vals_list)
        pickings._recompute_state()
        return pickings

    def _recompute_state(self) -> None:
        """Odoo's computed picking state, derived from the moves (shipping policy direct)."""
        for picking in self:
            states = set(picking.move_ids.mapped("state"))
            if not states or states == {"draft"}:
                state = "draft" if picking.state in ("draft", "cancel") else picking.state
                state = "draft" if not states and picking.state != "cancel" else state
            elif states == {"cancel"}:
                state = "cancel"
            elif states <= {"done", "cancel"}:
                state = "done"
            elif states & {"assigned", "partially_available"}:
                state = "assigned"
            elif "waiting" in states:
                state = "waiting"
            elif "draft" in states:
                state = "draft"
            else:
                state = "confirmed"
            if state != picking.state:
                vals: dict[str, Any] = {"state": state}
                if state == "done":
                    vals["date_done"] = self.env.now()
                picking.write(vals)

    # -- buttons -------------------------------------------------------------------------

    def action_confirm(self) -> bool:
        confirm_moves(self.mapped("move_ids"), reserve=True)
        self._recompute_state()
        return True

    def action_assign(self) -> bool:
        self.filtered(lambda p: p.state == "draft").action_confirm()
        moves = self.mapped("move_ids").filtered(
            lambda m: m.state not in ("draft", "cancel", "done")
        )
        if not moves:
            raise UserError("Nothing to check the availability for.")
        assign_moves(moves)
        return True

    def do_unreserve(self) -> None:
        unreserve_moves(self.mapped("move_ids"))

    def action_cancel(self) -> bool:
        cancel_moves(self.mapped("move_ids"))
        self._recompute_state()
        return True

    def button_validate(self) -> Any:
        env = self.env
        ctx = env.context
        drafts = self.filtered(lambda p: p.state == "draft")
        if drafts:
            drafts.action_confirm()
            if env.version >= 17:
                for move in drafts.mapped("move_ids"):
                    if is_zero(move.quantity) and not is_zero(move.product_uom_qty):
                        set_move_done_qty(move, float(move.product_uom_qty))
        if not ctx.get("button_validate_picking_ids"):
            self = self.with_context(button_validate_picking_ids=self.ids)
        if not ctx.get("skip_sanity_check"):
            self._sanity_check()
        if env.version <= 16 and not ctx.get("skip_immediate"):
            immediate = self.filtered(
                lambda p: all(
                    is_zero(m.quantity_done)
                    for m in p.move_ids
                    if m.state not in ("done", "cancel")
                )
            )
            if immediate:
                return immediate._immediate_wizard_action()
        if env.version >= 17:
            for picking in self:
                moves = picking.move_ids.filtered(lambda m: m.state not in ("done", "cancel"))
                if not any(moves.mapped("picked")):
                    moves.filtered(lambda m: not is_zero(m.quantity)).write({"picked": True})
        if not ctx.get("skip_backorder"):
            to_backorder = self._check_backorder()
            if to_backorder:
                return to_backorder._backorder_wizard_action(show=len(self) > 1)
        not_to_backorder = self.filtered(lambda p: p.picking_type_id.create_backorder == "never")
        if ctx.get("picking_ids_not_to_backorder"):
            not_to_backorder |= self.browse(ctx["picking_ids_not_to_backorder"]).filtered(
                lambda p: p.picking_type_id.create_backorder != "always"
            )
        (self & not_to_backorder)._action_done(cancel_backorder=True)
        (self - not_to_backorder)._action_done(cancel_backorder=False)
        return True

    def _sanity_check(self) -> None:
        version = self.env.version
        if self.filtered(lambda p: not p.move_ids and not p.move_line_ids):
            raise UserError("Please add some items to move.")
        for picking in self:
            moves = picking.move_ids.filtered(lambda m: m.state not in ("done", "cancel"))
            if version <= 16:
                empty = all(
                    is_zero(m.quantity_done) and is_zero(m.reserved_availability) for m in moves
                )
            else:
                empty = all(is_zero(m.quantity) for m in moves)
            if empty:
                raise UserError(_without_quantities_message(version))
        missing = self.env["product.product"]
        for line in self.mapped("move_line_ids"):
            done = line.quantity if version >= 17 else line.qty_done
            if (
                line.state not in ("done", "cancel")
                and line.product_id.tracking != "none"
                and done > 0
                and not line.lot_id
                and not line.lot_name
            ):
                missing |= line.product_id
        if missing:
            names = ", ".join(missing.mapped("display_name"))
            raise UserError(f"You need to supply a Lot/Serial number for products {names}.")

    def _check_backorder(self) -> Any:
        def short(picking: Any) -> bool:
            return any(
                compare(move_done_qty(m), m.product_uom_qty) < 0
                for m in picking.move_ids
                if m.state not in ("done", "cancel")
            )

        return self.filtered(short)

    def _backorder_wizard_action(self, *, show: bool) -> dict[str, Any]:
        return {
            "name": "Create Backorder?",
            "type": "ir.actions.act_window",
            "view_mode": "form",
            "res_model": "stock.backorder.confirmation",
            "views": [[False, "form"]],
            "view_id": False,
            "target": "new",
            "context": {
                **self.env.context,
                "default_show_transfers": show,
                "default_pick_ids": [[4, p.id] for p in self],
            },
        }

    def _immediate_wizard_action(self) -> dict[str, Any]:
        return {
            "name": "Immediate Transfer?",
            "type": "ir.actions.act_window",
            "view_mode": "form",
            "res_model": "stock.immediate.transfer",
            "views": [[False, "form"]],
            "view_id": False,
            "target": "new",
            "context": {
                **self.env.context,
                "default_show_transfers": len(self) > 1,
                "default_pick_ids": [[4, p.id] for p in self],
            },
        }

    def _action_done(self, *, cancel_backorder: bool) -> None:
        for picking in self:
            moves = picking.move_ids.filtered(lambda m: m.state not in ("done", "cancel"))
            leftovers = done_moves(moves, cancel_backorder=cancel_backorder)
            if leftovers and not cancel_backorder:
                picking._create_backorder(leftovers)
            picking._recompute_state()

    def _create_backorder(self, moves: Any) -> Any:
        backorder = self.create(
            [
                {
                    "picking_type_id": self.picking_type_id.id,
                    "location_id": self.location_id.id,
                    "location_dest_id": self.location_dest_id.id,
                    "partner_id": self.partner_id.id or False,
                    "origin": self.origin or False,
                    "backorder_id": self.id,
                    **_links(self),
                }
            ]
        )
        moves.write({"picking_id": backorder.id})
        moves.mapped("move_line_ids").write({"picking_id": backorder.id})
        backorder._recompute_state()
        assign_moves(backorder.move_ids)
        return backorder


def _links(picking: Any) -> dict[str, Any]:
    """The order a backorder keeps pointing at (fields of the sale and purchase addons)."""
    return {
        name: picking[name].id
        for name in ("sale_id", "purchase_id")
        if name in picking._fields and picking[name]
    }


class BackorderConfirmation(Model):
    _name = "stock.backorder.confirmation"
    _description = "Backorder Confirmation"
    pick_ids = fields.Many2many("stock.picking")
    show_transfers = fields.Boolean()
    backorder_confirmation_line_ids = fields.One2many(
        "stock.backorder.confirmation.line",
        "backorder_confirmation_id",
        "Backorder Confirmation Lines",
    )

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        wizards = super().create(vals_list)
        for wizard in wizards:
            if not wizard.backorder_confirmation_line_ids:
                wizard.write(
                    {
                        "backorder_confirmation_line_ids": [
                            (0, 0, {"picking_id": p.id, "to_backorder": True})
                            for p in wizard.pick_ids
                        ]
                    }
                )
        return wizards

    def process(self) -> Any:
        self.ensure_one()
        not_to_do = self.backorder_confirmation_line_ids.filtered(
            lambda ln: not ln.to_backorder
        ).mapped("picking_id")
        ids = self.env.context.get("button_validate_picking_ids")
        if not ids:
            # As in Odoo: without the context of the action, there is nothing to validate.
            return True
        pickings = self.env["stock.picking"].browse(ids).with_context(skip_backorder=True)
        if not_to_do:
            pickings = pickings.with_context(picking_ids_not_to_backorder=not_to_do.ids)
        return pickings.button_validate()

    def process_cancel_backorder(self) -> Any:
        self.ensure_one()
        ids = self.env.context.get("button_validate_picking_ids")
        if not ids:
            return True
        return (
            self.env["stock.picking"]
            .browse(ids)
            .with_context(skip_backorder=True, picking_ids_not_to_backorder=self.pick_ids.ids)
            .button_validate()
        )


class BackorderConfirmationLine(Model):
    _name = "stock.backorder.confirmation.line"
    _description = "Backorder Confirmation Line"
    backorder_confirmation_id = fields.Many2one(
        "stock.backorder.confirmation", "Immediate Transfer", ondelete="cascade"
    )
    picking_id = fields.Many2one("stock.picking", "Transfer")
    to_backorder = fields.Boolean("To Backorder")


class ImmediateTransfer(Model):
    # Odoo 16 only (17 removed it); the simulator only ever returns it to a 16 client.
    _name = "stock.immediate.transfer"
    _description = "Immediate Transfer"
    pick_ids = fields.Many2many("stock.picking")
    show_transfers = fields.Boolean()

    def process(self) -> Any:
        self.ensure_one()
        for picking in self.pick_ids:
            if picking.state == "draft":
                picking.action_confirm()
                if picking.state != "assigned":
                    picking.action_assign()
                    if picking.state != "assigned":
                        raise UserError(
                            "Could not reserve all requested products. Please use the 'Mark as "
                            "Todo' button to handle the reservation manually."
                        )
            for move in picking.move_ids.filtered(lambda m: m.state not in ("done", "cancel")):
                set_move_done_qty(move, move_reserved_qty(move))
        ids = self.env.context.get("button_validate_picking_ids")
        if not ids:
            return True
        return (
            self.env["stock.picking"]
            .browse(ids)
            .with_context(skip_immediate=True)
            .button_validate()
        )
