"""XML-RPC as users drive real Odoo: ``xmlrpc.client`` against ``/xmlrpc/2/*`` and legacy paths."""

from __future__ import annotations

import xmlrpc.client

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import ADMIN_UID, DB, execute_kw, jsonrpc, snapshot, xmlrpc_proxy


def fault_of(
    server: OdooServer, model: str, method: str, *args: object, **kw: object
) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as info:
        execute_kw(server, model, method, *args, **kw)
    return info.value


def test_version_describes_the_simulated_release(odoo: OdooServer, version: int) -> None:
    common = xmlrpc_proxy(odoo, "common")
    assert common.about() == "See http://openerp.com"
    assert common.about(True) == ["See http://openerp.com", f"{version}.0"]
    info = common.version()
    assert info["server_version"] == f"{version}.0"
    assert info["server_version_info"] == [version, 0, 0, "final", 0, ""]
    assert info["server_serie"] == f"{version}.0"
    assert info["protocol_version"] == 1


def test_authenticate_and_login_answer_uid_or_false(odoo: OdooServer) -> None:
    common = xmlrpc_proxy(odoo, "common")
    assert common.authenticate(DB, "admin", "admin", {}) == ADMIN_UID
    assert common.login(DB, "admin", "admin") == ADMIN_UID
    assert common.authenticate(DB, "admin", "wrong", {}) is False
    assert common.login(DB, "nobody", "admin") is False


def test_unknown_database_is_an_internal_error(odoo: OdooServer) -> None:
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc_proxy(odoo, "common").login("nope", "admin", "admin")
    assert info.value.faultCode == 1
    assert 'database "nope" does not exist' in info.value.faultString


def test_db_service_lists_databases(odoo: OdooServer, version: int) -> None:
    db = xmlrpc_proxy(odoo, "db")
    assert db.list() == [DB]
    assert db.server_version() == f"{version}.0"


def test_crud_round_trip(odoo: OdooServer) -> None:
    partner_id = execute_kw(odoo, "res.partner", "create", {"name": "Ada Lovelace"})
    assert isinstance(partner_id, int)
    ids = execute_kw(odoo, "res.partner", "create", [{"name": "Grace"}, {"name": "Linus"}])
    assert len(ids) == 2
    assert execute_kw(odoo, "res.partner", "write", [partner_id], {"name": "Ada King"}) is True
    rows = execute_kw(
        odoo, "res.partner", "search_read", [["id", "=", partner_id]], fields=["name"]
    )
    assert rows == [{"id": partner_id, "name": "Ada King"}]
    assert execute_kw(odoo, "res.partner", "unlink", [partner_id]) is True
    assert execute_kw(odoo, "res.partner", "search", [["id", "=", partner_id]]) == []


def test_legacy_execute_takes_positional_arguments(odoo: OdooServer) -> None:
    obj = xmlrpc_proxy(odoo, "object")
    count = obj.execute(DB, ADMIN_UID, "admin", "res.partner", "search_count", [])
    assert isinstance(count, int) and count > 0


def test_api_key_works_in_place_of_the_password(odoo: OdooServer) -> None:
    key = odoo.call(odoo.simulator.create_api_key, DB, ADMIN_UID, "script")
    assert xmlrpc_proxy(odoo, "common").authenticate(DB, "admin", key, {}) == ADMIN_UID
    obj = xmlrpc_proxy(odoo, "object")
    assert obj.execute_kw(DB, ADMIN_UID, key, "res.partner", "search_count", [[]]) > 0


def test_bad_password_is_access_denied_fault_3(odoo: OdooServer) -> None:
    obj = xmlrpc_proxy(odoo, "object")
    with pytest.raises(xmlrpc.client.Fault) as info:
        obj.execute_kw(DB, ADMIN_UID, "wrong", "res.partner", "search", [[]])
    assert info.value.faultCode == 3
    assert info.value.faultString == "Access Denied"


def test_unknown_model_is_user_error_fault_2(odoo: OdooServer) -> None:
    fault = fault_of(odoo, "no.such.model", "search", [])
    assert (fault.faultCode, fault.faultString) == (2, "Object no.such.model doesn't exist")


