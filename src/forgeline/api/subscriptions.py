"""``/v1/subscriptions`` and ``/v1/deadletters``: routing and its failures, over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ..exceptions import Conflict, InvalidSubscription, NotFound
from ..hub import SINK_SECRET, Hub
from ..log import EventLog
from ..route.subscription import HttpSink, OAuth2Auth, RestSink, SubscriptionSpec, WebhookSink
from ..security.access import Caller
from ..security.auditing import audited
from ..store import DeadLetterFilter, Delivery, Subscription
from ..systems import SEALED
from .auth import require
from .events import MAX_ID, event_filter, json_response

__all__ = ["deadletters", "subscriptions"]

subscriptions = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
deadletters = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


Reader = Annotated[Caller, Depends(require("subscriptions:read"))]
Writer = Annotated[Caller, Depends(require("subscriptions:write"))]
DeadReader = Annotated[Caller, Depends(require("deadletters:read"))]
DeadWriter = Annotated[Caller, Depends(require("deadletters:write"))]


async def _owned(hub: Hub, caller: Caller, id: str) -> Subscription:
    """The subscription ``id`` (or name) if it is the caller's tenant's; another tenant's is
    answered exactly as a missing one, so its ids cannot be probed."""
    sub = await hub.store.get_subscription(id)
    if not caller.sees(sub.spec.tenant):
        raise NotFound(f"no subscription {id!r}")
    return sub


def _tenanted(spec: SubscriptionSpec, caller: Caller) -> SubscriptionSpec:
    """The spec bound to the caller's tenant. A tenant's caller cannot name a tenant (no mass
    assignment); the operator may create one for any tenant, or for all (none)."""
    if caller.tenant is None:
        return spec
    if spec.tenant is not None:
        raise InvalidSubscription("tenant is set by the hub from your credentials")
    return spec.model_copy(update={"tenant": caller.tenant})


#: Where the credentials sit in a sink, by auth type: what is sealed before it is stored.
_SECRET_FIELDS = {
    "bearer": "token",
    "basic": "password",
    "header": "value",
    "oauth2": "client_secret",
}


async def _admissible(spec: SubscriptionSpec, hub: Hub, caller: Caller, tenant: str | None) -> None:
    """A webhook endpoint is made at ``/v1/webhooks/endpoints`` (its secrets are its own); the
    HTTP sinks of a subscription that belongs to ``tenant`` reach only what the egress policy
    allows (SSRF: the same rules as webhook endpoints, and the dispatcher applies them again
    at every delivery), whoever made it. The operator's own subscriptions (no tenant) may
    reach anything: the operator runs the host."""
    if isinstance(spec.sink, WebhookSink):
        raise InvalidSubscription("webhook endpoints are made at /v1/webhooks/endpoints")
    if tenant is None:
        return
    if caller.tenant is not None and not isinstance(spec.sink, HttpSink | RestSink):
        # Odoo, MQTT, file and publish sinks act with the hub's own credentials and
        # identity (an Odoo RPC, the plant's broker, a partner's outbox, events from any
        # source): they are the operator's to configure, never a tenant's.
        raise InvalidSubscription(
            "a tenant's subscriptions deliver over HTTP (url or rest sinks); other sinks "
            "act as the hub and are configured by the operator"
        )
    urls = []
    if isinstance(spec.sink, HttpSink):
        urls.append(spec.sink.url)
    elif isinstance(spec.sink, RestSink):
        urls.append(spec.sink.rest.url.split("{", 1)[0])  # the scheme and host are fixed
        if isinstance(spec.sink.rest.auth, OAuth2Auth):
            urls.append(spec.sink.rest.auth.token_url)
    for url in urls:
        await hub.webhooks.check_url(url)


def _sealed(spec: SubscriptionSpec, hub: Hub) -> SubscriptionSpec:
    """``spec`` with its sink's credentials sealed with the hub's master key: a subscription
    made over the API stores no secret in clear (they are opened at each delivery)."""
    if hub.authority is None:
        return spec
    box = hub.authority.box
    sink = spec.sink.model_dump()
    holder = sink.get("rest", sink)  # an HTTP sink's auth is on the sink, a REST sink's inside
    auth = holder.get("auth") if isinstance(holder, dict) else None
    name = _SECRET_FIELDS.get(auth.get("type", "")) if isinstance(auth, dict) else None
    if auth is None or name is None or str(auth.get(name, "")).startswith(SEALED):
        return spec
    auth[name] = SEALED + box.seal(str(auth[name]).encode(), context=SINK_SECRET)
    return spec.model_copy(update={"sink": type(spec.sink).model_validate(sink)})


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        **sub.spec.redacted(),
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "start_position": sub.start_position,
    }


# sealed: too - a sealed value from a backup would otherwise be opened and sent anywhere.
_HOST_REFERENCE = ("env:", "file:", "sealed:")


def _no_host_references(spec: SubscriptionSpec) -> None:
    """Secret references and mapping files are read on the hub's host: over HTTP they would
    let a caller send any file or variable of the host to a URL of its choosing. They belong
    in the config file, written by whoever runs the host; the API takes inline values."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif isinstance(value, str) and (
            value.startswith(_HOST_REFERENCE) or where.endswith(".body.mapping")
        ):
            found.append(where)

    walk(spec.sink.model_dump(), "sink")
    if isinstance(spec.map, str):
        found.append("map")
    if found:
        raise InvalidSubscription(
            "secret references (env:, file:) and mapping files are for the config file, not "
            f"the API: {', '.join(found)}"
        )


