"""XML-RPC: ``POST /xmlrpc/2/<service>`` (integer fault codes) and legacy ``/xmlrpc/<service>``.

Parsing and marshalling use ``xmlrpc.client.loads``/``dumps`` with ``allow_none`` off, like
Odoo, so a method returning ``None`` becomes fault 1 "cannot marshal None unless allow_none is
enabled", and malformed XML becomes a fault too, never a crash or an HTTP error.
"""

from __future__ import annotations

import base64
import datetime as dt
import xmlrpc.client
from collections.abc import Callable
from typing import Any

from aiohttp import web

from .services import FAULT_ACCESS_DENIED, describe_error, dispatch_rpc
from .state import STATE, html_error

__all__ = ["add_routes"]

# XML 1.0 forbids control characters other than tab, newline and carriage return; Odoo strips
# them so that clients can parse the answer.
_CONTROL_CHARACTERS = dict.fromkeys(set(range(32)) - {9, 10, 13})


def _to_wire(value: Any) -> Any:
    """What Odoo's marshaller does on top of the standard one: dates as its wire strings,
    bytes as text, control characters dropped (XML 1.0 forbids them; clients would choke)."""
    if isinstance(value, str):
        return value.translate(_CONTROL_CHARACTERS)
    if isinstance(value, list | tuple):
        return [_to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bytes):
        return value.decode().translate(_CONTROL_CHARACTERS)
    return value


def _dumps(value: tuple[Any, ...] | xmlrpc.client.Fault) -> bytes:
    if not isinstance(value, xmlrpc.client.Fault):
        value = tuple(_to_wire(v) for v in value)
    # allow_none stays off, as in Odoo: a None anywhere is a TypeError, hence fault 1.
    return xmlrpc.client.dumps(value, methodresponse=True, allow_none=False).encode()


def _from_wire(value: Any) -> Any:
    """XML-RPC values to what Odoo's ORM accepts: dates as strings, binaries as base64 text."""
    if isinstance(value, list | tuple):
        return [_from_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_wire(v) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, xmlrpc.client.Binary):
        return base64.b64encode(value.data).decode()
    return value


def _fault_int(exc: BaseException) -> xmlrpc.client.Fault:
    err = describe_error(exc)
    if err.fault_code == 1:
        return xmlrpc.client.Fault(1, err.debug)
    return xmlrpc.client.Fault(err.fault_code, err.message)


def _fault_string(exc: BaseException) -> xmlrpc.client.Fault:
    # The historical /xmlrpc/<service> endpoint puts a string in faultCode.
    err = describe_error(exc)
    short = err.name.rsplit(".", 1)[-1]
    if err.fault_code == FAULT_ACCESS_DENIED:
        return xmlrpc.client.Fault("AccessDenied", err.message)  # type: ignore[arg-type]
    if err.fault_code == 1:
        return xmlrpc.client.Fault(err.message, err.debug)  # type: ignore[arg-type]
    label = "Warning" if short == "RedirectWarning" else short
    if short == "ValidationError":
        label = "UserError"
    return xmlrpc.client.Fault(f"warning -- {label}\n\n{err.message}", "")  # type: ignore[arg-type]


def _handler(fault: Callable[[BaseException], xmlrpc.client.Fault]) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return html_error(405)
        state = request.app[STATE]
        data = await request.read()
        try:
            params, method = xmlrpc.client.loads(data, use_datetime=True)
            result = dispatch_rpc(state, request.match_info["service"], method, _from_wire(params))
            body = _dumps((result,))
        except Exception as exc:  # every failure is a fault, as in Odoo
            body = _dumps(fault(exc))
        return web.Response(body=body, content_type="text/xml", charset="utf-8")

    return handle


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/xmlrpc/2/{service}", _handler(_fault_int))
    app.router.add_route("*", "/xmlrpc/{service}", _handler(_fault_string))
