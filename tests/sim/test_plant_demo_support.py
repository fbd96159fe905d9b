"""What the simulated MES gained for ``forgeline demo``: a part master (the line and BOM a
release that names neither runs with) and whole quantities sent as floats (an ERP's
``12.0``). Older releases behave as before."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from forgeline.sim.mes import MesServer

LINES = {"L1": "WC-ASSY-1", "L2": "WC-MIX-1"}
PARTS: dict[str, dict[str, Any]] = {
    "FG-RESIN": {
        "line": "L2",
        "bom": [
            {"partNo": "RAW-BASE", "qtyPer": 0.92, "uom": "KG"},
            {"partNo": "RAW-HARD", "qtyPer": 0.08, "uom": "KG"},
        ],
    },
    "FG-PUMP": {"line": "L1"},  # a routing, no recipe
}


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    async with http.post(url, json=body) as response:
        return response.status, await response.json()


async def test_a_release_without_line_or_bom_runs_by_the_part_master() -> None:
    async with (
        MesServer(lines=LINES, parts=PARTS, tick=0.0, setup_seconds=0.0) as mes,
        aiohttp.ClientSession() as http,
    ):
        release = {"erpOrder": "WH/MO/00007", "partNo": "FG-RESIN", "qty": 25.0, "uom": "KG"}
        status, wo = await post(http, f"{mes.url}/api/workorders", release)
        assert status == 201, wo
        assert (wo["line"], wo["workCenter"], wo["qtyOrdered"]) == ("L2", "WC-MIX-1", 25)
        assert [(b["partNo"], b["qtyPer"], b["uom"]) for b in wo["bom"]] == [
            ("RAW-BASE", 0.92, "KG"),
            ("RAW-HARD", 0.08, "KG"),
        ]
        # The same release again (as an at-least-once ERP resends it) is the same work order.
        status, again = await post(http, f"{mes.url}/api/workorders", release)
        assert (status, again["woNumber"]) == (200, wo["woNumber"])

        status, _ = await post(
            http, f"{mes.url}/api/workorders/{wo['woNumber']}/start", {"batchSize": 10}
        )
        assert status == 202
        async with asyncio.timeout(5):
            while mes.work_orders[wo["woNumber"]].status != "COMPLETE":
                await asyncio.sleep(0.01)
        await mes.flush()
        production = [m.body for m in mes.sent if m.kind == "production"]
        consumption = [m.body for m in mes.sent if m.kind == "consumption"]
        assert production and all(p["lotNo"] == wo["lotNo"] for p in production)
        assert production[-1]["totalGood"] == 25
        assert {c["partNo"] for c in consumption} == {"RAW-BASE", "RAW-HARD"}
        made = sum(p["qtyGood"] + p["qtyScrap"] for p in production)
        base = sum(c["qty"] for c in consumption if c["partNo"] == "RAW-BASE")
        assert base == pytest.approx(0.92 * made)

        # What the release names wins over the master; a part the master lacks runs as before.
        status, named = await post(
            http,
            f"{mes.url}/api/workorders",
            {"erpOrder": "WH/MO/00008", "partNo": "FG-RESIN", "qty": 5, "line": "L1", "bom": []},
        )
        assert (status, named["line"], named["bom"]) == (201, "L1", [])
        status, routed = await post(
            http,
            f"{mes.url}/api/workorders",
            {"erpOrder": "WH/MO/00009", "partNo": "FG-PUMP", "qty": 3},
        )
        assert (status, routed["line"], routed["bom"]) == (201, "L1", [])
        status, plain = await post(
            http,
            f"{mes.url}/api/workorders",
            {"erpOrder": "WH/MO/00010", "partNo": "FG-X", "qty": 3},
        )
        assert (status, plain["line"], plain["bom"]) == (201, "L1", [])


async def test_a_fractional_or_boolean_quantity_is_still_refused() -> None:
    async with MesServer(tick=0.0) as mes, aiohttp.ClientSession() as http:
        for number, qty in enumerate((12.5, True, "12", 0.0, -3.0)):
            status, body = await post(
                http,
                f"{mes.url}/api/workorders",
                {"erpOrder": f"WH/MO/9{number}", "partNo": "FG-1", "qty": qty},
            )
            assert (status, body["code"], body["field"]) == (422, "INVALID_QTY", "qty"), qty
        assert mes.work_orders == {}


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"FG-1": {"line": "L9"}}, "parts['FG-1'].line 'L9' is not one of"),
        ({"FG-1": {"bom": [{"partNo": "A"}]}}, "parts['FG-1']: bom[0] needs partNo and qtyPer"),
        ({"FG-1": {"routing": "R1"}}, "parts['FG-1']: unknown keys ['routing']"),
    ],
)
def test_a_bad_part_master_fails_at_start(parts: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(")):
        MesServer(parts=parts)
