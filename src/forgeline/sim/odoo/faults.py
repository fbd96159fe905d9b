"""Fault injection for the simulated Odoo: what a flaky network, proxy or overloaded Odoo does.

A ``FaultPlan`` is an ordered list of ``FaultRule``; the first rule whose ``pattern`` (an
``fnmatch`` glob on the request path: ``"/jsonrpc"``, ``"/json/2/*"``, ``"*"``) matches a
request applies to it. Random choices come from one ``random.Random(seed)``, drawn in request
arrival order, so a sequential test sees the same faults on every run. Plans change at runtime:
``server.faults.replace(...)``/``clear()`` from tests, ``POST /__sim__/faults`` from the CLI.

The behaviours and why they look the way they do:

* ``latency`` (+ uniform ``jitter``): seconds slept before the call is handled.
* ``error_rate``: the call is *not* processed and ``error_status`` (503 by default; 500, 502,
  504 allowed) is answered with an nginx-style HTML page, as the reverse proxy in front of
  every production Odoo answers when its upstream fails. An Odoo-shaped error would claim Odoo
  ran the call; a proxy page is the case a connector must handle without parsing.
* ``down`` / ``downtime`` windows (seconds since the plan was armed): a listening socket cannot
  refuse connections, so the endpoint answers 503 without processing (``down_mode="status"``,
  a proxy whose upstream is down) or resets the connection (``down_mode="reset"``).
* ``max_concurrent``: at most N requests of the rule in flight. Odoo's prefork workers leave
  extra requests queued on the socket, so the default ``overflow="queue"`` makes them wait
  (``queue_timeout`` then answers 504 like a proxy giving up); ``overflow="reject"`` answers
  503 at once, like a proxy with a connection limit.
* ``drop_rate``: the call is processed and COMMITTED, then the connection is closed without
  an answer: the client cannot tell whether the write happened (the idempotency case).
* ``garbage_rate``: the call is processed, then a 200 with a body that is neither JSON nor XML
  is sent, as a broken middlebox or a truncated response would.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal

from aiohttp import web

from .protocols.state import STATE

__all__ = ["FaultDecision", "FaultPlan", "FaultRule", "LoseAnswers", "fault_middleware"]

GARBAGE_BODY = b"\x00\xffgarbage<<<\x1f\x8b not json, not xml"


@dataclass(frozen=True)
class FaultRule:
    pattern: str = "*"
    latency: float = 0.0
    jitter: float = 0.0
    error_rate: float = 0.0
    error_status: int = 503
    drop_rate: float = 0.0
    garbage_rate: float = 0.0
    down: bool = False
    downtime: tuple[tuple[float, float], ...] = ()
    down_mode: Literal["status", "reset"] = "status"
    max_concurrent: int | None = None
    overflow: Literal["queue", "reject"] = "queue"
    queue_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("error_rate", "drop_rate", "garbage_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.error_status not in (500, 502, 503, 504):
            raise ValueError("error_status must be 500, 502, 503 or 504")
        if self.down_mode not in ("status", "reset"):
            raise ValueError("down_mode must be 'status' or 'reset'")
        if self.overflow not in ("queue", "reject"):
            raise ValueError("overflow must be 'queue' or 'reject'")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        # JSON gives lists; keep the rule hashable and comparable.
        object.__setattr__(self, "downtime", tuple((float(a), float(b)) for a, b in self.downtime))

    def matches(self, path: str) -> bool:
        return fnmatch.fnmatchcase(path, self.pattern)

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> FaultRule:
        known = {f.name for f in fields(cls)}
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault rule keys: {sorted(unknown)}")
        return cls(**spec)


@dataclass(frozen=True)
class FaultDecision:
    """What happens to one request, decided when it arrives."""

    rule: FaultRule
    delay: float = 0.0
    down: bool = False
    error: bool = False
    drop: bool = False
    garbage: bool = False


@dataclass
class FaultPlan:
    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    # Counts of injected faults by kind ("latency", "error", "down", "drop", "garbage",
    # "rejected", "queue_timeout"), for tests and the admin API.
    stats: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rules = list(self.rules)
        self._rng = random.Random(self.seed)
        self._armed_at = time.monotonic()
        self._gates: dict[FaultRule, asyncio.Semaphore] = {}

    # --- changing the plan ------------------------------------------------------------------

    def add(self, rule: FaultRule | None = None, /, **kwargs: Any) -> FaultRule:
        """Append ``rule`` (or ``FaultRule(**kwargs)``); rules earlier in the list win."""
        new = replace(rule, **kwargs) if rule is not None else FaultRule(**kwargs)
        self.rules.append(new)
        return new

    def replace(self, other: FaultPlan) -> None:
        """Take ``other``'s rules and seed, re-arm the downtime clock, reset the stats."""
        self.rules = list(other.rules)
        self.seed = other.seed
        self._rng = random.Random(other.seed)
        self._armed_at = time.monotonic()
        self._gates.clear()
        self.stats.clear()

    def clear(self) -> None:
        self.replace(FaultPlan(seed=self.seed))

    # --- serialisation (admin API, CLI) ------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "rules": [asdict(rule) for rule in self.rules],
            "stats": dict(self.stats),
        }

    @classmethod
    def from_dict(cls, spec: Any) -> FaultPlan:
        if not isinstance(spec, dict):
            raise TypeError("a fault plan is a JSON object {seed, rules}")
        rules = spec.get("rules", [])
        if not isinstance(rules, list):
            raise TypeError("rules must be a list")
        return cls([FaultRule.from_dict(r) for r in rules], seed=int(spec.get("seed", 0)))

    # --- deciding ------------------------------------------------------------------------------

    def rule_for(self, path: str) -> FaultRule | None:
        return next((rule for rule in self.rules if rule.matches(path)), None)

    def decide(self, path: str) -> FaultDecision | None:
        rule = self.rule_for(path)
        if rule is None:
            return None
        # Always draw the same number of values, so one rule's setting does not shift the
        # sequence another request sees.
        draws = [self._rng.random() for _ in range(4)]
        elapsed = time.monotonic() - self._armed_at
        down = rule.down or any(start <= elapsed < end for start, end in rule.downtime)
        return FaultDecision(
            rule=rule,
            delay=rule.latency + rule.jitter * draws[0],
            down=down,
            error=draws[1] < rule.error_rate,
            drop=draws[2] < rule.drop_rate,
            garbage=draws[3] < rule.garbage_rate,
        )

    @asynccontextmanager
    async def admission(self, rule: FaultRule) -> AsyncIterator[bool]:
        """Hold one of ``rule.max_concurrent`` slots; yield False when refused or timed out."""
        if rule.max_concurrent is None:
            yield True
            return
        gate = self._gates.get(rule)
        if gate is None:
            gate = self._gates[rule] = asyncio.Semaphore(rule.max_concurrent)
        if rule.overflow == "reject" and gate.locked():
            self.stats["rejected"] += 1
            yield False
            return
        try:
            await asyncio.wait_for(gate.acquire(), rule.queue_timeout)
        except TimeoutError:
            self.stats["queue_timeout"] += 1
            yield False
            return
        try:
            yield True
        finally:
            gate.release()


