"""The plant's Odoo in ``forgeline demo``: a simulated Odoo 19, seeded and driven through
Forgeline's own connector over HTTP (JSON-2 with an API key), and read back for the checks.

Seeding is idempotent: every product, bill of materials and the webhook automation is an
``upsert`` by external id (``forgeline.plant_*``), and stock is an inventory *count* (an
absolute quantity). A data directory kept from an earlier run, whose Odoo database already
holds the plant, ends up with the same records, not a second set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..connectors.odoo import OdooClient, resolve, upsert
from ..sim.odoo.faults import LoseAnswers
from .api import DemoError
from .plant import PRODUCTS, Component, Product

__all__ = ["MO_FIELDS", "OdooPlant", "seed_plant"]

#: Components counted on hand before production: enough for every plan of the demo.
ON_HAND = 5000.0
MO_FIELDS = ["name", "product_id", "product_qty", "qty_produced", "state", "origin"]


def _key(*parts: str) -> str:
    """An external-id name of the plant's records: ``plant_fg_pump_cp200``."""
    return "_".join(("plant", *parts)).lower().replace("-", "_")


@dataclass
class Seeded:
    """What seeding left in Odoo (ids, counts): the narration's and the MO planning's."""

    products: dict[str, int] = field(default_factory=dict)  # sku -> product.product id
    boms: int = 0
    counted: int = 0  # quants counted
    automation: int = 0


async def seed_plant(client: OdooClient, hook_url: str, plan_prefix: str) -> Seeded:
    """Products, their BoMs, component stock and the MO webhook, all safe to repeat."""
    units = {
        "Units": await resolve(client, "product_uom_unit", module="uom"),
        "kg": await resolve(client, "product_uom_kgm", module="uom"),
    }
    stock = await resolve(client, "stock_location_stock", module="stock")
    if None in units.values() or stock is None:
        raise DemoError("the Odoo database lacks Units, kg or WH/Stock")
    seeded = Seeded()

    async def product(item: Product | Component) -> int:
        # Odoo 18+ spells "storable" as a consumable tracking its inventory.
        vals = {
            "name": item.name,
            "default_code": item.sku,
            "uom_id": units[item.uom],
            "type": "consu",
            "is_storable": True,
        }
        seeded.products[item.sku] = await upsert(client, "product.product", _key(item.sku), vals)
        return seeded.products[item.sku]

    for finished in PRODUCTS:
        product_id = await product(finished)
        lines = [
            {"product_id": await product(c), "product_qty": c.per_unit} for c in finished.components
        ]
        (row,) = await client.read("product.product", [product_id], ["product_tmpl_id"])
        await upsert(
            client,
            "mrp.bom",
            _key("bom", finished.sku),
            {
                "product_tmpl_id": row["product_tmpl_id"],
                "code": f"BOM-{finished.sku}",
                "product_qty": 1.0,
                "bom_line_ids": lines,  # a list of dicts: replaces the lines on a rerun
            },
        )
        seeded.boms += 1

    # An inventory count sets the quantity on hand (it is not an addition): a rerun counts
    # the same stock again, whatever earlier runs consumed.
    components = [c for p in PRODUCTS for c in p.components]
    quants = await client.create(
        "stock.quant",
        [
            {
                "product_id": seeded.products[c.sku],
                "location_id": stock,
                "inventory_quantity": ON_HAND,
            }
            for c in components
        ],
    )
    await client.call("stock.quant", "action_apply_inventory", ids=quants)
    seeded.counted = len(quants)

    # Odoo's "Send Webhook Notification" on every state change of a planned MO: the hub's
    # fast path (its poller is the path that cannot miss one).
    seeded.automation = await upsert(
        client,
        "base.automation",
        _key("mo_webhook"),
        {
            "name": "Forgeline: MO state changed",
            "model_name": "mrp.production",
            "trigger": "on_write",
            "trigger_field_ids": ["state"],
            "filter_domain": [["origin", "=like", f"{plan_prefix}%"]],
            "action": "webhook",
            "url": hook_url,  # the hub's port changes from run to run: the upsert updates it
            "webhook_field_ids": ["name", "state"],
            "active": True,
        },
    )
    return seeded


@dataclass
class OdooPlant:
    """The demo's handle on the plant's Odoo: plans MOs, reads them back."""

    client: OdooClient
    faults: LoseAnswers
    plan: str  # origin of this run's MOs (PLAN/<stamp>)
    seeded: Seeded

    async def plan_mo(self, product: Product, quantity: float) -> str:
        """Create an MO and confirm it, as a planner in Odoo would; its name."""
        mo = await self.client.create(
            "mrp.production",
            {
                "product_id": self.seeded.products[product.sku],
                "product_qty": quantity,
                "origin": self.plan,
            },
        )
        await self.client.call("mrp.production", "action_confirm", ids=[mo])
        (row,) = await self.client.read("mrp.production", [mo], ["name"])
        return str(row["name"])

    async def orders(self) -> list[dict[str, Any]]:
        """This run's MOs, oldest first, with their done finished moves counted."""
        rows = await self.client.search_read(
            "mrp.production", [("origin", "=", self.plan)], MO_FIELDS, order="id asc"
        )
        moves = await self.client.search_read(
            "stock.move",
            [("production_id", "in", [r["id"] for r in rows]), ("state", "=", "done")],
            ["production_id"],
        )
        for row in rows:
            row["finished_moves"] = sum(1 for m in moves if m["production_id"][0] == row["id"])
        return rows

    async def done(self) -> int:
        return await self.client.search_count(
            "mrp.production", [("origin", "=", self.plan), ("state", "=", "done")]
        )

    async def product_counts(self) -> dict[str, int]:
        """Products per plant SKU: 1 each after any number of seedings."""
        rows = await self.client.search_read(
            "product.product",
            [("default_code", "in", list(self.seeded.products))],
            ["default_code"],
        )
        counts = dict.fromkeys(self.seeded.products, 0)
        for row in rows:
            counts[str(row["default_code"])] += 1
        return counts
