"""Deterministic bulk data for the simulated Odoo: partners, raw materials and manufactured
products with BoMs, stock on hand, and open (draft) sales orders — for benchmarks, paging and
sync tests at scale.

Same arguments, same records: every name, quantity and link comes from ``random.Random(seed)``.
Records are created model by model with one ``create`` of a list (no per-record business
logic beyond what the addons' ``create`` does), so 100k records take seconds, not minutes.

    python -m forgeline.sim.odoo.datagen --records 100000 --version 17
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Sequence
from typing import Any

from .addons import install

__all__ = ["generate", "generate_counts", "main"]

_ADJECTIVES = ("Oak", "Steel", "Birch", "Brass", "Walnut", "Maple", "Alu", "Pine", "Teak", "Zinc")
_NOUNS = ("Bracket", "Panel", "Rail", "Hinge", "Frame", "Bolt", "Shelf", "Leg", "Plate", "Knob")
_GOODS = ("Desk", "Chair", "Cabinet", "Bench", "Stool", "Table", "Rack", "Locker", "Cart", "Bed")
_COMPANY = ("Nordic", "Alpine", "Coastal", "Urban", "Royal", "Summit", "Delta", "Vertex")
_KIND = ("Interiors", "Office", "Furniture", "Living", "Design", "Supplies", "Workshop")
_CITIES = ("Brussels", "Antwerp", "Ghent", "Lyon", "Hamburg", "Utrecht", "Liège", "Lille")
FINISHED_SHARE = 0.3  # the rest are raw materials


def _stocked(version: int) -> dict[str, Any]:
    return {"type": "consu", "is_storable": True} if version >= 18 else {"type": "product"}


def generate(
    env: Any, *, products: int = 100, partners: int = 50, orders: int = 50, seed: int = 0
) -> dict[str, int]:
    """Create the data; returns how many records of each model were created."""
    install(env)
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    version = env.version
    tag = f"G{seed}"

    partner_vals = []
    for i in range(partners):
        name = f"{rng.choice(_COMPANY)} {rng.choice(_KIND)} {tag}-{i:06d}"
        supplier = i % 4 == 0  # a quarter of the partners are vendors
        partner_vals.append(
            {
                "name": name,
                "is_company": True,
                "ref": f"{tag}-P{i:06d}",
                "city": rng.choice(_CITIES),
                "email": f"contact{i}@{tag.lower()}.example.com",
                "customer_rank": 0 if supplier else 1,
                "supplier_rank": 1 if supplier else 0,
            }
        )
    partner_recs = env["res.partner"].create(partner_vals) if partner_vals else env["res.partner"]
    counts["res.partner"] = len(partner_recs)
    customers = [
        p.id for p, v in zip(partner_recs, partner_vals, strict=True) if v["customer_rank"]
    ] or [env.ref("base.main_partner").id]

    n_finished = int(products * FINISHED_SHARE)
    n_raw = products - n_finished
    stocked = _stocked(version)
    product_vals = []
    for i in range(products):
        finished = i >= n_raw
        words = _GOODS if finished else _NOUNS
        product_vals.append(
            {
                "name": f"{rng.choice(_ADJECTIVES)} {rng.choice(words)} {i:06d}",
                "default_code": f"{tag}-{'FG' if finished else 'RM'}{i:06d}",
                "list_price": round(rng.uniform(40, 900) if finished else rng.uniform(1, 60), 2),
                "standard_price": round(
                    rng.uniform(10, 300) if finished else rng.uniform(0.5, 30), 2
                ),
                "sale_ok": finished,
                **stocked,
            }
        )
    product_recs = env["product.product"].create(product_vals) if product_vals else None
    product_ids = product_recs.ids if product_recs is not None else []
    counts["product.template"] = counts["product.product"] = len(product_ids)
    raw_ids, finished_ids = product_ids[:n_raw], product_ids[n_raw:]

    if finished_ids and raw_ids:
        templates = env["product.product"].browse(finished_ids).mapped("product_tmpl_id").ids
        boms = env["mrp.bom"].create(
            [
                {"product_tmpl_id": t, "product_qty": 1.0, "code": f"{tag}-BOM{n:06d}"}
                for n, t in enumerate(templates)
            ]
        )
        counts["mrp.bom"] = len(boms)
        line_vals = []
        for bom_id in boms.ids:
            for component in rng.sample(raw_ids, min(len(raw_ids), rng.randint(2, 4))):
                line_vals.append(
                    {
                        "bom_id": bom_id,
                        "product_id": component,
                        "product_qty": float(rng.randint(1, 8)),
                    }
                )
        counts["mrp.bom.line"] = len(env["mrp.bom.line"].create(line_vals))

    if raw_ids:
        stock = env.ref("stock.stock_location_stock")
        now = env.now()
        quants = (
            env["stock.quant"]
            .sudo()
            .create(
                [
                    {
                        "product_id": pid,
                        "location_id": stock.id,
                        "quantity": float(rng.randint(0, 500)),
                        "in_date": now,
                    }
                    for pid in raw_ids
                ]
            )
        )
        counts["stock.quant"] = len(quants)

    sellable = finished_ids or raw_ids
    if orders and sellable:
        order_recs = env["sale.order"].create(
            [
                {"partner_id": rng.choice(customers), "client_order_ref": f"{tag}-C{i:06d}"}
                for i in range(orders)
            ]
        )
        counts["sale.order"] = len(order_recs)
        prices = {
            pid: vals["list_price"] for pid, vals in zip(product_ids, product_vals, strict=True)
        }
        names = {
            pid: f"[{vals['default_code']}] {vals['name']}"
            for pid, vals in zip(product_ids, product_vals, strict=True)
        }
        unit = env.ref("uom.product_uom_unit").id
        line_vals = []
        for order_id in order_recs.ids:
            for pid in rng.sample(sellable, min(len(sellable), rng.randint(1, 3))):
                line_vals.append(
                    {
                        "order_id": order_id,
                        "product_id": pid,
                        "name": names[pid],
                        "product_uom_qty": float(rng.randint(1, 20)),
                        "price_unit": prices[pid],
                        "product_uom": unit,
                    }
                )
        counts["sale.order.line"] = len(env["sale.order.line"].create(line_vals))
    return counts


def generate_counts(records: int) -> dict[str, int]:
    """Split a record budget into ``generate``'s arguments (≈ ``records`` records in all).

    A product costs about 3.6 records (template, variant, a quant or a BoM with its lines), a
    partner 1 and an order about 3 (with its lines): 1.5 + 1 + 1.5 units cost ~11.35 records.
    """
    unit = max(1, round(records / 11.35))
    return {"products": unit * 3 // 2, "partners": unit, "orders": unit * 3 // 2}


def main(argv: Sequence[str] | None = None) -> int:
    from .service import OdooSimulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--version", type=int, default=17)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sim = OdooSimulator(args.version, demo=False)
    started = time.perf_counter()
    with sim.transaction("demo") as env:
        counts = generate(env, seed=args.seed, **generate_counts(args.records))
    elapsed = time.perf_counter() - started
    total = sum(counts.values())
    for model, count in sorted(counts.items()):
        print(f"{model:20} {count:>8}")
    print(f"{'total':20} {total:>8} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
