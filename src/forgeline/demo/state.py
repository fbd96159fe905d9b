"""What a ``forgeline demo`` run knows as it goes: what was planned and published, what
arrived where, and how it is shown (step headings, the live deliveries table)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, RenderableType
from rich.table import Table

from ..testing import Receiver
from .api import read_log
from .downstream import ERP, MES, PARTNER, SYSTEMS, System
from .odoo import OdooPlant
from .plant import Order, Scale

__all__ = ["Check", "DemoResult", "DemoState"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DemoResult:
    """What a run did; true iff every check passed (``bool(result)``)."""

    ok: bool
    checks: list[Check]
    published: list[dict[str, Any]]  # the MES's events, each once, in order
    odoo_source: str  # the source of the events the hub made of Odoo's changes
    orders: list[dict[str, Any]]  # this run's MOs as Odoo has them at the end

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class DemoState:
    """What the run knows, and how it is shown; ``checks.Checks`` and the scenario
    (``run.Demo``) build on it."""

    scale: Scale
    console: Console
    data_dir: Path
    step: str = "starting"
    checks: list[Check] = field(default_factory=list)
    published: list[dict[str, Any]] = field(default_factory=list)  # unique, in order
    positions: dict[str, int] = field(default_factory=dict)  # event id -> log position
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    replayed: int = 0
    dead_now: int = 0
    started: float = field(default_factory=time.monotonic)
    receiver: Receiver | None = None
    odoo: OdooPlant | None = None
    odoo_source: str = ""
    planned: dict[str, tuple[int, float]] = field(default_factory=dict)  # MO -> (index, qty)
    orders: list[Order] = field(default_factory=list)  # as the MES learnt them
    odoo_events: list[dict[str, Any]] = field(default_factory=list)  # this run's, from the log
    odoo_done: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # Odoo's MOs at the end
    log_start: int = 0  # the log's last position before this run

    # -- output ----------------------------------------------------------------------------

    def say(self, message: RenderableType, *, always: bool = False) -> None:
        if always or self.scale.verbose:
            self.console.print(message)

    def heading(self, number: int, title: str) -> None:
        self.step = title
        if self.scale.verbose:
            self.console.rule(f"[bold cyan]{number}. {title}", align="left")
        else:
            self.console.print(f"[cyan]{number}.[/] {title}")

    async def linger(self) -> None:
        if self.scale.pause:
            await asyncio.sleep(self.scale.pause)

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))

    def dashboard(self) -> Table:
        elapsed = time.monotonic() - self.started
        table = Table(
            title=f"Deliveries · {len(self.published)} MES events published, "
            f"{len(self.duplicates)} duplicate · {elapsed:4.1f}s",
            title_justify="left",
            expand=False,
        )
        for column in ("system", "path", "expected", "delivered", "attempts", "failed", "dead"):
            table.add_column(column, justify="left" if column in ("system", "path") else "right")
        for system in SYSTEMS:
            expected, delivered, attempts = self.progress(system)
            failed = attempts - len(self.accepted(system))
            dead = str(self.dead_now) if system is PARTNER else "-"
            colour = "green" if expected and delivered == expected else "yellow"
            table.add_row(
                system.name,
                system.path,
                str(expected),
                f"[{colour}]{delivered}[/]",
                str(attempts),
                f"[red]{failed}[/]" if failed else "0",
                dead,
            )
        completions = len(self.expected(ERP))
        colour = "green" if completions and self.odoo_done == completions else "yellow"
        table.add_row(
            ERP.name, "MOs done", str(completions), f"[{colour}]{self.odoo_done}[/]", "", "", ""
        )
        return table

    def __rich__(self) -> RenderableType:
        return self.dashboard()

    # -- bookkeeping -----------------------------------------------------------------------

    def expected(self, system: System) -> list[dict[str, Any]]:
        events = self.odoo_events if system is MES else self.published
        return [event for event in events if system.wants(event)]

    def accepted(self, system: System) -> list[str]:
        assert self.receiver is not None
        return self.receiver.ids(system.path)

    def progress(self, system: System) -> tuple[int, int, int]:
        assert self.receiver is not None
        attempts = sum(1 for r in self.receiver.received if r.path == system.path)
        return len(self.expected(system)), len(set(self.accepted(system))), attempts

    def releases_at_mes(self) -> list[dict[str, Any]]:
        """The releases of this run's MOs the MES accepted, in arrival order."""
        assert self.receiver is not None
        return [
            r.event
            for r in self.receiver.accepted
            if r.path == MES.path and r.event.get("subject") in self.planned
        ]

    async def until(self, what: str, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if done():
                return True
            if time.monotonic() > deadline:
                self.say(f"[red]gave up waiting for {what} after {timeout:g}s", always=True)
                return False
            await asyncio.sleep(0.05)

    def delivered_all(self, *systems: System) -> Callable[[], bool]:
        def done() -> bool:
            return all(
                set(self.accepted(s)) >= {e["id"] for e in self.expected(s)} for s in systems
            )

        return done

    async def wait_odoo_done(self) -> None:
        assert self.odoo is not None
        deadline = time.monotonic() + self.scale.wait
        while time.monotonic() < deadline:
            self.odoo_done = await self.odoo.done()
            if self.odoo_done >= len(self.planned):
                return
            await asyncio.sleep(0.1)
        self.say(
            f"[red]only {self.odoo_done} of {len(self.planned)} MOs are done in Odoo", always=True
        )

    async def odoo_log(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        """This run's events from Odoo's source: the poller's and the webhooks'."""
        records = await read_log(client, self.log_start, source=self.odoo_source)
        return [r["event"] for r in records]
