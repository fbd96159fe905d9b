"""Demo data of the simulated Odoo's ``demo`` database: a small furniture plant.

Warehouse WH (stock, input, output), raw materials with vendors and stock on hand, a
make-to-order table manufactured from a BoM with two operations, a lot-tracked cabinet, a
bought-on-order lamp, a service; one confirmed sales order (which has created its
manufacturing order and delivery), one draft purchase order and one confirmed manufacturing
order. Deterministic: the same records, names and quantities every time.
"""

from __future__ import annotations

from typing import Any

from .addons import install
from .addons.common import is_storable
from .addons.stock import update_available
from .base_models import make

__all__ = ["seed"]


def _stocked(env: Any) -> dict[str, Any]:
    """Field values that make a product storable in this version."""
    if env.version >= 18:
        return {"type": "consu", "is_storable": True}
    return {"type": "product"}


def seed(env: Any) -> None:
    install(env)
    customers = [env.ref("base.res_partner_1"), env.ref("base.res_partner_2")]
    vendors = [env.ref("base.res_partner_3"), env.ref("base.res_partner_4")]
    unit = env.ref("uom.product_uom_unit")
    kg = env.ref("uom.product_uom_kgm")
    mto = env.ref("stock.route_warehouse0_mto")
    manufacture = env.ref("mrp.route_warehouse0_manufacture")
    buy = env.ref("purchase_stock.route_warehouse0_buy")
    stocked = _stocked(env)

    def product(xmlid: str, vals: dict[str, Any]) -> Any:
        return make(env, f"product.{xmlid}", "product.product", {"uom_id": unit.id, **vals})

    # Raw materials, bought to stock.
    raw = {
        "leg": product(
            "product_table_leg",
            {"name": "Table Leg", "default_code": "RM-LEG", "standard_price": 4.5, **stocked},
        ),
        "top": product(
            "product_table_top",
            {
                "name": "Table Top (oak)",
                "default_code": "RM-TOP",
                "standard_price": 38.0,
                **stocked,
            },
        ),
        "screw": product(
            "product_screw",
            {
                "name": "Wood Screw 4x40",
                "default_code": "RM-SCREW",
                "standard_price": 0.05,
                **stocked,
            },
        ),
        "panel": product(
            "product_panel",
            {"name": "Birch Panel", "default_code": "RM-PANEL", "standard_price": 22.0, **stocked},
        ),
        "hinge": product(
            "product_hinge",
            {"name": "Cabinet Hinge", "default_code": "RM-HINGE", "standard_price": 1.2, **stocked},
        ),
        "varnish": product(
            "product_varnish",
            {
                "name": "Varnish",
                "default_code": "RM-VARN",
                "standard_price": 9.0,
                "uom_id": kg.id,
                **stocked,
            },
        ),
    }
    for index, (key, prod) in enumerate(raw.items()):
        env["product.supplierinfo"].create(
            {
                "partner_id": vendors[index % 2].id,
                "product_tmpl_id": prod.product_tmpl_id.id,
                "price": prod.standard_price,
                "min_qty": 1.0,
                "delay": 3 + index,
                "product_code": f"V-{key.upper()}",
            }
        )
    table = product(
        "product_dining_table",
        {
            "name": "Dining Table",
            "default_code": "FG-TABLE",
            "list_price": 450.0,
            "standard_price": 120.0,
            "barcode": "5400000000017",
            "invoice_policy": "delivery",
            "route_ids": [mto.id, manufacture.id],
            **stocked,
        },
    )
    cabinet = product(
        "product_cabinet",
        {
            "name": "Storage Cabinet",
            "default_code": "FG-CAB",
            "list_price": 320.0,
            "standard_price": 90.0,
            "tracking": "lot",
            "route_ids": [manufacture.id],
            **stocked,
        },
    )
    lamp = product(
        "product_desk_lamp",
        {
            "name": "Desk Lamp",
            "default_code": "FG-LAMP",
            "list_price": 45.0,
            "standard_price": 18.0,
            "route_ids": [mto.id, buy.id],
            **stocked,
        },
    )
    env["product.supplierinfo"].create(
        {
            "partner_id": vendors[1].id,
            "product_tmpl_id": lamp.product_tmpl_id.id,
            "price": 18.0,
            "min_qty": 1.0,
            "delay": 5,
        }
    )
    product(
        "product_assembly_service",
        {
            "name": "On-site Assembly",
            "default_code": "SRV-ASM",
            "type": "service",
            "list_price": 60.0,
        },
    )

    assembly = make(
        env,
        "mrp.mrp_workcenter_assembly",
        "mrp.workcenter",
        {"name": "Assembly Line", "code": "ASM", "costs_hour": 40.0},
    )
    finishing = make(
        env,
        "mrp.mrp_workcenter_finishing",
        "mrp.workcenter",
        {"name": "Finishing", "code": "FIN", "costs_hour": 35.0},
    )
    make(
        env,
        "mrp.mrp_bom_dining_table",
        "mrp.bom",
        {
            "product_tmpl_id": table.product_tmpl_id.id,
            "code": "BOM-TABLE",
            "product_qty": 1.0,
            "bom_line_ids": [
                (0, 0, {"product_id": raw["leg"].id, "product_qty": 4.0}),
                (0, 0, {"product_id": raw["top"].id, "product_qty": 1.0}),
                (0, 0, {"product_id": raw["screw"].id, "product_qty": 16.0}),
                (0, 0, {"product_id": raw["varnish"].id, "product_qty": 0.25}),
            ],
            "operation_ids": [
                (0, 0, {"name": "Assemble", "workcenter_id": assembly.id, "time_cycle_manual": 45}),
                (
                    0,
                    0,
                    {
                        "name": "Varnish",
                        "workcenter_id": finishing.id,
                        "time_cycle_manual": 30,
                        "sequence": 200,
                    },
                ),
            ],
        },
    )
    make(
        env,
        "mrp.mrp_bom_cabinet",
        "mrp.bom",
        {
            "product_tmpl_id": cabinet.product_tmpl_id.id,
            "code": "BOM-CAB",
            "product_qty": 1.0,
            "bom_line_ids": [
                (0, 0, {"product_id": raw["panel"].id, "product_qty": 5.0}),
                (0, 0, {"product_id": raw["hinge"].id, "product_qty": 4.0}),
                (0, 0, {"product_id": raw["screw"].id, "product_qty": 24.0}),
            ],
            "operation_ids": [
                (
                    0,
                    0,
                    {
                        "name": "Cut and assemble",
                        "workcenter_id": assembly.id,
                        "time_cycle_manual": 60,
                    },
                ),
            ],
        },
    )

    stock = env.ref("stock.stock_location_stock")
    on_hand = {"leg": 40, "top": 8, "screw": 500, "panel": 30, "hinge": 40, "varnish": 5}
    for key, qty in on_hand.items():
        if is_storable(raw[key]):
            update_available(env, raw[key], stock, float(qty))

    order = env["sale.order"].create(
        {
            "partner_id": customers[0].id,
            "client_order_ref": "WC-2291",
            "order_line": [
                (0, 0, {"product_id": table.id, "product_uom_qty": 2.0}),
                (
                    0,
                    0,
                    {
                        "product_id": env.ref("product.product_assembly_service").id,
                        "product_uom_qty": 1.0,
                    },
                ),
            ],
        }
    )
    order.action_confirm()
    env["sale.order"].create(
        {
            "partner_id": customers[1].id,
            "order_line": [(0, 0, {"product_id": cabinet.id, "product_uom_qty": 3.0})],
        }
    )
    env["purchase.order"].create(
        {
            "partner_id": vendors[0].id,
            "order_line": [
                (0, 0, {"product_id": raw["top"].id, "product_qty": 10.0, "price_unit": 36.5}),
                (0, 0, {"product_id": raw["leg"].id, "product_qty": 40.0, "price_unit": 4.2}),
            ],
        }
    )
    production = env["mrp.production"].create({"product_id": cabinet.id, "product_qty": 4.0})
    production.action_confirm()
