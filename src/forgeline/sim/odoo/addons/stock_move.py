"""Stock moves and move lines, and the move life cycle every transfer and manufacturing order
goes through: confirm → reserve (``assign_moves``) → process (``done_moves``) or cancel.

Quantities differ by version, as in Odoo. Up to 16 a move has ``quantity_done`` and a
reserved ``reserved_availability``; its lines have ``reserved_uom_qty`` and ``qty_done``.
From 17 one ``quantity`` (on the move and its lines) is both what is reserved and what will be
processed, and ``picked`` says it has been handled. The helpers here hide that difference
from the pickings and manufacturing orders.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError, ValidationError
from forgeline.sim.odoo.orm import Model, model_method

from .common import compare, is_storable, is_zero
from .stock import gather, update_available, update_reserved

__all__ = [
    "assign_moves",
    "cancel_moves",
    "confirm_moves",
    "done_directly",
    "done_moves",
    "move_done_qty",
    "move_reserved_qty",
    "set_move_done_qty",
    "unreserve_moves",
]

MOVE_STATES = [
    ("draft", "New"),
    ("waiting", "Waiting Another Move"),
    ("confirmed", "Waiting Availability"),
    ("partially_available", "Partially Available"),
    ("assigned", "Available"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
]
OPEN_STATES = ("waiting", "confirmed", "partially_available", "assigned")
_SYNCING = "forgeline_syncing_quantities"


class StockMove(Model):
    _name = "stock.move"
    _description = "Stock Move"
    _order = "sequence, id"
    name = fields.Char("Description", required=True)
    sequence = fields.Integer(default=10)
    reference = fields.Char(compute="_compute_reference")
    origin = fields.Char("Source Document")
    product_id = fields.Many2one("product.product", required=True, index=True)
    product_uom = fields.Many2one("uom.uom", "UoM")
    product_uom_qty = fields.Float("Demand", default=0.0)
    product_qty = fields.Float("Real Quantity", compute="_compute_product_qty")
    quantity = fields.Float(since=17)
    picked = fields.Boolean(since=17)
    quantity_done = fields.Float(until=16)
    reserved_availability = fields.Float("Quantity Reserved", readonly=True, until=16)
    state = fields.Selection(MOVE_STATES, default="draft", index=True)
    location_id = fields.Many2one("stock.location", "Source Location", required=True)
    location_dest_id = fields.Many2one("stock.location", "Destination Location", required=True)
    picking_id = fields.Many2one("stock.picking", "Transfer", index=True)
    picking_type_id = fields.Many2one("stock.picking.type", "Operation Type")
    picking_code = fields.Selection(
        [
            ("incoming", "Receipt"),
            ("outgoing", "Delivery"),
            ("internal", "Internal Transfer"),
            ("mrp_operation", "Manufacturing"),
        ],
        related="picking_type_id.code",
    )
    partner_id = fields.Many2one("res.partner", "Destination Address")
    warehouse_id = fields.Many2one("stock.warehouse")
    date = fields.Datetime("Date Scheduled")
    date_deadline = fields.Datetime("Deadline")
    procure_method = fields.Selection(
        [
            ("make_to_stock", "Default: Take From Stock"),
            ("make_to_order", "Advanced: Apply Procurement Rules"),
        ],
        "Supply Method",
        default="make_to_stock",
        required=True,
    )
    move_dest_ids = fields.Many2many("stock.move", "Destination Moves")
    move_orig_ids = fields.Many2many("stock.move", "Original Moves", compute="_compute_orig")
    move_line_ids = fields.One2many("stock.move.line", "move_id", "Operations")
    has_tracking = fields.Selection(
        [("serial", "By Unique Serial Number"), ("lot", "By Lots"), ("none", "No Tracking")],
        related="product_id.tracking",
    )
    is_inventory = fields.Boolean()

    def _compute_reference(self) -> None:
        for move in self:
            move.reference = move.picking_id.name if move.picking_id else move.name

    def _compute_product_qty(self) -> None:
        for move in self:
            move.product_qty = move.product_uom_qty

    def _compute_orig(self) -> None:
        for move in self:
            move.move_orig_ids = self.search([("move_dest_ids", "in", [move.id])])

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            product = self.env["product.product"].browse(vals.get("product_id") or ())
            picking = self.env["stock.picking"].browse(vals.get("picking_id") or ())
            if picking:
                vals.setdefault("location_id", picking.location_id.id)
                vals.setdefault("location_dest_id", picking.location_dest_id.id)
                vals.setdefault("picking_type_id", picking.picking_type_id.id)
                vals.setdefault("partner_id", picking.partner_id.id or False)
                vals.setdefault("origin", picking.origin or False)
            if product:
                if "name" not in vals:
                    vals["name"] = product.display_name
                if "product_uom" not in vals:
                    vals["product_uom"] = product.uom_id.id
            vals.setdefault("date", self.env.now())
        moves = super().create(vals_list)
        pickings = moves.mapped("picking_id")
        if pickings:
            pickings._recompute_state()
        return moves

    def write(self, vals: dict[str, Any]) -> bool:
        res = super().write(vals)
        if self.env.context.get(_SYNCING):
            return bool(res)
        qty_field = "quantity" if self.env.version >= 17 else "quantity_done"
        if qty_field in vals:
            for move in self.filtered(lambda m: m.state not in ("done", "cancel")):
                set_move_done_qty(move, float(vals[qty_field] or 0.0))
        return bool(res)

    # Public move methods Odoo exposes (buttons on the detailed operations).
    def action_assign(self) -> bool:
        assign_moves(self)
        return True

    def action_confirm(self) -> Any:
        return confirm_moves(self)

    def action_cancel(self) -> bool:
        cancel_moves(self)
        return True


class StockMoveLine(Model):
    _name = "stock.move.line"
    _description = "Product Moves (Stock Move Line)"
    _order = "id"
    move_id = fields.Many2one("stock.move", "Stock Operation", ondelete="cascade", index=True)
    picking_id = fields.Many2one("stock.picking", "Transfer", index=True)
    product_id = fields.Many2one("product.product", required=True)
    product_uom_id = fields.Many2one("uom.uom", "Unit of Measure")
    lot_id = fields.Many2one("stock.lot", "Lot/Serial Number")
    lot_name = fields.Char("Lot/Serial Number Name")
    location_id = fields.Many2one("stock.location", "From", required=True)
    location_dest_id = fields.Many2one("stock.location", "To", required=True)
    quantity = fields.Float(since=17)
    picked = fields.Boolean(since=17)
    reserved_uom_qty = fields.Float("Reserved", until=16)
    qty_done = fields.Float("Quantity Done", until=16)
    state = fields.Selection(MOVE_STATES, related="move_id.state")
    reference = fields.Char(related="move_id.reference")
    date = fields.Datetime()
    tracking = fields.Selection(
        [("serial", "By Unique Serial Number"), ("lot", "By Lots"), ("none", "No Tracking")],
        related="product_id.tracking",
    )

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            move = self.env["stock.move"].browse(vals.get("move_id") or ())
            if move:
                vals.setdefault("product_id", move.product_id.id)
                vals.setdefault("picking_id", move.picking_id.id or False)
                vals.setdefault("location_id", move.location_id.id)
                vals.setdefault("location_dest_id", move.location_dest_id.id)
                if "product_uom_id" not in vals:
                    vals["product_uom_id"] = move.product_uom.id
            vals.setdefault("date", self.env.now())
        _check_positive(self.env.version, vals_list)
        lines = super().create(vals_list)
        if not self.env.context.get(_SYNCING):
            if self.env.version >= 17:
                for line, vals in zip(lines, vals_list, strict=True):
                    if vals.get("quantity"):
                        _reserve_for_line(line, float(vals["quantity"]))
            _sync_move_totals(lines.mapped("move_id"))
        return lines

    def write(self, vals: dict[str, Any]) -> bool:
        _check_positive(self.env.version, [vals])
        syncing = self.env.context.get(_SYNCING)
        before = (
            {line.id: float(line.quantity) for line in self}
            if (self.env.version >= 17 and "quantity" in vals and not syncing)
            else {}
        )
        res = super().write(vals)
        if before:
            for line in self:
                if line.state not in ("done", "cancel"):
                    _reserve_for_line(line, float(line.quantity) - before[line.id])
        qty_keys = {"quantity", "qty_done", "reserved_uom_qty"}
        if not syncing and qty_keys & set(vals):
            _sync_move_totals(self.mapped("move_id"))
        return bool(res)


def _check_positive(version: int, vals_list: list[dict[str, Any]]) -> None:
    key = "quantity" if version >= 17 else "qty_done"
    if any(float(vals.get(key) or 0.0) < 0 for vals in vals_list):
        raise ValidationError("You can not enter negative quantities.")


def _reserve_for_line(line: Any, delta: float) -> None:
    """17+: a line's quantity is a reservation, so editing it reserves or releases stock."""
    if not is_zero(delta):
        update_reserved(line.env, line.product_id, line.location_id, delta, line.lot_id)


