"""The synchronous business APIs: what plant applications and partners call instead of Odoo.

Canonical shapes in and out, Odoo behind (``erp``): stock availability read through a short
cache that rides out Odoo's outages (``availability``), purchase requests created once per
Idempotency-Key (``purchasing``, ``idempotency``), customer validation for order entry
(``customers``), and confirmed transactions logged as events for the delivery engine to
apply (``transactions``). ``forgeline.api.business`` serves them over HTTP.
"""

from __future__ import annotations

from .availability import Availability, AvailabilityCache, StockLevel
from .customers import validate_customer
from .erp import Erp, erp_system
from .errors import (
    ErpRefused,
    ErpUnavailable,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    NoErp,
    NoFlowForType,
    RequestInProgress,
    UnknownReference,
)
from .idempotency import IdempotentRequest, Replay, check_key, request_digest
from .purchasing import (
    PurchaseLineIn,
    PurchaseRequestIn,
    create_purchase_request,
    purchase_marker,
)
from .services import BusinessServices, BusinessSettings
from .transactions import TransactionIn, post_transaction, transaction_status

__all__ = [
    "Availability",
    "AvailabilityCache",
    "BusinessServices",
    "BusinessSettings",
    "Erp",
    "ErpRefused",
    "ErpUnavailable",
    "IdempotencyKeyRequired",
    "IdempotencyKeyReused",
    "IdempotentRequest",
    "NoErp",
    "NoFlowForType",
    "PurchaseLineIn",
    "PurchaseRequestIn",
    "Replay",
    "RequestInProgress",
    "StockLevel",
    "TransactionIn",
    "UnknownReference",
    "check_key",
    "create_purchase_request",
    "erp_system",
    "post_transaction",
    "purchase_marker",
    "request_digest",
    "transaction_status",
    "validate_customer",
]
