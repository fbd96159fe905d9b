"""The errors of the synchronous business APIs, each a leaf of ``forgeline.exceptions``:

    InvalidInput
    ├── IdempotencyKeyRequired          400  a write without its Idempotency-Key header
    ├── IdempotencyKeyReused            422  the key came with another request before
    ├── ErpRefused                      422  Odoo's business rules refused the request
    ├── UnknownReference                422  a supplier, SKU or unit the ERP does not have
    └── NoFlowForType                   422  nothing would apply a transaction of this type
    Conflict
    └── RequestInProgress               409  the first request with this key is still running
    BackendUnavailable
    ├── ErpUnavailable                  503  Odoo cannot answer now: retry later
    └── NoErp                           503  the hub has no ERP to ask (a configuration gap)

Their details are written for the caller: Odoo's own messages and the drivers' stay in the
hub's log, since they can name records, hosts and users the caller has no business seeing.
"""

from __future__ import annotations

from ..exceptions import BackendUnavailable, Conflict, InvalidInput

__all__ = [
    "ErpRefused",
    "ErpUnavailable",
    "IdempotencyKeyRequired",
    "IdempotencyKeyReused",
    "NoErp",
    "NoFlowForType",
    "RequestInProgress",
    "UnknownReference",
]


class IdempotencyKeyRequired(InvalidInput):
    problem = "idempotency-key-required"
    title = "Idempotency-Key required"


class IdempotencyKeyReused(InvalidInput):
    status = 422
    problem = "idempotency-key-reused"
    title = "Idempotency-Key reused for another request"


class RequestInProgress(Conflict):
    problem = "request-in-progress"
    title = "A request with this Idempotency-Key is in progress"


class ErpRefused(InvalidInput):
    status = 422
    problem = "erp-refused"
    title = "The ERP refused the request"


class UnknownReference(InvalidInput):
    status = 422
    problem = "unknown-reference"
    title = "The ERP does not know a reference of the request"


class NoFlowForType(InvalidInput):
    status = 422
    problem = "no-flow-for-type"
    title = "Nothing applies this transaction type"


class ErpUnavailable(BackendUnavailable):
    problem = "erp-unavailable"
    title = "ERP unavailable"


class NoErp(BackendUnavailable):
    problem = "no-erp"
    title = "No ERP configured"
