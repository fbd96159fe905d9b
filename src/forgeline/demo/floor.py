"""The shop floor's systems as the demo's people reach them, over their own REST APIs: the
operator who starts work orders at the MES, quality's scripted verdict, and what the checks
read back from the MES, the WMS and the QMS (never through the hub: the checks compare each
system's own end state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from .api import DemoError, expect

__all__ = ["Floor"]


@dataclass
class Floor:
    http: httpx.AsyncClient
    mes_url: str
    wms_url: str
    qms_url: str

    # --- MES -----------------------------------------------------------------------------------

    async def work_orders(self, erp_order: str) -> list[dict[str, Any]]:
        """The MES's work orders released against one ERP order (one, once released)."""
        answer = await expect(
            self.http.get(f"{self.mes_url}/api/workorders", params={"erpOrder": erp_order}), 200
        )
        found: list[dict[str, Any]] = answer["workOrders"]
        return found

    async def work_order(self, wo_number: str) -> dict[str, Any]:
        found: dict[str, Any] = await expect(
            self.http.get(f"{self.mes_url}/api/workorders/{wo_number}"), 200
        )
        return found

    async def start(
        self, wo_number: str, *, batch: int, cycle: float, scrap_rate: float
    ) -> dict[str, Any]:
        """Start a work order, as the line's operator does at the MES terminal."""
        started: dict[str, Any] = await expect(
            self.http.post(
                f"{self.mes_url}/api/workorders/{wo_number}/start",
                json={"batchSize": batch, "cycleMs": cycle * 1000, "scrapRate": scrap_rate},
            ),
            202,
        )
        return started

    # --- WMS -----------------------------------------------------------------------------------

    async def stock(self, lot: str) -> list[dict[str, Any]]:
        """Where the WMS holds ``lot``: ``[{bin, sku, lot, qty, uom}]``."""
        answer = await expect(
            self.http.get(f"{self.wms_url}/api/v1/stock", params={"lot": lot}), 200
        )
        rows: list[dict[str, Any]] = answer["data"]
        return rows

    async def putaways(self) -> list[dict[str, Any]]:
        answer = await expect(self.http.get(f"{self.wms_url}/api/v1/putaway-tasks"), 200)
        tasks: list[dict[str, Any]] = answer["data"]
        return tasks

    # --- QMS -----------------------------------------------------------------------------------

    async def script_result(self, lot: str, result: str) -> None:
        """Fix the verdict the QMS will give ``lot`` (the simulator's admin API): the demo's
        way of making one lot fail its inspection."""
        await expect(
            self.http.post(f"{self.qms_url}/__sim__/script", json={"lots": {lot: result}}), 200
        )

    async def lot(self, lot: str) -> dict[str, Any] | None:
        """The QMS's view of a lot (``usage``, ``lastResult``, holds), None if unknown to it."""
        response = await self.http.get(f"{self.qms_url}/api/lots/{lot}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise DemoError(f"GET /api/lots/{lot} answered {response.status_code}")
        found: dict[str, Any] = response.json()
        return found
