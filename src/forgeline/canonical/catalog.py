"""The event catalog: every canonical event type, its ``data`` model, version and JSON Schema.

This is the contract between the route stage and every consumer: a subscriber to
``production.completed.v1`` gets ``data`` shaped as :class:`ProductionCompleted`, whichever
system reported it. ``json_schema(type)`` is the published, versioned schema (JSON Schema
Draft 2020-12, ``$id`` ``https://forgeline.dev/schemas/<type>.json``, also the events'
``dataschema``); ``validate(type, data)`` checks a payload and names every bad path.
A breaking change to a payload is a new type (``….v2``), never an edit of ``….v1``.

Two kinds of entry. *Canonical events* are the hub's own words: one type, one shape,
whoever publishes it. *Source events* (``odoo.*``) are a connector's record as it read it,
before any mapping (:class:`OdooRecordChange`); each typed one is named ``odoo.`` + the
canonical type it corresponds to (``odoo.production.completed.v1``), so the canonical name
never carries Odoo's shape. A flow with a mapping turns the one into the other.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import orjson
from pydantic import ConfigDict, Field, ValidationError

from ._base import CanonicalModel, InvalidPayload, UnknownEventType
from .commerce import Invoice, PurchaseOrder, SalesOrder
from .engineering import EngineeringChange
from .inventory import InventoryMovement, LotReleased
from .logistics import Asn, Shipment
from .maintenance import MaintenanceAlert
from .production import MaterialConsumption, ProductionCompleted, ProductionOrder, WorkOrder
from .quality import QualityHold, QualityInspection

__all__ = [
    "CATALOG",
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_BASE",
    "EventSpec",
    "OdooRecordChange",
    "catalog_entries",
    "event_spec",
    "json_schema",
    "schema_url",
    "validate",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://forgeline.dev/schemas/"
_VERSION_RE = re.compile(r"\.v([1-9][0-9]*)$")


class OdooRecordChange(CanonicalModel):
    """A changed Odoo record as the Odoo source reads it, before any mapping."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "mrp.production",
                    "id": 42,
                    "write_date": "2026-11-27 13:48:02",
                    "version": 17,
                    "record": {"id": 42, "name": "WH/MO/00042", "state": "done"},
                }
            ]
        }
    )

    model: str = Field(min_length=1)
    """The Odoo model (``mrp.production``)."""
    id: int = Field(ge=1)
    """The record id in that Odoo database."""
    write_date: str | None
    """Odoo's ``write_date``, ``YYYY-MM-DD HH:MM:SS`` in UTC, as Odoo sends it."""
    version: int | None
    """The Odoo major version (16–19), when known."""
    record: dict[str, Any]
    """The values read, in Odoo's wire form (many2one as ``[id, name]`` or an id)."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One catalog entry."""

    type: str
    model: builtins.type[CanonicalModel]
    summary: str
    entity: str
    """The canonical entity the event is about (the status tables' entity names)."""
    example: Mapping[str, Any] | None = field(default=None, compare=False)
    """A ``data`` example of this type, when the model's own would mislead (a model that
    several types share); else the model's."""

    @property
    def version(self) -> int:
        match = _VERSION_RE.search(self.type)
        assert match is not None  # checked when the catalog is built
        return int(match.group(1))

    @property
    def schema_url(self) -> str:
        return schema_url(self.type)


def _odoo_example(model: str, values: dict[str, Any]) -> dict[str, Any]:
    """What the Odoo source reads for one record of ``model`` in that state."""
    return {
        "model": model,
        "id": 42,
        "write_date": "2026-11-27 13:48:02",
        "version": 19,
        "record": {"id": 42, "write_date": "2026-11-27 13:48:02", **values},
    }


