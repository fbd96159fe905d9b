"""JSON-2 (Odoo 19): bearer API keys, bare results, HTTP status codes with Odoo's error body."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from forgeline.sim.odoo.server import OdooServer

from .conftest import ADMIN_UID, DB, api_key_for, snapshot


def call(
    server: OdooServer, model: str, method: str, body: Any, key: str | None, **headers: str
) -> httpx.Response:
    if key is not None:
        headers.setdefault("Authorization", f"bearer {key}")
    return httpx.post(f"{server.url}/json/2/{model}/{method}", json=body, headers=headers)


def test_json2_is_not_served_before_19(odoo17: OdooServer) -> None:
    response = call(odoo17, "res.partner", "search", {"domain": []}, api_key_for(odoo17))
    assert response.status_code == 404
    assert httpx.get(f"{odoo17.url}/doc-bearer/res.partner.json").status_code == 404


def test_round_trip(odoo19: OdooServer) -> None:
    key = api_key_for(odoo19)
    created = call(odoo19, "res.partner", "create", {"vals_list": [{"name": "J2"}]}, key)
    assert created.status_code == 200
    [partner_id] = created.json()  # create always answers a list of ids
    body = {"ids": [partner_id], "vals": {"name": "J2 renamed"}}
    assert call(odoo19, "res.partner", "write", body, key).json() is True
    rows = call(odoo19, "res.partner", "read", {"ids": [partner_id], "fields": ["name"]}, key)
    assert rows.json() == [{"id": partner_id, "name": "J2 renamed"}]
    found = call(
        odoo19,
        "res.partner",
        "search_read",
        {"domain": [["id", "=", partner_id]], "fields": ["name"]},
        key,
    )
    assert found.json() == [{"id": partner_id, "name": "J2 renamed"}]
    context = call(odoo19, "res.users", "context_get", {}, key, **{"X-Odoo-Database": DB})
    assert context.json()["uid"] == ADMIN_UID


def assert_error(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"name", "message", "arguments", "context", "debug"}
    assert body["name"] == name
    return body


def test_authentication_errors(odoo19: OdooServer) -> None:
    no_key = call(odoo19, "res.partner", "search", {"domain": []}, None)
    assert_error(no_key, 401, "werkzeug.exceptions.Unauthorized")
    bad_key = call(odoo19, "res.partner", "search", {"domain": []}, "0" * 40)
    assert (
        assert_error(bad_key, 401, "werkzeug.exceptions.Unauthorized")["message"]
        == "Invalid apikey"
    )


def test_status_codes(odoo19: OdooServer) -> None:
    key = api_key_for(odoo19)
    before = snapshot(odoo19)
    assert_error(
        call(odoo19, "no.such.model", "search", {}, key), 404, "werkzeug.exceptions.NotFound"
    )
    # odoo/service/model.py get_public_method (19): a "_" name is an AccessError (403, the
    # route lets it through), an unknown method an AttributeError the route makes a 404.
    private = assert_error(
        call(odoo19, "res.partner", "_private", {}, key), 403, "odoo.exceptions.AccessError"
    )
    assert private["message"] == (
        "Private methods (such as 'res.partner._private') cannot be called remotely."
    )
    assert "odoo.exceptions.AccessError: Private methods" in private["debug"]
    nope = assert_error(
        call(odoo19, "res.partner", "nope", {}, key), 404, "werkzeug.exceptions.NotFound"
    )
    assert nope["message"] == "The method 'res.partner.nope' does not exist"
    unexpected = call(odoo19, "res.partner", "search", {"domain": [], "bogus": 1}, key)
    assert_error(unexpected, 422, "werkzeug.exceptions.UnprocessableEntity")
    missing = call(odoo19, "res.partner", "write", {"ids": [99999999], "vals": {"name": "x"}}, key)
    assert_error(missing, 404, "odoo.exceptions.MissingError")
    assert snapshot(odoo19) == before


def test_malformed_bodies(odoo19: OdooServer) -> None:
    key = api_key_for(odoo19)
    headers = {"Authorization": f"bearer {key}", "Content-Type": "application/json"}
    url = f"{odoo19.url}/json/2/res.partner/search"
    bad = httpx.post(url, content=b"{nope", headers=headers)
    assert assert_error(bad, 400, "werkzeug.exceptions.BadRequest")["message"].startswith(
        "could not parse the body as json"
    )
    array = httpx.post(url, content=b"[]", headers=headers)
    assert assert_error(array, 400, "werkzeug.exceptions.BadRequest")["message"] == (
        "could not parse the body, expecting a json object"
    )
    get = httpx.get(url, headers=headers)
    assert_error(get, 405, "werkzeug.exceptions.MethodNotAllowed")


def test_database_selection(odoo19: OdooServer) -> None:
    key = api_key_for(odoo19)
    unknown = call(odoo19, "res.partner", "search", {"domain": []}, key, **{"X-Odoo-Database": "x"})
    assert_error(unknown, 404, "werkzeug.exceptions.NotFound")
    odoo19.call(odoo19.simulator.create_database, "other")
    ambiguous = call(odoo19, "res.partner", "search", {"domain": []}, key)
    assert ambiguous.status_code == 404
    chosen = call(odoo19, "res.partner", "search", {"domain": []}, key, **{"X-Odoo-Database": DB})
    assert chosen.status_code == 200


def test_version_and_doc(odoo19: OdooServer) -> None:
    version = httpx.get(f"{odoo19.url}/web/version").json()
    assert version == {"version_info": [19, 0, 0, "final", 0, ""], "version": "19.0"}
    key = api_key_for(odoo19)
    doc = httpx.get(
        f"{odoo19.url}/doc-bearer/res.partner.json", headers={"Authorization": f"bearer {key}"}
    )
    assert doc.status_code == 200
    methods = doc.json()["methods"]
    assert list(methods["search_read"]["parameters"])[:2] == ["domain", "fields"]
    assert "model" in methods["search_read"]["api"]


@pytest.mark.parametrize("method", ["search", "search_count"])
def test_model_methods_refuse_ids(odoo19: OdooServer, method: str) -> None:
    key = api_key_for(odoo19)
    response = call(odoo19, "res.partner", method, {"ids": [1], "domain": []}, key)
    assert response.status_code == 422
