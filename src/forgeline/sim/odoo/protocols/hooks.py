"""Incoming webhooks (Odoo 17+): ``GET|POST /web/hook/<uuid>`` runs an automation.

As in Odoo's ``base_automation`` controller: the payload is the JSON body when the request is
JSON, else the query/form parameters; the answer is ``{"status": "ok"}`` 200, or
``{"status": "error"}`` with 404 for an unknown uuid and 500 when the automation failed.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .state import JSON_MIMETYPES, STATE, dumps_json, json_bytes_response, loads_json

__all__ = ["add_routes"]


async def _hook(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    if state.version < 17:
        raise web.HTTPNotFound()
    payload: Any
    if request.content_type in JSON_MIMETYPES:
        try:
            payload = loads_json(await request.read()) or {}
        except ValueError:
            return json_bytes_response(dumps_json({"status": "error"}), status=500)
    else:
        payload = dict(request.query)
        if request.method == "POST":
            payload.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    db = request.headers.get("X-Odoo-Database") or request.query.get("db")
    try:
        state.simulator.run_incoming_webhook(db, request.match_info["uuid"], payload)
    except KeyError:
        return json_bytes_response(dumps_json({"status": "error"}), status=404)
    except Exception:  # the automation failed: Odoo answers 500 and logs it
        return json_bytes_response(dumps_json({"status": "error"}), status=500)
    return json_bytes_response(dumps_json({"status": "ok"}))


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/web/hook/{uuid}", _hook)
    app.router.add_route("POST", "/web/hook/{uuid}", _hook)
