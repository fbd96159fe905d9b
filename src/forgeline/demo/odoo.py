"""The plant's Odoo in ``forgeline demo``: a simulated Odoo 19 driven over HTTP through
Forgeline's own connector (JSON-2 with an API key), as the ERP's administrators and planners
would, and read back for the checks.

The products are not seeded here: the PLM releases them and the hub's ``products-to-erp``
flow upserts them. What the ERP's own people set up is: bills of materials, the components'
stock and the "Send Webhook Notification" automation. Every record is an ``upsert`` by
external id (``forgeline.plant_*``) and stock is an inventory *count* (an absolute
quantity), so a data directory kept from an earlier run ends up with the same records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..connectors.odoo import OdooClient, resolve, upsert
from ..sim.odoo.faults import LoseAnswers
from .api import DemoError
from .plant import CUSTOMERS, PRODUCTS, SUPPLIER, Product

__all__ = [
    "MO_FIELDS",
    "OdooPlant",
    "Seeded",
    "odoo_units",
    "plant_products",
    "seed_accounts",
    "seed_plant",
]

#: Components counted on hand before production: enough for every plan of the demo.
ON_HAND = 5000.0
MO_FIELDS = ["name", "product_id", "product_qty", "qty_produced", "state", "origin"]
SKUS = sorted({p.sku for p in PRODUCTS} | {c.sku for p in PRODUCTS for c in p.components})


def _key(*parts: str) -> str:
    """An external-id name of the plant's records: ``plant_bom_fg_pump_cp200``."""
    return "_".join(("plant", *parts)).lower().replace("-", "_")


async def odoo_units(client: OdooClient) -> tuple[int, int]:
    """Odoo's ids of its units ``Units`` and ``kg``: the PLM's EA and KG."""
    unit = await resolve(client, "product_uom_unit", module="uom")
    kg = await resolve(client, "product_uom_kgm", module="uom")
    if unit is None or kg is None:
        raise DemoError("the Odoo database lacks the units Units or kg")
    return unit, kg


async def plant_products(client: OdooClient) -> dict[str, list[dict[str, Any]]]:
    """The plant's products as Odoo has them, by SKU (a list: more than one is a duplicate)."""
    rows = await client.search_read(
        "product.product", [("default_code", "in", SKUS)], ["default_code", "name", "uom_id"]
    )
    found: dict[str, list[dict[str, Any]]] = {sku: [] for sku in SKUS}
    for row in rows:
        found[str(row["default_code"])].append(row)
    return found


@dataclass
class Seeded:
    """What seeding left in Odoo (ids, counts): the narration's and the MO planning's."""

    products: dict[str, int] = field(default_factory=dict)  # sku -> product.product id
    boms: int = 0
    counted: int = 0  # quants counted
    automation: int = 0


