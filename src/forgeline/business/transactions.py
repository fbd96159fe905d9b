"""Confirmed transactions from plant applications: validated, logged, applied by the engine.

``POST /v1/transactions`` takes ``{type, subject?, data}`` for a catalog event type (a
production confirmation is ``production.completed.v1``), checks ``data`` against the
catalog's model (422 naming every bad path), and appends it to the log as an event: source
``api/<caller id>``, the caller's tenant in the ``tenant`` extension, id = the
Idempotency-Key when one is sent (else a new ULID). Nothing here calls Odoo: the flows and
subscriptions of the config apply it, with the delivery engine's retries, ordering and dead
letters. A type that no subscription would take is refused (422) rather than logged to
wait for nothing.

Retrying with the same key is safe: the log stores ``(source, id)`` once, so the retry is
answered as the first post was; the same key with another body is refused (422).

``GET /v1/transactions/{id}`` reports where it stands, from the store's deliveries of that
log record: ``accepted`` (logged, not yet routed), ``delivering``, ``applied`` (every target
took it) or ``failed`` (a target refused it for good: a dead letter an operator can replay).
Another tenant's transaction is answered as missing.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field
from ulid import ULID

from ..canonical import InvalidPayload, UnknownEventType, event_spec, schema_url, validate
from ..envelope import Event, now_rfc3339
from ..exceptions import Conflict, NotFound
from ..hub import Hub
from ..log import Record
from ..security.access import Caller
from ..store import Delivery
from .errors import IdempotencyKeyReused, NoFlowForType

__all__ = ["TransactionIn", "post_transaction", "transaction_status"]

SOURCE_PREFIX = "api/"
_OPEN = frozenset({"pending", "inflight", "retrying"})
_FAILED = frozenset({"dead", "discarded"})


class TransactionIn(BaseModel):
    """A confirmed transaction: a catalog event type, its business key, its payload."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "type": "production.completed.v1",
                    "subject": "WH/MO/00042",
                    "data": {
                        "production_order": "WH/MO/00042",
                        "product": "FG-1000",
                        "quantity_good": 118.0,
                        "uom": "EA",
                        "completed_at": "2026-11-27T13:48:00Z",
                    },
                }
            ]
        },
    )

    type: Annotated[str, Field(min_length=1, max_length=255)]
    subject: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    data: dict[str, Any]


def status_url(transaction_id: str) -> str:
    return f"/v1/transactions/{quote(transaction_id, safe='')}"


async def post_transaction(
    hub: Hub, caller: Caller, body: TransactionIn, key: str | None
) -> tuple[dict[str, Any], bool]:
    """Log the transaction; its answer, and whether it replays an earlier post of ``key``."""
    try:
        event_spec(body.type)
    except UnknownEventType as exc:
        raise InvalidPayload(
            exc.detail, errors=[{"path": "type", "message": "not a catalog event type"}]
        ) from exc
    validate(body.type, body.data, path="data")
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": key if key is not None else str(ULID()),
        "source": f"{SOURCE_PREFIX}{caller.id}",
        "type": body.type,
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
        "dataschema": schema_url(body.type),
        "data": body.data,
    }
    if body.subject is not None:
        attributes["subject"] = body.subject
    if caller.tenant is not None:
        attributes["tenant"] = caller.tenant
    event = Event.from_dict(attributes)
    first = await hub.log.get(event.source, event.id) if key is not None else None
    if first is None:
        await _check_routed(hub, event)
        (appended,) = await hub.publish([event])
        position, replayed = appended.position, appended.duplicate
        if replayed:  # a concurrent post with the same key got there first
            first = await hub.log.get(event.source, event.id)
    else:
        position, replayed = first.position, True
    if replayed:
        if first is None or not _same(first.event, event):
            raise IdempotencyKeyReused(
                f"Idempotency-Key {event.id!r} was used for a different transaction: use a new"
                " key for a new transaction",
                errors=[{"path": "header.Idempotency-Key", "message": "used for another body"}],
            )
        event = first.event
    answer = {
        "id": event.id,
        "type": event.type,
        "position": position,
        "state": "accepted",
        "status_url": status_url(event.id),
    }
    return answer, replayed


