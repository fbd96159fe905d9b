"""Stock availability, read through to Odoo with a short cache that also carries outages.

``GET /v1/inventory/availability?sku=&site=`` answers what Odoo says is on hand, reserved and
free for a product (``default_code`` = SKU) over every location of a warehouse (its ``code`` =
site). Plant screens and partner portals poll this; Odoo has a handful of workers. So:

- an answer is reused for ``ttl`` seconds (a few: availability is allowed to be that old);
- a burst for one (sku, site) makes one Odoo call: the first request starts it, the others
  wait on the same call (single flight), and a caller that goes away does not cancel it;
- when Odoo is down or slower than ``deadline``, the last known answer is served marked
  ``stale`` with its age (up to ``max_stale`` old), and for ``retry_after`` seconds requests
  do not wait on Odoo at all (a small circuit breaker: an outage must not make every
  request wait out a timeout). A call still running after the deadline goes on and refreshes
  the cache when it lands. With nothing known, the answer is a 503 problem.

Quantities are read the way Odoo's own screens compute them: ``product.product``'s
``qty_available`` and ``free_qty`` in the context ``location`` = the warehouse's view location
(every internal location of the warehouse is under it; the ``location`` key has meant the same
on 16 to 19, where the warehouse key was renamed). ``reserved`` is their difference.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ..exceptions import Conflict, NotFound
from .erp import Erp, garbled, many2one, number
from .errors import ErpUnavailable
from .uom import unit_code

__all__ = ["Availability", "AvailabilityCache", "SingleFlight", "StockLevel"]

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class StockLevel:
    """Odoo's answer for one product at one site, in the canonical vocabulary."""

    sku: str
    site: str
    on_hand: float
    reserved: float
    available: float
    uom: str
    as_of: float  # epoch seconds: when Odoo answered


@dataclass(frozen=True, slots=True)
class Availability:
    """A stock level as served: fresh, or the last known one while Odoo cannot answer."""

    level: StockLevel
    stale: bool = False
    age: float = 0.0  # seconds since Odoo answered

    def as_json(self) -> dict[str, Any]:
        level = self.level
        body: dict[str, Any] = {
            "sku": level.sku,
            "site": level.site,
            "on_hand": level.on_hand,
            "reserved": level.reserved,
            "available": level.available,
            "uom": level.uom,
            "as_of": datetime.fromtimestamp(level.as_of, UTC).isoformat().replace("+00:00", "Z"),
            "stale": self.stale,
        }
        if self.stale:
            body["age_seconds"] = round(self.age, 1)
        return body


