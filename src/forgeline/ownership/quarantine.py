"""A refused change, kept: the ``masterdata.change.quarantined.v1`` event.

When ``OwnershipRegistry.check`` refuses a change, the caller does not apply it and does not
drop it: it publishes this event into the log instead. The event carries the reason a person
can act on, the entity, the owner and the offending system, and the change itself whole (the
original event, or the data), so it is visible through the events API and can be replayed —
``original`` gives the refused event back — once the owner or the rule has been sorted out.

Its id is derived from the refused event's ``(source, id)``: refusing the same event twice (a
redelivery) publishes one quarantine event, because the log keeps one per ``(source, id)``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ulid import ULID

from ..envelope import SPECVERSION, Event, now_rfc3339
from .registry import Change, OwnershipConflict

__all__ = ["QUARANTINE_SOURCE", "QUARANTINE_TYPE", "original", "quarantine_event"]

QUARANTINE_TYPE = "masterdata.change.quarantined.v1"
#: The ``source`` of quarantine events (a URI-reference naming this stage).
QUARANTINE_SOURCE = "forgeline/ownership"


def quarantine_event(
    change: Change, conflict: OwnershipConflict, *, source: str = QUARANTINE_SOURCE
) -> Event:
    """The event that records ``change``, refused for ``conflict``, instead of applying it."""
    refused = change.event
    data: dict[str, Any] = {
        "reason": conflict.detail,
        "entity": change.entity,
        "owner": conflict.owner,
        "system": change.system,
        "tenant": change.tenant,
        "plant": change.plant,
        "key": change.key,
    }
    body: dict[str, Any] = {
        "specversion": SPECVERSION,
        "source": source,
        "type": QUARANTINE_TYPE,
        "time": now_rfc3339(),
        "datacontenttype": "application/json",
    }
    if refused is None:
        data["data"] = change.data
        body["id"] = str(ULID())
    else:
        data["event"] = refused.to_dict()
        digest = hashlib.sha256(f"{refused.source}\n{refused.id}".encode()).hexdigest()
        body["id"] = f"q-{digest[:40]}"
        # Follow the refused event's business story: same correlation, caused by it.
        body["causationid"] = refused.id
        body["correlationid"] = str(refused.extensions.get("correlationid") or refused.id)
        if refused.extensions.get("traceparent") is not None:
            body["traceparent"] = refused.extensions["traceparent"]
    if change.key is not None:
        body["subject"] = change.key
    if change.tenant is not None:
        body["tenant"] = change.tenant
    body["data"] = data
    return Event.from_dict(body)


def original(quarantined: Event) -> Event | None:
    """The refused event a quarantine event carries (to replay it), or None when the change
    did not arrive as an event (then ``quarantined.data["data"]`` is the change)."""
    if quarantined.type != QUARANTINE_TYPE:
        raise ValueError(f"not a quarantine event: {quarantined.type!r}")
    refused = quarantined.data.get("event") if isinstance(quarantined.data, dict) else None
    return None if refused is None else Event.from_dict(refused)
