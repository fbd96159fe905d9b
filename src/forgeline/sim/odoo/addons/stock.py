"""Inventory structure as Odoo's ``stock`` addon declares it: locations, warehouses, operation
types, routes and rules, lots, and quants with the two primitives every stock operation goes
through (``update_available`` and ``update_reserved``).

Moves and transfers live in ``stock_move.py`` and ``stock_picking.py``; what installing
``stock`` creates in a database (warehouse WH and its routes) in ``stock_install.py``.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import UserError, ValidationError
from forgeline.sim.odoo.orm import Model, model_method

from .common import is_storable, is_zero

__all__ = ["gather", "main_warehouse", "route_actions", "update_available", "update_reserved"]

USAGES = [
    ("supplier", "Vendor Location"),
    ("view", "View"),
    ("internal", "Internal Location"),
    ("customer", "Customer Location"),
    ("inventory", "Inventory Loss"),
    ("production", "Production"),
    ("transit", "Transit Location"),
]
PICKING_TYPE_CODES = [
    ("incoming", "Receipt"),
    ("outgoing", "Delivery"),
    ("internal", "Internal Transfer"),
    ("mrp_operation", "Manufacturing"),
]


class StockLocation(Model):
    _name = "stock.location"
    _description = "Inventory Locations"
    _order = "complete_name, id"
    _rec_name = "complete_name"
    _parent_name = "location_id"
    name = fields.Char("Location Name", required=True)
    complete_name = fields.Char("Full Location Name", index=True)
    location_id = fields.Many2one("stock.location", "Parent Location", ondelete="cascade")
    child_ids = fields.One2many("stock.location", "location_id")
    usage = fields.Selection(USAGES, "Location Type", default="internal", required=True)
    warehouse_id = fields.Many2one("stock.warehouse")
    barcode = fields.Char()
    active = fields.Boolean(default=True)
    scrap_location = fields.Boolean(until=17)
    quant_ids = fields.One2many("stock.quant", "location_id")

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            parent = self.browse(vals["location_id"]) if vals.get("location_id") else None
            # Odoo stores the path; the view "Partners" etc. stay out of their children's names
            # only at the top level, as in "Partners/Customers" and "WH/Stock".
            vals.setdefault(
                "complete_name",
                f"{parent.complete_name}/{vals['name']}" if parent else vals["name"],
            )
            if parent and parent.warehouse_id and "warehouse_id" not in vals:
                vals["warehouse_id"] = parent.warehouse_id.id
        return super().create(vals_list)

    def should_bypass_reservation(self) -> bool:
        self.ensure_one()
        return bool(self.usage in ("supplier", "customer", "inventory", "production"))


class StockWarehouse(Model):
    _name = "stock.warehouse"
    _description = "Warehouse"
    _order = "sequence, id"
    name = fields.Char(required=True)
    code = fields.Char("Short Name", required=True)
    sequence = fields.Integer(default=10)
    active = fields.Boolean(default=True)
    partner_id = fields.Many2one("res.partner", "Address")
    view_location_id = fields.Many2one("stock.location")
    lot_stock_id = fields.Many2one("stock.location", "Location Stock")
    wh_input_stock_loc_id = fields.Many2one("stock.location", "Input Location")
    wh_output_stock_loc_id = fields.Many2one("stock.location", "Output Location")
    in_type_id = fields.Many2one("stock.picking.type", "In Type")
    out_type_id = fields.Many2one("stock.picking.type", "Out Type")
    int_type_id = fields.Many2one("stock.picking.type", "Internal Type")
    manu_type_id = fields.Many2one("stock.picking.type", "Manufacturing Operation Type")
    reception_steps = fields.Selection(
        [
            ("one_step", "Receive goods directly (1 step)"),
            ("two_steps", "Receive goods in input and then stock (2 steps)"),
            ("three_steps", "Receive goods in input, then quality and then stock (3 steps)"),
        ],
        default="one_step",
    )
    delivery_steps = fields.Selection(
        [
            ("ship_only", "Deliver goods directly (1 step)"),
            ("pick_ship", "Send goods in output and then deliver (2 steps)"),
            ("pick_pack_ship", "Pack goods, send goods in output and then deliver (3 steps)"),
        ],
        default="ship_only",
    )
    manufacture_to_resupply = fields.Boolean(default=True)
    buy_to_resupply = fields.Boolean(default=True)
    route_ids = fields.Many2many("stock.route", "Routes")


class StockPickingType(Model):
    _name = "stock.picking.type"
    _description = "Picking Type"
    _order = "sequence, id"
    name = fields.Char("Operation Type", required=True)
    code = fields.Selection(PICKING_TYPE_CODES, "Type of Operation", required=True)
    sequence = fields.Integer(default=10)
    sequence_code = fields.Char(required=True)
    warehouse_id = fields.Many2one("stock.warehouse", ondelete="cascade")
    default_location_src_id = fields.Many2one("stock.location", "Default Source Location")
    default_location_dest_id = fields.Many2one("stock.location", "Default Destination Location")
    create_backorder = fields.Selection(
        [("ask", "Ask"), ("always", "Always"), ("never", "Never")], default="ask"
    )
    reservation_method = fields.Selection(
        [
            ("at_confirm", "At Confirmation"),
            ("manual", "Manually"),
            ("by_date", "Before scheduled date"),
        ],
        default="at_confirm",
    )
    use_create_lots = fields.Boolean(default=True)
    use_existing_lots = fields.Boolean(default=True)
    active = fields.Boolean(default=True)

    def _compute_display_name(self) -> None:
        for ptype in self:
            wh = ptype.warehouse_id
            ptype.display_name = f"{wh.name}: {ptype.name}" if wh else ptype.name


class StockRoute(Model):
    _name = "stock.route"
    _description = "Inventory Routes"
    _order = "sequence, id"
    name = fields.Char("Route", required=True)
    sequence = fields.Integer(default=0)
    active = fields.Boolean(default=True)
    product_selectable = fields.Boolean("Applicable on Product", default=True)
    warehouse_selectable = fields.Boolean("Applicable on Warehouse")
    sale_selectable = fields.Boolean("Selectable on Sales Order Line")
    rule_ids = fields.One2many("stock.rule", "route_id", "Rules")


class StockRule(Model):
    # The simulator reads only the action of a route's rules (what to do on replenishment);
    # locations are those of the warehouse.
    _name = "stock.rule"
    _description = "Stock Rule"
    _order = "sequence, id"
    name = fields.Char(required=True)
    action = fields.Selection(
        [
            ("pull", "Pull From"),
            ("push", "Push To"),
            ("pull_push", "Pull & Push"),
            ("buy", "Buy"),
            ("manufacture", "Manufacture"),
        ],
        required=True,
    )
    route_id = fields.Many2one("stock.route", required=True, ondelete="cascade")
    procure_method = fields.Selection(
        [
            ("make_to_stock", "Take From Stock"),
            ("make_to_order", "Trigger Another Rule"),
            ("mts_else_mto", "Take From Stock, if unavailable, Trigger Another Rule"),
        ],
        default="make_to_stock",
    )
    picking_type_id = fields.Many2one("stock.picking.type", "Operation Type")
    warehouse_id = fields.Many2one("stock.warehouse")
    sequence = fields.Integer(default=20)
    active = fields.Boolean(default=True)


class StockLot(Model):
    _name = "stock.lot"
    _description = "Lot/Serial"
    _order = "name, id"
    name = fields.Char("Lot/Serial Number", required=True, index=True)
    ref = fields.Char("Internal Reference")
    product_id = fields.Many2one("product.product", required=True, index=True)
    quant_ids = fields.One2many("stock.quant", "lot_id")
    product_qty = fields.Float("On Hand Quantity", compute="_compute_product_qty")
    note = fields.Text("Description")

    def _compute_product_qty(self) -> None:
        for lot in self:
            lot.product_qty = sum(
                q.quantity for q in lot.quant_ids if q.location_id.usage in ("internal", "transit")
            )

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        lots = super().create(vals_list)
        lots._check_unique_lot()
        return lots

    def _check_unique_lot(self) -> None:
        for lot in self:
            count = self.search_count(
                [("name", "=", lot.name), ("product_id", "=", lot.product_id.id)]
            )
            if count > 1:
                raise ValidationError(
                    "The combination of serial number and product must be unique across a "
                    f"company.\nFollowing combination contains duplicates:\n - Product: "
                    f"{lot.product_id.display_name}, Serial Number: {lot.name}"
                )


class StockQuant(Model):
    _name = "stock.quant"
    _description = "Quants"
    _rec_name = "product_id"
    product_id = fields.Many2one("product.product", required=True, ondelete="restrict", index=True)
    product_tmpl_id = fields.Many2one("product.template", related="product_id.product_tmpl_id")
    location_id = fields.Many2one("stock.location", required=True, ondelete="restrict", index=True)
    lot_id = fields.Many2one("stock.lot", "Lot/Serial Number", ondelete="restrict", index=True)
    quantity = fields.Float(readonly=True)
    reserved_quantity = fields.Float(readonly=True)
    available_quantity = fields.Float(compute="_compute_available_quantity")
    inventory_quantity = fields.Float("Counted Quantity")
    inventory_diff_quantity = fields.Float(compute="_compute_available_quantity")
    inventory_quantity_set = fields.Boolean()
    in_date = fields.Datetime("Incoming Date")
    warehouse_id = fields.Many2one("stock.warehouse", related="location_id.warehouse_id")

    def _compute_available_quantity(self) -> None:
        for quant in self:
            quant.available_quantity = quant.quantity - quant.reserved_quantity
            quant.inventory_diff_quantity = (
                quant.inventory_quantity - quant.quantity if quant.inventory_quantity_set else 0.0
            )

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        # Counting a product over RPC (inventory_quantity on a new quant) targets the quant of
        # that product/location/lot when it exists, as in Odoo's inventory mode.
        fresh: list[dict[str, Any]] = []
        quants = self.browse()
        for vals in vals_list:
            if "inventory_quantity" in vals and "quantity" not in vals:
                existing = self.search(
                    [
                        ("product_id", "=", vals.get("product_id")),
                        ("location_id", "=", vals.get("location_id")),
                        ("lot_id", "=", vals.get("lot_id") or False),
                    ],
                    limit=1,
                )
                if existing:
                    existing.write(
                        {
                            "inventory_quantity": vals["inventory_quantity"],
                            "inventory_quantity_set": True,
                        }
                    )
                    quants |= existing
                    continue
                vals = {**vals, "inventory_quantity_set": True}
            fresh.append(vals)
        if fresh:
            quants |= super().create(fresh)
        return quants

    def action_apply_inventory(self) -> None:
        """Turn counted quantities into done inventory moves (Odoo returns nothing here)."""
        inventory_loc = self.env["stock.location"].search([("usage", "=", "inventory")], limit=1)
        for quant in self.filtered("inventory_quantity_set"):
            diff = quant.inventory_quantity - quant.quantity
            if not is_zero(diff):
                src, dst = (inventory_loc, quant.location_id)
                if diff < 0:
                    src, dst = dst, src
                move = self.env["stock.move"].create(
                    {
                        "name": "Product Quantity Updated",
                        "product_id": quant.product_id.id,
                        "product_uom_qty": abs(diff),
                        "location_id": src.id,
                        "location_dest_id": dst.id,
                        "is_inventory": True,
                    }
                )
                from .stock_move import done_directly  # stock_move imports this module

                done_directly(move, abs(diff), lot=quant.lot_id)
            quant.write({"inventory_quantity": 0.0, "inventory_quantity_set": False})

    def action_set_inventory_quantity_to_zero(self) -> None:
        self.write({"inventory_quantity": 0.0, "inventory_quantity_set": False})


# -- quant primitives ----------------------------------------------------------------------


def _quant_for(env: Any, product: Any, location: Any, lot: Any) -> Any:
    return env["stock.quant"].search(
        [
            ("product_id", "=", product.id),
            ("location_id", "=", location.id),
            ("lot_id", "=", lot.id if lot else False),
        ],
        limit=1,
        order="id",
    )


def update_available(env: Any, product: Any, location: Any, qty: float, lot: Any = None) -> None:
    """Add ``qty`` (may be negative) to the quant of product/location/lot, creating it.

    Like Odoo, stock may go negative: delivering or consuming more than is on hand leaves a
    negative quant rather than failing (Odoo only blocks it for serial numbers in some flows).
    Quants exist in partner and virtual locations too, so vendors and production go negative.
    """
    if not is_storable(product) or is_zero(qty):
        return
    quant = _quant_for(env, product, location, lot)
    if quant:
        quant.sudo().write({"quantity": quant.quantity + qty})
    else:
        env["stock.quant"].sudo().create(
            {
                "product_id": product.id,
                "location_id": location.id,
                "lot_id": lot.id if lot else False,
                "quantity": qty,
                "in_date": env.now(),
            }
        )


def update_reserved(env: Any, product: Any, location: Any, qty: float, lot: Any = None) -> float:
    """Move ``qty`` in or out of the reservation of a quant; returns what actually changed.

    Releasing never takes a reservation below zero (a reserved line edited by hand may claim
    more than was reserved).
    """
    if not is_storable(product) or location.should_bypass_reservation() or is_zero(qty):
        return 0.0
    quant = _quant_for(env, product, location, lot)
    if not quant:
        if qty < 0:
            return 0.0
        quant = (
            env["stock.quant"]
            .sudo()
            .create(
                {
                    "product_id": product.id,
                    "location_id": location.id,
                    "lot_id": lot.id if lot else False,
                    "quantity": 0.0,
                    "in_date": env.now(),
                }
            )
        )
    old = float(quant.reserved_quantity)
    new = max(0.0, old + qty)
    quant.sudo().write({"reserved_quantity": new})
    return new - old


def gather(env: Any, product: Any, location: Any, lot: Any = None) -> Any:
    """Quants that can serve a reservation, oldest first (Odoo's FIFO removal strategy)."""
    domain: list[Any] = [
        ("product_id", "=", product.id),
        ("location_id", "child_of", location.id),
        ("quantity", ">", 0),
    ]
    if lot:
        domain.append(("lot_id", "=", lot.id))
    return env["stock.quant"].search(domain, order="in_date, id")


def main_warehouse(env: Any) -> Any:
    warehouse = env["stock.warehouse"].search([], limit=1, order="id")
    if not warehouse:
        # A database made before the stock data existed: install it now (idempotent).
        from .stock_install import install

        install(env(su=True))
        warehouse = env["stock.warehouse"].search([], limit=1, order="id")
    if not warehouse:
        raise UserError(f"You must define a warehouse for the company: {env.company.name}.")
    return warehouse


def _location_scope(env: Any) -> set[int]:
    """Internal locations the quantities count: those under the context's ``location`` or
    ``warehouse`` (ids), else every internal/transit location (Odoo's ``_get_domain_locations``)."""
    ctx = env.context
    locations = env["stock.location"].sudo()
    root: Any = None
    if ctx.get("location"):
        root = locations.browse(ctx["location"])
    elif ctx.get("warehouse"):
        root = env["stock.warehouse"].sudo().browse(ctx["warehouse"]).view_location_id
    domain: list[Any] = [("usage", "in", ["internal", "transit"])]
    if root:
        domain.append(("id", "child_of", root.ids))
    return set(locations.search(domain).ids)


def route_actions(product: Any) -> set[str]:
    """What a product's routes say to do when a sale needs it: {"mto", "manufacture", "buy"}."""
    actions: set[str] = set()
    for rule in product.product_tmpl_id.route_ids.mapped("rule_ids"):
        if rule.action in ("manufacture", "buy"):
            actions.add(rule.action)
        elif rule.procure_method == "make_to_order":
            actions.add("mto")
    return actions


class ProductTemplateStock(Model):
    _inherit = "product.template"
    route_ids = fields.Many2many("stock.route", "Routes")
    qty_available = fields.Float("Quantity On Hand", compute="_compute_quantities")
    virtual_available = fields.Float("Forecasted Quantity", compute="_compute_quantities")
    incoming_qty = fields.Float(compute="_compute_quantities")
    outgoing_qty = fields.Float(compute="_compute_quantities")

    def _compute_quantities(self) -> None:
        for tmpl in self:
            variants = tmpl.product_variant_ids
            for name in ("qty_available", "virtual_available", "incoming_qty", "outgoing_qty"):
                setattr(tmpl, name, sum(variants.mapped(name)))


class ProductProductStock(Model):
    _inherit = "product.product"
    route_ids = fields.Many2many("stock.route", related="product_tmpl_id.route_ids")
    stock_quant_ids = fields.One2many("stock.quant", "product_id")
    qty_available = fields.Float("Quantity On Hand", compute="_compute_quantities")
    free_qty = fields.Float("Free To Use Quantity", compute="_compute_quantities")
    virtual_available = fields.Float("Forecasted Quantity", compute="_compute_quantities")
    incoming_qty = fields.Float("Incoming", compute="_compute_quantities")
    outgoing_qty = fields.Float("Outgoing", compute="_compute_quantities")

    def _compute_quantities(self) -> None:
        # One query for all the products read, not one per product: reads of many products
        # are what sync connectors do.
        ids = self.ids
        on_hand = dict.fromkeys(ids, 0.0)
        reserved = dict.fromkeys(ids, 0.0)
        incoming = dict.fromkeys(ids, 0.0)
        outgoing = dict.fromkeys(ids, 0.0)
        scope = _location_scope(self.env)
        quants = self.env["stock.quant"].search_read(
            [("product_id", "in", ids), ("location_id", "in", sorted(scope))],
            ["product_id", "quantity", "reserved_quantity"],
            load="_classic_write",
        )
        for q in quants:
            on_hand[q["product_id"]] += q["quantity"]
            reserved[q["product_id"]] += q["reserved_quantity"]
        moves = self.env["stock.move"].search_read(
            [
                ("product_id", "in", ids),
                ("state", "in", ["waiting", "confirmed", "partially_available", "assigned"]),
            ],
            ["product_id", "product_uom_qty", "location_id", "location_dest_id"],
            load="_classic_write",
        )
        for move in moves:
            src_in = move["location_id"] in scope
            dst_in = move["location_dest_id"] in scope
            if dst_in and not src_in:
                incoming[move["product_id"]] += move["product_uom_qty"]
            elif src_in and not dst_in:
                outgoing[move["product_id"]] += move["product_uom_qty"]
        for product in self:
            pid = product.id
            stocked = is_storable(product)
            product.qty_available = on_hand[pid] if stocked else 0.0
            product.free_qty = on_hand[pid] - reserved[pid] if stocked else 0.0
            product.incoming_qty = incoming[pid]
            product.outgoing_qty = outgoing[pid]
            product.virtual_available = (
                (on_hand[pid] if stocked else 0.0) + incoming[pid] - outgoing[pid]
            )
