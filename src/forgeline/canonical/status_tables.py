"""Status mapping tables: each system's words → the canonical vocabulary, as data.

``STATUS_TABLES[(system, entity, version)]`` is ``{their word: canonical status}``. Odoo's
tables exist per major version (16–19), because its words change between versions:
``mrp.workorder`` folded ``pending``/``waiting`` into ``blocked`` in 18, ``sale.order`` lost
``done`` for a ``locked`` flag in 17, ``purchase.order`` did the same in 19 and
``account.move.payment_state`` gained ``blocked`` in 18. The simulated MES, WMS and QMS have
one table each, under version ``None``. :func:`lookup_status` is what mappings call; an
unknown word fails loudly with the word, the system and the entity, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from ._base import NoStatusTable, UnknownStatus
from .status import (
    AsnStatus,
    InvoiceStatus,
    LotStatus,
    MovementStatus,
    PaymentStatus,
    ProductionOrderStatus,
    PurchaseOrderStatus,
    QualityResult,
    SalesOrderStatus,
    ShipmentStatus,
    WorkOrderStatus,
)

__all__ = [
    "ODOO_LOCKED_STATES",
    "ODOO_MODELS",
    "ODOO_VERSIONS",
    "STATUS_TABLES",
    "TableKey",
    "lookup_status",
    "odoo_locked",
]

TableKey = tuple[str, str, int | None]
ODOO_VERSIONS = (16, 17, 18, 19)

# Which Odoo model and field each entity's table reads (for error messages and mappings).
# stock.picking serves three entities: its picking_type_code says which one a record is.
ODOO_MODELS: Mapping[str, str] = MappingProxyType(
    {
        "production_order": "mrp.production.state",
        "work_order": "mrp.workorder.state",
        "inventory_movement": "stock.picking.state",
        "shipment": "stock.picking.state",
        "asn": "stock.picking.state",
        "sales_order": "sale.order.state",
        "purchase_order": "purchase.order.state",
        "invoice": "account.move.state",
        "invoice_payment": "account.move.payment_state",
    }
)

_P, _W, _M = ProductionOrderStatus, WorkOrderStatus, MovementStatus

# Odoo's "done" here means posted and locked, which is more than the floor's "complete":
# to_close (everything produced, not yet marked done) is the canonical "completed".
_ODOO_PRODUCTION = {
    "draft": _P.PLANNED,
    "confirmed": _P.RELEASED,
    "progress": _P.IN_PROGRESS,
    "to_close": _P.COMPLETED,
    "done": _P.CLOSED,
    "cancel": _P.CANCELLED,
}
_ODOO_WORKORDER_16 = {
    "pending": _W.BLOCKED,  # waiting for another work order
    "waiting": _W.BLOCKED,  # waiting for components
    "ready": _W.READY,
    "progress": _W.RUNNING,
    "done": _W.COMPLETED,
    "cancel": _W.CANCELLED,
}
_ODOO_WORKORDER_18 = {
    "blocked": _W.BLOCKED,
    "ready": _W.READY,
    "progress": _W.RUNNING,
    "done": _W.COMPLETED,
    "cancel": _W.CANCELLED,
}
# Odoo's "assigned" means stock is reserved (the UI says "Ready"), not given to a person.
_ODOO_PICKING = {
    "draft": _M.PLANNED,
    "waiting": _M.WAITING,
    "confirmed": _M.WAITING,
    "assigned": _M.READY,
    "done": _M.DONE,
    "cancel": _M.CANCELLED,
}
_ODOO_SHIPMENT = {
    "draft": ShipmentStatus.PLANNED,
    "waiting": ShipmentStatus.WAITING,
    "confirmed": ShipmentStatus.WAITING,
    "assigned": ShipmentStatus.READY,
    "done": ShipmentStatus.SHIPPED,  # Odoo does not know when the customer got it
    "cancel": ShipmentStatus.CANCELLED,
}
_ODOO_RECEIPT = {
    "draft": AsnStatus.ANNOUNCED,
    "waiting": AsnStatus.ANNOUNCED,
    "confirmed": AsnStatus.ANNOUNCED,
    "assigned": AsnStatus.ANNOUNCED,
    "done": AsnStatus.RECEIVED,
    "cancel": AsnStatus.CANCELLED,
}
_ODOO_SALE_17 = {
    "draft": SalesOrderStatus.DRAFT,
    "sent": SalesOrderStatus.QUOTED,
    "sale": SalesOrderStatus.CONFIRMED,
    "cancel": SalesOrderStatus.CANCELLED,
}
# 16's "done" (shown as "Locked") is a confirmed order that is locked: see odoo_locked().
_ODOO_SALE_16 = {**_ODOO_SALE_17, "done": SalesOrderStatus.CONFIRMED}
_ODOO_PURCHASE_19 = {
    "draft": PurchaseOrderStatus.DRAFT,
    "sent": PurchaseOrderStatus.SENT,
    "to approve": PurchaseOrderStatus.TO_APPROVE,
    "purchase": PurchaseOrderStatus.CONFIRMED,
    "cancel": PurchaseOrderStatus.CANCELLED,
}
_ODOO_PURCHASE_16 = {**_ODOO_PURCHASE_19, "done": PurchaseOrderStatus.CONFIRMED}
_ODOO_INVOICE = {
    "draft": InvoiceStatus.DRAFT,
    "posted": InvoiceStatus.POSTED,
    "cancel": InvoiceStatus.CANCELLED,
}
_ODOO_PAYMENT_16 = {
    "not_paid": PaymentStatus.NOT_PAID,
    "in_payment": PaymentStatus.IN_PAYMENT,
    "paid": PaymentStatus.PAID,
    "partial": PaymentStatus.PARTIAL,
    "reversed": PaymentStatus.REVERSED,
    "invoicing_legacy": PaymentStatus.LEGACY,
}
_ODOO_PAYMENT_18 = {**_ODOO_PAYMENT_16, "blocked": PaymentStatus.BLOCKED}

# The Odoo states that mean "locked" by themselves; from 17 (sales) and 19 (purchases) the
# lock is the record's boolean `locked` field instead.
ODOO_LOCKED_STATES: Mapping[tuple[str, int], frozenset[str]] = MappingProxyType(
    {
        **{("sales_order", v): frozenset({"done"}) for v in (16,)},
        **{("purchase_order", v): frozenset({"done"}) for v in (16, 17, 18)},
    }
)


def _odoo(version: int) -> dict[TableKey, dict[str, StrEnum]]:
    return {
        ("odoo", "production_order", version): dict(_ODOO_PRODUCTION),
        ("odoo", "work_order", version): dict(
            _ODOO_WORKORDER_16 if version < 18 else _ODOO_WORKORDER_18
        ),
        ("odoo", "inventory_movement", version): dict(_ODOO_PICKING),
        ("odoo", "shipment", version): dict(_ODOO_SHIPMENT),
        ("odoo", "asn", version): dict(_ODOO_RECEIPT),
        ("odoo", "sales_order", version): dict(_ODOO_SALE_16 if version < 17 else _ODOO_SALE_17),
        ("odoo", "purchase_order", version): dict(
            _ODOO_PURCHASE_16 if version < 19 else _ODOO_PURCHASE_19
        ),
        ("odoo", "invoice", version): dict(_ODOO_INVOICE),
        ("odoo", "invoice_payment", version): dict(
            _ODOO_PAYMENT_16 if version < 18 else _ODOO_PAYMENT_18
        ),
    }


# The simulated plant systems (forgeline.sim): one vocabulary each, no versions.
_SIMULATED: dict[TableKey, dict[str, StrEnum]] = {
    ("mes", "work_order", None): {
        "QUEUED": _W.READY,
        "SETUP": _W.SETUP,
        "RUNNING": _W.RUNNING,
        "PAUSED": _W.PAUSED,
        "COMPLETE": _W.COMPLETED,
        "SCRAPPED": _W.SCRAPPED,
    },
    # The same MES words seen from the ERP order the MES work order executes.
    ("mes", "production_order", None): {
        "QUEUED": _P.RELEASED,
        "SETUP": _P.IN_PROGRESS,
        "RUNNING": _P.IN_PROGRESS,
        "PAUSED": _P.IN_PROGRESS,
        "COMPLETE": _P.COMPLETED,
        "SCRAPPED": _P.CANCELLED,
    },
    ("wms", "inventory_movement", None): {
        "NEW": _M.READY,
        "ASSIGNED": _M.ASSIGNED,
        "IN_PROGRESS": _M.IN_PROGRESS,
        "DONE": _M.DONE,
        "CANCELLED": _M.CANCELLED,
    },
    # An inspection's words: its status while OPEN, its result once CLOSED.
    ("qms", "quality_inspection", None): {
        "OPEN": QualityResult.PENDING,
        "ACCEPTED": QualityResult.ACCEPTED,
        "REJECTED": QualityResult.REJECTED,
        "ON_HOLD": QualityResult.ON_HOLD,
        "CONDITIONAL": QualityResult.CONDITIONAL,
    },
    ("qms", "lot", None): {
        "QUALITY_INSPECTION": LotStatus.IN_INSPECTION,
        "UNRESTRICTED": LotStatus.RELEASED,
        "BLOCKED": LotStatus.BLOCKED,
    },
}


def _build() -> Mapping[TableKey, Mapping[str, StrEnum]]:
    tables: dict[TableKey, dict[str, StrEnum]] = dict(_SIMULATED)
    for version in ODOO_VERSIONS:
        tables.update(_odoo(version))
    return MappingProxyType({key: MappingProxyType(table) for key, table in tables.items()})


STATUS_TABLES: Mapping[TableKey, Mapping[str, StrEnum]] = _build()


def _describe(system: str, entity: str, version: int | None) -> str:
    where = f"{system} {version}" if version is not None else system
    field = f" ({ODOO_MODELS[entity]})" if system == "odoo" and entity in ODOO_MODELS else ""
    return f"{where} {entity}{field}"


def lookup_status(system: str, entity: str, word: str, version: int | None = None) -> StrEnum:
    """The canonical status for ``word`` as ``system`` uses it for ``entity``.

    ``version`` is the system's major version; Odoo needs it, the simulated systems ignore it.
    Raises :class:`UnknownStatus` for a word the table does not hold and
    :class:`NoStatusTable` when no table fits the system, entity and version.
    """
    table = STATUS_TABLES.get((system, entity, version))
    if table is None and version is not None:
        table = STATUS_TABLES.get((system, entity, None))  # unversioned systems
    if table is None:
        versions = sorted(
            str(v) for s, e, v in STATUS_TABLES if (s, e) == (system, entity) and v is not None
        )
        if versions:
            raise NoStatusTable(
                f"{system} {entity} statuses differ by version: give one of "
                f"{', '.join(versions)}, not {version!r}"
            )
        known = sorted({e for s, e, _ in STATUS_TABLES if s == system})
        systems = sorted({s for s, _, _ in STATUS_TABLES})
        hint = (
            f"; its entities: {', '.join(known)}"
            if known
            else f"; known systems: {', '.join(systems)}"
        )
        raise NoStatusTable(f"no status table for system {system!r} entity {entity!r}{hint}")
    found = table.get(word) if isinstance(word, str) else None
    if found is None:
        where = _describe(
            system, entity, version if (system, entity, None) not in STATUS_TABLES else None
        )
        raise UnknownStatus(
            f"unknown status {word!r} from {where}; known: {', '.join(sorted(table))}",
            errors=[{"path": "status", "message": f"{word!r} is not a {where} status"}],
            word=str(word),
            system=system,
            entity=entity,
            version=version,
        )
    return found


def odoo_locked(entity: str, version: int, state: str, locked: bool = False) -> bool:
    """Whether an Odoo sales or purchase order is locked against edits: a state before
    the ``locked`` field existed, the field after."""
    return locked or state in ODOO_LOCKED_STATES.get((entity, version), frozenset())
