"""JSON-RPC: ``/jsonrpc`` and the web client's session routes, envelope by envelope."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import ADMIN_UID, DB, jsonrpc, snapshot


def object_call(
    server: OdooServer, model: str, method: str, *args: Any, **kw: Any
) -> dict[str, Any]:
    params = {
        "service": "object",
        "method": "execute_kw",
        "args": [DB, ADMIN_UID, "admin", model, method, list(args), kw],
    }
    return jsonrpc(server, "/jsonrpc", params)


def test_common_service(odoo: OdooServer, version: int) -> None:
    body = jsonrpc(odoo, "/jsonrpc", {"service": "common", "method": "version", "args": []})
    assert body["jsonrpc"] == "2.0" and body["id"] == 7
    assert body["result"]["server_version_info"][0] == version
    login = {"service": "common", "method": "login", "args": [DB, "admin", "admin"]}
    assert jsonrpc(odoo, "/jsonrpc", login)["result"] == ADMIN_UID
    bad = {"service": "common", "method": "login", "args": [DB, "admin", "nope"]}
    assert jsonrpc(odoo, "/jsonrpc", bad)["result"] is False


def test_object_service_round_trip(odoo: OdooServer) -> None:
    created = object_call(odoo, "res.partner", "create", {"name": "Json Partner"})
    partner_id = created["result"]
    rows = object_call(odoo, "res.partner", "read", [partner_id], ["name"])["result"]
    assert rows == [{"id": partner_id, "name": "Json Partner"}]


def test_error_envelope_code_depends_on_version(odoo: OdooServer, version: int) -> None:
    body = object_call(odoo, "no.such.model", "search", [])
    assert "result" not in body
    error = body["error"]
    assert error["code"] == (200 if version <= 18 else 0)
    assert error["message"] == "Odoo Server Error"
    data = error["data"]
    assert data["name"] == "odoo.exceptions.UserError"
    assert data["message"] == "Object no.such.model doesn't exist"
    assert data["arguments"] == ["Object no.such.model doesn't exist"]
    assert data["context"] == {}
    assert data["debug"].startswith("Traceback")


@pytest.mark.parametrize(
    ("model", "method", "args", "name"),
    [
        ("res.partner", "_private", [[1]], "odoo.exceptions.AccessError"),
        ("res.partner", "no_such_method", [[1]], "builtins.AttributeError"),
        ("res.partner", "write", [[1], {"name": "x"}, 1, 2, 3], "builtins.TypeError"),
    ],
)
def test_bad_calls_are_named_like_odoo(
    odoo: OdooServer, model: str, method: str, args: list[Any], name: str
) -> None:
    before = snapshot(odoo)
    body = object_call(odoo, model, method, *args)
    assert body["error"]["data"]["name"] == name
    assert snapshot(odoo) == before


def test_access_denied_on_bad_password(odoo: OdooServer) -> None:
    params = {
        "service": "object",
        "method": "execute_kw",
        "args": [DB, ADMIN_UID, "wrong", "res.partner", "search", [[]]],
    }
    data = jsonrpc(odoo, "/jsonrpc", params)["error"]["data"]
    assert (data["name"], data["message"]) == ("odoo.exceptions.AccessDenied", "Access Denied")


def test_web_session_flow(odoo: OdooServer, version: int) -> None:
    with httpx.Client(timeout=10) as client:
        auth = jsonrpc(
            odoo,
            "/web/session/authenticate",
            {"db": DB, "login": "admin", "password": "admin"},
            client,
        )
        assert auth["result"]["uid"] == ADMIN_UID
        assert "session_id" in client.cookies
        info = jsonrpc(odoo, "/web/session/get_session_info", {}, client)["result"]
        assert info["uid"] == ADMIN_UID
        call = {"model": "res.partner", "method": "search_count", "args": [[]], "kwargs": {}}
        assert jsonrpc(odoo, "/web/dataset/call_kw", call, client)["result"] > 0
        path = "/web/dataset/call_kw/res.partner/search_count"
        assert jsonrpc(odoo, path, call, client)["result"] > 0
        destroyed = jsonrpc(odoo, "/web/session/destroy", {}, client)
        assert "result" not in destroyed and "error" not in destroyed  # None: no result key
        expired = jsonrpc(odoo, "/web/dataset/call_kw", call, client)["error"]
        assert (expired["code"], expired["message"]) == (100, "Odoo Session Expired")
        assert expired["data"]["name"] == "odoo.http.SessionExpiredException"


def test_call_kw_without_session_is_expired(odoo: OdooServer) -> None:
    call = {"model": "res.partner", "method": "search", "args": [[]], "kwargs": {}}
    assert jsonrpc(odoo, "/web/dataset/call_kw", call)["error"]["code"] == 100


def test_authenticate_with_bad_credentials(odoo: OdooServer) -> None:
    params = {"db": DB, "login": "admin", "password": "nope"}
    data = jsonrpc(odoo, "/web/session/authenticate", params)["error"]["data"]
    assert data["name"] == "odoo.exceptions.AccessDenied"


def test_version_info_and_database_list(odoo: OdooServer, version: int) -> None:
    info = jsonrpc(odoo, "/web/webclient/version_info", {})["result"]
    assert info["server_version"] == f"{version}.0"
    assert jsonrpc(odoo, "/web/database/list", {})["result"] == [DB]


def test_malformed_json_gets_odoos_400(odoo: OdooServer) -> None:
    before = snapshot(odoo)
    headers = {"Content-Type": "application/json"}
    bad = httpx.post(
        f"{odoo.url}/jsonrpc", content=b'{"jsonrpc": "2.0", "params":', headers=headers
    )
    assert (bad.status_code, bad.text) == (400, "Invalid JSON data")
    array = httpx.post(f"{odoo.url}/jsonrpc", content=b"[1, 2]", headers=headers)
    assert (array.status_code, array.text) == (400, "Invalid JSON-RPC data")
    not_json = httpx.post(
        f"{odoo.url}/jsonrpc", content=b"x=1", headers={"Content-Type": "text/plain"}
    )
    assert not_json.status_code == 400
    assert snapshot(odoo) == before


def test_unknown_route_and_method(odoo: OdooServer) -> None:
    assert httpx.post(f"{odoo.url}/web/nothing/here", json={}).status_code == 404
    assert httpx.get(f"{odoo.url}/jsonrpc").status_code == 405