def test_missing_record_is_fault_2_with_the_bare_message(odoo: OdooServer) -> None:
    fault = fault_of(odoo, "res.partner", "write", [99999999], {"name": "x"})
    assert fault.faultCode == 2
    assert "Traceback" not in fault.faultString


def test_private_method_is_access_error_fault_4(odoo: OdooServer, version: int) -> None:
    fault = fault_of(odoo, "res.partner", "_compute_display_name", [1])
    assert fault.faultCode == 4
    # 17: check_method_name; 18+: get_public_method names the model (odoo/service/model.py).
    name = "_compute_display_name" if version <= 17 else "'res.partner._compute_display_name'"
    assert fault.faultString == f"Private methods (such as {name}) cannot be called remotely."


def test_unknown_method_is_internal_error_fault_1_with_traceback(odoo: OdooServer) -> None:
    fault = fault_of(odoo, "res.partner", "no_such_method", [1])
    assert fault.faultCode == 1
    assert fault.faultString.startswith("Traceback (most recent call last):")
    assert "no_such_method" in fault.faultString


def test_wrong_argument_count_is_a_type_error_fault_1(odoo: OdooServer) -> None:
    before = snapshot(odoo)
    fault = fault_of(odoo, "res.partner", "write", [1], {"name": "x"}, {"extra": 1}, {"more": 2})
    assert fault.faultCode == 1
    assert "TypeError" in fault.faultString
    obj = xmlrpc_proxy(odoo, "object")
    with pytest.raises(xmlrpc.client.Fault) as info:
        obj.execute_kw(DB, ADMIN_UID, "admin", "res.partner")  # too few for execute_kw itself
    assert info.value.faultCode == 1
    assert "TypeError" in info.value.faultString
    assert snapshot(odoo) == before


def test_none_cannot_be_marshalled(odoo: OdooServer, version: int) -> None:
    # The client refuses to send None (allow_none off on both sides, as with real Odoo)...
    with pytest.raises(TypeError, match="cannot marshal None"):
        execute_kw(odoo, "res.partner", "search_read", None)
    # ...and a server-side None becomes fault 1 with that message.
    if version >= 18:
        fault = fault_of(odoo, "res.partner", "check_access", [1], "read")
    else:
        fault = fault_of(odoo, "stock.picking", "do_unreserve", [])
    assert fault.faultCode == 1
    assert "cannot marshal None unless allow_none is enabled" in fault.faultString


def test_malformed_xml_is_a_fault_and_changes_nothing(odoo: OdooServer) -> None:
    before = snapshot(odoo)
    response = httpx.post(
        f"{odoo.url}/xmlrpc/2/object",
        content=b"<?xml version='1.0'?><methodCall><methodName>execute_kw</methodName><params>",
        headers={"Content-Type": "text/xml"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(response.content)
    assert info.value.faultCode == 1
    assert "ExpatError" in info.value.faultString
    assert snapshot(odoo) == before


def test_control_characters_are_stripped_from_answers(odoo: OdooServer) -> None:
    # XML cannot carry them (xmlrpc.client could not even send this name), JSON can.
    params = {
        "service": "object",
        "method": "execute_kw",
        "args": [DB, ADMIN_UID, "admin", "res.partner", "create", [{"name": "Bell\x07 Co"}], {}],
    }
    partner_id = jsonrpc(odoo, "/jsonrpc", params)["result"]
    [row] = execute_kw(odoo, "res.partner", "read", [partner_id], ["name"])
    assert row["name"] == "Bell Co"


def test_legacy_endpoint_uses_string_fault_codes(odoo: OdooServer) -> None:
    obj = xmlrpc_proxy(odoo, "object", legacy=True)
    with pytest.raises(xmlrpc.client.Fault) as denied:
        obj.execute_kw(DB, ADMIN_UID, "wrong", "res.partner", "search", [[]])
    assert denied.value.faultCode == "AccessDenied"
    with pytest.raises(xmlrpc.client.Fault) as warning:
        obj.execute_kw(DB, ADMIN_UID, "admin", "no.such.model", "search", [[]])
    assert warning.value.faultCode == "warning -- UserError\n\nObject no.such.model doesn't exist"


def test_get_is_not_allowed(odoo: OdooServer) -> None:
    response = httpx.get(f"{odoo.url}/xmlrpc/2/common")
    assert response.status_code == 405