@subscriptions.post("", status_code=201, summary="Create a subscription")
async def create_subscription(request: Request, spec: SubscriptionSpec, caller: Writer) -> Response:
    _no_host_references(spec)
    hub = _hub(request)
    tenant = spec.tenant if caller.tenant is None else caller.tenant
    await _admissible(spec, hub, caller, tenant)
    async with audited(hub, caller, "subscription.create", tenant=tenant) as action:
        sub = await hub.create_subscription(_sealed(_tenanted(spec, caller), hub))
        action.target, action.detail = sub.id, {"name": sub.spec.name}
    return json_response(
        subscription_json(sub), 201, headers={"Location": f"/v1/subscriptions/{sub.id}"}
    )


@subscriptions.get("", summary="List subscriptions, with their backlog")
async def list_subscriptions(request: Request, caller: Reader) -> Response:
    hub = _hub(request)
    backlog = await hub.store.backlog()
    items = [
        {**subscription_json(sub), "backlog": backlog.get(sub.id, {})}
        for sub in await hub.store.list_subscriptions()
        if caller.sees(sub.spec.tenant)
    ]
    return json_response({"subscriptions": items})


@subscriptions.get("/{id}", summary="One subscription (by id or name)")
async def get_subscription(request: Request, id: str, caller: Reader) -> Response:
    hub = _hub(request)
    sub = await _owned(hub, caller, id)
    backlog = (await hub.store.backlog()).get(sub.id, {})
    return json_response({**subscription_json(sub), "backlog": backlog})


@subscriptions.put("/{id}", summary="Replace a subscription's definition")
async def update_subscription(
    request: Request, id: str, spec: SubscriptionSpec, caller: Writer
) -> Response:
    _no_host_references(spec)
    hub = _hub(request)
    async with audited(hub, caller, "subscription.update", target=id) as action:
        current = await _owned(hub, caller, id)
        action.target, action.tenant = current.id, current.spec.tenant
        if caller.tenant is None and spec.tenant is None:
            spec = spec.model_copy(update={"tenant": current.spec.tenant})  # keep its tenant
        await _admissible(spec, hub, caller, caller.tenant or spec.tenant)
        updated = await hub.update_subscription(current.id, _sealed(_tenanted(spec, caller), hub))
        action.detail = {"name": updated.spec.name}
    return json_response(subscription_json(updated))


