"""What every protocol handler shares: the simulator, web sessions, JSON codecs, HTML errors.

One ``ServerState`` lives on the aiohttp application (``STATE``); handlers read it, call the
synchronous ``OdooSimulator`` directly (each call is atomic: nothing else runs on the loop
meanwhile) and turn the outcome into the bytes real Odoo would send.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from ..faults import FaultPlan
    from ..service import OdooSimulator

__all__ = [
    "JSON_MIMETYPES",
    "STATE",
    "ServerState",
    "Session",
    "dumps_json",
    "html_error",
    "json_bytes_response",
    "loads_json",
]

# What Odoo's JSON-RPC dispatcher accepts as a JSON request body.
JSON_MIMETYPES = ("application/json", "application/json-rpc")

_HTML_ERRORS = {
    400: (
        "Bad Request",
        "The browser (or proxy) sent a request that this server could not understand.",
    ),
    403: ("Forbidden", "You don't have the permission to access the requested resource."),
    404: (
        "Not Found",
        "The requested URL was not found on the server. If you entered the URL manually please "
        "check your spelling and try again.",
    ),
    405: ("Method Not Allowed", "The method is not allowed for the requested URL."),
    500: (
        "Internal Server Error",
        "The server encountered an internal error and was unable to complete your request. "
        "Either the server is overloaded or there is an error in the application.",
    ),
}


@dataclass
class Session:
    """A web session, as ``/web/session/authenticate`` opens it (the ``session_id`` cookie)."""

    sid: str
    db: str
    uid: int
    login: str


@dataclass
class ServerState:
    simulator: OdooSimulator
    faults: FaultPlan | None = None
    admin: bool = False
    sessions: dict[str, Session] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return self.simulator.version

    def open_session(self, db: str, uid: int, login: str) -> Session:
        session = Session(secrets.token_hex(20), db, uid, login)
        self.sessions[session.sid] = session
        return session

    def session_of(self, request: web.Request) -> Session | None:
        # Odoo also reads the legacy header; browsers and urllib send the cookie.
        sid = request.cookies.get("session_id") or request.headers.get("X-Openerp-Session-Id")
        session = self.sessions.get(sid) if sid else None
        if session is not None and session.db not in self.simulator.list_databases():
            return None
        return session


STATE: web.AppKey[ServerState] = web.AppKey("odoo_sim_state", ServerState)


def _json_default(value: Any) -> Any:
    # Odoo's json_default: dates as its wire strings, bytes decoded, sets as lists.
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps_json(value: Any) -> bytes:
    return orjson.dumps(
        value,
        default=_json_default,
        option=orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME,
    )


def loads_json(raw: bytes) -> Any:
    """Parse like Odoo (stdlib json); raise ``ValueError`` with the stdlib's message."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson is only the fast path: the error message clients see is the stdlib's.
        return json.loads(raw)


def json_bytes_response(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def html_error(status: int, description: str | None = None) -> web.Response:
    """The HTML page werkzeug renders for an HTTP error, as Odoo answers non-JSON failures."""
    title, default = _HTML_ERRORS.get(status, ("Error", ""))
    text = (
        "<!doctype html>\n<html lang=en>\n"
        f"<title>{status} {title}</title>\n<h1>{title}</h1>\n<p>{description or default}</p>\n"
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
