"""``forgeline demo --smoke`` end to end: the scenario passes its own checks, Odoo ends with
every MO done, and the data directory's log holds the MES's events as published and the
events the hub made of Odoo's changes."""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from forgeline.demo import SMOKE, run_demo
from forgeline.log import open_log
from forgeline.sim.odoo.service import OdooSimulator
from forgeline.sources import WEBHOOK_TYPE

RELEASED = "production.order.released.v1"


async def test_smoke_demo_passes_and_leaves_its_events_in_the_log(tmp_path: Path) -> None:
    output = io.StringIO()
    console = Console(file=output, width=120, force_terminal=False)
    started = time.monotonic()

    result = await run_demo(smoke=True, data_dir=tmp_path, console=console)

    elapsed = time.monotonic() - started
    text = output.getvalue()
    assert result, text
    assert elapsed < SMOKE.timeout
    assert "all" in text and "checks passed" in text
    assert "FAILED" not in text
    assert all(check.ok for check in result.checks)

    # Odoo closed every MO the MES reported, with the MES's quantity.
    assert len(result.orders) == SMOKE.mos
    assert {row["state"] for row in result.orders} == {"done"}
    made = {
        e["data"]["mo"]: e["data"]["quantity"]
        for e in result.published
        if e["type"] == "production.completed.v1"
    }
    assert {row["name"]: row["qty_produced"] for row in result.orders} == made
    assert all(row["finished_moves"] == 1 for row in result.orders)

    async with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        records = await log.read(0, 10_000)
    assert len({(r.event.source, r.event.id) for r in records}) == len(records)
    mes = [r.event for r in records if r.event.source.startswith("mes://")]
    assert [(e.source, e.id) for e in mes] == [(e["source"], e["id"]) for e in result.published]
    odoo = [r.event for r in records if r.event.source == result.odoo_source]
    released = Counter(e.subject for e in odoo if e.type == RELEASED)
    assert released == Counter({row["name"]: 1 for row in result.orders})
    assert any(e.type == WEBHOOK_TYPE for e in odoo)  # Odoo's automation reached the hub
    assert all(
        e.source.startswith("mes://") or e.source == result.odoo_source
        for e in (r.event for r in records)
    )


async def test_a_kept_data_dir_can_run_the_demo_again(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    first = await run_demo(smoke=True, data_dir=tmp_path, console=console)
    assert first
    second = await run_demo(smoke=True, data_dir=tmp_path, console=console)
    assert second

    # The second run planned new MOs in the same Odoo database, on the same products.
    names = [{row["name"] for row in run.orders} for run in (first, second)]
    assert len(names[0]) == len(names[1]) == SMOKE.mos and not names[0] & names[1]
    simulator = OdooSimulator(19, path=tmp_path / "odoo-sim.db")
    try:
        env = simulator.env("demo")
        codes = Counter(p.default_code for p in env["product.product"].search([]))
        assert codes["FG-PUMP-CP200"] == 1 and codes["RAW-TUBE-40X40"] == 1
        assert env["base.automation"].search_count([]) == 1
        assert env["mrp.production"].search_count([("state", "=", "done")]) == 2 * SMOKE.mos
    finally:
        simulator.close()

    async with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        records = await log.read(0, 10_000)
    mes = [r for r in records if r.event.source.startswith("mes://")]
    assert len(mes) == len(first.published) + len(second.published)
    assert len({(r.event.source, r.event.id) for r in records}) == len(records)