_SPECS = (
    EventSpec(
        "production.order.released.v1",
        ProductionOrder,
        "A production order was released to the floor.",
        "production_order",
    ),
    EventSpec(
        "production.completed.v1",
        ProductionCompleted,
        "A production order's output is complete.",
        "production_order",
    ),
    EventSpec(
        "workorder.status.changed.v1",
        WorkOrder,
        "A work order moved to another status on the floor.",
        "work_order",
    ),
    EventSpec(
        "material.consumed.v1",
        MaterialConsumption,
        "Components were consumed by a production order.",
        "material_consumption",
    ),
    EventSpec(
        "inventory.moved.v1",
        InventoryMovement,
        "Stock moved between two locations (an internal transfer, a put-away).",
        "inventory_movement",
    ),
    EventSpec(
        "inventory.received.v1",
        InventoryMovement,
        "Stock was received into the plant (a validated receipt).",
        "inventory_movement",
    ),
    EventSpec("lot.released.v1", LotReleased, "A lot was released for use.", "lot"),
    EventSpec(
        "quality.inspection.completed.v1",
        QualityInspection,
        "A quality inspection was decided.",
        "quality_inspection",
    ),
    EventSpec(
        "quality.hold.placed.v1", QualityHold, "A lot was put on quality hold.", "quality_hold"
    ),
    EventSpec("shipment.confirmed.v1", Shipment, "A shipment left for a customer.", "shipment"),
    EventSpec("asn.received.v1", Asn, "A supplier announced a shipment (ASN).", "asn"),
    EventSpec("maintenance.alert.v1", MaintenanceAlert, "Equipment needs attention.", "equipment"),
    EventSpec(
        "sales.order.confirmed.v1", SalesOrder, "A customer order was confirmed.", "sales_order"
    ),
    EventSpec(
        "purchase.order.confirmed.v1",
        PurchaseOrder,
        "An order to a supplier was confirmed.",
        "purchase_order",
    ),
    EventSpec("invoice.posted.v1", Invoice, "An invoice or a vendor bill was posted.", "invoice"),
    EventSpec(
        "engineering.change.released.v1",
        EngineeringChange,
        "An engineering change was released.",
        "engineering_change",
    ),
    EventSpec(
        "odoo.record.changed.v1",
        OdooRecordChange,
        "An Odoo record changed and no business event type fits it (raw, unmapped).",
        "odoo_record",
    ),
    *(
        EventSpec(
            f"odoo.{canonical}",
            OdooRecordChange,
            f"Odoo: {what}. Odoo's record as read; a flow's mapping makes it {canonical}.",
            entity,
            _odoo_example(model, values),
        )
        for canonical, what, entity, model, values in (
            (
                "production.order.released.v1",
                "a manufacturing order was confirmed",
                "production_order",
                "mrp.production",
                {"name": "WH/MO/00042", "state": "confirmed"},
            ),
            (
                "production.completed.v1",
                "a manufacturing order was marked done",
                "production_order",
                "mrp.production",
                {"name": "WH/MO/00042", "state": "done"},
            ),
            (
                "sales.order.confirmed.v1",
                "a sales order was confirmed",
                "sales_order",
                "sale.order",
                {"name": "S00117", "state": "sale"},
            ),
            (
                "purchase.order.confirmed.v1",
                "a purchase order was confirmed",
                "purchase_order",
                "purchase.order",
                {"name": "P00031", "state": "purchase"},
            ),
            (
                "invoice.posted.v1",
                "an invoice or a vendor bill was posted",
                "invoice",
                "account.move",
                {"name": "INV/2026/00012", "state": "posted", "move_type": "out_invoice"},
            ),
            (
                "shipment.confirmed.v1",
                "a delivery was validated",
                "shipment",
                "stock.picking",
                {"name": "WH/OUT/00007", "state": "done", "picking_type_code": "outgoing"},
            ),
            (
                "inventory.received.v1",
                "a receipt was validated",
                "inventory_movement",
                "stock.picking",
                {"name": "WH/IN/00019", "state": "done", "picking_type_code": "incoming"},
            ),
            (
                "inventory.moved.v1",
                "an internal transfer was validated",
                "inventory_movement",
                "stock.picking",
                {"name": "WH/INT/00004", "state": "done", "picking_type_code": "internal"},
            ),
        )
    ),
)


def _build() -> Mapping[str, EventSpec]:
    specs: dict[str, EventSpec] = {}
    for spec in _SPECS:
        if not _VERSION_RE.search(spec.type) or spec.type in specs:
            raise AssertionError(f"catalog entry {spec.type!r}: unversioned or duplicate")
        specs[spec.type] = spec
    return MappingProxyType(specs)


CATALOG: Mapping[str, EventSpec] = _build()


def schema_url(event_type: str) -> str:
    """The ``$id`` of a type's schema, also the ``dataschema`` its events carry."""
    return f"{SCHEMA_BASE}{event_type}.json"


def event_spec(event_type: str) -> EventSpec:
    spec = CATALOG.get(event_type)
    if spec is None:
        raise UnknownEventType(
            f"{event_type!r} is not in the event catalog; known: {', '.join(sorted(CATALOG))}"
        )
    return spec


def json_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema (Draft 2020-12) of ``data`` for ``event_type``, a fresh copy."""
    spec = event_spec(event_type)
    schema = spec.model.model_json_schema(mode="validation")
    if spec.example is not None:
        schema["examples"] = [dict(spec.example)]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": spec.schema_url,
        **schema,
        "x-forgeline-summary": spec.summary,
        "x-forgeline-event-type": spec.type,
        "x-forgeline-version": spec.version,
    }


def catalog_entries() -> list[dict[str, Any]]:
    """The catalog as a JSON list (what ``GET /v1/catalog`` serves)."""
    return [
        {
            "type": spec.type,
            "version": spec.version,
            "entity": spec.entity,
            "summary": spec.summary,
            "model": spec.model.__name__,
            "schema": spec.schema_url,
        }
        for spec in CATALOG.values()
    ]


def _path(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "$"


def validate(event_type: str, data: Any, *, path: str = "") -> CanonicalModel:
    """``data`` (JSON values, as parsed) as the model of ``event_type``.

    Validation runs in JSON mode, the way the payload travels: timestamps are RFC 3339
    strings, enums their values, and nothing is coerced. Raises :class:`InvalidPayload`
    whose ``errors`` name every bad path (``lines[0].quantity``; ``path`` prefixes them,
    e.g. ``data``), or :class:`UnknownEventType`.
    """
    model = event_spec(event_type).model
    try:
        raw = orjson.dumps(data)
    except TypeError as exc:
        raise InvalidPayload(
            f"{event_type} data is not JSON: {exc}",
            errors=[{"path": path or "$", "message": str(exc)}],
        ) from exc
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            {"path": _path(error["loc"], path), "message": error["msg"]}
            for error in exc.errors(include_url=False)
        ]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        first = errors[0]
        raise InvalidPayload(
            f"{event_type} data: {first['path']}: {first['message']}{more}", errors=errors
        ) from exc