@subscriptions.delete("/{id}", status_code=204, summary="Delete a subscription and its deliveries")
async def delete_subscription(request: Request, id: str, caller: Writer) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "subscription.delete", target=id) as action:
        current = await _owned(hub, caller, id)
        action.target, action.tenant = current.id, current.spec.tenant
        action.detail = {"name": current.spec.name}
        await hub.delete_subscription(current.id)
    return Response(status_code=204)


class ReplayRange(BaseModel):
    """A log range, by position or by time, optionally filtered."""

    model_config = ConfigDict(extra="forbid")
    after: int = Field(default=0, ge=0, le=MAX_ID, description="replay positions after this one")
    until: int | None = Field(default=None, ge=0, le=MAX_ID, description="up to and including")
    since: datetime | None = Field(default=None, description="replay events logged from then")
    until_time: datetime | None = Field(default=None, description="… and logged before then")
    type: str | None = Field(default=None, description="type pattern")
    source: str | None = None
    subject: str | None = None


@subscriptions.post(
    "/{id}/replay", status_code=202, summary="Deliver a log range to this subscription again"
)
async def replay_range(request: Request, id: str, body: ReplayRange, caller: Writer) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "subscription.replay", target=id) as action:
        sub = await _owned(hub, caller, id)
        action.target, action.tenant = sub.id, sub.spec.tenant
        after, until = body.after, body.until
        if body.since is not None:
            after = max(after, await hub.log.position_at(body.since.timestamp()))
        if body.until_time is not None:
            bound = await hub.log.position_at(body.until_time.timestamp())
            until = bound if until is None else min(until, bound)
        match = event_filter(body.type, body.source, body.subject)
        scheduled = await hub.replay_range(sub.id, after=after, until=until, match=match)
        action.detail = {"after": after, "until": until, "scheduled": scheduled}
    return json_response({"subscription": sub.id, "scheduled": scheduled}, 202)


# -- dead letters -----------------------------------------------------------------------------


async def delivery_json(delivery: Delivery, log: EventLog | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": delivery.id,
        "subscription": delivery.subscription_id,
        "position": delivery.position,
        "event_id": delivery.event_id,
        "event_source": delivery.event_source,
        "event_type": delivery.event_type,
        "partitionkey": delivery.partitionkey,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "reason": delivery.reason,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
    }
    if log is not None:
        record = await log.get(delivery.event_source, delivery.event_id)
        body["event"] = record.event.to_dict() if record else None
        body["history"] = [
            {
                "attempt": a.attempt,
                "started_at": a.started_at,
                "duration_ms": a.duration_ms,
                "outcome": a.outcome,
                "status": a.status,
                "error": a.error,
                "response": a.response,
            }
            for a in delivery.history
        ]
    return body


DeadLetterId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: A dead letter's id in a path: bounded like a stored one (SQLite would overflow, not miss).
DeadLetterPath = Annotated[int, Path(ge=1, le=MAX_ID)]


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription: str | None = Field(default=None, description="id or name")
    type: str | None = Field(default=None, description="event type pattern")
    since: datetime | None = Field(default=None, description="dead since")
    until: datetime | None = None
    ids: list[DeadLetterId] | None = Field(default=None, max_length=10_000)


