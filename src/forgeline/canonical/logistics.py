"""Logistics: outbound shipments to customers and advance shipping notices from suppliers."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ._base import CanonicalModel, Code, Quantity, Timestamp, Uom
from .status import AsnStatus, ShipmentStatus

__all__ = ["Asn", "AsnLine", "Shipment", "ShipmentLine"]


class ShipmentLine(CanonicalModel):
    product: Code
    """The product code shipped."""
    quantity: Quantity
    """Shipped quantity, in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    lot: Code | None = None
    """The lot or serial shipped, for tracked products."""


class Shipment(CanonicalModel):
    """Goods leaving the plant for a customer (an Odoo outgoing picking, a TMS load)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "WH/OUT/00031",
                    "customer": "C-ACME",
                    "status": "shipped",
                    "sales_order": "SO/2026/0117",
                    "carrier": "DHL",
                    "tracking_number": "JD0146000031",
                    "shipped_at": "2026-11-28T10:00:00Z",
                    "lines": [
                        {
                            "product": "FG-1000",
                            "quantity": 100.0,
                            "uom": "EA",
                            "lot": "L-FG-1000-0042",
                        }
                    ],
                }
            ]
        }
    )

    number: Code
    """The shipment's business key (Odoo picking ``name``, a TMS load id)."""
    customer: Code
    """The customer's canonical code."""
    status: ShipmentStatus
    """Where the shipment is in its life."""
    lines: list[ShipmentLine] = Field(min_length=1)
    """What is shipped, at least one line."""
    sales_order: Code | None = None
    """The sales order shipped against."""
    carrier: str | None = None
    """The carrier's name or code."""
    tracking_number: str | None = None
    """The carrier's tracking number."""
    ship_from: Code | None = None
    """The warehouse it leaves from."""
    shipped_at: Timestamp | None = None
    """When it left the plant."""
    delivered_at: Timestamp | None = None
    """When the customer received it, if a carrier reported it."""


class AsnLine(CanonicalModel):
    product: Code
    """The product code (the plant's, not the supplier's)."""
    quantity: Quantity
    """Announced quantity, in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    supplier_lot: str | None = None
    """The supplier's lot number."""
    purchase_order_line: str | None = None
    """The purchase order line this delivers against."""


class Asn(CanonicalModel):
    """An advance shipping notice: what a supplier says is on its way (EDI DESADV, an Odoo
    incoming picking)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "ASN-SUP7-000123",
                    "supplier": "S-STEELCO",
                    "status": "announced",
                    "purchase_order": "P00019",
                    "expected_at": "2026-12-02T08:00:00Z",
                    "ship_to": "WH",
                    "lines": [
                        {
                            "product": "RM-2001",
                            "quantity": 500.0,
                            "uom": "EA",
                            "supplier_lot": "SC-77812",
                        }
                    ],
                }
            ]
        }
    )

    number: Code
    """The supplier's ASN number."""
    supplier: Code
    """The supplier's canonical code."""
    status: AsnStatus
    """Where the inbound shipment is."""
    lines: list[AsnLine] = Field(min_length=1)
    """What is announced, at least one line."""
    purchase_order: Code | None = None
    """The purchase order it delivers against."""
    ship_to: Code | None = None
    """The receiving warehouse."""
    expected_at: Timestamp | None = None
    """When it is expected at the dock."""
    received_at: Timestamp | None = None
    """When it was received."""
    carrier: str | None = None
    """The carrier's name or code."""
    tracking_number: str | None = None
    """The carrier's tracking number."""
