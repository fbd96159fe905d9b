"""JSON-2 (Odoo 19+): ``POST /json/2/<model>/<method>`` with an API key, and its companions.

``Authorization: bearer <api key>``; ``X-Odoo-Database`` picks the database (required when the
simulator holds several, as Odoo cannot pick one then). The body is a JSON object of named
arguments plus ``ids`` and ``context``; the answer is the bare return value. Errors use HTTP
status codes (400/401/403/404/405/409/422/500) with ``{"name", "message", "arguments",
"context", "debug"}``. ``GET /doc-bearer/<model>.json`` describes a model's fields and method
parameters (odoo-client-lib and odooly read it to map positional arguments to names);
``GET /web/version`` (and, on 19, ``GET /json/version``) is the unauthenticated version
probe.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web

from ..api import is_model_method
from .services import HttpError, describe_error
from .state import STATE, ServerState, dumps_json, json_bytes_response, loads_json

__all__ = ["add_routes", "json2_error"]

_BEARER = re.compile(r"^bearer\s+(.+)$", re.IGNORECASE)


def json2_error(exc: BaseException) -> web.Response:
    err = describe_error(exc)
    body = {
        "name": err.name,
        "message": err.message,
        "arguments": err.arguments,
        "context": {},
        "debug": err.debug,
    }
    response = json_bytes_response(dumps_json(body), status=err.json2_status)
    if err.json2_status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _database(state: ServerState, request: web.Request) -> str:
    databases = state.simulator.list_databases()
    wanted = request.headers.get("X-Odoo-Database") or request.query.get("db")
    if wanted:
        if wanted not in databases:
            raise HttpError(404, "NotFound", f"database {wanted!r} does not exist")
        return wanted
    if len(databases) != 1:
        # Without a database Odoo serves no bearer route at all.
        raise HttpError(404, "NotFound", "no database selected: send the X-Odoo-Database header")
    return databases[0]


def _authenticate(state: ServerState, request: web.Request, db: str) -> int:
    header = request.headers.get("Authorization", "")
    match = _BEARER.match(header)
    if match is None:
        raise HttpError(
            401, "Unauthorized", 'User not authenticated, use the "Authorization" header'
        )
    uid = state.simulator.uid_for_api_key(db, match.group(1).strip())
    if not uid:
        raise HttpError(401, "Unauthorized", "Invalid apikey")
    return uid


def _check_call(state: ServerState, db: str, model: str, method: str, body: dict[str, Any]) -> None:
    """Odoo 19's checks before the call: 404 unknown model or non-public method, 422 when the
    named arguments do not bind to the method's signature (a TypeError *inside* the method
    is a 500, as in Odoo)."""
    database = state.simulator.database(db)
    if model not in database.registry:
        raise HttpError(404, "NotFound", f"the model {model!r} does not exist")
    try:
        # One source of truth for what RPC may call (private names, ORM helpers, versions).
        # Odoo 19's route turns an AttributeError (unknown method) into a 404; the AccessError
        # of a private method propagates: 403 odoo.exceptions.AccessError.
        func = state.simulator._method(database, model, method)
    except AttributeError as exc:
        raise HttpError(404, "NotFound", str(exc.args[0])) from exc
    params = {k: v for k, v in body.items() if k not in ("ids", "context")}
    if body.get("ids") and is_model_method(database.registry[model], method):
        raise HttpError(422, "UnprocessableEntity", f"cannot call {model}.{method} with ids")
    try:
        inspect.signature(func).bind(None, **params)
    except TypeError as exc:
        raise HttpError(422, "UnprocessableEntity", str(exc.args[0])) from exc


async def _call(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.version < 19:
        return _not_found()
    model, method = request.match_info["model"], request.match_info["method"]
    try:
        if request.content_type != "application/json":
            raise HttpError(
                400,
                "BadRequest",
                "Request inferred type is compatible with ['http'] but "
                "'/json/2/<model>/<method>' is type='/json/2/rpc'.",
            )
        db = _database(state, request)
        uid = _authenticate(state, request, db)
        raw = await request.read()
        body: Any = {}
        if raw:
            try:
                body = loads_json(raw)
            except ValueError as exc:
                raise HttpError(
                    400, "BadRequest", f"could not parse the body as json: {exc.args[0]}"
                ) from exc
            if not isinstance(body, dict):
                raise HttpError(
                    400, "BadRequest", "could not parse the body, expecting a json object"
                )
        if request.method != "POST":
            raise HttpError(
                405, "MethodNotAllowed", "The method is not allowed for the requested URL."
            )
        _check_call(state, db, model, method, body)
        result = state.simulator.call_json2(db, uid, model, method, body)
    except Exception as exc:  # every failure is an HTTP status with Odoo's error body
        return json2_error(exc)
    return json_bytes_response(dumps_json(result))


async def _doc_bearer(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.version < 19:
        return _not_found()
    model = request.match_info["model"]
    try:
        db = _database(state, request)
        uid = _authenticate(state, request, db)
        if model not in state.simulator.database(db).registry:
            raise HttpError(404, "NotFound", f"the model {model!r} does not exist")
        doc = state.simulator.describe_model(db, uid, model)
    except Exception as exc:  # every failure is an HTTP status with Odoo's error body
        return json2_error(exc)
    return json_bytes_response(dumps_json(doc))


async def _web_version(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.version < 18:
        return _not_found()
    info = state.simulator.version_info()
    body = {"version_info": info["server_version_info"], "version": info["server_version"]}
    return json_bytes_response(dumps_json(body))


async def _json_version(request: web.Request) -> web.StreamResponse:
    # Odoo 19 serves the unauthenticated version probe at /json/version too.
    if request.app[STATE].version < 19:
        return _not_found()
    return await _web_version(request)


def _not_found() -> web.StreamResponse:
    raise web.HTTPNotFound()


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/json/2/{model}/{method}", _call)
    app.router.add_route("GET", "/doc-bearer/{model}.json", _doc_bearer)
    app.router.add_route("GET", "/web/version", _web_version)
    app.router.add_route("GET", "/json/version", _json_version)
