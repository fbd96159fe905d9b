"""``/hooks/odoo/{system}/{token}``: Odoo's "Send Webhook Notification" automations, in.

Odoo signs nothing, waits one second and never retries, so the secret is in the URL (a
``systems.<name>.webhook_token`` reference), the answer comes as soon as the notification is
durable, and the poller of the same model stays the path that cannot miss a change. A wrong
token and an unknown system get the same 404: a caller learns nothing about which it was.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..exceptions import InvalidInput, UnsupportedMediaType
from ..hub import Hub
from .events import json_response

__all__ = ["hooks"]

hooks = APIRouter(prefix="/hooks", tags=["webhooks in"])


@hooks.post(
    "/odoo/{system}/{token}",
    summary="Take one Odoo webhook notification",
    responses={404: {"description": "No such hook (unknown system or wrong token)"}},
)
async def odoo_hook(system: str, token: str, request: Request) -> Response:
    hub: Hub = request.app.state.hub
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaType("Odoo sends application/json")
    body = await request.body()
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    appended = await hub.sources.webhook(system, token, body, payload)
    return json_response(
        {"status": "ok", "position": appended.position, "duplicate": appended.duplicate},
        200 if appended.duplicate else 202,
    )
