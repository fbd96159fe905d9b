"""``/v1/events``: the ingest stage over HTTP.

``POST`` takes CloudEvents in structured mode, batch mode, binary mode (``ce-*`` headers) or a
plain JSON object/array, and answers only after the log made them durable. The body is parsed
by hand with orjson (not by a pydantic model): it is the hottest path of the hub.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from ..envelope import (
    BATCH_CONTENT_TYPE,
    STRUCTURED_CONTENT_TYPE,
    Event,
    events_from_list,
    parse_batch,
    parse_structured,
)
from ..exceptions import (
    Conflict,
    Forbidden,
    InvalidEvent,
    InvalidInput,
    NotFound,
    UnsupportedMediaType,
)
from ..hub import Hub
from ..log import Record
from ..route.subscription import _PATTERN_RE, compile_glob
from ..security.access import OPERATOR, Caller
from .auth import require

__all__ = ["MAX_ID", "router"]

router = APIRouter(prefix="/v1/events", tags=["events"])

_EVENT_SCHEMA = {"type": "object", "required": ["specversion", "id", "source", "type"]}
_PUBLISH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            STRUCTURED_CONTENT_TYPE: {"schema": _EVENT_SCHEMA},
            BATCH_CONTENT_TYPE: {"schema": {"type": "array", "items": _EVENT_SCHEMA}},
            "application/json": {
                "schema": {"oneOf": [_EVENT_SCHEMA, {"type": "array", "items": _EVENT_SCHEMA}]}
            },
        },
    },
    "responses": {
        "201": {"description": "At least one event was new; every event is durable."},
        "200": {"description": "Every event was a duplicate of one already stored."},
    },
}


#: The largest log position or row id a store holds (a signed 64-bit integer in SQLite and
#: PostgreSQL): a larger one in a request is refused, never handed to a driver to overflow.
MAX_ID = 2**63 - 1


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def record_json(record: Record) -> dict[str, Any]:
    return {"position": record.position, "event": record.event.to_dict()}


Publisher = Annotated[Caller, Depends(require("events:publish"))]
Reader = Annotated[Caller, Depends(require("events:read"))]


@router.post("", status_code=201, openapi_extra=_PUBLISH_BODY, summary="Publish events")
async def publish(request: Request, caller: Publisher) -> Response:
    hub: Hub = request.app.state.hub
    body = await request.body()
    parsed = _parse(request, body, hub.settings.max_batch)
    events = [_admitted(event, caller, hub) for event in parsed]
    answers = await hub.publish(events)
    results: list[dict[str, Any]] = []
    conflicts = 0
    for event, answer in zip(events, answers, strict=True):
        if answer.duplicate and caller.tenant is not None and not await _ours(hub, event):
            # The pair is another publisher's: saying "duplicate" (and where) would both drop
            # this event silently and tell its sender about someone else's.
            conflicts += 1
            results.append({"id": event.id, "source": event.source, "conflict": True})
            continue
        results.append(
            {
                "id": event.id,
                "source": event.source,
                "position": answer.position,
                "duplicate": answer.duplicate,
            }
        )
    if conflicts:
        return json_response(
            {
                "events": results,
                "detail": f"{conflicts} event(s) reuse a source and id another publisher "
                "used: not stored; give them ids of your own",
            },
            409,
        )
    status = 200 if all(a.duplicate for a in answers) else 201
    return json_response({"events": results}, status)


async def _ours(hub: Hub, event: Event) -> bool:
    """Whether the stored event with ``event``'s (source, id) is of ``event``'s tenant."""
    stored = await hub.log.get(event.source, event.id)
    return stored is not None and stored.event.tenant == event.tenant


def _admitted(event: Event, caller: Caller, hub: Hub) -> Event:
    """``event`` as ``caller`` may publish it: a type its scopes allow, in its own tenant
    (stamped on the event when absent), without the hub's own ``origin`` extension, and -
    for a tenant's caller - not in a source a configured system or the hub itself stamps
    (flows and ownership rules trust those to say who sent an event)."""
    if "origin" in event.extensions:
        # Ownership rules trust it: only the hub sets it, on the events its flows derive.
        raise InvalidEvent(
            f"event {event.id!r}: the 'origin' extension is set by the hub, not by publishers"
        )
    if event.source.startswith("api/"):
        # The business APIs' own source (api/<principal>): a transaction's id is its key.
        raise Forbidden(f"event {event.id!r}: sources under api/ are the hub's own")
    if not caller.may("events:publish", event.type):
        raise Forbidden(f"event {event.id!r}: your scopes do not allow publishing {event.type}")
    if caller.tenant is None:
        return event
    if event.source.startswith("forgeline/") or hub.transform.origins.system_of(event.source):
        raise Forbidden(
            f"event {event.id!r}: source {event.source!r} is a configured system's or the "
            "hub's; publish under a source of your own"
        )
    tenant = event.extensions.get("tenant")
    if tenant is None:
        return replace(event, extensions={**event.extensions, "tenant": caller.tenant})
    if tenant != caller.tenant:
        raise Forbidden(f"event {event.id!r}: you publish for tenant {caller.tenant!r} only")
    return event


def _readable(caller: Caller) -> Callable[[Event], bool]:
    return lambda event: caller.sees(event.tenant) and caller.may("events:read", event.type)


def _parse(request: Request, body: bytes, max_batch: int) -> list[Event]:
    headers = request.headers
    if "ce-specversion" in headers:
        return [_binary_mode(request, body)]
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == STRUCTURED_CONTENT_TYPE:
        return [parse_structured(body)]
    if media == BATCH_CONTENT_TYPE:
        return parse_batch(body, max_events=max_batch)
    if media == "application/json":
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidEvent(f"malformed JSON: {exc}") from exc
        if isinstance(document, list):
            return events_from_list(document, max_events=max_batch)
        return [Event.from_dict(document)]
    raise UnsupportedMediaType(
        f"content type {media or '(none)'!r} is not accepted; send {STRUCTURED_CONTENT_TYPE}, "
        f"{BATCH_CONTENT_TYPE}, application/json, or binary mode with ce-* headers"
    )


def _binary_mode(request: Request, body: bytes) -> Event:
    """CloudEvents HTTP binary mode: attributes in ``ce-`` headers, the data is the body."""
    attributes: dict[str, Any] = {
        name[3:]: value for name, value in request.headers.items() if name.startswith("ce-")
    }
    media = request.headers.get("content-type")
    if media:
        attributes["datacontenttype"] = media
    if body:
        if media is None or media.split(";")[0].strip().endswith("json"):
            try:
                attributes["data"] = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise InvalidEvent(f"malformed JSON data: {exc}") from exc
        else:
            try:
                attributes["data"] = body.decode()
            except UnicodeDecodeError as exc:
                raise InvalidEvent("binary data must be sent in structured mode") from exc
    return Event.from_dict(attributes)


@router.get(
    "/{event_id}",
    summary="One event, as CloudEvents structured JSON",
    response_class=Response,
    responses={
        200: {
            "description": "The event; its log position in the Forgeline-Position header",
            "content": {STRUCTURED_CONTENT_TYPE: {"schema": _EVENT_SCHEMA}},
        }
    },
)
async def get_event(
    request: Request,
    event_id: str,
    caller: Reader,
    source: Annotated[str | None, Query()] = None,
) -> Response:
    hub: Hub = request.app.state.hub
    if source is not None:
        record = await hub.log.get(source, event_id)
        records = [record] if record else []
    else:
        records = await hub.log.find(event_id)
    readable = _readable(caller)
    records = [record for record in records if readable(record.event)]
    if not records:
        raise NotFound(f"no event with id {event_id!r}")
    if len(records) > 1:
        sources = ", ".join(r.event.source for r in records)
        raise Conflict(f"several sources used id {event_id!r} ({sources}); add ?source=")
    return Response(
        records[0].event.to_json(),
        headers={"Forgeline-Position": str(records[0].position)},
        media_type=STRUCTURED_CONTENT_TYPE,
    )


@router.get("", summary="Page through the log, filtered")
async def list_events(
    request: Request,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="position to continue after")] = 0,
    since: Annotated[datetime | None, Query(description="start at this time instead")] = None,
    limit: Annotated[int, Query(ge=1)] = 100,
    type: Annotated[str | None, Query(description="type pattern, '*' matches any run")] = None,
    source: Annotated[str | None, Query()] = None,
    subject: Annotated[str | None, Query()] = None,
    *,
    caller: Reader,
) -> Response:
    hub: Hub = request.app.state.hub
    limit = min(limit, hub.settings.max_page)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidInput("since must carry a time zone, e.g. 2026-11-27T08:00:00Z")
        after = max(after, await hub.log.position_at(since.timestamp()))
    match = event_filter(type, source, subject)
    if caller is not OPERATOR:
        readable, wanted = _readable(caller), match
        match = lambda event: readable(event) and (wanted is None or wanted(event))  # noqa: E731
    records, cursor = await hub.log.query(after, limit, match=match)
    return json_response({"events": [record_json(r) for r in records], "next_after": cursor})


def event_filter(
    type_pattern: str | None, source: str | None, subject: str | None
) -> Callable[[Event], bool] | None:
    if type_pattern is None and source is None and subject is None:
        return None
    if type_pattern is not None and not _PATTERN_RE.fullmatch(type_pattern):
        raise InvalidInput(f"{type_pattern!r} is not a type pattern such as 'production.*'")
    types = compile_glob([type_pattern]).fullmatch if type_pattern else None

    def match(event: Event) -> bool:
        return (
            (types is None or types(event.type) is not None)
            and (source is None or event.source == source)
            and (subject is None or event.subject == subject)
        )

    return match
