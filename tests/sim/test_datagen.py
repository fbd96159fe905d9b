"""The bulk data generator: deterministic for a seed, consistent with the business models,
and fast enough for 20k records in a test (100k take seconds; see the module's CLI)."""

from __future__ import annotations

from typing import Any

import pytest

from forgeline.sim.odoo import OdooSimulator
from forgeline.sim.odoo.addons.common import storable_domain
from forgeline.sim.odoo.datagen import generate, generate_counts, main

SNAPSHOT = {
    "res.partner": ["name", "ref", "city", "customer_rank", "supplier_rank"],
    "product.product": ["default_code", "name", "list_price", "standard_price"],
    "mrp.bom.line": ["bom_id", "product_id", "product_qty"],
    "stock.quant": ["product_id", "quantity"],
    "sale.order": ["name", "partner_id", "client_order_ref", "state"],
    "sale.order.line": ["order_id", "product_id", "product_uom_qty", "price_unit"],
}


def snapshot(version: int, seed: int, **sizes: int) -> dict[str, Any]:
    sim = OdooSimulator(version, demo=False)
    with sim.transaction("demo") as env:
        counts = generate(env, seed=seed, **sizes)
        rows = {
            model: env[model].search_read([], names, order="id", load="_classic_write")
            for model, names in SNAPSHOT.items()
        }
    sim.close()
    return {"counts": counts, "rows": rows}


def test_same_seed_same_data() -> None:
    first = snapshot(17, 7, products=40, partners=20, orders=15)
    assert first == snapshot(17, 7, products=40, partners=20, orders=15)
    assert first["rows"] != snapshot(17, 8, products=40, partners=20, orders=15)["rows"]
    assert first["counts"]["sale.order"] == 15
    assert first["counts"]["mrp.bom"] == 12  # 30 % of the products are manufactured


@pytest.mark.parametrize("version", [16, 18, 19])
def test_generated_data_fits_the_version(version: int) -> None:
    sim = OdooSimulator(version, demo=False)
    with sim.transaction("demo") as env:
        counts = generate(env, products=20, partners=8, orders=5)
        assert env["product.product"].search_count(storable_domain(version)) == 20
        assert env["sale.order"].search_count([("state", "=", "draft")]) == 5
        # Generated orders are real orders: confirming one plans its delivery.
        order = env["sale.order"].search([], limit=1)
        order.action_confirm()
        assert order.picking_ids.picking_type_code == "outgoing"
        assert counts["stock.quant"] == 14
    sim.close()


def test_twenty_thousand_records() -> None:
    # How fast is for bench/; here: the budget is met and every record is queryable.
    sim = OdooSimulator(17, demo=False)
    with sim.transaction("demo") as env:
        counts = generate(env, seed=1, **generate_counts(20_000))
    total = sum(counts.values())
    assert 19_000 <= total <= 21_000
    env = sim.env("demo")
    assert env["sale.order.line"].search_count([]) == counts["sale.order.line"]
    sim.close()


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--records", "500", "--version", "18"]) == 0
    assert "total" in capsys.readouterr().out
