"""The Odoo connector's pure parts: error classification from each protocol's wire shapes,
the retry-safety rule's inputs, event mapping, webhook decoding and state files."""

from __future__ import annotations

import json
import pickle
import xmlrpc.client
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from forgeline.connectors.odoo import (
    Binder,
    JsonFileState,
    OdooAccessError,
    OdooAuthError,
    OdooBusinessError,
    OdooConflict,
    OdooError,
    OdooProtocolError,
    OdooRateLimited,
    OdooServerError,
    OdooSessionExpired,
    OdooUnavailable,
    event_id,
    external_id,
    from_webhook_payload,
    odoo_source,
    record_to_event,
    values_digest,
    write_is_idempotent,
)
from forgeline.connectors.odoo.transports import (
    parse_json2,
    parse_jsonrpc,
    parse_xmlrpc,
    to_wire,
    xmlrpc_body,
)
from forgeline.exceptions import (
    BackendUnavailable,
    InvalidInput,
    PermanentDeliveryError,
    TransientDeliveryError,
    Unauthorized,
)


def _jsonrpc_error(name: str, message: str, *, code: int = 200, debug: str = "") -> bytes:
    data = {"name": name, "message": message, "debug": debug, "arguments": [message]}
    error = {"code": code, "message": "Odoo Server Error", "data": data}
    return orjson.dumps({"jsonrpc": "2.0", "id": 1, "error": error})


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("odoo.exceptions.AccessDenied", OdooAuthError),
        ("odoo.exceptions.AccessError", OdooAccessError),
        ("odoo.exceptions.UserError", OdooBusinessError),
        ("odoo.exceptions.ValidationError", OdooBusinessError),
        ("odoo.exceptions.MissingError", OdooBusinessError),
        ("odoo.exceptions.RedirectWarning", OdooBusinessError),
        ("odoo.exceptions.LockError", OdooConflict),
        ("psycopg2.errors.SerializationFailure", OdooConflict),
        ("builtins.TypeError", OdooServerError),
    ],
)
def test_jsonrpc_errors_are_classified_by_data_name(name: str, expected: type[OdooError]) -> None:
    with pytest.raises(expected) as caught:
        parse_jsonrpc(200, {}, _jsonrpc_error(name, "Nope"), what="sale.order.write")
    error = caught.value
    assert error.odoo_name == name and error.odoo_message == "Nope"
    assert error.detail.startswith("sale.order.write: ")


def test_jsonrpc_code_19_and_session_expired_and_result_absent() -> None:
    body = _jsonrpc_error("odoo.exceptions.UserError", "x", code=0)
    with pytest.raises(OdooBusinessError):
        parse_jsonrpc(200, {}, body, what="m")
    expired = _jsonrpc_error("odoo.http.SessionExpiredException", "Session expired", code=100)
    with pytest.raises(OdooSessionExpired) as caught:
        parse_jsonrpc(200, {}, expired, what="m")
    assert caught.value.rolled_back
    assert parse_jsonrpc(200, {}, b'{"jsonrpc":"2.0","id":1}', what="m") is None
    assert parse_jsonrpc(200, {}, b'{"jsonrpc":"2.0","id":1,"result":[1,2]}', what="m") == [1, 2]


def test_garbage_and_proxy_pages_are_transient() -> None:
    with pytest.raises(OdooProtocolError) as caught:
        parse_jsonrpc(200, {}, b"\x00\xffgarbage<<<", what="m")
    assert "garbage" in (caught.value.response_excerpt or "")
    assert isinstance(caught.value, TransientDeliveryError)
    with pytest.raises(OdooProtocolError):
        parse_xmlrpc(200, {}, b"\x00\xffgarbage<<<", what="m")
    with pytest.raises(OdooProtocolError):
        parse_json2(200, {}, b"<html>", what="m")
    page = b"<html><title>502 Bad Gateway</title></html>"
    for parse in (parse_jsonrpc, parse_xmlrpc, parse_json2):
        with pytest.raises(OdooUnavailable) as down:
            parse(502, {}, page, what="m")
        assert down.value.http_status == 502 and not down.value.rolled_back
        assert isinstance(down.value, BackendUnavailable)
    with pytest.raises(OdooUnavailable) as busy:
        parse_jsonrpc(503, {"Retry-After": "3"}, page, what="m")
    assert busy.value.rolled_back and busy.value.retry_after == 3.0
    with pytest.raises(OdooRateLimited) as limited:
        parse_xmlrpc(429, {"Retry-After": "7"}, b"slow down", what="m")
    assert limited.value.retry_after == 7.0 and limited.value.rolled_back
    with pytest.raises(OdooServerError):  # no such endpoint: permanent
        parse_jsonrpc(404, {}, b"<html>Not Found</html>", what="m")


