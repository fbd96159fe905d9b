"""Odoo records as Forgeline events: the first step of the Odoo source on the ingest path.

A changed record (from the write-date poller, or fetched after an Odoo webhook announced it)
becomes one CloudEvent: ``source`` ``odoo://<host>/<db>``, ``subject`` the record's business
key (``WH/MO/00042``), ``partitionkey`` ``<model>:<id>`` (one record's events stay in order)
and a type from the model and state, else ``odoo.record.changed.v1``.

These are *source events*: their ``data`` is Odoo's record as read (``{model, id,
write_date, version, record}``, the catalog's ``OdooRecordChange``), never the canonical
shape. So a typed one is named ``odoo.`` + the canonical type it corresponds to::

    odoo.production.order.released.v1   mrp.production confirmed
    odoo.production.completed.v1        mrp.production done
    odoo.sales.order.confirmed.v1       sale.order in sale (or done: locked)
    odoo.purchase.order.confirmed.v1    purchase.order in purchase (or done)
    odoo.invoice.posted.v1              account.move posted
    odoo.shipment.confirmed.v1          stock.picking done, outgoing
    odoo.inventory.received.v1          stock.picking done, incoming
    odoo.inventory.moved.v1             stock.picking done, internal

A canonical type name means one shape, whoever publishes it: the canonical event
(``production.order.released.v1``) comes from a flow that maps the Odoo one by the Odoo
version's status table and the cross-reference (the demo's ``erp-releases``), and a consumer
that validates by the catalog never meets Odoo's record under a canonical name.

The event id is a digest of ``(model, id, write_date, the values read)``: the poller and a
webhook that see the same change mint the same id, and the hub's ``(source, id)`` dedup keeps
one. A typed event names the state the record is in at that write; a later write to a record
in the same state is a new change (a new id) with the same type, so consumers that care
about the transition key on ``subject``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ...envelope import SPECVERSION, Event
from ...exceptions import InvalidInput

__all__ = [
    "CHANGED",
    "COMMON_FIELDS",
    "EVENT_FIELDS",
    "EVENT_TYPES",
    "WebhookChange",
    "event_id",
    "event_type",
    "from_webhook_payload",
    "odoo_source",
    "record_to_event",
    "values_digest",
]

CHANGED = "odoo.record.changed.v1"

# The fields the mapping reads, per model: what a poller or a webhook fetch must ask for.
# Other models get COMMON_FIELDS only: reading every field would pull binaries and computed
# values (which change without write_date, so each re-read would look like a new change).
COMMON_FIELDS = ("id", "display_name", "write_date")
_COMMON = COMMON_FIELDS
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "mrp.production": (
        *_COMMON, "name", "state", "product_id", "product_qty", "qty_produced", "origin",
    ),
    "sale.order": (*_COMMON, "name", "state", "partner_id", "amount_total", "client_order_ref"),
    "account.move": (
        *_COMMON, "name", "state", "move_type", "partner_id", "amount_total", "payment_state",
    ),
    "stock.picking": (
        *_COMMON, "name", "state", "picking_type_code", "partner_id", "origin", "scheduled_date",
    ),
    "purchase.order": (*_COMMON, "name", "state", "partner_id", "amount_total"),
}  # fmt: skip

# The typed events: "odoo." + the canonical type each corresponds to (see the docstring).
MO_RELEASED = "odoo.production.order.released.v1"
MO_DONE = "odoo.production.completed.v1"
SALE_CONFIRMED = "odoo.sales.order.confirmed.v1"
PURCHASE_CONFIRMED = "odoo.purchase.order.confirmed.v1"
INVOICE_POSTED = "odoo.invoice.posted.v1"
SHIPPED = "odoo.shipment.confirmed.v1"
RECEIVED = "odoo.inventory.received.v1"
MOVED = "odoo.inventory.moved.v1"
#: Every type the Odoo source emits (the catalog lists each as a source event).
EVENT_TYPES = (
    MO_RELEASED, MO_DONE, SALE_CONFIRMED, PURCHASE_CONFIRMED, INVOICE_POSTED,
    SHIPPED, RECEIVED, MOVED, CHANGED,
)  # fmt: skip

_Rule = Callable[[Mapping[str, Any]], str | None]
_RULES: dict[str, _Rule] = {
    "mrp.production": lambda r: {"confirmed": MO_RELEASED, "done": MO_DONE}.get(
        str(r.get("state"))
    ),
    # "done" is a locked confirmed order (16's "Lock Confirmed Sales" goes there straight from
    # action_confirm; purchase orders up to 18 likewise): still a confirmation to consumers.
    "sale.order": lambda r: SALE_CONFIRMED if r.get("state") in ("sale", "done") else None,
    "account.move": lambda r: INVOICE_POSTED if r.get("state") == "posted" else None,
    "purchase.order": lambda r: (
        PURCHASE_CONFIRMED if r.get("state") in ("purchase", "done") else None
    ),
    "stock.picking": lambda r: (
        {"outgoing": SHIPPED, "incoming": RECEIVED, "internal": MOVED}.get(
            str(r.get("picking_type_code"))
        )
        if r.get("state") == "done"
        else None
    ),
}


def odoo_source(url: str, db: str) -> str:
    """``odoo://<host[:port]>/<db>``: the CloudEvents source of one Odoo database (never the
    URL's user or password, which would then travel in every event)."""
    parts = urlsplit(url)
    host = parts.hostname or url
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    return f"odoo://{host}{f':{parts.port}' if parts.port else ''}/{db}"