# -- version-neutral quantities ------------------------------------------------------------


def move_reserved_qty(move: Any) -> float:
    if move.env.version >= 17:
        return float(move.quantity)
    return float(move.reserved_availability)


def move_done_qty(move: Any) -> float:
    """What processing the move would move now (17+: only once picked)."""
    if move.env.version >= 17:
        return float(move.quantity) if move.picked else 0.0
    return float(move.quantity_done)


def _line_done(line: Any) -> float:
    return float(line.quantity if line.env.version >= 17 else line.qty_done)


def _sync_move_totals(moves: Any) -> None:
    for move in moves:
        lines = move.move_line_ids
        if move.env.version >= 17:
            vals: dict[str, Any] = {"quantity": sum(lines.mapped("quantity"))}
        else:
            vals = {
                "reserved_availability": sum(lines.mapped("reserved_uom_qty")),
                "quantity_done": sum(lines.mapped("qty_done")),
            }
        move.with_context(**{_SYNCING: True}).write(vals)


def _new_line(move: Any, qty: float, location: Any, lot: Any, *, reserved: bool) -> Any:
    vals: dict[str, Any] = {
        "move_id": move.id,
        "location_id": location.id,
        "lot_id": lot.id if lot else False,
    }
    if move.env.version >= 17:
        vals["quantity"] = qty
    elif reserved:
        vals["reserved_uom_qty"] = qty
    else:
        vals["qty_done"] = qty
    return move.env["stock.move.line"].with_context(**{_SYNCING: True}).create(vals)


