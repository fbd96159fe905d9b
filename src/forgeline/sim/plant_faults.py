"""Fault injection for the simulated plant systems (MES, WMS, QMS): HTTP faults and MQTT pauses.

The HTTP side reuses the simulated Odoo's ``FaultPlan``/``FaultRule`` (same rules, same seeded
draws, same ``/__sim__/faults`` admin form), so one vocabulary configures every simulator. What
differs is the answer: a plant system's own API gateway answers a fault with a JSON error in
that system's style (``PlantServer.error_body``), not nginx's HTML page in front of Odoo.

``PublishFaults`` is the MES's side: its MQTT (or HTTP fallback) client stalls while paused,
by hand (``pause()``/``resume()``) or during windows of seconds since it was armed, and may
wait ``latency`` seconds before each send. Messages wait in the MES's outbox in order, as a
shop-floor gateway's store-and-forward queue keeps them, and flow again on resume.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .odoo.faults import GARBAGE_BODY, FaultPlan, FaultRule

if TYPE_CHECKING:
    from .plant import PlantServer

__all__ = ["FaultPlan", "FaultRule", "PublishFaults", "plant_fault_middleware"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class PublishFaults:
    """When the MES's outbound messages stall: ``paused`` by hand, or inside ``pauses``
    windows (seconds since armed, like ``FaultRule.downtime``), plus ``latency`` per send."""

    paused: bool = False
    pauses: tuple[tuple[float, float], ...] = ()
    latency: float = 0.0
    # Counts by kind ("paused_waits", "latency"), for tests and the admin API.
    stats: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pauses = tuple((float(a), float(b)) for a, b in self.pauses)
        if self.latency < 0:
            raise ValueError("latency must not be negative")
        self._armed_at = time.monotonic()
        self._changed = asyncio.Event()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._changed.set()

    def replace(self, other: PublishFaults) -> None:
        self.paused, self.pauses, self.latency = other.paused, other.pauses, other.latency
        self._armed_at = time.monotonic()
        self.stats.clear()
        self._changed.set()

    def is_paused(self) -> bool:
        elapsed = time.monotonic() - self._armed_at
        return self.paused or any(a <= elapsed < b for a, b in self.pauses)

    async def gate(self) -> None:
        """Return when a message may be sent (after the pause and the latency)."""
        if self.is_paused():
            self.stats["paused_waits"] = self.stats.get("paused_waits", 0) + 1
            while self.is_paused():
                self._changed.clear()
                # Windows end by the clock, manual pauses by resume(): wake for either.
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 0.05)
        if self.latency > 0:
            self.stats["latency"] = self.stats.get("latency", 0) + 1
            await asyncio.sleep(self.latency)

    def to_dict(self) -> dict[str, Any]:
        return {
            "paused": self.paused,
            "pauses": [list(w) for w in self.pauses],
            "latency": self.latency,
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, spec: Any) -> PublishFaults:
        if not isinstance(spec, dict):
            raise TypeError("publish faults are a JSON object {paused, pauses, latency}")
        unknown = set(spec) - {"paused", "pauses", "latency", "stats"}
        if unknown:
            raise ValueError(f"unknown publish fault keys: {sorted(unknown)}")
        return cls(
            paused=bool(spec.get("paused", False)),
            pauses=tuple(tuple(w) for w in spec.get("pauses", ())),
            latency=float(spec.get("latency", 0.0)),
        )


def _reset(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()
    # Cancelling is how aiohttp lets a handler end without writing a response.
    raise asyncio.CancelledError


def plant_fault_middleware(server: PlantServer) -> Any:
    """The server's ``faults`` in front of every route but ``/__sim__/*``."""

    def failure(request: web.Request, status: int, what: str) -> web.Response:
        return server.error_response(status, "UNAVAILABLE", what, path=request.path)

    @web.middleware
    async def faults(request: web.Request, handler: _Handler) -> web.StreamResponse:
        plan = server.faults
        if plan is None or request.path.startswith("/__sim__/"):
            return await handler(request)
        decision = plan.decide(request.path)
        if decision is None:
            return await handler(request)
        rule = decision.rule
        if decision.down:
            plan.stats["down"] += 1
            if rule.down_mode == "reset":
                _reset(request)
            return failure(request, 503, f"{server.system} is down for maintenance")
        async with plan.admission(rule) as admitted:
            if not admitted:
                status = 503 if rule.overflow == "reject" else 504
                return failure(request, status, f"{server.system} is overloaded")
            if decision.delay > 0:
                plan.stats["latency"] += 1
                await asyncio.sleep(decision.delay)
            if decision.error:
                plan.stats["error"] += 1
                return failure(request, rule.error_status, f"{server.system} internal failure")
            response = await handler(request)
        if decision.drop:
            plan.stats["drop"] += 1
            _reset(request)
        if decision.garbage:
            plan.stats["garbage"] += 1
            return web.Response(body=GARBAGE_BODY, status=200, content_type="application/json")
        return response

    return faults
