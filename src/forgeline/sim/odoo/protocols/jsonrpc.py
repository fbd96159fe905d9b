"""JSON-RPC: ``/jsonrpc`` (services common/object/db) and the web client's ``/web/*`` routes.

Envelope as in Odoo's ``JsonRPCDispatcher``: HTTP 200 for every RPC outcome; ``result`` left
out when the method returned ``None``; errors as ``{"code": 200 (16–18) | 0 (19+) | 100
(session expired), "message": "Odoo Server Error", "data": {name, debug, message, arguments,
context}}``. A body that is not JSON gets Odoo's ``400 Invalid JSON data``; a request whose
Content-Type is not JSON gets the 400 Odoo's router answers for a type mismatch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..errors import AccessDenied, AccessError
from .services import SessionExpired, describe_error, dispatch_rpc
from .state import (
    JSON_MIMETYPES,
    STATE,
    ServerState,
    Session,
    dumps_json,
    html_error,
    loads_json,
)

__all__ = ["add_routes", "error_envelope"]

SESSION_MAX_AGE = 7 * 24 * 3600  # Odoo's SESSION_LIFETIME

# A route body: (state, request, response-to-decorate, **params) -> result.
_Route = Callable[..., Any]


def error_envelope(exc: BaseException, version: int) -> dict[str, Any]:
    err = describe_error(exc)
    code, message = (200 if version <= 18 else 0), "Odoo Server Error"
    if isinstance(exc, SessionExpired):
        code, message = 100, "Odoo Session Expired"
    return {
        "code": code,
        "message": message,
        "data": {
            "name": err.name,
            "debug": err.debug,
            "message": err.message,
            "arguments": err.arguments,
            "context": {},
        },
    }


def _plain(status: int, text: str) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _endpoint(fn: _Route) -> Callable[[web.Request], Any]:
    # Odoo's route_wrapper drops parameters the endpoint does not declare; a missing one is
    # the endpoint's own TypeError.
    declared = set(inspect.signature(fn).parameters) - {"state", "request", "response"}

    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        if request.content_type not in JSON_MIMETYPES:
            return html_error(
                400,
                f"Request inferred type is compatible with ['http'] but {request.path!r} "
                "is type='jsonrpc'.",
            )
        raw = await request.read()
        try:
            payload = loads_json(raw)
        except ValueError:
            return _plain(400, "Invalid JSON data")
        if not isinstance(payload, dict):
            return _plain(400, "Invalid JSON-RPC data")
        envelope: dict[str, Any] = {"jsonrpc": "2.0", "id": payload.get("id")}
        response = web.Response(content_type="application/json", charset="utf-8")
        try:
            params = payload.get("params", {})
            if not isinstance(params, dict):
                params = dict(params)  # raises as Odoo's dict(params, **args) does
            accepted = {k: v for k, v in params.items() if k in declared}
            result = fn(state, request, response, **accepted)
        except Exception as exc:  # every failure is an error envelope, HTTP 200
            envelope["error"] = error_envelope(exc, state.version)
        else:
            if result is not None:
                envelope["result"] = result
        response.body = dumps_json(envelope)
        return response

    return handle


def _require_session(state: ServerState, request: web.Request) -> Session:
    session = state.session_of(request)
    if session is None:
        raise SessionExpired()
    return session


# --- routes -----------------------------------------------------------------------------


def _jsonrpc(
    state: ServerState,
    request: web.Request,
    response: web.Response,
    service: str,
    method: str,
    args: Any,
) -> Any:
    return dispatch_rpc(state, service, method, list(args))


def _version_info(state: ServerState, request: web.Request, response: web.Response) -> Any:
    return state.simulator.version_info()


def _database_list(state: ServerState, request: web.Request, response: web.Response) -> Any:
    return state.simulator.list_databases()


def _authenticate(
    state: ServerState,
    request: web.Request,
    response: web.Response,
    db: str,
    login: str,
    password: str,
    base_location: str | None = None,
) -> Any:
    if db not in state.simulator.list_databases():
        raise AccessError("Database not found.")
    uid = state.simulator.authenticate(db, login, password)
    if not uid:
        raise AccessDenied()
    previous = state.session_of(request)
    if previous is not None:
        state.sessions.pop(previous.sid, None)
    session = state.open_session(db, uid, login)
    response.set_cookie("session_id", session.sid, max_age=SESSION_MAX_AGE, httponly=True, path="/")
    return state.simulator.session_info(db, uid)


def _get_session_info(state: ServerState, request: web.Request, response: web.Response) -> Any:
    session = _require_session(state, request)
    return state.simulator.session_info(session.db, session.uid)


def _destroy(state: ServerState, request: web.Request, response: web.Response) -> Any:
    session = _require_session(state, request)
    state.sessions.pop(session.sid, None)
    return None


def _call_kw(
    state: ServerState,
    request: web.Request,
    response: web.Response,
    model: str,
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
    path: str | None = None,
) -> Any:
    session = _require_session(state, request)
    return state.simulator.execute_kw(
        session.db, session.uid, model, method, list(args), dict(kwargs)
    )


def _call_button(
    state: ServerState,
    request: web.Request,
    response: web.Response,
    model: str,
    method: str,
    args: list[Any],
    kwargs: dict[str, Any],
) -> Any:
    action = _call_kw(state, request, response, model, method, args, kwargs)
    # Odoo returns a cleaned action dict, or False for anything else.
    return action if isinstance(action, dict) and action.get("type") else False


def add_routes(app: web.Application) -> None:
    routes: dict[str, _Route] = {
        "/jsonrpc": _jsonrpc,
        "/web/webclient/version_info": _version_info,
        "/web/database/list": _database_list,
        "/web/session/authenticate": _authenticate,
        "/web/session/get_session_info": _get_session_info,
        "/web/session/destroy": _destroy,
        "/web/dataset/call_kw": _call_kw,
        "/web/dataset/call_kw/{path:.*}": _call_kw,
        "/web/dataset/call_button": _call_button,
        "/web/dataset/call_button/{path:.*}": _call_button,
    }
    for path, fn in routes.items():
        app.router.add_route("POST", path, _endpoint(fn))
