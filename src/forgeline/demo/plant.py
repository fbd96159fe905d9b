"""The plant of ``forgeline demo``: its products, what Odoo plans, and what the MES reports.

Odoo (the plant's ERP) is seeded with :data:`PRODUCTS` and plans manufacturing orders from
:func:`production_plan`; once the MES has learnt a released MO from the hub, it reports its
work on it as :func:`plant_schedule` lists: materials consumed, production completed,
inspection, then a lot release (or, for one MO, a quality hold). Everything here is plain data:
the scenario that sends it is ``run.py``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from ..envelope import Event

__all__ = [
    "FAILING_MO",
    "FULL",
    "HICCUP_MO",
    "PRODUCTS",
    "SMOKE",
    "Component",
    "Order",
    "Product",
    "Publish",
    "Scale",
    "plant_schedule",
    "production_plan",
]


@dataclass(frozen=True, slots=True)
class Scale:
    """How big the scenario is and how fast it goes."""

    mos: int  # manufacturing orders run through the plant
    pace: float  # seconds between two publishes (so that a person can follow)
    pause: float  # seconds to linger after each step
    timeout: float  # the whole demo, start to finish
    verbose: bool  # a line per publish and a live table, or step lines only
    wait: float  # longest wait for deliveries to settle at one step


SMOKE = Scale(mos=3, pace=0.0, pause=0.0, timeout=30.0, verbose=False, wait=12.0)
FULL = Scale(mos=6, pace=0.35, pause=2.0, timeout=60.0, verbose=True, wait=15.0)

Mode = Literal["structured", "batch", "json", "binary"]
Uom = Literal["Units", "kg"]  # the units of measure the simulated Odoo has


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
    work_center: str
    line: str
    components: tuple[Component, ...]


PRODUCTS: tuple[Product, ...] = (
    Product(
        "FG-PUMP-CP200",
        "Centrifugal pump CP-200",
        "Units",
        "WC-ASSY-1",
        "line-1",
        (
            Component("CMP-HSG-CP200", "Pump housing CP-200", "Units", 1.0),
            Component("CMP-IMP-D200", "Impeller Ø200 bronze", "Units", 1.0),
        ),
    ),
    Product(
        "FG-VALVE-DN50",
        "Ball valve DN50 PN40",
        "Units",
        "WC-ASSY-2",
        "line-2",
        (
            Component("CMP-BODY-DN50", "Valve body DN50 1.4408", "Units", 1.0),
            Component("CMP-BALL-DN50", "Ball DN50 SS316", "Units", 1.0),
        ),
    ),
    Product(
        "FG-FRAME-A4",
        "Welded base frame A4",
        "Units",
        "WC-WELD-1",
        "line-3",
        (
            # Odoo's demo database has no metre: the tube is stocked as cut pieces.
            Component("RAW-TUBE-40X40", "Steel tube 40x40x2 S235, cut 800 mm", "Units", 4.0),
            Component("RAW-WIRE-G3SI1", "Welding wire G3Si1 1.0mm", "kg", 0.15),
        ),
    ),
    Product(
        "FG-RESIN-PX7",
        "Resin compound PX-7",
        "kg",
        "WC-MIX-1",
        "line-4",
        (
            Component("RAW-PX-BASE", "Base resin PX", "kg", 0.92),
            Component("RAW-PX-HARD", "Hardener H3", "kg", 0.08),
        ),
    ),
)
_BY_SKU = {product.sku: product for product in PRODUCTS}
_CUSTOMERS = ("ACME Hydraulics GmbH", "Nordic Pumps AB", "Iberflow S.L.", "Vistula Valves")
#: The MO (by plan index) whose inspection fails: one unit scrapped, a quality hold, no release.
FAILING_MO = 2
#: The MO whose first consumption the historian refuses once (502): its later events wait.
HICCUP_MO = 1
MES_QC = "mes://plant-1/qc-station"


def production_plan(mos: int, *, seed: int = 42) -> list[tuple[Product, float]]:
    """What Odoo is asked to make, in order: a product and a quantity per MO."""
    rng = random.Random(seed)
    return [
        (PRODUCTS[index % len(PRODUCTS)], float(rng.choice((10, 12, 20, 25, 40, 50))))
        for index in range(mos)
    ]


@dataclass(frozen=True, slots=True)
class Order:
    """One manufacturing order as the MES learnt it from Odoo's release."""

    mo: str  # Odoo's name: WH/MO/00003
    product: Product
    quantity: float  # planned, in the product's unit

    @classmethod
    def from_release(cls, event: dict[str, Any]) -> Order:
        """From a ``production.order.released.v1`` the hub's Odoo poller published: the
        record's ``product_id`` reads ``[id, "[SKU] Name"]``, and the SKU is the MES's key."""
        record = event["data"]["record"]
        found = re.match(r"\[([^\]]+)\]", str(record["product_id"][1]))
        if found is None or found.group(1) not in _BY_SKU:
            raise ValueError(f"{record['name']}: {record['product_id']!r} is not a plant product")
        return cls(str(record["name"]), _BY_SKU[found.group(1)], float(record["product_qty"]))