def set_move_done_qty(move: Any, qty: float) -> None:
    """Make the move's lines add up to ``qty`` to process, as writing the move's quantity
    (17+) or quantity_done (16) does in Odoo."""
    env = move.env
    syncing = move.move_line_ids.with_context(**{_SYNCING: True})
    if env.version >= 17:
        current = sum(syncing.mapped("quantity"))
        bypass = move.location_id.should_bypass_reservation()
        if compare(qty, current) > 0:
            if not bypass and is_storable(move.product_id):
                _reserve_quants(move, qty - current)
            current = sum(move.move_line_ids.mapped("quantity"))
            if compare(qty, current) > 0:
                # Beyond what stock allows: an unreserved line, processed anyway (Odoo lets
                # stock go negative).
                _new_line(move, qty - current, move.location_id, None, reserved=False)
        else:
            excess = current - qty
            for line in reversed(list(syncing)):
                if is_zero(excess):
                    break
                cut = min(excess, float(line.quantity))
                _reserve_for_line(line, -cut)
                line.write({"quantity": float(line.quantity) - cut})
                excess -= cut
            move.move_line_ids.filtered(lambda ln: is_zero(ln.quantity)).with_context(
                **{_SYNCING: True}
            ).unlink()
    else:
        left = qty
        for line in syncing:
            take = min(left, float(line.reserved_uom_qty))
            line.write({"qty_done": take})
            left -= take
        if compare(left, 0.0) > 0:
            if syncing:
                last = syncing[len(syncing) - 1]
                last.write({"qty_done": float(last.qty_done) + left})
            else:
                _new_line(move, left, move.location_id, None, reserved=False)
    _sync_move_totals(move)


