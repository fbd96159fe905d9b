"""Engineering master data: products, bills of materials, routings and engineering changes.

Usually owned by the ERP or a PLM; the shop floor and the warehouse read them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ConfigDict, Field

from ._base import CanonicalModel, Code, Quantity, Timestamp, Uom
from .status import EngineeringChangeStatus

__all__ = [
    "Bom",
    "BomLine",
    "BomType",
    "EngineeringChange",
    "Operation",
    "Product",
    "ProductKind",
    "Routing",
    "Tracking",
]


class ProductKind(StrEnum):
    STOCKED = "stocked"  # Odoo ≤17 type "product", 18+ "consu" with is_storable
    CONSUMABLE = "consumable"
    SERVICE = "service"


class Tracking(StrEnum):
    NONE = "none"
    LOT = "lot"
    SERIAL = "serial"


class Product(CanonicalModel):
    """Something made, bought, stocked or sold."""

    code: Code
    """The canonical product code (Odoo ``default_code``, the MES ``partNo``, the WMS ``sku``)."""
    name: str
    """The product's name."""
    kind: ProductKind = ProductKind.STOCKED
    """Stocked, consumable or service."""
    uom: Uom
    """The unit the product is counted in."""
    tracking: Tracking = Tracking.NONE
    """Whether stock of it is tracked by lot or by serial number."""
    barcode: str | None = None
    """The product's barcode (EAN/GTIN)."""
    revision: str | None = None
    """The engineering revision currently released, if revisions are managed."""


class BomType(StrEnum):
    NORMAL = "normal"
    PHANTOM = "phantom"  # a kit: exploded into its components, never stocked itself
    SUBCONTRACT = "subcontract"


class BomLine(CanonicalModel):
    component: Code
    """The component's product code."""
    quantity: Quantity
    """How much of the component one BOM quantity of the parent needs, in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    operation: str | None = None
    """The routing operation that consumes it, if consumption is per operation."""


class Bom(CanonicalModel):
    """A bill of materials: what ``quantity`` of ``product`` is made from."""

    code: Code
    """The BOM's canonical code."""
    product: Code
    """The product code it makes."""
    quantity: Quantity = 1.0
    """The parent quantity the line quantities are for, in ``uom``."""
    uom: Uom
    """The unit of ``quantity``."""
    type: BomType = BomType.NORMAL
    """Normal, kit (phantom) or subcontracted."""
    revision: str | None = None
    """The engineering revision it belongs to."""
    lines: list[BomLine] = Field(min_length=1)
    """The components, at least one."""


class Operation(CanonicalModel):
    """One step of a routing, done at a work center."""

    sequence: int = Field(ge=0)
    """The operation's position in the routing (ascending)."""
    name: str
    """What is done."""
    work_center: Code
    """The work center it is done at."""
    setup_minutes: float = Field(default=0.0, ge=0)
    """Set-up time per run, in minutes."""
    run_minutes: float = Field(ge=0)
    """Run time per unit of the product, in minutes."""


class Routing(CanonicalModel):
    """How a product is made: the ordered operations (Odoo ``mrp.routing.workcenter``)."""

    product: Code
    """The product code it makes."""
    bom: Code | None = None
    """The BOM it goes with."""
    operations: list[Operation] = Field(min_length=1)
    """The operations, at least one."""


class EngineeringChange(CanonicalModel):
    """An engineering change order: a new revision of products, BOMs or routings."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "ECO-0042",
                    "title": "Replace M4 screw by M5",
                    "status": "released",
                    "products": ["FG-1000"],
                    "boms": ["BOM-FG-1000"],
                    "from_revision": "B",
                    "to_revision": "C",
                    "effective_at": "2026-12-01T00:00:00Z",
                    "released_at": "2026-11-20T09:30:00Z",
                    "reason": "field failures of the M4 fixing",
                }
            ]
        }
    )

    number: Code
    """The change order's business key."""
    title: str
    """What changes, in a line."""
    status: EngineeringChangeStatus
    """Where the change is in its approval."""
    products: list[Code] = Field(min_length=1)
    """The product codes the change applies to."""
    boms: list[Code] = Field(default_factory=list)
    """The BOM codes it revises."""
    from_revision: str | None = None
    """The revision being replaced."""
    to_revision: str | None = None
    """The revision being introduced."""
    effective_at: Timestamp | None = None
    """When the new revision applies to production."""
    released_at: Timestamp | None = None
    """When the change was released."""
    reason: str | None = None
    """Why the change is made."""
