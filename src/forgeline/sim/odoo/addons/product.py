"""Products as Odoo's ``product`` addon declares them: categories, templates with exactly one
variant each, and vendor prices (units of measure come with the base models).

The simulator keeps variants 1:1 with templates: creating a template creates its
``product.product``; creating a ``product.product`` without a template creates one (Odoo's
``_inherits``). Fields that live on the template are routed there from variant writes.
"""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo import fields
from forgeline.sim.odoo.orm import Model, model_method

__all__ = ["TEMPLATE_FIELDS"]


def _type_selection(version: int) -> list[tuple[str, str]]:
    # 18 split "Storable Product" into "Goods" + the is_storable flag and added combos.
    if version >= 18:
        return [("consu", "Goods"), ("service", "Service"), ("combo", "Combo")]
    return [("consu", "Consumable"), ("service", "Service"), ("product", "Storable Product")]


def _tracking_selection(version: int) -> list[tuple[str, str]]:
    if version >= 18:
        return [("serial", "By Unique Serial Number"), ("lot", "By Lots"), ("none", "By Quantity")]
    return [("serial", "By Unique Serial Number"), ("lot", "By Lots"), ("none", "No Tracking")]


def _default_uom(env: Any) -> Any:
    unit = env.ref("uom.product_uom_unit", raise_if_not_found=False)
    return unit.id if unit else False


def _default_category(env: Any) -> Any:
    categ = env.ref("product.product_category_all", raise_if_not_found=False)
    return categ.id if categ else False


class ProductCategory(Model):
    _name = "product.category"
    _description = "Product Category"
    _rec_name = "complete_name"
    name = fields.Char(required=True)
    parent_id = fields.Many2one("product.category", ondelete="cascade")
    complete_name = fields.Char(compute="_compute_complete_name")

    def _compute_complete_name(self) -> None:
        for categ in self:
            parent = categ.parent_id
            categ.complete_name = f"{parent.complete_name} / {categ.name}" if parent else categ.name


class ProductTemplate(Model):
    _name = "product.template"
    _description = "Product"
    _order = "sequence, name, id"
    name = fields.Char(required=True, index=True)
    sequence = fields.Integer(default=1)
    description = fields.Text()
    description_sale = fields.Text()
    description_purchase = fields.Text()
    default_code = fields.Char("Internal Reference", index=True)
    barcode = fields.Char()
    type = fields.Selection(_type_selection, default="consu", required=True)
    # 15–17: the form edits detailed_type; type follows it.
    detailed_type = fields.Selection(_type_selection, default="consu", until=17)
    is_storable = fields.Boolean("Track Inventory", since=18)
    tracking = fields.Selection(_tracking_selection, default="none", required=True)
    uom_id = fields.Many2one("uom.uom", "Unit of Measure", default=_default_uom, required=True)
    categ_id = fields.Many2one("product.category", default=_default_category)
    list_price = fields.Float("Sales Price", default=1.0)
    standard_price = fields.Float("Cost")
    sale_ok = fields.Boolean(default=True)
    purchase_ok = fields.Boolean(default=True)
    invoice_policy = fields.Selection(
        [("order", "Ordered quantities"), ("delivery", "Delivered quantities")], default="order"
    )
    weight = fields.Float()
    volume = fields.Float()
    active = fields.Boolean(default=True)
    product_variant_ids = fields.One2many("product.product", "product_tmpl_id")
    product_variant_id = fields.Many2one("product.product", compute="_compute_variant")
    product_variant_count = fields.Integer(compute="_compute_variant")
    seller_ids = fields.One2many("product.supplierinfo", "product_tmpl_id")

    def _compute_display_name(self) -> None:
        for tmpl in self:
            code = tmpl.default_code
            tmpl.display_name = f"[{code}] {tmpl.name}" if code else tmpl.name

    def _compute_variant(self) -> None:
        for tmpl in self:
            variants = tmpl.product_variant_ids
            tmpl.product_variant_id = variants[:1]
            tmpl.product_variant_count = len(variants)

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        for vals in vals_list:
            _normalise_type(self.env.version, vals)
        templates = super().create(vals_list)
        if self.env.context.get("create_product_product", True):
            self.env["product.product"].with_context(create_product_product=False).create(
                [
                    {
                        "product_tmpl_id": tmpl.id,
                        "default_code": vals.get("default_code") or False,
                        "barcode": vals.get("barcode") or False,
                    }
                    for tmpl, vals in zip(templates, vals_list, strict=True)
                ]
            )
        return templates

    def write(self, vals: dict[str, Any]) -> bool:
        vals = dict(vals)
        _normalise_type(self.env.version, vals)
        res = super().write(vals)
        variant_vals = {k: vals[k] for k in ("default_code", "barcode", "active") if k in vals}
        if variant_vals and not self.env.context.get("syncing_variant"):
            self.with_context(syncing_variant=True).mapped("product_variant_ids").write(
                variant_vals
            )
        return bool(res)


def _normalise_type(version: int, vals: dict[str, Any]) -> None:
    """Keep ``type``/``detailed_type`` (≤17) and ``type``/``is_storable`` (18+) consistent."""
    if version <= 17:
        if "detailed_type" in vals and "type" not in vals:
            vals["type"] = vals["detailed_type"]
        elif "type" in vals and "detailed_type" not in vals:
            vals["detailed_type"] = vals["type"]
    elif vals.get("type") in ("service", "combo"):
        vals["is_storable"] = False