class Discard(DeadLetterQuery):
    reason: str = Field(min_length=1, max_length=1000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


async def _filter(hub: Hub, query: DeadLetterQuery, caller: Caller) -> DeadLetterFilter:
    sub_id = None
    if query.subscription is not None:
        sub_id = (await _owned(hub, caller, query.subscription)).id
    if query.type is not None:
        event_filter(query.type, None, None)  # validates the pattern
    mine = None
    if caller.tenant is not None:
        mine = [s.id for s in await hub.store.list_subscriptions() if caller.sees(s.spec.tenant)]
    return DeadLetterFilter(
        subscription_ids=mine,
        subscription_id=sub_id,
        type_pattern=query.type,
        since=query.since.timestamp() if query.since else None,
        until=query.until.timestamp() if query.until else None,
        ids=query.ids,
    )


@deadletters.get("", summary="List dead letters")
async def list_dead_letters(
    request: Request,
    subscription: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query()] = None,
    since: Annotated[datetime | None, Query()] = None,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="continue after this dead letter id")
    ] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
    *,
    caller: DeadReader,
) -> Response:
    hub = _hub(request)
    query = DeadLetterQuery(subscription=subscription, type=type, since=since)
    where = await _filter(hub, query, caller)
    limit = min(limit, hub.settings.max_page)
    items = await hub.store.list_deliveries("dead", where, limit, after)
    return json_response(
        {
            "deadletters": [await delivery_json(d) for d in items],
            "next_after": items[-1].id if len(items) == limit else None,
        }
    )


@deadletters.get("/{id}", summary="A dead letter with every attempt and the event")
async def get_dead_letter(request: Request, id: DeadLetterPath, caller: DeadReader) -> Response:
    hub = _hub(request)
    return json_response(await delivery_json(await _delivery(hub, caller, id), hub.log))


@deadletters.post("/{id}/replay", status_code=202, summary="Deliver one dead letter again")
async def replay_dead_letter(request: Request, id: DeadLetterPath, caller: DeadWriter) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "deadletter.replay", target=str(id)) as action:
        action.tenant = await _must_be_dead(hub, caller, id)
        count = await hub.replay_dead(DeadLetterFilter(ids=[id]))
    return json_response({"replayed": count}, 202)


@deadletters.post("/{id}/discard", summary="Discard one dead letter, with a reason")
async def discard_dead_letter(
    request: Request, id: DeadLetterPath, body: Reason, caller: DeadWriter
) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "deadletter.discard", target=str(id)) as action:
        action.detail = {"reason": body.reason}
        action.tenant = await _must_be_dead(hub, caller, id)
        count = await hub.discard_dead(DeadLetterFilter(ids=[id]), body.reason)
    return json_response({"discarded": count})


@deadletters.post(
    "/replay", status_code=202, summary="Deliver every dead letter matching a filter again"
)
async def replay_dead_letters(
    request: Request, body: DeadLetterQuery, caller: DeadWriter
) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "deadletter.replay") as action:
        count = await hub.replay_dead(await _filter(hub, body, caller))
        action.detail = {"filter": body.model_dump(mode="json", exclude_none=True), "count": count}
    return json_response({"replayed": count}, 202)


@deadletters.post("/discard", summary="Discard every dead letter matching a filter")
async def discard_dead_letters(request: Request, body: Discard, caller: DeadWriter) -> Response:
    hub = _hub(request)
    async with audited(hub, caller, "deadletter.discard") as action:
        count = await hub.discard_dead(await _filter(hub, body, caller), body.reason)
        action.detail = {"filter": body.model_dump(mode="json", exclude_none=True), "count": count}
    return json_response({"discarded": count})


async def _delivery(hub: Hub, caller: Caller, id: int) -> Delivery:
    """Delivery ``id``, if its subscription is the caller's tenant's (else as missing)."""
    return (await _delivery_and_tenant(hub, caller, id))[0]


async def _delivery_and_tenant(hub: Hub, caller: Caller, id: int) -> tuple[Delivery, str | None]:
    delivery = await hub.store.get_delivery(id)
    try:
        sub = await _owned(hub, caller, delivery.subscription_id)
    except NotFound:
        raise NotFound(f"no delivery {id}") from None
    return delivery, sub.spec.tenant


async def _must_be_dead(hub: Hub, caller: Caller, id: int) -> str | None:
    """Refuse unless delivery ``id`` is dead; answer its subscription's tenant (the audit
    entry is that tenant's, also when the operator acts)."""
    delivery, tenant = await _delivery_and_tenant(hub, caller, id)
    if delivery.state != "dead":
        raise Conflict(f"delivery {id} is {delivery.state}, not dead")
    return tenant
