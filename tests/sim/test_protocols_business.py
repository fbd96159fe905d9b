"""Business methods over the wire, as a connector calls them on real Odoo."""

from __future__ import annotations

import xmlrpc.client

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import DB, api_key_for, execute_kw, xmlrpc_proxy


def ref(server: OdooServer, xmlid: str) -> int:
    module, name = xmlid.split(".")
    [row] = execute_kw(
        server,
        "ir.model.data",
        "search_read",
        [["module", "=", module], ["name", "=", name]],
        fields=["res_id"],
    )
    return int(row["res_id"])


def test_sale_order_confirmation_creates_a_manufacturing_order(odoo: OdooServer) -> None:
    [table] = execute_kw(odoo, "product.product", "search", [["default_code", "=", "FG-TABLE"]])
    order_id = execute_kw(
        odoo,
        "sale.order",
        "create",
        {
            "partner_id": ref(odoo, "base.res_partner_1"),
            "order_line": [(0, 0, {"product_id": table, "product_uom_qty": 3.0})],
        },
    )
    assert execute_kw(odoo, "sale.order", "action_confirm", [order_id]) is True
    [order] = execute_kw(odoo, "sale.order", "read", [order_id], ["state", "name"])
    assert order["state"] == "sale"
    productions = execute_kw(
        odoo,
        "mrp.production",
        "search_read",
        [["origin", "=", order["name"]]],
        fields=["product_id", "product_qty", "state"],
    )
    assert len(productions) == 1
    assert productions[0]["product_id"][0] == table
    assert productions[0]["product_qty"] == 3.0


def test_read_only_user_gets_access_error_fault_4(odoo: OdooServer) -> None:
    demo_uid = xmlrpc_proxy(odoo, "common").authenticate(DB, "demo", "demo", {})
    assert demo_uid
    obj = xmlrpc_proxy(odoo, "object")
    orders = obj.execute_kw(DB, demo_uid, "demo", "sale.order", "search", [[]])
    assert orders  # reading is allowed
    with pytest.raises(xmlrpc.client.Fault) as info:
        obj.execute_kw(DB, demo_uid, "demo", "sale.order", "write", [orders[:1], {"note": "x"}])
    assert info.value.faultCode == 4
    assert "You are not allowed to" in info.value.faultString


def test_json2_business_call_and_access_error(odoo19: OdooServer) -> None:
    [table] = execute_kw(odoo19, "product.product", "search", [["default_code", "=", "FG-TABLE"]])
    order_id = execute_kw(
        odoo19,
        "sale.order",
        "create",
        {
            "partner_id": ref(odoo19, "base.res_partner_1"),
            "order_line": [(0, 0, {"product_id": table, "product_uom_qty": 1.0})],
        },
    )
    url = f"{odoo19.url}/json/2/sale.order/action_confirm"
    admin = {"Authorization": f"bearer {api_key_for(odoo19)}"}
    assert httpx.post(url, json={"ids": [order_id]}, headers=admin).json() is True
    demo_uid = xmlrpc_proxy(odoo19, "common").authenticate(DB, "demo", "demo", {})
    demo = {"Authorization": f"bearer {api_key_for(odoo19, demo_uid)}"}
    refused = httpx.post(
        f"{odoo19.url}/json/2/sale.order/write",
        json={"ids": [order_id], "vals": {"note": "x"}},
        headers=demo,
    )
    assert refused.status_code == 403
    assert refused.json()["name"] == "odoo.exceptions.AccessError"
