"""Production: orders, work orders and what the floor reports against them.

The ERP plans and releases production orders; the MES executes them as work orders and
reports consumption and output; the ERP closes them.
"""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ._base import CanonicalModel, Code, Quantity, Timestamp, Uom
from .status import ProductionOrderStatus, WorkOrderStatus

__all__ = ["MaterialConsumption", "ProductionCompleted", "ProductionOrder", "WorkOrder"]


class ProductionOrder(CanonicalModel):
    """An order to make ``quantity`` of ``product`` (Odoo ``mrp.production``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "WH/MO/00042",
                    "product": "FG-1000",
                    "quantity": 120.0,
                    "uom": "EA",
                    "status": "released",
                    "bom": "BOM-FG-1000",
                    "planned_start": "2026-11-27T06:00:00Z",
                    "planned_end": "2026-11-27T14:00:00Z",
                    "origin": "SO/2026/0117",
                }
            ]
        }
    )

    number: Code
    """The order's business key (Odoo ``name``, the MES ``erpOrder``)."""
    product: Code
    """The product code to make."""
    quantity: Quantity
    """The quantity to make, in ``uom``."""
    uom: Uom
    """The unit of the quantities."""
    status: ProductionOrderStatus
    """Where the order is in its life."""
    quantity_produced: Quantity = 0.0
    """Good quantity reported so far, in ``uom``."""
    bom: Code | None = None
    """The BOM code it consumes by."""
    planned_start: Timestamp | None = None
    """When production is planned to start."""
    planned_end: Timestamp | None = None
    """When production is planned to end."""
    origin: str | None = None
    """The document that caused it (a sales order, a reorder rule)."""
    lots: list[Code] = Field(default_factory=list)
    """The lot or serial numbers the output is recorded under."""


class WorkOrder(CanonicalModel):
    """One operation of a production order at a work center (Odoo ``mrp.workorder``, the
    MES work order)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "WO-2026-00042",
                    "production_order": "WH/MO/00042",
                    "product": "FG-1000",
                    "work_center": "WC-ASSY-01",
                    "line": "L1",
                    "status": "running",
                    "previous_status": "setup",
                    "quantity": 120.0,
                    "quantity_good": 40.0,
                    "quantity_scrap": 1.0,
                    "uom": "EA",
                    "changed_at": "2026-11-27T07:12:00Z",
                }
            ]
        }
    )

    number: Code
    """The work order's business key (the MES ``woNumber``)."""
    production_order: Code
    """The production order it executes."""
    product: Code
    """The product code made."""
    work_center: Code
    """The work center it runs at."""
    status: WorkOrderStatus
    """Its status now."""
    quantity: Quantity
    """The quantity to make, in ``uom``."""
    uom: Uom
    """The unit of the quantities."""
    quantity_good: Quantity = 0.0
    """Good output so far, in ``uom``."""
    quantity_scrap: Quantity = 0.0
    """Scrapped output so far, in ``uom``."""
    line: str | None = None
    """The production line."""
    operation: str | None = None
    """The routing operation it performs."""
    previous_status: WorkOrderStatus | None = None
    """Its status before this change."""
    reason_code: str | None = None
    """Why the status changed (a pause or scrap reason), in the source's codes."""
    changed_at: Timestamp | None = None
    """When the status changed."""


class MaterialConsumption(CanonicalModel):
    """Components used by a production order (the MES ``CONSUMPTION`` message)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "production_order": "WH/MO/00042",
                    "work_order": "WO-2026-00042",
                    "component": "RM-2001",
                    "product": "FG-1000",
                    "quantity": 8.0,
                    "uom": "EA",
                    "lot": "L-RM-2001-0007",
                    "work_center": "WC-ASSY-01",
                    "consumed_at": "2026-11-27T07:20:00Z",
                }
            ]
        }
    )

    production_order: Code
    """The production order consuming."""
    component: Code
    """The consumed component's product code."""
    quantity: Quantity
    """The quantity consumed by this report (not a running total), in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    consumed_at: Timestamp
    """When it was consumed."""
    product: Code | None = None
    """The product being made."""
    work_order: Code | None = None
    """The work order consuming, if reported per operation."""
    lot: Code | None = None
    """The component lot consumed."""
    work_center: Code | None = None
    """Where it was consumed."""


class ProductionCompleted(CanonicalModel):
    """A production order's output is complete (the MES ``COMPLETE``, Odoo ``done``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "production_order": "WH/MO/00042",
                    "product": "FG-1000",
                    "quantity_ordered": 120.0,
                    "quantity_good": 118.0,
                    "quantity_scrap": 2.0,
                    "uom": "EA",
                    "lots": ["L-FG-1000-0042"],
                    "work_order": "WO-2026-00042",
                    "work_center": "WC-ASSY-01",
                    "completed_at": "2026-11-27T13:48:00Z",
                }
            ]
        }
    )

    production_order: Code
    """The production order completed."""
    product: Code
    """The product code made."""
    quantity_good: Quantity
    """Total good output, in ``uom``."""
    uom: Uom
    """The unit of the quantities."""
    completed_at: Timestamp
    """When production completed."""
    quantity_scrap: Quantity = 0.0
    """Total scrapped output, in ``uom``."""
    quantity_ordered: Quantity | None = None
    """The quantity the order asked for, in ``uom``."""
    lots: list[Code] = Field(default_factory=list)
    """The lot or serial numbers of the output."""
    work_order: Code | None = None
    """The work order that completed it."""
    work_center: Code | None = None
    """Where it was made."""
