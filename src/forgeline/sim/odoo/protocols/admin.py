"""The simulator's own admin API under ``/__sim__/`` (not Odoo's): faults and webhook log.

``GET|POST|DELETE /__sim__/faults`` reads, replaces or clears the fault plan;
``GET /__sim__/webhooks`` lists recent outgoing webhook attempts. Mounted only when the server
was started with faults or ``admin=True`` (the CLI's ``--faults``), so that a simulator used as
a demo Odoo cannot be reconfigured by whoever reaches its port.
"""

from __future__ import annotations

from aiohttp import web

from ..faults import FaultPlan
from ..webhooks import WebhookSender
from .state import STATE, dumps_json, json_bytes_response, loads_json

__all__ = ["WEBHOOKS", "add_routes"]

WEBHOOKS: web.AppKey[WebhookSender] = web.AppKey("odoo_sim_webhooks", WebhookSender)


async def _get_faults(request: web.Request) -> web.StreamResponse:
    plan = request.app[STATE].faults
    body = plan.to_dict() if plan is not None else FaultPlan().to_dict()
    return json_bytes_response(dumps_json(body))


async def _post_faults(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        spec = loads_json(await request.read())
        plan = FaultPlan.from_dict(spec)
    except (ValueError, TypeError, KeyError) as exc:
        return json_bytes_response(dumps_json({"error": str(exc)}), status=400)
    if state.faults is None:
        state.faults = plan
    else:
        state.faults.replace(plan)
    return json_bytes_response(dumps_json(state.faults.to_dict()))


async def _delete_faults(request: web.Request) -> web.StreamResponse:
    plan = request.app[STATE].faults
    if plan is not None:
        plan.clear()
    return web.Response(status=204)


async def _get_webhooks(request: web.Request) -> web.StreamResponse:
    body = [attempt.to_dict() for attempt in request.app[WEBHOOKS].attempts]
    return json_bytes_response(dumps_json(body))


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/__sim__/faults", _get_faults)
    app.router.add_route("POST", "/__sim__/faults", _post_faults)
    app.router.add_route("DELETE", "/__sim__/faults", _delete_faults)
    app.router.add_route("GET", "/__sim__/webhooks", _get_webhooks)
