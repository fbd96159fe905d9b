"""Webhooks in: ``/hooks/odoo/{system}/{token}`` for Odoo's automations, ``/hooks/{system}``
and ``/hooks/{system}/{token}`` for ``kind: webhook`` systems (plant systems, partners).

Odoo signs nothing, waits one second and never retries, so the secret is in the URL (a
``systems.<name>.webhook_token`` reference), the answer comes as soon as the notification is
durable, and the poller of the same model stays the path that cannot miss a change. A wrong
token and an unknown system get the same 404: a caller learns nothing about which it was.

Webhook systems get the same treatment, by ``forgeline.connectors.webhook``: an unknown name,
a system of another kind, a refused address, a missing or wrong signature or token are all
one 404 ``no such hook``. 404 rather than 401: an unknown name must be a 404 (nothing is
there), and every other refusal must look exactly like it, or the answer would confirm which
names exist. Only a verified request learns about its body (415, 400); it is answered 202
once its event is durable (200 when the log already had it), and the flows map it after.
Proxies' access logs keep URLs, so a URL token is weaker than a signature: prefer
``standard`` (Standard Webhooks) or ``hmac``.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..connectors.webhook import NO_SUCH_HOOK, Inbound, WebhookCounters, WebhookIntake
from ..exceptions import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..hub import Hub
from .events import json_response

__all__ = ["hooks"]

hooks = APIRouter(prefix="/hooks", tags=["webhooks in"])

_WEBHOOK_ANSWERS: dict[int | str, dict[str, object]] = {
    202: {"description": "The event is durable in the log"},
    200: {"description": "The log already had this event (a resend): nothing new stored"},
    404: {"description": f"{NO_SUCH_HOOK}: whatever the reason, the same answer"},
    413: {"description": "The body is over the hub's max_body_bytes"},
    415: {"description": "The body is not application/json (or a +json type)"},
    400: {"description": "The body is not a JSON object, or lacks the id or a valid time"},
    503: {"description": "The hub cannot verify or store requests now: retry"},
}


# Declared first: /hooks/odoo/<system>/<token> stays Odoo's, whatever webhook systems exist.
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


@hooks.post(
    "/{system}",
    summary="Take one event from a webhook system (standard, hmac or none)",
    status_code=202,
    responses=_WEBHOOK_ANSWERS,
)
async def webhook(system: str, request: Request) -> Response:
    return await _take(request, system, None)


@hooks.post(
    "/{system}/{token}",
    summary="Take one event from a webhook system (token)",
    status_code=202,
    responses=_WEBHOOK_ANSWERS,
)
async def webhook_with_token(system: str, token: str, request: Request) -> Response:
    return await _take(request, system, token)


async def _take(request: Request, system: str, token: str | None) -> Response:
    intake = _intake(request)
    try:
        body = await request.body()
    except PayloadTooLarge:  # a chunked body found too large while read
        intake.refused(system, "too_large")
        raise
    client = request.client.host if request.client is not None else None
    accepted = await intake.take(system, Inbound(body, request.headers, client, token))
    return json_response(
        {
            "status": "accepted",
            "id": accepted.event.id,
            "position": accepted.position,
            "duplicate": accepted.duplicate,
        },
        200 if accepted.duplicate else 202,
    )


def _intake(request: Request) -> WebhookIntake:
    """The app's intake, made on first use (the hub's systems do not change while it runs)."""
    state = request.app.state
    intake: WebhookIntake | None = getattr(state, "webhook_intake", None)
    if intake is None:
        hub: Hub = state.hub
        counters = WebhookCounters.of(hub.metrics.registry)
        intake = state.webhook_intake = WebhookIntake(
            hub.settings.systems, hub.publish, counters=counters
        )
    return intake