# -- life cycle ----------------------------------------------------------------------------


def _origins(move: Any) -> Any:
    return move.env["stock.move"].search([("move_dest_ids", "in", [move.id])])


def _waits_for_origins(move: Any) -> bool:
    if move.procure_method != "make_to_order":
        return False
    origins = _origins(move)
    return not origins or not any(o.state == "done" for o in origins)


def confirm_moves(moves: Any, *, reserve: bool = False) -> Any:
    """Draft → confirmed (waiting for make-to-order). With ``reserve``, reserve the moves
    whose operation type reserves at confirmation (Odoo's default) or that come from outside
    the warehouse, as Odoo's ``_action_confirm`` does."""
    drafts = moves.filtered(lambda m: m.state == "draft")
    for move in drafts:
        state = "waiting" if move.procure_method == "make_to_order" else "confirmed"
        move.write({"state": state})
    if reserve:
        assign_moves(
            drafts.filtered(
                lambda m: (
                    m.picking_type_id.reservation_method == "at_confirm"
                    or m.location_id.should_bypass_reservation()
                )
            )
        )
    return moves


def _set_reservation_state(move: Any) -> None:
    reserved = move_reserved_qty(move)
    if compare(reserved, move.product_uom_qty) >= 0:
        state = "assigned"
    elif compare(reserved, 0.0) > 0:
        state = "partially_available"
    else:
        state = "waiting" if _waits_for_origins(move) else "confirmed"
    if move.state != state:
        move.write({"state": state})


def _reserve_quants(move: Any, need: float) -> None:
    env = move.env
    for quant in gather(env, move.product_id, move.location_id):
        if compare(need, 0.0) <= 0:
            break
        free = float(quant.quantity) - float(quant.reserved_quantity)
        if compare(free, 0.0) <= 0:
            continue
        take = min(free, need)
        update_reserved(env, move.product_id, quant.location_id, take, quant.lot_id)
        _new_line(move, take, quant.location_id, quant.lot_id, reserved=True)
        need -= take
    _sync_move_totals(move)


def assign_moves(moves: Any) -> None:
    """Reserve what stock allows. Missing stock is not an error: the move stays confirmed or
    partially available, as in Odoo."""
    confirm_moves(moves)
    for move in moves.filtered(lambda m: m.state in OPEN_STATES):
        need = float(move.product_uom_qty) - move_reserved_qty(move)
        if compare(need, 0.0) <= 0:
            _set_reservation_state(move)
            continue
        bypass = move.location_id.should_bypass_reservation() or not is_storable(move.product_id)
        if move.procure_method == "make_to_order":
            # Only what the origin moves brought in may serve this move.
            arrived = sum(float(o.product_uom_qty) for o in _origins(move) if o.state == "done")
            need = min(need, arrived - move_reserved_qty(move))
        if compare(need, 0.0) > 0:
            if bypass:
                _new_line(move, need, move.location_id, None, reserved=True)
                _sync_move_totals(move)
            else:
                _reserve_quants(move, need)
        _set_reservation_state(move)
    _recompute_pickings(moves)


