"""The plant of ``forgeline demo``: its products, what Odoo plans, and what each run scripts.

The PLM releases :data:`PRODUCTS` (finished goods and their components, in the plant's unit
codes ``EA``/``KG``); Odoo plans manufacturing orders from :func:`production_plan`; the MES
knows, per part, the line that makes it and its BOM (:func:`mes_part_master`). Which MO's lot
the QMS rejects, which one scraps units and which event the historian asks to get later are
fixed here too, as are Odoo's :data:`CUSTOMERS` (one on credit hold) and the
:data:`SUPPLIER` the business APIs are asked about. Everything here is plain data: the
scenario that uses it is ``run.py``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "COMPONENTS",
    "CUSTOMERS",
    "FAILING_MO",
    "FULL",
    "HICCUP_MO",
    "LINES",
    "PRODUCTS",
    "REPLENISHMENT",
    "SCRAP_MO",
    "SMOKE",
    "SUPPLIER",
    "Component",
    "Customer",
    "Product",
    "Scale",
    "Supplier",
    "mes_part_master",
    "plm_items",
    "production_plan",
]


@dataclass(frozen=True, slots=True)
class Scale:
    """How big the scenario is and how fast it goes."""

    mos: int  # manufacturing orders run through the plant
    pace: float  # seconds between two planned MOs or started work orders (to follow along)
    pause: float  # seconds to linger after each step
    timeout: float  # the whole demo, start to finish
    verbose: bool  # a line per action and a live table, or step lines only
    wait: float  # longest wait for the plant to settle at one step
    cycle: float  # seconds per MES production cycle (three cycles make an MO)
    settle: float  # seconds the WMS and the QMS take to finish a task or decide
    cache_ttl: float  # seconds the hub reuses an availability answer
    erp_deadline: float  # seconds an availability request waits on Odoo before going stale


SMOKE = Scale(
    mos=3, pace=0.0, pause=0.0, timeout=30.0, verbose=False, wait=12.0, cycle=0.05, settle=0.2,
    cache_ttl=0.5, erp_deadline=0.3,
)  # fmt: skip
FULL = Scale(
    mos=6, pace=0.3, pause=1.5, timeout=60.0, verbose=True, wait=15.0, cycle=0.3, settle=0.9,
    cache_ttl=1.0, erp_deadline=0.6,
)  # fmt: skip

Uom = Literal["EA", "KG"]  # the plant's unit codes (Odoo calls them Units and kg)


@dataclass(frozen=True, slots=True)
class Component:
    sku: str
    name: str
    uom: Uom
    per_unit: float  # consumed per unit of the finished product


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    name: str
    uom: Uom
    line: str  # the MES line that makes it
    components: tuple[Component, ...]


#: The MES's lines and their work centers.
LINES = {"L1": "WC-ASSY-1", "L2": "WC-ASSY-2", "L3": "WC-WELD-1", "L4": "WC-MIX-1"}

PRODUCTS: tuple[Product, ...] = (
    Product(
        "FG-PUMP-CP200",
        "Centrifugal pump CP-200",
        "EA",
        "L1",
        (
            Component("CMP-HSG-CP200", "Pump housing CP-200", "EA", 1.0),
            Component("CMP-IMP-D200", "Impeller Ø200 bronze", "EA", 1.0),
        ),
    ),
    Product(
        "FG-VALVE-DN50",
        "Ball valve DN50 PN40",
        "EA",
        "L2",
        (
            Component("CMP-BODY-DN50", "Valve body DN50 1.4408", "EA", 1.0),
            Component("CMP-BALL-DN50", "Ball DN50 SS316", "EA", 1.0),
        ),
    ),
    Product(
        "FG-FRAME-A4",
        "Welded base frame A4",
        "EA",
        "L3",
        (
            Component("RAW-TUBE-40X40", "Steel tube 40x40x2 S235, cut 800 mm", "EA", 4.0),
            Component("RAW-WIRE-G3SI1", "Welding wire G3Si1 1.0mm", "KG", 0.15),
        ),
    ),
    Product(
        "FG-RESIN-PX7",
        "Resin compound PX-7",
        "KG",
        "L4",
        (
            Component("RAW-PX-BASE", "Base resin PX", "KG", 0.92),
            Component("RAW-PX-HARD", "Hardener H3", "KG", 0.08),
        ),
    ),
)
BY_SKU = {product.sku: product for product in PRODUCTS}

#: The MO (by plan index) whose lot the QMS rejects: a hold, no release to the partner.
FAILING_MO = 2
#: The MO whose first consumption the historian asks to get again later (503, Retry-After).
HICCUP_MO = 1
#: The MO that scraps units on the line (it still makes its planned good quantity).
SCRAP_MO = 0
REVISION = "A"


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer in Odoo's books, as order entry asks about it."""

    ref: str  # res.partner's reference: what the business API names it by
    name: str
    credit_limit: float
    invoiced: float  # posted and unpaid: Odoo's "Total Receivable"


@dataclass(frozen=True, slots=True)
class Supplier:
    ref: str
    name: str


#: The customers the portal checks before it takes an order: one in good standing, one over
#: its credit limit (Odoo puts it on credit hold).
CUSTOMERS = (
    Customer("C-NORDPUMP", "Nordpump Service AB", 20_000.0, 4_200.0),
    Customer("C-AQUAFLOW", "Aquaflow Systems Ltd", 5_000.0, 7_350.0),
)
#: Who sells the plant its steel tube and welding wire: the purchase request's supplier.
SUPPLIER = Supplier("S-TUBEX", "Tubex Stahlrohr GmbH")
#: What the line-side application asks the supplier for: (component, quantity in its unit).
REPLENISHMENT = (("RAW-TUBE-40X40", 400.0), ("RAW-WIRE-G3SI1", 25.0))
COMPONENTS = {c.sku: c for p in PRODUCTS for c in p.components}


def production_plan(mos: int, *, seed: int = 42) -> list[tuple[Product, float]]:
    """What Odoo is asked to make, in order: a product and a quantity per MO."""
    rng = random.Random(seed)
    return [
        (PRODUCTS[index % len(PRODUCTS)], float(rng.choice((10, 12, 20, 25, 40, 50))))
        for index in range(mos)
    ]


def plm_items(released_at: str) -> list[dict[str, Any]]:
    """What the PLM posts to ``/hooks/plm``: one released item per product and component.
    ``changeId`` names the release (part and revision), so releasing again is one event."""
    items: dict[str, dict[str, Any]] = {}
    for product in PRODUCTS:
        parts: list[tuple[Product | Component, str]] = [(product, "MAKE")]
        parts += [(component, "BUY") for component in product.components]
        for part, make in parts:
            items[part.sku] = {
                "changeId": f"ECO-{part.sku}-{REVISION}",
                "partNo": part.sku,
                "revision": REVISION,
                "description": part.name,
                "uom": part.uom,
                "makeOrBuy": make,
                "releasedAt": released_at,
                "releasedBy": "plm.release",
            }
    return list(items.values())


def mes_part_master() -> dict[str, dict[str, Any]]:
    """The MES's own part master: per finished product, its line and BOM."""
    return {
        product.sku: {
            "line": product.line,
            "bom": [
                {"partNo": c.sku, "qtyPer": c.per_unit, "uom": c.uom} for c in product.components
            ],
        }
        for product in PRODUCTS
    }