@dataclass(frozen=True, slots=True)
class Publish:
    """One POST /v1/events: a single event or a batch, in one of the accepted encodings."""

    mo: str
    label: str
    mode: Mode
    events: tuple[dict[str, Any], ...]
    duplicate: bool = False  # resends events already published (same source and id)


def _event(type: str, source: str, subject: str, data: dict[str, Any], mo: str) -> dict[str, Any]:
    return Event.new(type, source, data, subject=subject, correlationid=mo).to_dict()


def produced(index: int, order: Order) -> float:
    """What the MES reports as made: the failing MO scraps one unit of its plan."""
    return order.quantity - (1.0 if index == FAILING_MO else 0.0)


def _mo_steps(index: int, order: Order, rng: random.Random) -> list[Publish]:
    """What the MES publishes about one manufacturing order, in order."""
    mo, product, quantity = order.mo, order.product, order.quantity
    number = int(re.sub(r"\D", "", mo) or index)
    lot = f"LOT-{datetime.now(UTC):%y%m}-{number:05d}"
    mes = f"mes://plant-1/{product.line}"
    sku = {"sku": product.sku, "name": product.name}
    consumed = tuple(
        _event(
            "material.consumed.v1",
            mes,
            mo,
            {
                "mo": mo,
                "component": {"sku": c.sku, "name": c.name},
                "quantity": round(c.per_unit * quantity, 3),
                "uom": c.uom,
                "lot": f"{c.sku.split('-')[0]}-{rng.randint(1000, 9999)}",
                "work_center": product.work_center,
            },
            mo,
        )
        for c in product.components
    )
    good = produced(index, order)
    completed = _event(
        "production.completed.v1",
        mes,
        mo,
        {
            "mo": mo,
            "product": sku,
            "quantity": good,
            "scrap": quantity - good,
            "uom": product.uom,
            "work_center": product.work_center,
            "lot": lot,
        },
        mo,
    )
    passed = index != FAILING_MO
    inspection = _event(
        "quality.inspection.completed.v1",
        MES_QC,
        mo,
        {
            "mo": mo,
            "lot": lot,
            "product": {"sku": product.sku},
            "plan": f"QP-{product.sku}",
            "result": "pass" if passed else "fail",
            "sample_size": 5,
            "defects": 0 if passed else 2,
            "inspector": rng.choice(("a.keller", "m.rossi", "j.nowak")),
        },
        mo,
    )
    steps = [
        Publish(mo, "materials consumed", "batch", consumed),
        Publish(mo, "production completed", "json", (completed,)),
    ]
    if passed:
        steps.append(Publish(mo, "inspection passed", "structured", (inspection,)))
        release = _event(
            "lot.released.v1",
            MES_QC,
            lot,
            {
                "lot": lot,
                "mo": mo,
                "product": sku,
                "quantity": good,
                "uom": product.uom,
                "customer": _CUSTOMERS[index % len(_CUSTOMERS)],
                "certificate": f"CoC-{number:05d}",
            },
            mo,
        )
        steps.append(Publish(mo, "lot released", "binary", (release,)))
    else:
        hold = _event(
            "quality.hold.placed.v1",
            MES_QC,
            mo,
            {
                "mo": mo,
                "lot": lot,
                "reason": "2 of 5 samples out of tolerance",
                "disposition": "MRB",
            },
            mo,
        )
        steps.append(Publish(mo, "inspection failed → hold", "batch", (inspection, hold)))
    return steps


def plant_schedule(orders: list[Order], *, seed: int = 42) -> list[Publish]:
    """Every publish of the MES, in order: the MOs overlap (MO n+1 consumes while MO n
    completes), the MES resends the first MO's consumption batch (an at-least-once publisher
    after a timeout), and reports a machine stop that nobody subscribed to."""
    rng = random.Random(seed)
    per_mo = [_mo_steps(index, order, rng) for index, order in enumerate(orders)]
    schedule: list[Publish] = []
    rounds = max((len(steps) + index for index, steps in enumerate(per_mo)), default=0)
    for round_ in range(rounds):
        for index, steps in enumerate(per_mo):
            if 0 <= round_ - index < len(steps):
                schedule.append(steps[round_ - index])
        if round_ == 1 and per_mo:
            first = per_mo[0][0]
            schedule.append(
                Publish(first.mo, f"{first.label} (resent)", first.mode, first.events, True)
            )
        if round_ == 2:
            downtime = _event(
                "machine.downtime.v1",
                "mes://plant-1/line-2",
                "WC-ASSY-2",
                {"work_center": "WC-ASSY-2", "reason": "tool change", "minutes": 12},
                "WC-ASSY-2",
            )
            schedule.append(Publish("WC-ASSY-2", "machine downtime", "json", (downtime,)))
    return schedule