def values_digest(record: Mapping[str, Any]) -> str:
    """A digest of the values read. ``write_date`` has one-second resolution, so two writes
    in the same second (an MO confirmed and done at once) share it: the values tell them
    apart. Read the same fields on every path, or one change gets two ids (a duplicate,
    never a loss)."""
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def event_id(model: str, record_id: int, write_date: str | None, digest: str = "") -> str:
    """The same change always gets the same id, whoever saw it."""
    key = f"{model}\0{int(record_id)}\0{write_date or ''}\0{digest}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def event_type(model: str, record: Mapping[str, Any], version: int | None = None) -> str:
    """The Odoo event a record in this state means (``odoo.production.completed.v1``…),
    else ``odoo.record.changed.v1``.

    ``version`` is accepted for the day a mapping differs between Odoo versions; the states
    used here are the same from 16 to 19 (16's locked sale orders, ``done``, are not new
    confirmations).
    """
    del version
    rule = _RULES.get(model)
    return (rule(record) if rule is not None else None) or CHANGED


def _subject(model: str, record: Mapping[str, Any]) -> str:
    for field in ("name", "display_name"):
        value = record.get(field)
        if isinstance(value, str) and value:
            return value
    return f"{model},{record['id']}"


def _rfc3339(write_date: str | None) -> str | None:
    if not write_date:
        return None
    try:
        stamp = datetime.strptime(write_date, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return stamp.isoformat().replace("+00:00", "Z")


def record_to_event(
    model: str,
    record: Mapping[str, Any],
    *,
    source: str,
    version: int | None = None,
) -> Event:
    """The event for one changed record (``record`` as ``read`` returns it, with ``id`` and
    ``write_date``). ``data`` holds ``model``, ``id``, ``write_date``, the Odoo ``version``
    and the ``record`` values."""
    if "id" not in record:
        raise InvalidInput(f"an Odoo {model} record without an id cannot become an event")
    record_id = int(record["id"])
    write_date = record.get("write_date") or None
    body: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": event_id(model, record_id, write_date, values_digest(record)),
        "source": source,
        "type": event_type(model, record, version),
        "subject": _subject(model, record),
        "partitionkey": f"{model}:{record_id}",
        "datacontenttype": "application/json",
        "data": {
            "model": model,
            "id": record_id,
            "write_date": write_date,
            "version": version,
            "record": dict(record),
        },
    }
    time = _rfc3339(write_date)
    if time is not None:
        body["time"] = time
    return Event.from_dict(body)


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """What an Odoo webhook announced: fetch ``fields`` of ``model`` record ``id`` and map it
    with :func:`record_to_event` (the payload alone may lack ``write_date`` and state)."""

    model: str
    id: int
    action: str | None
    values: dict[str, Any]
    fields: tuple[str, ...]


def from_webhook_payload(payload: Any) -> WebhookChange:
    """Decode the body of Odoo's "Send Webhook Notification" (17+): ``_model``, ``_id``,
    ``_action`` and the chosen fields (many2one as bare ids)."""
    if not isinstance(payload, Mapping):
        raise InvalidInput("an Odoo webhook body is a JSON object")
    model, record_id = payload.get("_model"), payload.get("_id", payload.get("id"))
    if not isinstance(model, str) or not model:
        raise InvalidInput("an Odoo webhook body names the model in '_model'")
    if isinstance(record_id, bool) or not isinstance(record_id, int):
        raise InvalidInput("an Odoo webhook body names the record in '_id' (an integer)")
    action = payload.get("_action")
    values = {k: v for k, v in payload.items() if not k.startswith("_")}
    fields = EVENT_FIELDS.get(model, _COMMON)
    extra = tuple(k for k in values if k not in fields)
    return WebhookChange(
        model=model,
        id=record_id,
        action=str(action) if action is not None else None,
        values=values,
        fields=(*fields, *extra),
    )