def _fault(code: Any, text: str) -> bytes:
    return xmlrpc.client.dumps(xmlrpc.client.Fault(code, text), methodresponse=True).encode()


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (3, "Access Denied", OdooAuthError),
        (4, "You are not allowed to access 'Sales Order' (sale.order) records.", OdooAccessError),
        (2, "Object nope.model doesn't exist", OdooBusinessError),
        (
            1,
            'Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
            "TypeError: f() takes 2 positional arguments but 3 were given\n",
            OdooServerError,
        ),
        (
            1,
            'Traceback (most recent call last):\n  File "x.py"\n'
            "psycopg2.errors.SerializationFailure: could not serialize access\n",
            OdooConflict,
        ),
        ("AccessDenied", "Access Denied", OdooAuthError),
        ("warning -- AccessError\n\nno way", "", OdooAccessError),
        ("warning -- Warning\n\nbad state", "", OdooBusinessError),
    ],
)
def test_xmlrpc_faults(code: int | str, text: str, expected: type[OdooError]) -> None:
    with pytest.raises(expected) as caught:
        parse_xmlrpc(200, {}, _fault(code, text), what="sale.order.action_confirm")
    if code == 1 and expected is OdooServerError:
        assert caught.value.odoo_name == "TypeError"
        assert "takes 2 positional" in caught.value.detail


@pytest.mark.parametrize(
    ("status", "name", "expected"),
    [
        (401, "werkzeug.exceptions.Unauthorized", OdooAuthError),
        (403, "odoo.exceptions.AccessError", OdooAccessError),
        (404, "odoo.exceptions.MissingError", OdooBusinessError),
        (404, "werkzeug.exceptions.NotFound", OdooServerError),  # unknown method
        (422, "builtins.TypeError", OdooServerError),  # wrong arguments
        (422, "odoo.exceptions.ValidationError", OdooBusinessError),
        (409, "odoo.exceptions.LockError", OdooConflict),
        (400, "werkzeug.exceptions.BadRequest", OdooServerError),
        (500, "builtins.KeyError", OdooServerError),
        (500, "psycopg2.errors.LockNotAvailable", OdooConflict),
    ],
)
def test_json2_status_and_name(status: int, name: str, expected: type[OdooError]) -> None:
    body = orjson.dumps({"name": name, "message": "m", "arguments": [], "context": {}})
    with pytest.raises(expected) as caught:
        parse_json2(status, {}, body, what="res.partner.write")
    assert caught.value.http_status == status


def test_error_families_and_pickling() -> None:
    auth = OdooAuthError("bad", odoo_name="odoo.exceptions.AccessDenied")
    assert isinstance(auth, PermanentDeliveryError) and isinstance(auth, Unauthorized)
    business = OdooBusinessError(
        "x: UserError: no",
        http_status=422,
        odoo_name="odoo.exceptions.UserError",
        odoo_message="no",
    )
    again = pickle.loads(pickle.dumps(business))
    assert type(again) is OdooBusinessError
    assert (again.odoo_name, again.odoo_message, again.http_status) == (
        "odoo.exceptions.UserError",
        "no",
        422,
    )
    assert isinstance(OdooConflict("c"), OdooError) and OdooConflict("c").rolled_back


def test_xmlrpc_never_sends_none() -> None:
    body = xmlrpc_body("execute_kw", ["db", 2, "pw", "m", "search", [[]], {"limit": None}])
    params, method = xmlrpc.client.loads(body)
    assert method == "execute_kw" and params[-1] == {"limit": False}
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert to_wire({"d": stamp, "t": (1, 2)}) == {"d": "2026-01-02 03:04:05", "t": [1, 2]}


def test_write_idempotency_rule() -> None:
    assert write_is_idempotent({"name": "x", "qty": 3})
    assert write_is_idempotent({"tag_ids": [1, 2]})
    assert write_is_idempotent({"tag_ids": [(6, 0, [1, 2])]})
    assert write_is_idempotent({"line_ids": [(5, 0, 0), (0, 0, {"a": 1})]})
    assert not write_is_idempotent({"line_ids": [(0, 0, {"a": 1})]})
    assert not write_is_idempotent({"line_ids": [(2, 7, 0)]})


def test_external_ids_are_valid_and_distinct() -> None:
    assert external_id("SO042") == "forgeline.SO042"
    a, b = external_id("WH/MO/00042"), external_id("WH_MO_00042")
    assert a != b and a.startswith("forgeline.WH_MO_00042_")
    assert external_id("x", "mes") == "mes.x"


