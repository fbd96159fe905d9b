"""The canonical status vocabularies: one small set of words per entity, the hub's own.

Each source system's words map onto these through :mod:`forgeline.canonical.status_tables`;
consumers subscribe to these words and never learn that Odoo 18 says ``blocked`` where 17
said ``pending`` or that the MES shouts ``COMPLETE``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "AsnStatus",
    "EngineeringChangeStatus",
    "HoldStatus",
    "InvoiceStatus",
    "LotStatus",
    "MaintenanceSeverity",
    "MovementStatus",
    "PaymentStatus",
    "ProductionOrderStatus",
    "PurchaseOrderStatus",
    "QualityResult",
    "SalesOrderStatus",
    "ShipmentStatus",
    "WorkOrderStatus",
]


class ProductionOrderStatus(StrEnum):
    """A production (manufacturing) order, from the ERP's point of view."""

    PLANNED = "planned"  # exists, not yet released to the floor
    RELEASED = "released"  # released to the floor, nothing produced yet
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"  # everything produced, not yet posted/closed in the ERP
    CLOSED = "closed"  # posted: stock and costs booked, the order is locked
    CANCELLED = "cancelled"


class WorkOrderStatus(StrEnum):
    """One operation of a production order at a work center."""

    BLOCKED = "blocked"  # waits for a previous operation or for components
    READY = "ready"
    SETUP = "setup"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    SCRAPPED = "scrapped"  # aborted with its material lost, unlike a cancellation
    CANCELLED = "cancelled"


class MovementStatus(StrEnum):
    """An inventory movement (transfer, put-away, receipt line) between locations."""

    PLANNED = "planned"
    WAITING = "waiting"  # on another operation or on stock availability
    READY = "ready"  # can be worked: stock reserved, task released
    ASSIGNED = "assigned"  # a person or a resource has been given the task
    IN_PROGRESS = "in_progress"
    DONE = "done"
    CANCELLED = "cancelled"


class ShipmentStatus(StrEnum):
    """An outbound shipment to a customer."""

    PLANNED = "planned"
    WAITING = "waiting"
    READY = "ready"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"


class AsnStatus(StrEnum):
    """An advance shipping notice / expected inbound receipt from a supplier."""

    ANNOUNCED = "announced"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class LotStatus(StrEnum):
    """Whether a lot or serial may be used (SAP's stock usage, in plain words)."""

    IN_INSPECTION = "in_inspection"
    RELEASED = "released"
    BLOCKED = "blocked"


class QualityResult(StrEnum):
    """The state of a quality inspection: pending until decided, then its result."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    ON_HOLD = "on_hold"
    CONDITIONAL = "conditional"  # accepted with a deviation


class HoldStatus(StrEnum):
    ACTIVE = "active"
    RELEASED = "released"


class SalesOrderStatus(StrEnum):
    """A customer order. Whether it is locked against edits is the separate ``locked`` flag:
    a locked order is still a confirmed one to every consumer."""

    DRAFT = "draft"
    QUOTED = "quoted"  # the quotation was sent
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class PurchaseOrderStatus(StrEnum):
    """An order to a supplier; ``locked`` travels beside it, as for sales orders."""

    DRAFT = "draft"  # request for quotation
    SENT = "sent"  # RFQ sent to the supplier
    TO_APPROVE = "to_approve"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    POSTED = "posted"
    CANCELLED = "cancelled"


class PaymentStatus(StrEnum):
    """How far a posted invoice is paid."""

    NOT_PAID = "not_paid"
    IN_PAYMENT = "in_payment"
    PARTIAL = "partial"
    PAID = "paid"
    REVERSED = "reversed"
    BLOCKED = "blocked"  # payment withheld (Odoo 18+)
    LEGACY = "legacy"  # paid before the accounting app was installed


class EngineeringChangeStatus(StrEnum):
    DRAFT = "draft"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    RELEASED = "released"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


class MaintenanceSeverity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
