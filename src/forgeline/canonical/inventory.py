"""Inventory: warehouses and locations, lots and serials, and movements between locations."""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict

from ._base import CanonicalModel, Code, Quantity, Timestamp, Uom
from .status import LotStatus, MovementStatus

__all__ = [
    "InventoryMovement",
    "Location",
    "LocationKind",
    "Lot",
    "LotReleased",
    "MovementKind",
    "Warehouse",
]


class Warehouse(CanonicalModel):
    code: Code
    """The warehouse's canonical code."""
    name: str
    """Its name."""
    plant: str | None = None
    """The plant (site) the warehouse belongs to."""


class LocationKind(StrEnum):
    STORAGE = "storage"  # a bin or shelf
    RECEIVING = "receiving"  # a dock
    SHIPPING = "shipping"
    PRODUCTION = "production"  # a line's infeed or outfeed
    QUALITY = "quality"  # quarantine
    VIRTUAL = "virtual"  # suppliers, customers, scrap, inventory loss


class Location(CanonicalModel):
    """A place stock can be: ``A-01-1`` (aisle A, bay 01, level 1), ``WH/Stock``, a dock."""

    code: Code
    """The location's canonical code."""
    warehouse: Code | None = None
    """The warehouse it is in."""
    kind: LocationKind = LocationKind.STORAGE
    """What the location is used for."""


class Lot(CanonicalModel):
    """A lot or serial number of a product (Odoo ``stock.lot``, the QMS lot)."""

    number: Code
    """The lot or serial number."""
    product: Code
    """The product code of the lot."""
    status: LotStatus
    """Whether it may be used."""
    quantity: Quantity | None = None
    """The lot's size, in ``uom``."""
    uom: Uom | None = None
    """The unit of ``quantity``."""
    produced_at: Timestamp | None = None
    """When it was made or received."""
    expires_at: Timestamp | None = None
    """When it may no longer be used."""
    supplier_lot: str | None = None
    """The supplier's own lot number, for bought material."""


class MovementKind(StrEnum):
    RECEIPT = "receipt"
    PUTAWAY = "putaway"
    INTERNAL = "internal"
    PICK = "pick"
    DELIVERY = "delivery"
    PRODUCTION = "production"  # into or out of a production location
    ADJUSTMENT = "adjustment"


class InventoryMovement(CanonicalModel):
    """A quantity of a product moved between two locations (an Odoo transfer, a WMS
    put-away task)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "reference": "PA-000017",
                    "kind": "putaway",
                    "product": "FG-1000",
                    "quantity": 118.0,
                    "uom": "EA",
                    "lot": "L-FG-1000-0042",
                    "from_location": "L1-OUT",
                    "to_location": "A-01-1",
                    "status": "done",
                    "origin": "WH/MO/00042",
                    "moved_at": "2026-11-27T14:05:00Z",
                }
            ]
        }
    )

    reference: Code
    """The movement's business key (Odoo picking ``name``, the WMS ``taskId``)."""
    kind: MovementKind
    """What sort of movement it is."""
    product: Code
    """The product code moved."""
    quantity: Quantity
    """The quantity moved (or to move, while not done), in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    from_location: Code
    """The source location code."""
    to_location: Code
    """The destination location code (a bin for a put-away)."""
    status: MovementStatus
    """Where the movement is in its life."""
    lot: Code | None = None
    """The lot or serial moved, for tracked products."""
    origin: str | None = None
    """The document that caused it (a production, purchase or sales order)."""
    moved_at: Timestamp | None = None
    """When it was done."""


class LotReleased(CanonicalModel):
    """Quality released a lot for use (the QMS ``LOT_RELEASED``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "lot": "L-FG-1000-0042",
                    "product": "FG-1000",
                    "status": "released",
                    "released_at": "2026-11-27T14:30:00Z",
                    "released_by": "QA-ANNA",
                    "comment": "MRB: use as is",
                }
            ]
        }
    )

    lot: Code
    """The lot number released."""
    product: Code
    """The product code of the lot."""
    status: LotStatus
    """The lot's status after the release: ``released``, or still ``in_inspection`` when
    another inspection is open."""
    released_at: Timestamp
    """When quality released it."""
    released_by: str | None = None
    """Who released it."""
    comment: str | None = None
    """The disposition, required by the QMS when a rejected lot is released."""