async def transaction_status(hub: Hub, caller: Caller, transaction_id: str) -> dict[str, Any]:
    record = await _find(hub, caller, transaction_id)
    deliveries = await hub.store.deliveries_of_event(record.position)
    names = {sub.id: sub.spec.name for sub, _ in hub.subscriptions.by_id.values()}
    if any(delivery.subscription_id not in names for delivery in deliveries):
        names = {sub.id: sub.spec.name for sub in await hub.store.list_subscriptions()}
    # No deliveries: not routed yet, or routed to nothing (its subscriptions deleted since).
    state = _state(deliveries) if deliveries else "accepted"
    return {
        "id": record.event.id,
        "type": record.event.type,
        "subject": record.event.subject,
        "position": record.position,
        "state": state,
        "deliveries": [
            {
                "target": names.get(delivery.subscription_id, delivery.subscription_id),
                "state": delivery.state,
                "attempts": delivery.attempts,
                "last_error": _error_for(caller, delivery),
            }
            for delivery in deliveries
        ],
    }


async def _check_routed(hub: Hub, event: Event) -> None:
    """A transaction nothing would apply is refused now, not logged to wait for ever. The
    subscription table may lag behind another process's changes: read it again first."""
    if _routed(hub, event):
        return
    await hub.subscriptions.refresh()
    if not _routed(hub, event):
        raise NoFlowForType(
            f"no flow or subscription of this hub takes {event.type} transactions from"
            f" {event.source}: nothing would apply it",
            errors=[{"path": "type", "message": "no subscription takes this type"}],
        )


def _routed(hub: Hub, event: Event) -> bool:
    return any(
        sub.spec.enabled and matcher.matches(event)
        for sub, matcher in hub.subscriptions.by_id.values()
    )


def _same(first: Event, again: Event) -> bool:
    return (first.type, first.subject, first.data, first.tenant) == (
        again.type,
        again.subject,
        again.data,
        again.tenant,
    )


async def _find(hub: Hub, caller: Caller, transaction_id: str) -> Record:
    """The caller's transaction ``transaction_id`` (posted through this API, in the caller's
    tenant): another tenant's is missing, like one that does not exist."""
    records = [
        record
        for record in await hub.log.find(transaction_id)
        if record.event.source.startswith(SOURCE_PREFIX) and caller.sees(record.event.tenant)
    ]
    own = [r for r in records if r.event.source == f"{SOURCE_PREFIX}{caller.id}"]
    records = own or records
    if not records:
        raise NotFound(f"no transaction {transaction_id!r}")
    if len(records) > 1:
        posters = ", ".join(r.event.source for r in records)
        raise Conflict(f"several callers posted a transaction {transaction_id!r} ({posters})")
    return records[0]


def _state(deliveries: list[Delivery]) -> str:
    states = {delivery.state for delivery in deliveries}
    if states & _FAILED:
        return "failed"  # applied nowhere or partly: someone must look at the dead letter
    if states & _OPEN:
        return "delivering"
    return "applied"


def _error_for(caller: Caller, delivery: Delivery) -> str | None:
    """The delivery's last error as this caller may read it: in full for the operator (the
    dead-letter API shows the same), as a summary for a tenant's application, since the
    text can hold Odoo's messages, hosts and record names."""
    if delivery.last_error is None:
        return None
    if caller.tenant is None:
        return delivery.last_error
    status = f" (HTTP {delivery.last_status})" if delivery.last_status else ""
    if delivery.state in _FAILED:
        return f"the target refused the transaction{status}"
    return f"the target did not take it yet{status}; retrying"