async def seed_plant(client: OdooClient, hook_url: str, plan_prefix: str) -> Seeded:
    """BoMs, component stock and the MO webhook, on the products the PLM released."""
    seeded = Seeded()
    for sku, rows in (await plant_products(client)).items():
        if len(rows) != 1:
            raise DemoError(f"Odoo has {len(rows)} products {sku}, not one")
        seeded.products[sku] = int(rows[0]["id"])
    stock = await resolve(client, "stock_location_stock", module="stock")
    if stock is None:
        raise DemoError("the Odoo database lacks WH/Stock")

    for finished in PRODUCTS:
        (row,) = await client.read(
            "product.product", [seeded.products[finished.sku]], ["product_tmpl_id"]
        )
        await upsert(
            client,
            "mrp.bom",
            _key("bom", finished.sku),
            {
                "product_tmpl_id": row["product_tmpl_id"],
                "code": f"BOM-{finished.sku}",
                "product_qty": 1.0,
                # A list of dicts: replaces the lines on a rerun.
                "bom_line_ids": [
                    {"product_id": seeded.products[c.sku], "product_qty": c.per_unit}
                    for c in finished.components
                ],
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


async def seed_accounts(client: OdooClient) -> dict[str, int]:
    """What the business APIs are asked about: the supplier and the customers (reference ->
    partner id), credit limits switched on ("Sales Credit Limit"), and each customer's open
    invoices - posted once, so a kept database owes the same on every run."""
    (company,) = await client.search("res.company", [], limit=1)
    await client.write("res.company", [company], {"account_use_credit_limit": True})
    partners = {
        SUPPLIER.ref: await upsert(
            client,
            "res.partner",
            _key("supplier", SUPPLIER.ref),
            {"name": SUPPLIER.name, "ref": SUPPLIER.ref, "is_company": True},
        )
    }
    for customer in CUSTOMERS:
        partner = await upsert(
            client,
            "res.partner",
            _key("customer", customer.ref),
            {
                "name": customer.name,
                "ref": customer.ref,
                "is_company": True,
                "credit_limit": customer.credit_limit,
            },
        )
        partners[customer.ref] = partner
        posted = await client.search_count(
            "account.move",
            [("partner_id", "=", partner), ("move_type", "=", "out_invoice"),
             ("state", "=", "posted")],
        )  # fmt: skip
        if not posted:
            move = await client.create(
                "account.move",
                {
                    "move_type": "out_invoice",
                    "partner_id": partner,
                    "invoice_line_ids": [
                        (0, 0, {"name": "Spare parts", "quantity": 1,
                                "price_unit": customer.invoiced}),
                    ],
                },
            )  # fmt: skip
            await client.call("account.move", "action_post", ids=[move])
    return partners


@dataclass
class OdooPlant:
    """The demo's handle on the plant's Odoo: plans MOs, reads them back."""

    client: OdooClient
    faults: LoseAnswers
    plan: str  # origin of this run's MOs (PLAN/<stamp>)
    seeded: Seeded

    async def plan_mo(self, product: Product, quantity: float, origin: str | None = None) -> str:
        """Create an MO and confirm it, as a planner in Odoo would; its name. ``origin``
        defaults to this run's plan, which the hub watches and releases to the MES."""
        mo = await self.client.create(
            "mrp.production",
            {
                "product_id": self.seeded.products[product.sku],
                "product_qty": quantity,
                "origin": origin or self.plan,
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

    async def on_hand(self, sku: str) -> float | None:
        """What Odoo says is on hand of ``sku`` (the demo's one warehouse), None if unknown."""
        rows = await self.client.search_read(
            "product.product", [("default_code", "=", sku)], ["qty_available"], limit=1
        )
        return float(rows[0]["qty_available"]) if rows else None

    async def rfqs(self, origin: str) -> list[dict[str, Any]]:
        """The RFQs whose source document is ``origin``, each with its supplier's reference
        and its lines as ``(sku, quantity, Odoo's unit name)``."""
        orders = await self.client.search_read(
            "purchase.order", [("origin", "=", origin)], ["name", "state", "partner_id"]
        )
        described = await self.client.call("purchase.order.line", "fields_get")
        # The line's unit: product_uom up to 18, product_uom_id from 19.
        uom = "product_uom_id" if "product_uom_id" in described else "product_uom"
        for order in orders:
            lines = await self.client.search_read(
                "purchase.order.line",
                [("order_id", "=", order["id"])],
                ["product_id", "product_qty", uom],
                order="id asc",
            )
            codes = {
                row["id"]: row["default_code"]
                for row in await self.client.read(
                    "product.product", [line["product_id"][0] for line in lines], ["default_code"]
                )
            }
            (partner,) = await self.client.read("res.partner", [order["partner_id"][0]], ["ref"])
            order["supplier"] = partner["ref"]
            order["lines"] = [
                (codes[line["product_id"][0]], float(line["product_qty"]), line[uom][1])
                for line in lines
            ]
        return orders

    async def mo(self, name: str) -> dict[str, Any] | None:
        """One MO by name, as Odoo has it."""
        rows = await self.client.search_read("mrp.production", [("name", "=", name)], MO_FIELDS)
        return rows[0] if rows else None

    async def done(self) -> int:
        return await self.client.search_count(
            "mrp.production", [("origin", "=", self.plan), ("state", "=", "done")]
        )
