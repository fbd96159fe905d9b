"""``/v1/webhooks/endpoints``: a tenant's outbound webhook endpoints, over HTTP.

``POST {"url": …, "types": [...]}`` is a complete endpoint; it answers 201 with the ``id``
and, this once, the ``whsec_`` secret (``"signing": "v1a"``: the ``whpk_`` public key; the
private key never leaves the hub). Optional: ``description``, ``metadata`` (a JSON object),
``filter`` (an expression over the event), ``transform`` (a mapping: its result is the body,
instead of the CloudEvent), ``enabled``, ``rate_limit`` (attempts/s), ``ordering``
(``key``: one message of a partition key in flight at a time), ``schedule`` (delays before
each retry) and ``timeout``. The URL must pass the egress policy (422 naming the rule).

Then: ``GET`` (the tenant's endpoints; another tenant's answers 404), ``PATCH``,
``DELETE``, ``GET /{id}/attempts`` (per message: every attempt's time, status, duration,
error and response excerpt, and the next attempt), ``GET /{id}/public-key``,
``POST /{id}/secret/rotate`` (the new secret, once; the old one signs on for
``overlap_seconds``, default 24 h), ``POST /{id}/recover {"since"}`` (the dead letters since
then, delivered again), ``POST /{id}/enable``, ``POST /{id}/test`` (a ``webhook.test.v1``
event to this endpoint only: the status and duration, never the receiver's body).

A disabled endpoint (by PATCH, after a 410, or after failing for the configured period) is
not routed to: what is published meanwhile is not kept for it, and ``recover`` brings back
only what failed. ``rate_limit`` and the 32 deliveries in flight count per worker process.

Scopes ``webhooks:read`` and ``webhooks:write``; every write is audited
(``security.auditing``), never with a secret in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator
from starlette.responses import Response

from ..exceptions import InvalidSubscription
from ..hub import Hub
from ..security.access import Caller
from ..security.auditing import audited
from ..store import DeadLetterFilter, Delivery
from ..webhooks.endpoint_store import Endpoint
from ..webhooks.endpoints import DEFAULT_ROTATION_OVERLAP, MAX_ROTATION_OVERLAP, Draft, Webhooks
from .auth import authenticate, require
from .events import json_response

__all__ = ["endpoints", "install_webhooks"]

PREFIX = "/v1/webhooks/endpoints"
#: A metadata object, as JSON, at most this long: labels for the owner, not a document store.
MAX_METADATA = 8 * 1024
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_STATES = Literal["pending", "inflight", "retrying", "delivered", "dead", "discarded"]

_PROBLEM: dict[str, Any] = {"application/problem+json": {}}
_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": _PROBLEM}
    for status, description in {
        400: "The body is not JSON",
        401: "No or unknown credentials",
        403: "The caller lacks webhooks:read or webhooks:write",
        404: "No such endpoint (or another tenant's: the same answer)",
        409: "Not possible in the endpoint's state (a v1 endpoint has no public key)",
        413: "The body is over the hub's max_body_bytes",
        422: "Not a valid endpoint: each problem at its field (a refused URL names its rule)",
        429: "Rate limited: see Retry-After",
        503: "The store cannot be reached now: retry",
    }.items()
}

endpoints = APIRouter(prefix=PREFIX, tags=["webhooks"], responses=_ANSWERS)

Reader = Annotated[Caller, Depends(require("webhooks:read"))]
Writer = Annotated[Caller, Depends(require("webhooks:write"))]


def install_webhooks(app: FastAPI) -> None:
    """Add the endpoint routes to ``app`` (once: a second call changes nothing). The hub must
    have ``webhooks`` (``forgeline.webhooks.endpoints.Webhooks``)."""
    if getattr(app.state, "webhooks_installed", False):
        return
    app.state.webhooks_installed = True
    app.include_router(endpoints, dependencies=[Depends(authenticate)])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _webhooks(request: Request) -> Webhooks:
    found = getattr(request.app.state.hub, "webhooks", None)
    if not isinstance(found, Webhooks):
        raise RuntimeError("the hub has no Webhooks: wire hub.webhooks before serving")
    return found


# -- bodies ------------------------------------------------------------------------------------


def _metadata(value: dict[str, Any]) -> dict[str, Any]:
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:  # nested past orjson's depth limit
        raise ValueError(f"metadata: {exc}") from None
    if len(encoded) > MAX_METADATA:
        raise ValueError(f"metadata is at most {MAX_METADATA} bytes of JSON")
    return value


class _Fields(BaseModel):
    """What POST and PATCH share; PATCH changes the fields it names, nothing else."""

    model_config = ConfigDict(extra="forbid")
    description: str | None = Field(default=None, max_length=1024)
    metadata: dict[str, Any] | None = None
    filter: str | None = Field(default=None, max_length=1000)
    # Inline only: a mapping file's path would be read on the hub's host.
    transform: dict[str, Any] | None = Field(
        default=None, description="an inline mapping; its result is the body sent"
    )
    enabled: StrictBool | None = None
    rate_limit: float | None = Field(default=None, gt=0, le=100_000, description="attempts/s")
    ordering: Literal["none", "key"] | None = None
    schedule: list[Annotated[float, Field(ge=0, le=7 * 86_400)]] | None = Field(
        default=None, max_length=100, description="seconds before each retry"
    )
    timeout: float | None = Field(default=None, gt=0, le=300, description="s per attempt")

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _metadata(value)


class EndpointCreate(_Fields):
    url: str = Field(min_length=1, max_length=2048)
    types: list[str] = Field(min_length=1, max_length=64)
    signing: Literal["v1", "v1a"] = "v1"
    tenant: str | None = Field(
        default=None, max_length=128, description="the operator's choice; set from the caller"
    )


class EndpointChange(_Fields):
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    types: list[str] | None = Field(default=None, min_length=1, max_length=64)


class Rotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: float = Field(default=DEFAULT_ROTATION_OVERLAP, ge=0, le=MAX_ROTATION_OVERLAP)
    signing: Literal["v1", "v1a"] | None = None


class Recover(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime = Field(description="resend what died since then")
    until: datetime | None = None


# -- answers -----------------------------------------------------------------------------------


def endpoint_json(endpoint: Endpoint, now: float) -> dict[str, Any]:
    spec = endpoint.subscription.spec
    policy = spec.policy
    signing = endpoint.signing(now)
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "metadata": endpoint.metadata,
        "types": spec.types,
        "filter": spec.filter,
        "transform": spec.map,
        "enabled": spec.enabled,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "rate_limit": policy.rate_limit,
        "ordering": policy.ordering,
        "schedule": policy.retry.schedule,
        "timeout": policy.timeout,
        "signing": signing[-1].kind if signing else None,
        "secrets": [secret.public() for secret in signing],
        "subscription": endpoint.subscription.id,
        "tenant": endpoint.tenant,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def _shown(kind: str, shown: str) -> dict[str, str]:
    return {"public_key": shown} if kind == "v1a" else {"secret": shown}


def message_json(delivery: Delivery) -> dict[str, Any]:
    """One message of the attempt log. A first-try success has no history row: its one
    attempt is the delivery itself (its time and status; its duration was not kept)."""
    history = [
        {
            "attempt": a.attempt,
            "time": a.started_at,
            "status": a.status,
            "duration_ms": a.duration_ms,
            "outcome": a.outcome,
            "error": a.error,
            "response": a.response,
        }
        for a in delivery.history
    ]
    if not history and delivery.state == "delivered":
        history = [
            {
                "attempt": delivery.attempts,
                "time": delivery.updated_at,
                "status": delivery.last_status,
                "duration_ms": None,
                "outcome": "delivered",
                "error": None,
                "response": None,
            }
        ]
    waiting = delivery.state in ("pending", "retrying")
    return {
        "delivery": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.due_at if waiting else None,
        "reason": delivery.reason,
        "history": history,
    }


# -- routes ------------------------------------------------------------------------------------


@endpoints.post("", status_code=201, summary="Create a webhook endpoint")
async def create_endpoint(request: Request, body: EndpointCreate, caller: Writer) -> Response:
    webhooks = _webhooks(request)
    tenant = caller.tenant
    if body.tenant is not None:
        if caller.tenant is not None:
            raise InvalidSubscription(
                "tenant is set by the hub from your credentials",
                errors=[{"path": "tenant", "message": "not yours to set"}],
            )
        tenant = body.tenant
    draft = Draft(
        url=body.url,
        types=body.types,
        description=body.description or "",
        metadata=body.metadata or {},
        filter=body.filter,
        transform=body.transform,
        enabled=True if body.enabled is None else body.enabled,
        rate_limit=body.rate_limit,
        ordering=body.ordering or "none",
        schedule=body.schedule,
        timeout=body.timeout,
    )
    async with audited(_hub(request), caller, "webhook.endpoint.create", tenant=tenant) as action:
        action.detail.update(types=body.types, signing=body.signing)
        endpoint, shown = await webhooks.create(draft, tenant=tenant, signing=body.signing)
        action.target = endpoint.id
    answer = {**endpoint_json(endpoint, webhooks.clock()), **_shown(body.signing, shown)}
    headers = {"Location": f"{PREFIX}/{endpoint.id}", **_NO_STORE}
    return json_response(answer, 201, headers=headers)


@endpoints.get("", summary="List webhook endpoints")
async def list_endpoints(
    request: Request,
    caller: Reader,
    after: Annotated[str, Query(max_length=64, description="continue after this id")] = "",
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Response:
    limit = min(limit, _hub(request).settings.max_page)
    webhooks = _webhooks(request)
    found = await webhooks.page(tenant=caller.tenant, after=after, limit=limit)
    now = webhooks.clock()
    return json_response(
        {
            "endpoints": [endpoint_json(endpoint, now) for endpoint in found],
            "next_after": found[-1].id if len(found) == limit else None,
        }
    )


@endpoints.get("/{id}", summary="One webhook endpoint")
async def get_endpoint(request: Request, id: str, caller: Reader) -> Response:
    webhooks = _webhooks(request)
    endpoint = await webhooks.get(id, tenant=caller.tenant)
    return json_response(endpoint_json(endpoint, webhooks.clock()))


@endpoints.patch("/{id}", summary="Change a webhook endpoint")
async def update_endpoint(
    request: Request, id: str, body: EndpointChange, caller: Writer
) -> Response:
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    # Optional fields reset to their default with null; these have no null to reset to.
    for name in ("url", "types", "enabled", "ordering", "description", "metadata"):
        if name in changes and changes[name] is None:
            raise InvalidSubscription(
                f"{name} cannot be null", errors=[{"path": name, "message": "not nullable"}]
            )
    async with audited(_hub(request), caller, "webhook.endpoint.update", target=id) as action:
        action.detail["fields"] = sorted(changes)
        webhooks = _webhooks(request)
        action.tenant = (await webhooks.get(id, tenant=caller.tenant)).tenant
        endpoint = await webhooks.update(id, changes, tenant=caller.tenant)
    return json_response(endpoint_json(endpoint, webhooks.clock()))


@endpoints.delete("/{id}", status_code=204, summary="Delete a webhook endpoint")
async def delete_endpoint(request: Request, id: str, caller: Writer) -> Response:
    hub, webhooks = _hub(request), _webhooks(request)
    async with audited(hub, caller, "webhook.endpoint.delete", target=id) as action:
        endpoint = await webhooks.get(id, tenant=caller.tenant)
        action.tenant = endpoint.tenant
        # The subscription goes, and with it (foreign keys) the endpoint, its secrets and
        # its deliveries.
        await hub.delete_subscription(endpoint.subscription.id)
        webhooks.sender.forget(endpoint.id)
    return Response(status_code=204)


@endpoints.get("/{id}/attempts", summary="The endpoint's messages and their attempts")
async def list_attempts(
    request: Request,
    id: str,
    caller: Reader,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="messages older than this")
    ] = None,
    state: Annotated[_STATES | None, Query()] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Response:
    limit = min(limit, _hub(request).settings.max_page)
    found = await _webhooks(request).messages(
        id, tenant=caller.tenant, before=before or 2**62, limit=limit, state=state
    )
    return json_response(
        {
            "messages": [message_json(delivery) for delivery in found],
            "next_before": found[-1].id if len(found) == limit else None,
        }
    )


@endpoints.get("/{id}/public-key", summary="The Ed25519 keys that verify a v1a endpoint")
async def public_key(request: Request, id: str, caller: Reader) -> Response:
    webhooks = _webhooks(request)
    keys = webhooks.public_keys(await webhooks.get(id, tenant=caller.tenant))
    return json_response(
        {
            "public_key": keys[-1].public_key,
            "keys": [key.public() for key in keys],
        }
    )


@endpoints.post("/{id}/secret/rotate", summary="A new signing secret; the old one overlaps")
async def rotate_secret(
    request: Request, id: str, caller: Writer, body: Rotate | None = None
) -> Response:
    body = body or Rotate()
    webhooks = _webhooks(request)
    async with audited(_hub(request), caller, "webhook.secret.rotate", target=id) as action:
        action.detail.update(overlap_seconds=body.overlap_seconds, signing=body.signing)
        action.tenant = (await webhooks.get(id, tenant=caller.tenant)).tenant
        endpoint, shown = await webhooks.rotate(
            id, tenant=caller.tenant, overlap=body.overlap_seconds, signing=body.signing
        )
    newest = endpoint.secrets[-1]
    answer = {
        "id": endpoint.id,
        "secret_id": newest.id,
        "signing": newest.kind,
        **_shown(newest.kind, shown),
        "previous_expires_at": webhooks.clock() + body.overlap_seconds,
    }
    return json_response(answer, headers=_NO_STORE)


@endpoints.post("/{id}/recover", status_code=202, summary="Resend what failed since a time")
async def recover(request: Request, id: str, body: Recover, caller: Writer) -> Response:
    hub, webhooks = _hub(request), _webhooks(request)
    async with audited(hub, caller, "webhook.endpoint.recover", target=id) as action:
        endpoint = await webhooks.get(id, tenant=caller.tenant)
        action.tenant = endpoint.tenant
        since = body.since.timestamp()
        until = body.until.timestamp() if body.until is not None else None
        action.detail.update(since=since, until=until)
        count = await hub.replay_dead(
            DeadLetterFilter(subscription_id=endpoint.subscription.id, since=since, until=until)
        )
        action.detail["recovered"] = count
    return json_response({"id": endpoint.id, "recovered": count, "enabled": endpoint.enabled}, 202)


@endpoints.post("/{id}/enable", summary="Turn a disabled endpoint on again")
async def enable(request: Request, id: str, caller: Writer) -> Response:
    webhooks = _webhooks(request)
    async with audited(_hub(request), caller, "webhook.endpoint.enable", target=id) as action:
        endpoint = await webhooks.enable(id, tenant=caller.tenant)
        action.tenant = endpoint.tenant
    return json_response(endpoint_json(endpoint, webhooks.clock()))


@endpoints.post("/{id}/test", summary="Send a test event to this endpoint only")
async def send_test_event(request: Request, id: str, caller: Writer) -> Response:
    webhooks = _webhooks(request)
    async with audited(_hub(request), caller, "webhook.endpoint.test", target=id) as action:
        action.tenant = (await webhooks.get(id, tenant=caller.tenant)).tenant
        outcome = await webhooks.test(id, tenant=caller.tenant)
        action.detail.update(delivered=outcome.delivered, status=outcome.status)
    return json_response(
        {
            "event_id": outcome.event_id,
            "delivered": outcome.delivered,
            "status": outcome.status,
            "duration_ms": outcome.duration_ms,
            "error": outcome.error,
        }
    )
