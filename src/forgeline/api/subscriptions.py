"""``/v1/subscriptions`` and ``/v1/deadletters``: routing and its failures, over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ..exceptions import Conflict, InvalidSubscription
from ..hub import Hub
from ..log import EventLog
from ..route.subscription import SubscriptionSpec
from ..store import DeadLetterFilter, Delivery, Subscription
from .events import event_filter, json_response

__all__ = ["deadletters", "subscriptions"]

subscriptions = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
deadletters = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def subscription_json(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        **sub.spec.redacted(),
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "start_position": sub.start_position,
    }


_HOST_REFERENCE = ("env:", "file:")


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
async def create_subscription(request: Request, spec: SubscriptionSpec) -> Response:
    _no_host_references(spec)
    sub = await _hub(request).create_subscription(spec)
    return json_response(
        subscription_json(sub), 201, headers={"Location": f"/v1/subscriptions/{sub.id}"}
    )


@subscriptions.get("", summary="List subscriptions, with their backlog")
async def list_subscriptions(request: Request) -> Response:
    hub = _hub(request)
    backlog = await hub.store.backlog()
    items = [
        {**subscription_json(sub), "backlog": backlog.get(sub.id, {})}
        for sub in await hub.store.list_subscriptions()
    ]
    return json_response({"subscriptions": items})


@subscriptions.get("/{id}", summary="One subscription (by id or name)")
async def get_subscription(request: Request, id: str) -> Response:
    hub = _hub(request)
    sub = await hub.store.get_subscription(id)
    backlog = (await hub.store.backlog()).get(sub.id, {})
    return json_response({**subscription_json(sub), "backlog": backlog})


@subscriptions.put("/{id}", summary="Replace a subscription's definition")
async def update_subscription(request: Request, id: str, spec: SubscriptionSpec) -> Response:
    _no_host_references(spec)
    hub = _hub(request)
    current = await hub.store.get_subscription(id)
    return json_response(subscription_json(await hub.update_subscription(current.id, spec)))


@subscriptions.delete("/{id}", status_code=204, summary="Delete a subscription and its deliveries")
async def delete_subscription(request: Request, id: str) -> Response:
    hub = _hub(request)
    current = await hub.store.get_subscription(id)
    await hub.delete_subscription(current.id)
    return Response(status_code=204)


class ReplayRange(BaseModel):
    """A log range, by position or by time, optionally filtered."""

    model_config = ConfigDict(extra="forbid")
    after: int = Field(default=0, ge=0, description="replay positions after this one")
    until: int | None = Field(default=None, ge=0, description="up to and including")
    since: datetime | None = Field(default=None, description="replay events logged from then")
    until_time: datetime | None = Field(default=None, description="… and logged before then")
    type: str | None = Field(default=None, description="type pattern")
    source: str | None = None
    subject: str | None = None


@subscriptions.post("/{id}/replay", summary="Deliver a log range to this subscription again")
async def replay_range(request: Request, id: str, body: ReplayRange) -> Response:
    hub = _hub(request)
    sub = await hub.store.get_subscription(id)
    after, until = body.after, body.until
    if body.since is not None:
        after = max(after, await hub.log.position_at(body.since.timestamp()))
    if body.until_time is not None:
        bound = await hub.log.position_at(body.until_time.timestamp())
        until = bound if until is None else min(until, bound)
    match = event_filter(body.type, body.source, body.subject)
    scheduled = await hub.replay_range(sub.id, after=after, until=until, match=match)
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


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subscription: str | None = Field(default=None, description="id or name")
    type: str | None = Field(default=None, description="event type pattern")
    since: datetime | None = Field(default=None, description="dead since")
    until: datetime | None = None
    ids: list[int] | None = Field(default=None, max_length=10_000)


class Discard(DeadLetterQuery):
    reason: str = Field(min_length=1, max_length=1000)


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=1000)


async def _filter(hub: Hub, query: DeadLetterQuery) -> DeadLetterFilter:
    sub_id = None
    if query.subscription is not None:
        sub_id = (await hub.store.get_subscription(query.subscription)).id
    if query.type is not None:
        event_filter(query.type, None, None)  # validates the pattern
    return DeadLetterFilter(
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
    after: Annotated[int, Query(ge=0, description="continue after this dead letter id")] = 0,
    limit: Annotated[int, Query(ge=1)] = 100,
) -> Response:
    hub = _hub(request)
    where = await _filter(hub, DeadLetterQuery(subscription=subscription, type=type, since=since))
    limit = min(limit, hub.settings.max_page)
    items = await hub.store.list_deliveries("dead", where, limit, after)
    return json_response(
        {
            "deadletters": [await delivery_json(d) for d in items],
            "next_after": items[-1].id if len(items) == limit else None,
        }
    )


@deadletters.get("/{id}", summary="A dead letter with every attempt and the event")
async def get_dead_letter(request: Request, id: int) -> Response:
    hub = _hub(request)
    return json_response(await delivery_json(await hub.store.get_delivery(id), hub.log))


@deadletters.post("/{id}/replay", summary="Deliver one dead letter again")
async def replay_dead_letter(request: Request, id: int) -> Response:
    hub = _hub(request)
    await _must_be_dead(hub, id)
    count = await hub.replay_dead(DeadLetterFilter(ids=[id]))
    return json_response({"replayed": count}, 202)


@deadletters.post("/{id}/discard", summary="Discard one dead letter, with a reason")
async def discard_dead_letter(request: Request, id: int, body: Reason) -> Response:
    hub = _hub(request)
    await _must_be_dead(hub, id)
    count = await hub.discard_dead(DeadLetterFilter(ids=[id]), body.reason)
    return json_response({"discarded": count})


@deadletters.post("/replay", summary="Deliver every dead letter matching a filter again")
async def replay_dead_letters(request: Request, body: DeadLetterQuery) -> Response:
    hub = _hub(request)
    count = await hub.replay_dead(await _filter(hub, body))
    return json_response({"replayed": count}, 202)


@deadletters.post("/discard", summary="Discard every dead letter matching a filter")
async def discard_dead_letters(request: Request, body: Discard) -> Response:
    hub = _hub(request)
    count = await hub.discard_dead(await _filter(hub, body), body.reason)
    return json_response({"discarded": count})


async def _must_be_dead(hub: Hub, id: int) -> None:
    delivery = await hub.store.get_delivery(id)
    if delivery.state != "dead":
        raise Conflict(f"delivery {id} is {delivery.state}, not dead")