def test_binder_is_a_bounded_lru() -> None:
    binder = Binder(maxsize=2)
    binder.remember("a", "m", 1)
    binder.remember("b", "m", 2)
    assert binder.get("a") == ("m", 1)  # a is now the most recent
    binder.remember("c", "m", 3)
    assert binder.get("b") is None and binder.get("a") == ("m", 1) and len(binder) == 2


def _record(**values: object) -> dict[str, object]:
    return {"id": 42, "write_date": "2026-11-27 04:00:00", **values}


@pytest.mark.parametrize(
    ("model", "values", "expected"),
    [
        ("mrp.production", {"state": "confirmed"}, "odoo.production.order.released.v1"),
        ("mrp.production", {"state": "done"}, "odoo.production.completed.v1"),
        ("mrp.production", {"state": "draft"}, "odoo.record.changed.v1"),
        ("sale.order", {"state": "sale"}, "odoo.sales.order.confirmed.v1"),
        ("sale.order", {"state": "done"}, "odoo.sales.order.confirmed.v1"),  # 16: locked
        ("sale.order", {"state": "draft"}, "odoo.record.changed.v1"),
        ("account.move", {"state": "posted"}, "odoo.invoice.posted.v1"),
        ("purchase.order", {"state": "purchase"}, "odoo.purchase.order.confirmed.v1"),
        ("stock.picking", {"state": "done", "picking_type_code": "outgoing"},
         "odoo.shipment.confirmed.v1"),
        ("stock.picking", {"state": "done", "picking_type_code": "incoming"},
         "odoo.inventory.received.v1"),
        ("stock.picking", {"state": "done", "picking_type_code": "internal"},
         "odoo.inventory.moved.v1"),
        ("stock.picking", {"state": "assigned", "picking_type_code": "outgoing"},
         "odoo.record.changed.v1"),
        ("res.partner", {"name": "Acme"}, "odoo.record.changed.v1"),
    ],
)  # fmt: skip
def test_event_types(model: str, values: dict[str, object], expected: str) -> None:
    event = record_to_event(model, _record(**values), source="odoo://erp/demo", version=17)
    assert event.type == expected


def test_event_envelope_is_deterministic() -> None:
    source = odoo_source("http://127.0.0.1:8069", "demo")
    assert source == "odoo://127.0.0.1:8069/demo"
    record = _record(name="WH/MO/00042", state="done")
    first = record_to_event("mrp.production", record, source=source, version=17)
    second = record_to_event("mrp.production", dict(record), source=source, version=17)
    assert first == second
    assert first.id == event_id("mrp.production", 42, "2026-11-27 04:00:00", values_digest(record))
    # Confirmed and done in the same second: one write_date, two changes, two ids.
    confirmed = _record(name="WH/MO/00042", state="confirmed")
    assert record_to_event("mrp.production", confirmed, source=source).id != first.id
    assert first.subject == "WH/MO/00042" and first.partitionkey == "mrp.production:42"
    assert first.time == "2026-11-27T04:00:00Z"
    assert first.data["model"] == "mrp.production" and first.data["id"] == 42
    changed = _record(name="WH/MO/00042", state="done", write_date="2026-11-27 04:00:01")
    assert record_to_event("mrp.production", changed, source=source).id != first.id
    nameless = record_to_event("res.partner", {"id": 7, "write_date": False}, source=source)
    assert nameless.subject == "res.partner,7" and nameless.time is None


def test_webhook_payload() -> None:
    body = {"_model": "sale.order", "_id": 5, "_action": "Notify(#3)", "id": 5, "note": "x"}
    change = from_webhook_payload(json.loads(json.dumps(body, sort_keys=True)))
    assert (change.model, change.id, change.action) == ("sale.order", 5, "Notify(#3)")
    assert "state" in change.fields and "write_date" in change.fields and "note" in change.fields
    bad: Any
    for bad in ([], {"_id": 1}, {"_model": "x.y", "_id": "1"}, {"_model": "x.y", "_id": True}):
        with pytest.raises(InvalidInput):
            from_webhook_payload(bad)


async def test_json_file_state_is_replaced_atomically(tmp_path: Path) -> None:
    state = JsonFileState(tmp_path / "poll" / "sale.order.json")
    assert await state.load() is None
    await state.save({"watermark": "2026-01-01 00:00:00", "seen": [[1, "x"]]})
    await state.save({"watermark": "2026-01-01 00:00:05", "seen": []})
    assert await state.load() == {"watermark": "2026-01-01 00:00:05", "seen": []}
    assert [p.name for p in (tmp_path / "poll").iterdir()] == ["sale.order.json"]
