"""Orders and invoices: what the ERP agrees with customers and suppliers."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ._base import CanonicalModel, Code, Currency, Quantity, Timestamp, Uom
from .status import InvoiceStatus, PaymentStatus, PurchaseOrderStatus, SalesOrderStatus

__all__ = ["Invoice", "OrderLine", "PurchaseOrder", "SalesOrder"]


class OrderLine(CanonicalModel):
    product: Code
    """The product code ordered."""
    quantity: Quantity
    """Ordered quantity, in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    unit_price: float | None = None
    """Price per ``uom``, in the order's currency."""


class SalesOrder(CanonicalModel):
    """A customer order (Odoo ``sale.order``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "SO/2026/0117",
                    "customer": "C-ACME",
                    "status": "confirmed",
                    "locked": False,
                    "currency": "EUR",
                    "amount_total": 12400.0,
                    "customer_reference": "PO-ACME-5531",
                    "confirmed_at": "2026-11-20T11:00:00Z",
                    "lines": [{"product": "FG-1000", "quantity": 100.0, "uom": "EA"}],
                }
            ]
        }
    )

    number: Code
    """The order's business key (Odoo ``name``)."""
    customer: Code
    """The customer's canonical code."""
    status: SalesOrderStatus
    """Where the order is in its life."""
    locked: bool = False
    """Locked against edits (Odoo 16 ``done``; 17+ the ``locked`` field)."""
    currency: Currency | None = None
    """The order's currency."""
    amount_total: float | None = None
    """Total including taxes, in ``currency``."""
    customer_reference: str | None = None
    """The customer's own order number."""
    confirmed_at: Timestamp | None = None
    """When it was confirmed."""
    lines: list[OrderLine] = Field(default_factory=list)
    """What is ordered."""


class PurchaseOrder(CanonicalModel):
    """An order to a supplier (Odoo ``purchase.order``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "P00019",
                    "supplier": "S-STEELCO",
                    "status": "confirmed",
                    "locked": True,
                    "currency": "EUR",
                    "amount_total": 2150.0,
                    "expected_at": "2026-12-02T08:00:00Z",
                    "lines": [
                        {"product": "RM-2001", "quantity": 500.0, "uom": "EA", "unit_price": 4.3}
                    ],
                }
            ]
        }
    )

    number: Code
    """The order's business key (Odoo ``name``)."""
    supplier: Code
    """The supplier's canonical code."""
    status: PurchaseOrderStatus
    """Where the order is in its life."""
    locked: bool = False
    """Locked against edits (Odoo 16–18 ``done``; 19 the ``locked`` field)."""
    currency: Currency | None = None
    """The order's currency."""
    amount_total: float | None = None
    """Total including taxes, in ``currency``."""
    expected_at: Timestamp | None = None
    """When the goods are expected."""
    lines: list[OrderLine] = Field(default_factory=list)
    """What is ordered."""


class Invoice(CanonicalModel):
    """A customer invoice or vendor bill (Odoo ``account.move``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "INV/2026/00093",
                    "partner": "C-ACME",
                    "kind": "out_invoice",
                    "status": "posted",
                    "payment_status": "not_paid",
                    "currency": "EUR",
                    "amount_total": 12400.0,
                    "origin": "SO/2026/0117",
                    "posted_at": "2026-11-28T12:00:00Z",
                }
            ]
        }
    )

    number: Code
    """The invoice number (Odoo ``name``)."""
    partner: Code
    """The customer's or supplier's canonical code."""
    kind: str = Field(pattern=r"^(out|in)_(invoice|refund)$")
    """``out_invoice``/``out_refund`` to customers, ``in_invoice``/``in_refund`` from
    suppliers (Odoo ``move_type``)."""
    status: InvoiceStatus
    """Draft, posted or cancelled."""
    currency: Currency
    """The invoice's currency."""
    amount_total: float
    """Total including taxes, in ``currency``."""
    payment_status: PaymentStatus | None = None
    """How far it is paid, once posted."""
    origin: str | None = None
    """The order it invoices."""
    posted_at: Timestamp | None = None
    """When it was posted."""
    due_at: Timestamp | None = None
    """When payment is due."""