# What a product.product create/write routes to its template (the rest stays on the variant).
TEMPLATE_FIELDS = frozenset(
    {
        "name",
        "sequence",
        "description",
        "description_sale",
        "description_purchase",
        "type",
        "detailed_type",
        "is_storable",
        "tracking",
        "uom_id",
        "categ_id",
        "list_price",
        "standard_price",
        "sale_ok",
        "purchase_ok",
        "invoice_policy",
        "weight",
        "volume",
        "seller_ids",
        "route_ids",
        "bom_ids",
        "produce_delay",
        "sale_delay",
    }
)


class ProductProduct(Model):
    _name = "product.product"
    _description = "Product Variant"
    _order = "default_code, id"
    product_tmpl_id = fields.Many2one(
        "product.template", "Product Template", required=True, ondelete="cascade", index=True
    )
    default_code = fields.Char("Internal Reference", index=True)
    barcode = fields.Char()
    active = fields.Boolean(default=True)
    name = fields.Char(related="product_tmpl_id.name")
    type = fields.Selection(_type_selection, related="product_tmpl_id.type")
    detailed_type = fields.Selection(
        _type_selection, related="product_tmpl_id.detailed_type", until=17
    )
    is_storable = fields.Boolean(related="product_tmpl_id.is_storable", since=18)
    tracking = fields.Selection(_tracking_selection, related="product_tmpl_id.tracking")
    uom_id = fields.Many2one("uom.uom", related="product_tmpl_id.uom_id")
    categ_id = fields.Many2one("product.category", related="product_tmpl_id.categ_id")
    list_price = fields.Float(related="product_tmpl_id.list_price")
    lst_price = fields.Float("Sales Price", related="product_tmpl_id.list_price")
    standard_price = fields.Float(related="product_tmpl_id.standard_price")
    sale_ok = fields.Boolean(related="product_tmpl_id.sale_ok")
    purchase_ok = fields.Boolean(related="product_tmpl_id.purchase_ok")
    invoice_policy = fields.Selection(
        [("order", "Ordered quantities"), ("delivery", "Delivered quantities")],
        related="product_tmpl_id.invoice_policy",
    )
    # Odoo relates this one2many to the template's; the simulated ORM reads related
    # one2many fields through an inverse, so a compute does it.
    seller_ids = fields.Many2many("product.supplierinfo", compute="_compute_seller_ids")

    def _compute_seller_ids(self) -> None:
        for product in self:
            product.seller_ids = product.product_tmpl_id.seller_ids

    def _compute_display_name(self) -> None:
        for product in self:
            code = product.default_code
            product.display_name = f"[{code}] {product.name}" if code else product.name

    @model_method
    def create(self, vals_list: list[dict[str, Any]]) -> Any:
        variant_vals: list[dict[str, Any]] = []
        orphans: list[tuple[int, dict[str, Any]]] = []
        for vals in vals_list:
            own = {k: v for k, v in vals.items() if k not in TEMPLATE_FIELDS}
            if not own.get("product_tmpl_id"):
                tmpl_vals = {k: v for k, v in vals.items() if k in TEMPLATE_FIELDS}
                tmpl_vals.update({k: own[k] for k in ("default_code", "barcode") if k in own})
                orphans.append((len(variant_vals), tmpl_vals))
            variant_vals.append(own)
        if orphans:
            templates = (
                self.env["product.template"]
                .with_context(create_product_product=False)
                .create([tmpl_vals for _index, tmpl_vals in orphans])
            )
            for (index, _tmpl_vals), tmpl in zip(orphans, templates, strict=True):
                variant_vals[index]["product_tmpl_id"] = tmpl.id
        return super().create(variant_vals)

    def write(self, vals: dict[str, Any]) -> bool:
        tmpl_vals = {k: v for k, v in vals.items() if k in TEMPLATE_FIELDS}
        own = {k: v for k, v in vals.items() if k not in TEMPLATE_FIELDS}
        if tmpl_vals:
            self.mapped("product_tmpl_id").write(tmpl_vals)
        res = super().write(own) if own else True
        synced = {k: own[k] for k in ("default_code", "barcode") if k in own}
        if synced and not self.env.context.get("syncing_variant"):
            self.with_context(syncing_variant=True).mapped("product_tmpl_id").write(synced)
        return bool(res)


class SupplierInfo(Model):
    _name = "product.supplierinfo"
    _description = "Supplier Pricelist"
    _order = "sequence, min_qty desc, price, id"
    partner_id = fields.Many2one("res.partner", "Vendor", required=True, ondelete="cascade")
    product_tmpl_id = fields.Many2one("product.template", ondelete="cascade", index=True)
    product_id = fields.Many2one("product.product")
    product_name = fields.Char("Vendor Product Name")
    product_code = fields.Char("Vendor Product Code")
    sequence = fields.Integer(default=1)
    min_qty = fields.Float("Quantity")
    price = fields.Float(required=True)
    delay = fields.Integer("Delivery Lead Time", default=1)
