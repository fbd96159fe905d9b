"""What the wire makes of results a review compared with Odoo: None (XML-RPC fault 1 after
the work is committed, no JSON-RPC ``result``, JSON-2 ``null``), the None values in the
context of ``button_mark_done``'s backorder action, private names, ``/json/version``."""

from __future__ import annotations

import xmlrpc.client
from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import ADMIN_UID, DB, api_key_for, execute_kw, jsonrpc


def _confirmed_purchase(server: OdooServer) -> int:
    [leg] = execute_kw(server, "product.product", "search", [("default_code", "=", "RM-LEG")])
    line = {"product_id": leg, "product_qty": 1, "price_unit": 1}
    po = execute_kw(
        server, "purchase.order", "create", {"partner_id": 3, "order_line": [(0, 0, line)]}
    )
    execute_kw(server, "purchase.order", "button_confirm", [po])
    return int(po)


def _state(server: OdooServer, model: str, rid: int) -> str:
    [row] = execute_kw(server, model, "read", [rid], ["state"])
    return str(row["state"])


def _object(server: OdooServer, model: str, method: str, args: list[Any], **kw: Any) -> Any:
    params = {
        "service": "object",
        "method": "execute_kw",
        "args": [DB, ADMIN_UID, "admin", model, method, args, kw],
    }
    return jsonrpc(server, "/jsonrpc", params)


def test_none_result_over_each_protocol(odoo: OdooServer, version: int) -> None:
    po = _confirmed_purchase(odoo)
    # XML-RPC: allow_none is off, so Odoo answers fault 1 - but the cancel is committed.
    with pytest.raises(xmlrpc.client.Fault) as info:
        execute_kw(odoo, "purchase.order", "button_cancel", [po])
    assert info.value.faultCode == 1
    assert "cannot marshal None unless allow_none is enabled" in info.value.faultString
    assert _state(odoo, "purchase.order", po) == "cancel"
    # JSON-RPC: the envelope has no "result" at all.
    body = _object(odoo, "purchase.order", "button_draft", [[po]])
    assert body["result"] == {}
    other = _confirmed_purchase(odoo)
    body = _object(odoo, "purchase.order", "button_cancel", [[other]])
    assert "result" not in body and "error" not in body
    if version >= 19:
        third = _confirmed_purchase(odoo)
        response = httpx.post(
            f"{odoo.url}/json/2/purchase.order/button_cancel",
            json={"ids": [third]},
            headers={"Authorization": f"bearer {api_key_for(odoo)}"},
        )
        assert response.status_code == 200 and response.json() is None


def test_backorder_action_over_xmlrpc_and_jsonrpc(odoo: OdooServer) -> None:
    [table] = execute_kw(odoo, "product.product", "search", [("default_code", "=", "FG-TABLE")])

    def short_mo() -> int:
        mo = execute_kw(odoo, "mrp.production", "create", {"product_id": table, "product_qty": 3})
        execute_kw(odoo, "mrp.production", "action_confirm", [mo])
        execute_kw(odoo, "mrp.production", "write", [mo], {"qty_producing": 1.0})
        return int(mo)

    context = {"skip_backorder": True}
    first = short_mo()
    # The action's context carries mo_ids_to_backorder=None: XML-RPC cannot marshal it, so
    # real Odoo answers fault 1 although the MO is done and its backorder created.
    with pytest.raises(xmlrpc.client.Fault) as info:
        execute_kw(
            odoo,
            "mrp.production",
            "button_mark_done",
            [first],
            context={**context, "mo_ids_to_backorder": [first]},
        )
    assert info.value.faultCode == 1
    assert "cannot marshal None" in info.value.faultString
    assert _state(odoo, "mrp.production", first) == "done"
    second = short_mo()
    body = _object(
        odoo,
        "mrp.production",
        "button_mark_done",
        [[second]],
        context={**context, "mo_ids_to_backorder": [second]},
    )
    action = body["result"]
    assert action["res_model"] == "mrp.production" and "target" not in action
    assert action["context"]["mo_ids_to_backorder"] is None
    assert action["context"]["skip_backorder"] is False
    assert _state(odoo, "mrp.production", action["res_id"]) == "confirmed"


def test_private_names_by_version(odoo: OdooServer, version: int) -> None:
    for method in ("init", "_table"):
        if version <= 17:
            # check_method_name: ^(_.*|init)$ before anything else, fault 4.
            with pytest.raises(xmlrpc.client.Fault) as info:
                execute_kw(odoo, "res.partner", method, [])
            assert info.value.faultCode == 4
            assert info.value.faultString == (
                f"Private methods (such as {method}) cannot be called remotely."
            )
    with pytest.raises(xmlrpc.client.Fault) as info:
        execute_kw(odoo, "res.partner", "no_such_method", [1])
    assert info.value.faultCode == 1
    if version >= 19:
        assert "The method 'res.partner.no_such_method' does not exist" in info.value.faultString
        with pytest.raises(xmlrpc.client.Fault) as info:
            execute_kw(odoo, "res.partner", "_no_such_private", [1])
        assert info.value.faultCode == 4  # 19 rejects a "_" name before looking it up


def test_json_version_on_19(odoo: OdooServer, version: int) -> None:
    response = httpx.get(f"{odoo.url}/json/version")
    if version < 19:
        assert response.status_code == 404
        return
    assert response.status_code == 200
    assert response.json() == httpx.get(f"{odoo.url}/web/version").json()
    assert response.json()["version_info"][:2] == [19, 0]
