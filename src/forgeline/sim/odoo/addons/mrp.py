"""Manufacturing master data as Odoo's ``mrp`` addon declares it: work centers, bills of
materials with their lines and operations, the manufacturing links on products and stock
moves, and the Enterprise ``quality.check``.

Manufacturing orders and work orders live in ``mrp_production.py``.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.errors import ValidationError
from forgeline.sim.odoo.orm import Model, model_method

__all__ = ["bom_for"]

SQL_CHECK = "The operation cannot be completed: "


class MrpWorkcenter(Model):
    _name = "mrp.workcenter"
    _description = "Work Center"
    _order = "sequence, id"
    name = fields.Char("Work Center", required=True)
    code = fields.Char()
    sequence = fields.Integer(default=1)
    active = fields.Boolean(default=True)
    time_efficiency = fields.Float("Time Efficiency", default=100.0)
    default_capacity = fields.Float("Capacity", default=1.0)
    costs_hour = fields.Float("Cost per hour")
    time_start = fields.Float("Setup Time")
    time_stop = fields.Float("Cleanup Time")
    working_state = fields.Selection(
        [("normal", "Normal"), ("blocked", "Blocked"), ("done", "In Progress")],
        default="normal",
    )


class MrpRoutingWorkcenter(Model):
    _name = "mrp.routing.workcenter"
    _description = "Work Center Usage"
    _order = "bom_id, sequence, id"
    name = fields.Char("Operation", required=True)
    workcenter_id = fields.Many2one("mrp.workcenter", required=True)
    bom_id = fields.Many2one("mrp.bom", "Bill of Material", ondelete="cascade", index=True)
    sequence = fields.Integer(default=100)
    time_mode = fields.Selection(
        [("auto", "Compute based on tracked time"), ("manual", "Set duration manually")],
        default="manual",
    )
    time_cycle_manual = fields.Float("Manual Duration", default=60.0)
    time_cycle = fields.Float("Duration", compute="_compute_time_cycle")
    note = fields.Text("Description")

    def _compute_time_cycle(self) -> None:
        for op in self:
            op.time_cycle = op.time_cycle_manual


class MrpBom(Model):
    _name = "mrp.bom"
    _description = "Bill of Material"
    _order = "sequence, id"
    _rec_name = "product_tmpl_id"
    code = fields.Char("Reference")
    active = fields.Boolean(default=True)
    type = fields.Selection(
        [
            ("normal", "Manufacture this product"),
            ("phantom", "Kit"),
            ("subcontract", "Subcontracting"),
        ],
        "BoM Type",
        default="normal",
        required=True,
    )
    product_tmpl_id = fields.Many2one("product.template", "Product", required=True, index=True)
    product_id = fields.Many2one("product.product", "Product Variant")
    product_qty = fields.Float("Quantity", default=1.0, required=True)
    product_uom_id = fields.Many2one("uom.uom", "Unit of Measure")
    sequence = fields.Integer()
    bom_line_ids = fields.One2many("mrp.bom.line", "bom_id", "BoM Lines")
    operation_ids = fields.One2many("mrp.routing.workcenter", "bom_id", "Operations")
    ready_to_produce = fields.Selection(
        [
            ("all_available", "When all components are available"),
            ("asap", "When components for 1st operation are available"),
        ],
        default="all_available",
    )
    consumption = fields.Selection(
        [("flexible", "Allowed"), ("warning", "Allowed with warning"), ("strict", "Blocked")],
        "Flexible Consumption",
        default="warning",
        required=True,
    )
    picking_type_id = fields.Many2one("stock.picking.type", "Operation Type")
    produce_delay = fields.Integer("Manufacturing Lead Time", since=17)

    def _compute_display_name(self) -> None:
        for bom in self:
            product = bom.product_tmpl_id.display_name
            bom.display_name = f"{bom.code}: {product}" if bom.code else product

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            if float(vals.get("product_qty", 1.0)) <= 0:
                raise ValidationError(SQL_CHECK + "The quantity to produce must be positive!")
            if not vals.get("product_tmpl_id") and vals.get("product_id"):
                product = self.env["product.product"].browse(vals["product_id"])
                vals["product_tmpl_id"] = product.product_tmpl_id.id
            if not vals.get("product_uom_id") and vals.get("product_tmpl_id"):
                tmpl = self.env["product.template"].browse(vals["product_tmpl_id"])
                vals["product_uom_id"] = tmpl.uom_id.id
        boms = super().create(vals_list)
        boms._check_bom_lines()
        return boms

    def write(self, vals: dict[str, Any]) -> bool:
        if "product_qty" in vals and float(vals["product_qty"] or 0.0) <= 0:
            raise ValidationError(SQL_CHECK + "The quantity to produce must be positive!")
        res = super().write(vals)
        self._check_bom_lines()
        return bool(res)

    def _check_bom_lines(self) -> None:
        for bom in self:
            for line in bom.bom_line_ids:
                same = (
                    line.product_id == bom.product_id
                    if bom.product_id
                    else line.product_id.product_tmpl_id == bom.product_tmpl_id
                )
                if same:
                    raise ValidationError(
                        f"BoM line product {line.product_id.display_name} should not be the "
                        "same as BoM product."
                    )


class MrpBomLine(Model):
    _name = "mrp.bom.line"
    _description = "Bill of Material Line"
    _order = "sequence, id"
    product_id = fields.Many2one("product.product", "Component", required=True)
    product_tmpl_id = fields.Many2one("product.template", related="product_id.product_tmpl_id")
    product_qty = fields.Float("Quantity", default=1.0, required=True)
    product_uom_id = fields.Many2one("uom.uom", "Product Unit of Measure")
    sequence = fields.Integer(default=1)
    bom_id = fields.Many2one("mrp.bom", "Parent BoM", ondelete="cascade", required=True)
    operation_id = fields.Many2one("mrp.routing.workcenter", "Consumed in Operation")

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        _check_line_qty(vals_list)
        for vals in vals_list:
            if not vals.get("product_uom_id") and vals.get("product_id"):
                product = self.env["product.product"].browse(vals["product_id"])
                vals["product_uom_id"] = product.uom_id.id
        lines = super().create(vals_list)
        lines.mapped("bom_id")._check_bom_lines()
        return lines

    def write(self, vals: dict[str, Any]) -> bool:
        _check_line_qty([vals])
        res = super().write(vals)
        self.mapped("bom_id")._check_bom_lines()
        return bool(res)


def _check_line_qty(vals_list: list[dict[str, Any]]) -> None:
    if any(float(vals.get("product_qty", 0.0) or 0.0) < 0 for vals in vals_list):
        raise ValidationError(
            SQL_CHECK + "All product quantities must be greater or equal to 0.\n"
            "Lines with 0 quantities can be used as optional lines. \n"
            "You should install the mrp_byproduct module if you want to manage extra products "
            "on BoMs !"
        )


def bom_for(product: Any) -> Any:
    """The BoM Odoo's ``_bom_find`` picks: a variant-specific one first, then the template's."""
    boms = product.env["mrp.bom"]
    found = boms.search(
        [("product_id", "=", product.id), ("type", "=", "normal")], limit=1, order="sequence, id"
    )
    return found or boms.search(
        [
            ("product_tmpl_id", "=", product.product_tmpl_id.id),
            ("product_id", "=", False),
            ("type", "=", "normal"),
        ],
        limit=1,
        order="sequence, id",
    )


class ProductTemplateMrp(Model):
    _inherit = "product.template"
    bom_ids = fields.One2many("mrp.bom", "product_tmpl_id", "Bill of Materials")
    bom_count = fields.Integer("# Bill of Material", compute="_compute_bom_count")
    produce_delay = fields.Float("Manufacturing Lead Time", until=16)

    def _compute_bom_count(self) -> None:
        for tmpl in self:
            tmpl.bom_count = len(tmpl.bom_ids)


class ProductProductMrp(Model):
    _inherit = "product.product"
    bom_ids = fields.Many2many("mrp.bom", compute="_compute_bom_ids")  # see seller_ids

    def _compute_bom_ids(self) -> None:
        for product in self:
            product.bom_ids = product.product_tmpl_id.bom_ids

    bom_count = fields.Integer(related="product_tmpl_id.bom_count")


class StockMoveMrp(Model):
    _inherit = "stock.move"
    raw_material_production_id = fields.Many2one(
        "mrp.production", "Production Order for components", index=True
    )
    production_id = fields.Many2one(
        "mrp.production", "Production Order for finished products", index=True
    )
    created_production_id = fields.Many2one("mrp.production", "Created Production Order")
    bom_line_id = fields.Many2one("mrp.bom.line", "BoM Line")
    workorder_id = fields.Many2one("mrp.workorder", "Work Order To Consume")


class QualityCheck(Model):
    # Enterprise (quality_control); its fields are unconfirmed beyond quality_state.
    _name = "quality.check"
    _description = "Quality Check"
    _order = "id desc"
    name = fields.Char("Reference", default=lambda env: env.next_sequence("quality.check", "QC"))
    quality_state = fields.Selection(
        [("none", "To do"), ("pass", "Passed"), ("fail", "Failed")], "Status", default="none"
    )
    product_id = fields.Many2one("product.product")
    lot_id = fields.Many2one("stock.lot", "Lot/Serial")
    picking_id = fields.Many2one("stock.picking")
    production_id = fields.Many2one("mrp.production")
    workorder_id = fields.Many2one("mrp.workorder")
    control_date = fields.Datetime()
    user_id = fields.Many2one("res.users", "Responsible")
    note = fields.Text("Note")

    def do_pass(self) -> bool:
        self.write(
            {"quality_state": "pass", "control_date": self.env.now(), "user_id": self.env.uid}
        )
        return True

    def do_fail(self) -> bool:
        self.write(
            {"quality_state": "fail", "control_date": self.env.now(), "user_id": self.env.uid}
        )
        return True