def unreserve_moves(moves: Any) -> None:
    for move in moves.filtered(lambda m: m.state not in ("done", "cancel", "draft")):
        keys = {(ln.location_id.id, ln.lot_id.id or False) for ln in move.move_line_ids}
        if move.env.version <= 16:
            for line in move.move_line_ids:
                update_reserved(
                    move.env,
                    move.product_id,
                    line.location_id,
                    -line.reserved_uom_qty,
                    line.lot_id,
                )
        keep = move.move_line_ids.filtered(lambda ln: ln.env.version <= 16 and ln.qty_done > 0)
        (move.move_line_ids - keep).with_context(**{_SYNCING: True}).unlink()
        if keep:
            keep.with_context(**{_SYNCING: True}).write({"reserved_uom_qty": 0.0})
        if move.env.version >= 17:
            for location_id, lot_id in keys:
                _recount_reserved(move.product_id, location_id, lot_id)
        _sync_move_totals(move)
        _set_reservation_state(move)
    _recompute_pickings(moves)


def cancel_moves(moves: Any) -> None:
    if any(m.state == "done" for m in moves):
        raise UserError(
            "You cannot cancel a stock move that has been set to 'Done'. Create a return in "
            "order to reverse the moves which took place."
        )
    todo = moves.filtered(lambda m: m.state != "cancel")
    unreserve_moves(todo)
    for move in todo:
        # The moves that waited on this one now take from stock (propagate_cancel is off).
        dests = move.move_dest_ids.filtered(lambda d: d.state not in ("done", "cancel"))
        if dests:
            dests.write({"procure_method": "make_to_stock"})
            for dest in dests.filtered(lambda d: d.state == "waiting"):
                dest.write({"state": "confirmed"})
    todo.write({"state": "cancel"})
    if todo.env.version >= 17:
        todo.with_context(**{_SYNCING: True}).write({"quantity": 0.0, "picked": False})
    _recompute_pickings(todo)


def _split(move: Any, qty: float) -> Any:
    """A new move for ``qty`` of ``move``'s demand, taken off the original (Odoo's _split)."""
    vals = {
        "name": move.name,
        "product_id": move.product_id.id,
        "product_uom": move.product_uom.id,
        "product_uom_qty": qty,
        "location_id": move.location_id.id,
        "location_dest_id": move.location_dest_id.id,
        "picking_id": move.picking_id.id or False,
        "picking_type_id": move.picking_type_id.id or False,
        "partner_id": move.partner_id.id or False,
        "origin": move.origin or False,
        "procure_method": move.procure_method,
        "move_dest_ids": move.move_dest_ids.ids,
        "state": "confirmed",
    }
    vals.update(_split_extra_vals(move))
    new = move.env["stock.move"].create(vals)
    move.write({"product_uom_qty": float(move.product_uom_qty) - qty})
    return new


def _split_extra_vals(move: Any) -> dict[str, Any]:
    # The addons' links that a split keeps (sale line, purchase line, production).
    out: dict[str, Any] = {}
    for name in (
        "sale_line_id",
        "purchase_line_id",
        "raw_material_production_id",
        "production_id",
        "bom_line_id",
    ):
        if name in move._fields and move[name]:
            out[name] = move[name].id
    return out


def _lot_for(line: Any) -> Any:
    if line.lot_id:
        return line.lot_id
    if line.lot_name:
        lots = line.env["stock.lot"]
        lot = lots.search(
            [("name", "=", line.lot_name), ("product_id", "=", line.product_id.id)], limit=1
        ) or lots.create({"name": line.lot_name, "product_id": line.product_id.id})
        line.with_context(**{_SYNCING: True}).write({"lot_id": lot.id})
        return lot
    raise UserError(
        f"You need to supply a Lot/Serial number for product: \n - {line.product_id.display_name}"
    )