class SingleFlight(Generic[K, V]):
    """At most one running call per key; later askers share it. The call runs as a task of
    its own, so a caller that is cancelled (or stops waiting) leaves it running for the rest."""

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Task[V]] = {}

    def __len__(self) -> int:
        return len(self._running)

    def run(self, key: K, start: Callable[[], Awaitable[V]]) -> asyncio.Task[V]:
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(start())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return task

    def _finished(self, key: K, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every asker may have stopped waiting

    async def aclose(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _Known:
    """What the cache knows of one (sku, site): a level, or that the SKU or site is unknown."""

    at: float  # monotonic: when Odoo answered
    level: StockLevel | None
    missing: str = ""  # why there is no level (NotFound's detail)


@dataclass(frozen=True, slots=True)
class _Site:
    id: int
    location: int  # the warehouse's view location


class AvailabilityCache:
    """Read-through stock levels (see the module). ``hits``, ``fetches`` and ``stale`` count
    answers from the cache, calls to Odoo, and stale answers."""

    def __init__(
        self,
        erp: Erp,
        *,
        ttl: float = 5.0,
        deadline: float = 2.0,
        max_stale: float = 3600.0,
        retry_after: float = 5.0,
        site_ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._erp = erp
        self.ttl = ttl
        self.deadline = deadline
        self.max_stale = max_stale
        self.retry_after = retry_after
        self.site_ttl = site_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._wall = wall_clock
        self._known: OrderedDict[tuple[str, str], _Known] = OrderedDict()
        self._sites: OrderedDict[str, tuple[float, _Site | None]] = OrderedDict()
        self._flights: SingleFlight[tuple[str, str], _Known] = SingleFlight()
        self._site_flights: SingleFlight[str, _Site | None] = SingleFlight()
        self._down_until = 0.0
        self.hits = self.fetches = self.stale = 0

    async def aclose(self) -> None:
        await self._flights.aclose()
        await self._site_flights.aclose()

    async def lookup(self, sku: str, site: str) -> Availability:
        """The stock level of ``sku`` at ``site``: ``NotFound`` for an unknown SKU or site,
        ``ErpUnavailable`` when Odoo cannot answer and nothing recent enough is known."""
        key = (sku, site)
        known = self._known.get(key)
        if known is not None and self._clock() - known.at < self.ttl:
            self._known.move_to_end(key)
            self.hits += 1
            return _answer(known)
        if self._clock() < self._down_until:
            return self._fallback(key, "the ERP is unavailable")
        task = self._flights.run(key, lambda: self._refresh(key))
        try:
            async with asyncio.timeout(self.deadline):
                known = await asyncio.shield(task)
        except TimeoutError:
            return self._fallback(key, f"the ERP did not answer within {self.deadline:g}s")
        except ErpUnavailable:
            return self._fallback(key, "the ERP is unavailable")
        return _answer(known)

    def _fallback(self, key: tuple[str, str], why: str) -> Availability:
        known = self._known.get(key)
        if known is not None and known.level is not None:
            age = self._clock() - known.at
            if age <= self.max_stale:
                self.stale += 1
                return Availability(known.level, stale=True, age=age)
        sku, site = key
        raise ErpUnavailable(
            f"cannot read stock levels: {why}, and no level of {sku!r} at {site!r} is known"
            f" from the last {self.max_stale:g}s"
        )

    async def _refresh(self, key: tuple[str, str]) -> _Known:
        self.fetches += 1
        try:
            level = await self._fetch(*key)
        except NotFound as exc:
            known = _Known(self._clock(), None, exc.detail)
        except ErpUnavailable:
            self._down_until = self._clock() + self.retry_after
            raise
        else:
            known = _Known(self._clock(), level)
        self._down_until = 0.0
        self._known[key] = known
        self._known.move_to_end(key)
        while len(self._known) > self.max_entries:
            self._known.popitem(last=False)
        return known

    async def _fetch(self, sku: str, site: str) -> StockLevel:
        where = await self._site(site)
        doing = "read stock levels"
        rows = await self._erp.search_read(
            doing,
            "product.product",
            [("default_code", "=", sku)],
            ["default_code", "uom_id", "qty_available", "free_qty"],
            limit=2,
            context={"location": where.location},
        )
        if not rows:
            raise NotFound(f"no product with SKU {sku!r} in the ERP")
        if len(rows) > 1:
            # Odoo only warns about a duplicate internal reference; summing would be a guess.
            raise Conflict(f"several products in the ERP have SKU {sku!r}")
        row = rows[0]
        on_hand = number(row.get("qty_available"), doing)
        free = number(row.get("free_qty"), doing)
        uom = many2one(row.get("uom_id"), doing)
        if uom is None:
            raise garbled(doing)  # Odoo requires a product's unit
        return StockLevel(
            sku=sku,
            site=site,
            on_hand=round(on_hand, 6),
            reserved=round(on_hand - free, 6),
            available=round(free, 6),
            uom=unit_code(uom[1]),
            as_of=self._wall(),
        )

    async def _site(self, code: str) -> _Site:
        cached = self._sites.get(code)
        if cached is not None and self._clock() - cached[0] < self.site_ttl:
            site = cached[1]
        else:
            task = self._site_flights.run(code, lambda: self._read_site(code))
            site = await asyncio.shield(task)
        if site is None:
            raise NotFound(f"no site (warehouse code) {code!r} in the ERP")
        return site

    async def _read_site(self, code: str) -> _Site | None:
        doing = "read warehouses"
        rows = await self._erp.search_read(
            doing, "stock.warehouse", [("code", "=", code)], ["view_location_id"], limit=1
        )
        site = None
        if rows:
            location = many2one(rows[0].get("view_location_id"), doing)
            if location is None:
                raise garbled(doing)  # every warehouse has its view location
            site = _Site(int(rows[0]["id"]), location[0])
        self._sites[code] = (self._clock(), site)
        while len(self._sites) > self.max_entries:
            self._sites.popitem(last=False)
        return site


def _answer(known: _Known) -> Availability:
    if known.level is None:
        raise NotFound(known.missing)
    return Availability(known.level)
