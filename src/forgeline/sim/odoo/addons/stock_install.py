"""The data installing ``stock``, ``mrp`` and ``purchase_stock`` creates in a database: product
category "All", partner and virtual locations, warehouse WH with its stock/input/output
locations and operation types, and the routes "Replenish on Order (MTO)", "Manufacture" and
"Buy" with their rules — under Odoo's external ids (``stock.warehouse0``,
``stock.route_warehouse0_mto``, ``mrp.route_warehouse0_manufacture``, …)."""

from __future__ import annotations

from typing import Any

from forgeline.sim.odoo.base_models import make

__all__ = ["create_warehouse", "install"]


def install(env: Any) -> None:
    """What installing ``stock`` (plus mrp and purchase_stock) creates: units, locations,
    warehouse WH, its operation types, and the Manufacture/MTO/Buy routes. Idempotent."""
    if env["stock.warehouse"].search_count([]):
        return
    if not env.ref("product.product_category_all", raise_if_not_found=False):
        make(env, "product.product_category_all", "product.category", {"name": "All"})
    partners = make(
        env,
        "stock.stock_location_locations_partner",
        "stock.location",
        {"name": "Partners", "usage": "view"},
    )
    virtual = make(
        env,
        "stock.stock_location_locations_virtual",
        "stock.location",
        {"name": "Virtual Locations", "usage": "view"},
    )
    for xmlid, name, usage, parent in (
        ("stock.stock_location_suppliers", "Vendors", "supplier", partners),
        ("stock.stock_location_customers", "Customers", "customer", partners),
        ("stock.stock_location_inventory", "Inventory adjustment", "inventory", virtual),
        ("mrp.stock_location_production", "Production", "production", virtual),
        ("stock.stock_location_scrapped", "Scrap", "inventory", virtual),
    ):
        make(env, xmlid, "stock.location", {"name": name, "usage": usage, "location_id": parent.id})
    create_warehouse(env, env.company.name or "YourCompany", "WH", xmlids=True)


def create_warehouse(env: Any, name: str, code: str, *, xmlids: bool = False) -> Any:
    loc = env["stock.location"]
    wh = env["stock.warehouse"].create({"name": name, "code": code})
    view = loc.create({"name": code, "usage": "view", "warehouse_id": wh.id})
    stock, wh_input, wh_output = loc.create(
        [
            {"name": n, "usage": "internal", "location_id": view.id, "warehouse_id": wh.id}
            for n in ("Stock", "Input", "Output")
        ]
    )
    suppliers = loc.search([("usage", "=", "supplier")], limit=1)
    customers = loc.search([("usage", "=", "customer")], limit=1)
    types = env["stock.picking.type"].create(
        [
            {
                "name": "Receipts",
                "code": "incoming",
                "sequence_code": "IN",
                "warehouse_id": wh.id,
                "default_location_src_id": suppliers.id,
                "default_location_dest_id": stock.id,
            },
            {
                "name": "Delivery Orders",
                "code": "outgoing",
                "sequence_code": "OUT",
                "warehouse_id": wh.id,
                "default_location_src_id": stock.id,
                "default_location_dest_id": customers.id,
                "use_create_lots": False,
            },
            {
                "name": "Internal Transfers",
                "code": "internal",
                "sequence_code": "INT",
                "warehouse_id": wh.id,
                "default_location_src_id": stock.id,
                "default_location_dest_id": stock.id,
                "use_create_lots": False,
            },
            {
                "name": "Manufacturing",
                "code": "mrp_operation",
                "sequence_code": "MO",
                "warehouse_id": wh.id,
                "default_location_src_id": stock.id,
                "default_location_dest_id": stock.id,
            },
        ]
    )
    receipts, delivery, internal, manufacturing = types
    route = env["stock.route"]
    mto, manufacture, buy = route.create(
        [
            {"name": "Replenish on Order (MTO)", "sequence": 5, "sale_selectable": True},
            {"name": "Manufacture", "sequence": 5, "warehouse_selectable": True},
            {"name": "Buy", "sequence": 5, "warehouse_selectable": True},
        ]
    )
    env["stock.rule"].create(
        [
            {
                "name": f"{code}: Stock → Customers (MTO)",
                "action": "pull",
                "route_id": mto.id,
                "procure_method": "make_to_order",
                "picking_type_id": delivery.id,
                "warehouse_id": wh.id,
            },
            {
                "name": f"{code}: Stock → Production",
                "action": "manufacture",
                "route_id": manufacture.id,
                "picking_type_id": manufacturing.id,
                "warehouse_id": wh.id,
            },
            {
                "name": f"{code}: Vendors → Stock",
                "action": "buy",
                "route_id": buy.id,
                "picking_type_id": receipts.id,
                "warehouse_id": wh.id,
            },
        ]
    )
    if xmlids:
        for xmlid, record in (
            ("stock.warehouse0", wh),
            ("stock.stock_location_stock", stock),
            ("stock.picking_type_in", receipts),
            ("stock.picking_type_out", delivery),
            ("stock.picking_type_internal", internal),
            ("mrp.picking_type_manufacturing", manufacturing),
            ("stock.route_warehouse0_mto", mto),
            ("mrp.route_warehouse0_manufacture", manufacture),
            ("purchase_stock.route_warehouse0_buy", buy),
        ):
            module, _, xml_name = xmlid.partition(".")
            env["ir.model.data"].create(
                {
                    "module": module,
                    "name": xml_name,
                    "model": record._name,
                    "res_id": record.id,
                    "noupdate": True,
                }
            )
    wh.write(
        {
            "view_location_id": view.id,
            "lot_stock_id": stock.id,
            "wh_input_stock_loc_id": wh_input.id,
            "wh_output_stock_loc_id": wh_output.id,
            "in_type_id": receipts.id,
            "out_type_id": delivery.id,
            "int_type_id": internal.id,
            "manu_type_id": manufacturing.id,
            "route_ids": [manufacture.id, buy.id],
        }
    )
    return wh