def done_moves(moves: Any, *, cancel_backorder: bool = False) -> Any:
    """Process the moves' done quantities; returns the leftover moves (for a backorder)."""
    env = moves.env
    confirm_moves(moves.filtered(lambda m: m.state == "draft"))
    leftovers = env["stock.move"]
    done = env["stock.move"]
    for move in moves.filtered(lambda m: m.state not in ("done", "cancel")):
        qty = move_done_qty(move)
        if is_zero(qty):
            if cancel_backorder or is_zero(move.product_uom_qty):
                cancel_moves(move)
            else:
                leftovers |= move
            continue
        if env.version <= 16 and compare(sum(move.move_line_ids.mapped("qty_done")), qty) != 0:
            set_move_done_qty(move, qty)
        demand = float(move.product_uom_qty)
        if compare(qty, demand) < 0:
            rest = _split(move, demand - qty)
            if cancel_backorder:
                rest.write({"state": "cancel"})
            else:
                leftovers |= rest
        elif compare(qty, demand) > 0:
            move.write({"product_uom_qty": qty})
        tracked = move.product_id.tracking != "none"
        touched: set[tuple[int, int | bool]] = set()
        for line in move.move_line_ids:
            line_qty = _line_done(line)
            lot = _lot_for(line) if tracked and line_qty > 0 else line.lot_id
            if env.version >= 17:
                # A 17+ line's quantity may exceed what it reserved (stock was short), so the
                # quant's reservation is recounted from the other open lines instead.
                touched.add((line.location_id.id, lot.id if lot else False))
            else:
                update_reserved(env, move.product_id, line.location_id, -line.reserved_uom_qty, lot)
            update_available(env, move.product_id, line.location_id, -line_qty, lot)
            update_available(env, move.product_id, line.location_dest_id, line_qty, lot)
        syncing = move.move_line_ids.with_context(**{_SYNCING: True})
        if env.version >= 17:
            syncing.filtered(lambda ln: is_zero(ln.quantity)).unlink()
            move.move_line_ids.with_context(**{_SYNCING: True}).write({"picked": True})
            move.with_context(**{_SYNCING: True}).write({"picked": True})
        else:
            syncing.filtered(lambda ln: is_zero(ln.qty_done)).unlink()
            move.move_line_ids.with_context(**{_SYNCING: True}).write({"reserved_uom_qty": 0.0})
            _sync_move_totals(move)
        move.write({"state": "done", "date": env.now()})
        for location_id, lot_id in touched:
            _recount_reserved(move.product_id, location_id, lot_id)
        done |= move
    dests = done.mapped("move_dest_ids").filtered(lambda d: d.state in OPEN_STATES)
    if dests:
        assign_moves(dests)
    _recompute_pickings(moves | leftovers)
    return leftovers


def _recount_reserved(product: Any, location_id: int, lot_id: int | bool) -> None:
    env = product.env
    location = env["stock.location"].browse(location_id)
    if location.should_bypass_reservation() or not is_storable(product):
        return
    lines = env["stock.move.line"].search_read(
        [
            ("product_id", "=", product.id),
            ("location_id", "=", location_id),
            ("lot_id", "=", lot_id),
            ("move_id.state", "in", list(OPEN_STATES)),
        ],
        ["quantity"],
    )
    reserved = sum(row["quantity"] for row in lines)
    quants = env["stock.quant"].search(
        [
            ("product_id", "=", product.id),
            ("location_id", "=", location_id),
            ("lot_id", "=", lot_id),
        ],
        limit=1,
    )
    if quants and compare(float(quants.reserved_quantity), reserved) != 0:
        quants.sudo().write({"reserved_quantity": reserved})


def done_directly(move: Any, qty: float, *, lot: Any = None) -> None:
    """Confirm and process a move at once (inventory adjustments, scrap-like moves)."""
    confirm_moves(move)
    line = _new_line(move, qty, move.location_id, lot, reserved=False)
    if move.env.version >= 17:
        line.with_context(**{_SYNCING: True}).write({"picked": True})
        move.with_context(**{_SYNCING: True}).write({"picked": True})
    _sync_move_totals(move)
    done_moves(move)


def _recompute_pickings(moves: Any) -> None:
    pickings = moves.mapped("picking_id")
    if pickings:
        pickings._recompute_state()
