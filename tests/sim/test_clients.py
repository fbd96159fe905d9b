"""Client libraries nobody here wrote, driven exactly as their users drive real Odoo.

odoorpc (JSON-RPC), odoo-client-lib (``odoolib``: xmlrpc, jsonrpc, json2) and odooly (web
session, JSON-2) against the simulator over loopback HTTP: if they work, the wire is right.
"""

from __future__ import annotations

import odoolib
import odooly
import odoorpc
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import ADMIN_UID, DB, api_key_for, execute_kw


def test_odoorpc_login_read_write(odoo: OdooServer) -> None:
    client = odoorpc.ODOO("127.0.0.1", port=odoo.port)
    client.login(DB, "admin", "admin")
    assert client.env.uid == ADMIN_UID
    partners = client.env["res.partner"]
    partner_id = partners.create({"name": "OdooRPC Partner"})
    rows = partners.search_read([("id", "=", partner_id)], ["name"])
    assert rows == [{"id": partner_id, "name": "OdooRPC Partner"}]
    record = partners.browse(partner_id)
    assert record.name == "OdooRPC Partner"
    record.write({"name": "Renamed"})
    assert partners.browse(partner_id).name == "Renamed"
    assert execute_kw(odoo, "res.partner", "read", [partner_id], ["name"])[0]["name"] == "Renamed"


def test_odoorpc_raises_rpcerror_with_odoos_message(odoo: OdooServer) -> None:
    client = odoorpc.ODOO("127.0.0.1", port=odoo.port)
    client.login(DB, "admin", "admin")
    with pytest.raises(odoorpc.error.RPCError) as info:
        client.execute_kw("res.partner", "write", [[99999999], {"name": "x"}])
    assert info.value.info["data"]["name"] == "odoo.exceptions.MissingError"
    assert str(info.value) == info.value.info["data"]["message"]


def test_odoorpc_bad_login(odoo: OdooServer) -> None:
    client = odoorpc.ODOO("127.0.0.1", port=odoo.port)
    with pytest.raises(odoorpc.error.RPCError, match="Wrong login ID or password"):
        client.login(DB, "admin", "nope")


# odoolib opens a ServerProxy per call and never closes it.
@pytest.mark.filterwarnings("ignore:unclosed <socket:ResourceWarning")
@pytest.mark.parametrize("protocol", ["xmlrpc", "jsonrpc"])
def test_odoolib_rpc_modes(odoo: OdooServer, protocol: str) -> None:
    connection = odoolib.get_connection(
        hostname="127.0.0.1",
        port=odoo.port,
        protocol=protocol,
        database=DB,
        login="admin",
        password="admin",
    )
    partners = connection.get_model("res.partner")
    partner_id = partners.create({"name": f"Lib {protocol}"})
    assert partners.search_read([("id", "=", partner_id)], ["name"]) == [
        {"id": partner_id, "name": f"Lib {protocol}"}
    ]
    assert partners.read(partner_id, ["name"])["name"] == f"Lib {protocol}"
    assert connection.get_user_context()["uid"] == ADMIN_UID


def test_odoolib_json2(odoo19: OdooServer) -> None:
    connection = odoolib.get_connection(
        hostname="127.0.0.1",
        port=odoo19.port,
        protocol="json2",
        database=DB,
        password=api_key_for(odoo19),
    )
    partners = connection.get_model("res.partner")
    [partner_id] = partners.create([{"name": "Lib json2"}])
    # Positional arguments are named from /doc-bearer/res.partner.json.
    rows = partners.search_read([("id", "=", partner_id)], ["name"])
    assert rows == [{"id": partner_id, "name": "Lib json2"}]
    assert partners.write([partner_id], {"name": "Lib json2 bis"}) is True
    assert partners.read([partner_id], ["name"])["name"] == "Lib json2 bis"
    assert connection.check_login() is True


def test_odooly_web_session(odoo: OdooServer) -> None:
    client = odooly.Client(odoo.url, db=DB, user="admin", password="admin")
    assert client.env.uid == ADMIN_UID
    partners = client.env["res.partner"]
    record = partners.create({"name": "Odooly Partner"})
    assert record.name == "Odooly Partner"
    found = partners.search([("name", "=", "Odooly Partner")])
    assert found.ids == [record.id]
    record.write({"name": "Odooly Renamed"})
    assert partners.read(record.id, "name") == "Odooly Renamed"


def test_odooly_json2_with_api_key(odoo19: OdooServer) -> None:
    client = odooly.Client(odoo19.url, db=DB, user="admin", api_key=api_key_for(odoo19))
    assert client.env.uid == ADMIN_UID
    assert client.env._execute_kw._protocol_name == "JSON-2"
    partners = client.env["res.partner"]
    # JSON-2's create always answers a list of ids, so odooly gives a RecordList even for one
    # dict (the same against real Odoo 19).
    created = partners.create({"name": "Odooly J2"})
    assert partners.search([("name", "=", "Odooly J2")]).ids == created.ids
    assert len(created.ids) == 1
