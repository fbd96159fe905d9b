"""The canonical model: the hub's own words for manufacturing entities, statuses and events.

Systems disagree on shapes, ids and what "released" or "completed" means; mappings translate
each into this model on the route stage, and consumers only ever see it.

- Entities (typed, strict pydantic models): :mod:`.engineering` (product, BOM, routing,
  engineering change), :mod:`.production` (production order, work order, consumption),
  :mod:`.inventory` (warehouse, location, lot, movement), :mod:`.quality` (inspection,
  hold), :mod:`.logistics` (shipment, ASN), :mod:`.parties` (supplier, customer),
  :mod:`.commerce` (sales and purchase orders, invoices), :mod:`.maintenance`.
- Statuses: :mod:`.status` (the vocabularies) and :mod:`.status_tables` (Odoo 16–19, MES,
  WMS and QMS words mapped onto them; :func:`lookup_status`).
- Events: :mod:`.catalog` (type → model, version, JSON Schema, :func:`validate`) and
  :func:`asyncapi` (the catalog as an AsyncAPI 3.0 document).
"""

from __future__ import annotations

from ._base import (
    CanonicalModel,
    InvalidPayload,
    NoStatusTable,
    UnknownEventType,
    UnknownStatus,
)
from .asyncapi import asyncapi
from .catalog import (
    CATALOG,
    EventSpec,
    OdooRecordChange,
    catalog_entries,
    event_spec,
    json_schema,
    schema_url,
    validate,
)
from .commerce import Invoice, OrderLine, PurchaseOrder, SalesOrder
from .engineering import Bom, BomLine, EngineeringChange, Operation, Product, Routing
from .inventory import InventoryMovement, Location, Lot, LotReleased, Warehouse
from .logistics import Asn, AsnLine, Shipment, ShipmentLine
from .maintenance import Equipment, MaintenanceAlert
from .parties import Address, Customer, Supplier
from .production import MaterialConsumption, ProductionCompleted, ProductionOrder, WorkOrder
from .quality import QualityHold, QualityInspection
from .status import (
    AsnStatus,
    EngineeringChangeStatus,
    HoldStatus,
    InvoiceStatus,
    LotStatus,
    MaintenanceSeverity,
    MovementStatus,
    PaymentStatus,
    ProductionOrderStatus,
    PurchaseOrderStatus,
    QualityResult,
    SalesOrderStatus,
    ShipmentStatus,
    WorkOrderStatus,
)
from .status_tables import STATUS_TABLES, lookup_status, odoo_locked

__all__ = [
    "CATALOG",
    "STATUS_TABLES",
    "Address",
    "Asn",
    "AsnLine",
    "AsnStatus",
    "Bom",
    "BomLine",
    "CanonicalModel",
    "Customer",
    "EngineeringChange",
    "EngineeringChangeStatus",
    "Equipment",
    "EventSpec",
    "HoldStatus",
    "InvalidPayload",
    "InventoryMovement",
    "Invoice",
    "InvoiceStatus",
    "Location",
    "Lot",
    "LotReleased",
    "LotStatus",
    "MaintenanceAlert",
    "MaintenanceSeverity",
    "MaterialConsumption",
    "MovementStatus",
    "NoStatusTable",
    "OdooRecordChange",
    "Operation",
    "OrderLine",
    "PaymentStatus",
    "Product",
    "ProductionCompleted",
    "ProductionOrder",
    "ProductionOrderStatus",
    "PurchaseOrder",
    "PurchaseOrderStatus",
    "QualityHold",
    "QualityInspection",
    "QualityResult",
    "Routing",
    "SalesOrder",
    "SalesOrderStatus",
    "Shipment",
    "ShipmentLine",
    "ShipmentStatus",
    "Supplier",
    "UnknownEventType",
    "UnknownStatus",
    "Warehouse",
    "WorkOrder",
    "WorkOrderStatus",
    "asyncapi",
    "catalog_entries",
    "event_spec",
    "json_schema",
    "lookup_status",
    "odoo_locked",
    "schema_url",
    "validate",
]