class LoseAnswers(FaultPlan):
    """Commits the calls whose path ends with one of ``methods``, then drops the connection
    instead of answering, ``times`` times: the caller cannot know the effect happened (the
    case idempotent writes exist for). Other requests follow the plan's rules.

    Paths name the method on JSON-2 (``/json/2/mrp.production/button_mark_done``); on the
    RPC protocols every call shares one path, so this targets JSON-2 servers (Odoo 19)."""

    def __init__(self, methods: tuple[str, ...], times: int = 1) -> None:
        super().__init__()
        self.methods = methods
        self.left = times
        self.lost: list[str] = []

    def decide(self, path: str) -> FaultDecision | None:
        if self.left and path.endswith(self.methods):
            self.left -= 1
            self.lost.append(path)
            return FaultDecision(rule=FaultRule(), drop=True)
        return super().decide(path)


def _proxy_page(status: int) -> str:
    titles = {
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Temporarily Unavailable",
        504: "Gateway Time-out",
    }
    title = f"{status} {titles.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    )


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _reset(request: web.Request) -> None:
    """Close the connection without an answer; the client sees a reset/disconnect."""
    if request.transport is not None:
        request.transport.abort()
    # Cancelling is how aiohttp lets a handler end without writing a response.
    raise asyncio.CancelledError


@web.middleware
async def fault_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    plan = request.app[STATE].faults
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
        return web.Response(text=_proxy_page(503), status=503, content_type="text/html")
    async with plan.admission(rule) as admitted:
        if not admitted:
            status = 503 if rule.overflow == "reject" else 504
            return web.Response(text=_proxy_page(status), status=status, content_type="text/html")
        if decision.delay > 0:
            plan.stats["latency"] += 1
            await asyncio.sleep(decision.delay)
        if decision.error:
            plan.stats["error"] += 1
            status = rule.error_status
            return web.Response(text=_proxy_page(status), status=status, content_type="text/html")
        response = await handler(request)
    if decision.drop:
        plan.stats["drop"] += 1
        _reset(request)
    if decision.garbage:
        plan.stats["garbage"] += 1
        content_type = response.content_type if response.content_type else "text/plain"
        return web.Response(body=GARBAGE_BODY, status=200, content_type=content_type)
    return response
