"""``forgeline demo``: a small plant, three downstream systems, failures and recovery, end to end.

Everything runs for real on loopback: the hub serves its HTTP API (``running_hub``) on the
embedded SQLite default, and one ``Receiver`` stands for the downstream systems. The demo only
talks to the hub over HTTP, like any publisher or operator would:

* ``/erp`` (Odoo) takes ``production.*`` and ``material.*`` ordered by manufacturing order; it
  answers 502 once while "an Odoo worker restarts", and the MO's later events wait for it;
* ``/qms`` (quality) takes ``quality.*`` and answers 503 with ``Retry-After: 1`` to the first
  attempt of every event: the hub waits as asked, then delivers;
* ``/partner`` (a customer portal webhook) takes ``lot.released.v1`` and is down (500) until
  the demo brings it back: its events become dead letters, are inspected, then replayed.

At the end the demo checks what arrived where against what was published, and answers whether
every check passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .config import Settings
from .envelope import BATCH_CONTENT_TYPE, STRUCTURED_CONTENT_TYPE, Event
from .testing import Receiver, Reply, running_hub

__all__ = ["FULL", "SMOKE", "Scale", "plant_schedule", "run_demo"]


@dataclass(frozen=True, slots=True)
class Scale:
    """How big the scenario is and how fast it goes."""

    mos: int  # manufacturing orders run through the plant
    pace: float  # seconds between two publishes (so that a person can follow)
    pause: float  # seconds to linger after each step
    timeout: float  # the whole demo, start to finish
    verbose: bool  # a line per publish and a live table, or step lines only
    wait: float  # longest wait for deliveries to settle at one step


SMOKE = Scale(mos=3, pace=0.0, pause=0.0, timeout=30.0, verbose=False, wait=12.0)
FULL = Scale(mos=6, pace=0.35, pause=2.0, timeout=60.0, verbose=True, wait=15.0)

# -- the plant ------------------------------------------------------------------------------------

Mode = Literal["structured", "batch", "json", "binary"]

ODOO_MRP = "odoo://plant-1/mrp"
ODOO_STOCK = "odoo://plant-1/stock"
MES_QC = "mes://plant-1/qc-station"

# (sku, name, uom, work center, line, components: (sku, name, uom, quantity per unit))
_PRODUCTS: tuple[tuple[str, str, str, str, str, tuple[tuple[str, str, str, float], ...]], ...] = (
    (
        "FG-PUMP-CP200",
        "Centrifugal pump CP-200",
        "Units",
        "WC-ASSY-1",
        "line-1",
        (
            ("CMP-HSG-CP200", "Pump housing CP-200", "Units", 1.0),
            ("CMP-IMP-D200", "Impeller Ø200 bronze", "Units", 1.0),
        ),
    ),
    (
        "FG-VALVE-DN50",
        "Ball valve DN50 PN40",
        "Units",
        "WC-ASSY-2",
        "line-2",
        (
            ("CMP-BODY-DN50", "Valve body DN50 1.4408", "Units", 1.0),
            ("CMP-BALL-DN50", "Ball DN50 SS316", "Units", 1.0),
        ),
    ),
    (
        "FG-FRAME-A4",
        "Welded base frame A4",
        "Units",
        "WC-WELD-1",
        "line-3",
        (
            ("RAW-TUBE-40X40", "Steel tube 40x40x2 S235", "m", 3.2),
            ("RAW-WIRE-G3SI1", "Welding wire G3Si1 1.0mm", "kg", 0.15),
        ),
    ),
    (
        "FG-RESIN-PX7",
        "Resin compound PX-7",
        "kg",
        "WC-MIX-1",
        "line-4",
        (
            ("RAW-PX-BASE", "Base resin PX", "kg", 0.92),
            ("RAW-PX-HARD", "Hardener H3", "kg", 0.08),
        ),
    ),
)
_CUSTOMERS = ("ACME Hydraulics GmbH", "Nordic Pumps AB", "Iberflow S.L.", "Vistula Valves")
#: The MO whose inspection fails: it gets a quality hold, and no lot release.
_FAILING_MO = 2
#: The MO whose first consumption Odoo refuses once (502): its later events must wait.
_HICCUP_MO = 1


@dataclass(frozen=True, slots=True)
class Publish:
    """One POST /v1/events: a single event or a batch, in one of the accepted encodings."""

    mo: str
    label: str
    mode: Mode
    events: tuple[dict[str, Any], ...]
    duplicate: bool = False  # resends events already published (same source and id)


def _event(type: str, source: str, subject: str, data: dict[str, Any], mo: str) -> dict[str, Any]:
    return Event.new(type, source, data, subject=subject, correlationid=mo).to_dict()


def _mo_steps(index: int, rng: random.Random) -> list[Publish]:
    """What the plant publishes about one manufacturing order, in order."""
    number = 42 + index
    mo = f"MO/{number:05d}"
    sku, name, uom, work_center, line, components = _PRODUCTS[index % len(_PRODUCTS)]
    quantity = float(rng.choice((10, 12, 20, 25, 40, 50)))
    lot = f"LOT-{datetime.now(UTC):%y%m}-{number:04d}"
    mes = f"mes://plant-1/{line}"
    released = _event(
        "production.order.released.v1",
        ODOO_MRP,
        mo,
        {
            "mo": mo,
            "product": {"sku": sku, "name": name},
            "quantity": quantity,
            "uom": uom,
            "work_center": work_center,
            "lot": lot,
            "planned_start": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        mo,
    )
    consumed = tuple(
        _event(
            "material.consumed.v1",
            mes,
            mo,
            {
                "mo": mo,
                "component": {"sku": c_sku, "name": c_name},
                "quantity": round(per_unit * quantity, 3),
                "uom": c_uom,
                "lot": f"{c_sku.split('-')[0]}-{rng.randint(1000, 9999)}",
                "work_center": work_center,
            },
            mo,
        )
        for c_sku, c_name, c_uom, per_unit in components
    )
    scrap = float(rng.choice((0, 0, 1)))
    completed = _event(
        "production.completed.v1",
        mes,
        mo,
        {
            "mo": mo,
            "product": {"sku": sku, "name": name},
            "quantity": quantity - scrap,
            "scrap": scrap,
            "uom": uom,
            "work_center": work_center,
            "lot": lot,
        },
        mo,
    )
    passed = index != _FAILING_MO
    inspection = _event(
        "quality.inspection.completed.v1",
        MES_QC,
        mo,
        {
            "mo": mo,
            "lot": lot,
            "product": {"sku": sku},
            "plan": f"QP-{sku}",
            "result": "pass" if passed else "fail",
            "sample_size": 5,
            "defects": 0 if passed else 2,
            "inspector": rng.choice(("a.keller", "m.rossi", "j.nowak")),
        },
        mo,
    )
    steps = [
        Publish(mo, "order released", "structured", (released,)),
        Publish(mo, "materials consumed", "batch", consumed),
        Publish(mo, "production completed", "json", (completed,)),
    ]
    if passed:
        steps.append(Publish(mo, "inspection passed", "structured", (inspection,)))
        release = _event(
            "lot.released.v1",
            ODOO_STOCK,
            lot,
            {
                "lot": lot,
                "mo": mo,
                "product": {"sku": sku, "name": name},
                "quantity": quantity - scrap,
                "uom": uom,
                "customer": _CUSTOMERS[index % len(_CUSTOMERS)],
                "certificate": f"CoC-{number:05d}",
            },
            mo,
        )
        steps.append(Publish(mo, "lot released", "binary", (release,)))
    else:
        hold = _event(
            "quality.hold.placed.v1",
            MES_QC,
            mo,
            {
                "mo": mo,
                "lot": lot,
                "reason": "2 of 5 samples out of tolerance",
                "disposition": "MRB",
            },
            mo,
        )
        steps.append(Publish(mo, "inspection failed → hold", "batch", (inspection, hold)))
    return steps


def plant_schedule(mos: int, *, seed: int = 42) -> list[Publish]:
    """Every publish of a run, in order: the MOs overlap (MO n+1 is released while MO n is
    consuming), one machine stop that nobody subscribed to is reported, and the MES resends
    the first release (an at-least-once publisher after a timeout)."""
    rng = random.Random(seed)
    per_mo = [_mo_steps(index, rng) for index in range(mos)]
    schedule: list[Publish] = []
    rounds = max(len(steps) + index for index, steps in enumerate(per_mo))
    for round_ in range(rounds):
        for index, steps in enumerate(per_mo):
            if 0 <= round_ - index < len(steps):
                schedule.append(steps[round_ - index])
        if round_ == 1:
            first = per_mo[0][0]
            schedule.append(
                Publish(
                    first.mo, "order released (resent)", "structured", first.events, duplicate=True
                )
            )
        if round_ == 2:
            downtime = _event(
                "machine.downtime.v1",
                "mes://plant-1/line-2",
                "WC-ASSY-2",
                {"work_center": "WC-ASSY-2", "reason": "tool change", "minutes": 12},
                "WC-ASSY-2",
            )
            schedule.append(Publish("WC-ASSY-2", "machine downtime", "json", (downtime,)))
    return schedule


# -- the downstream systems ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class System:
    path: str
    name: str
    subscription: str
    types: tuple[str, ...]
    policy: dict[str, Any]

    def wants(self, event_type: str) -> bool:
        # fnmatch, not the hub's own matcher: the check must not share the code it checks.
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.types)


SYSTEMS = (
    System(
        "/erp",
        "Odoo ERP",
        "erp-production",
        ("production.*", "material.*"),
        {"ordering": "key", "retry": {"initial_delay": 0.5, "max_attempts": 10}},
    ),
    System(
        "/qms",
        "QMS",
        "qms-holds",
        ("quality.*",),
        {"retry": {"initial_delay": 0.2, "max_attempts": 5}},
    ),
    System(
        "/partner",
        "Portal",
        "partner-lots",
        ("lot.released.v1",),
        {"retry": {"initial_delay": 0.2, "max_attempts": 3}, "timeout": 2.0},
    ),
)


class Downstream:
    """How the three systems answer. Counts attempts per (path, event id) itself: the
    receiver's ``seen`` counts per event id across every path."""

    def __init__(self, hiccup_id: str | None) -> None:
        self.partner_up = False
        self.hiccup_id = hiccup_id
        self._attempts: Counter[tuple[str, str]] = Counter()

    def script(self, path: str, event: dict[str, Any], seen: int) -> Reply:
        key = (path, str(event.get("id", "")))
        attempt = self._attempts[key]
        self._attempts[key] += 1
        if path == "/qms" and attempt == 0:
            return Reply(503, "QMS is re-indexing, come back later", headers={"Retry-After": "1"})
        if path == "/partner" and not self.partner_up:
            return Reply(500, '{"error": "portal under maintenance"}')
        if path == "/erp" and key[1] == self.hiccup_id and attempt == 0:
            return Reply(502, "Bad gateway: Odoo worker restarting")
        return Reply(200 if path == "/erp" else 204)


# -- the run ---------------------------------------------------------------------------------------


class DemoError(Exception):
    """The hub answered something the demo did not expect."""


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Demo:
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
            title=f"Deliveries · {len(self.published)} events published, "
            f"{len(self.duplicates)} duplicate · {elapsed:4.1f}s",
            title_justify="left",
            expand=False,
        )
        table.add_column("system")
        table.add_column("path")
        table.add_column("expected", justify="right")
        table.add_column("delivered", justify="right")
        table.add_column("attempts", justify="right")
        table.add_column("failed", justify="right")
        table.add_column("dead letters", justify="right")
        for system in SYSTEMS:
            expected, delivered, attempts = self.progress(system)
            failed = attempts - len(self.accepted(system))
            dead = str(self.dead_now) if system.path == "/partner" else "-"
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
        return table

    def __rich__(self) -> RenderableType:
        return self.dashboard()

    # -- bookkeeping -----------------------------------------------------------------------

    def expected(self, system: System) -> list[dict[str, Any]]:
        return [event for event in self.published if system.wants(event["type"])]

    def accepted(self, system: System) -> list[str]:
        assert self.receiver is not None
        return self.receiver.ids(system.path)

    def progress(self, system: System) -> tuple[int, int, int]:
        assert self.receiver is not None
        attempts = sum(1 for r in self.receiver.received if r.path == system.path)
        return len(self.expected(system)), len(set(self.accepted(system))), attempts

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

    # -- steps -----------------------------------------------------------------------------

    async def run(self) -> bool:
        schedule = plant_schedule(self.scale.mos)
        hiccup = next(
            (
                p.events[0]["id"]
                for p in schedule
                if p.mo == f"MO/{42 + _HICCUP_MO:05d}" and p.label == "materials consumed"
            ),
            None,
        )
        downstream = Downstream(hiccup)
        settings = Settings.load(env={}, data_dir=self.data_dir)

        self.heading(1, "Start the hub and the downstream systems")
        async with Receiver(downstream.script) as receiver, running_hub(settings) as (hub, url):
            self.receiver = receiver
            headers = {"Authorization": f"Bearer {hub.admin_key}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10.0) as client:
                self.say(f"hub API  {url}  ·  data {self.data_dir} (SQLite)", always=True)
                for system in SYSTEMS:
                    self.say(f"{system.name:<8} {receiver.url(system.path)}")
                await self.linger()

                self.heading(2, "Subscribe the systems (POST /v1/subscriptions)")
                await self.subscribe(client, receiver)
                await self.linger()

                self.heading(3, f"The plant publishes: {self.scale.mos} manufacturing orders")
                live: contextlib.AbstractContextManager[Any] = (
                    Live(self, console=self.console, refresh_per_second=8, transient=True)
                    if self.scale.verbose and self.console.is_terminal
                    else contextlib.nullcontext()
                )
                with live:
                    await self.publish_all(client, schedule)

                    self.heading(4, "Failures: QMS asks to come back later, the portal is down")
                    partner = SYSTEMS[2]
                    lots = len(self.expected(partner))
                    await self.until(
                        "ERP and QMS deliveries",
                        self.delivered_all(SYSTEMS[0], SYSTEMS[1]),
                        self.scale.wait,
                    )
                    await self.wait_dead(client, lots)
                    self.say(
                        f"QMS answered 503 + Retry-After: 1 to every first attempt → retried, "
                        f"delivered {len(set(self.accepted(SYSTEMS[1])))}",
                        always=True,
                    )
                    if hiccup is not None:
                        self.say(
                            f"Odoo refused one consumption of MO/{42 + _HICCUP_MO:05d} once "
                            "(502) → retried; that MO's later events waited their turn",
                            always=True,
                        )
                    self.say(
                        f"portal answered 500 three times per lot → {self.dead_now} dead letters",
                        always=True,
                    )
                    self.say(self.dashboard())
                    await self.linger()

                    self.heading(5, "Operate: inspect the dead letters, fix the portal, replay")
                    await self.recover(client, downstream, partner)

                self.heading(6, "Summary")
                await self.verify(client, receiver)
                await self.summarize(client)
        return all(check.ok for check in self.checks)

    async def subscribe(self, client: httpx.AsyncClient, receiver: Receiver) -> None:
        for system in SYSTEMS:
            # A data directory kept from an earlier run: start that subscription afresh.
            if (await client.get(f"/v1/subscriptions/{system.subscription}")).status_code == 200:
                await expect(client.delete(f"/v1/subscriptions/{system.subscription}"), 204)
            spec = {
                "name": system.subscription,
                "types": list(system.types),
                "sink": {"url": receiver.url(system.path)},
                "policy": system.policy,
            }
            created = await expect(client.post("/v1/subscriptions", json=spec), 201)
            policy = created["policy"]
            retry = policy["retry"]
            self.say(
                f"[green]✓[/] {system.subscription:<15}{', '.join(system.types):<24}→ "
                f"{system.path:<9}ordering={policy['ordering']:<5} "
                f"retry {retry['initial_delay']:g}s×{retry['multiplier']:g} "
                f"≤{retry['max_attempts']}",
                always=self.scale.verbose,
            )
        if not self.scale.verbose:
            self.console.print(f"   {len(SYSTEMS)} subscriptions created")

    async def publish_all(self, client: httpx.AsyncClient, schedule: list[Publish]) -> None:
        published_ok = True
        for item in schedule:
            answer = await publish(client, item)
            results = answer["events"]
            if item.duplicate:
                if not all(r["duplicate"] for r in results):
                    published_ok = False
                self.duplicates.extend(item.events)
                self.say(
                    f"[yellow]↺[/] {item.mo:<9} {item.label:<30} "
                    f"duplicate={results[0]['duplicate']} (stored once, not delivered again)"
                )
            else:
                if any(r["duplicate"] for r in results):
                    published_ok = False
                for event, result in zip(item.events, results, strict=True):
                    self.published.append(event)
                    self.positions[event["id"]] = result["position"]
                targets = sorted(
                    {s.path.lstrip("/") for s in SYSTEMS for e in item.events if s.wants(e["type"])}
                )
                count = f" ×{len(item.events)}" if len(item.events) > 1 else ""
                self.say(
                    f"[blue]→[/] {item.mo:<9} {item.label + count:<30} {item.mode:<10} "
                    f"→ {', '.join(targets) or '(log only)'}"
                )
            if self.scale.verbose:  # for the live table
                self.dead_now = len(await dead_letters(client, "partner-lots"))
            if self.scale.pace:
                await asyncio.sleep(self.scale.pace)
        self.check(
            "publishes acknowledged",
            published_ok,
            f"{len(schedule)} POST /v1/events, {len(self.published)} events, "
            f"{len(self.duplicates)} resent",
        )
        if not self.scale.verbose:
            self.console.print(
                f"   {len(self.published)} events in {len(schedule)} publishes "
                f"(+{len(self.duplicates)} duplicate)"
            )

    async def wait_dead(self, client: httpx.AsyncClient, lots: int) -> None:
        deadline = time.monotonic() + self.scale.wait
        while time.monotonic() < deadline:
            self.dead = await dead_letters(client, "partner-lots")
            self.dead_now = len(self.dead)
            if self.dead_now >= lots:
                return
            await asyncio.sleep(0.2)
        self.say(
            f"[red]only {self.dead_now} of {lots} lot releases became dead letters", always=True
        )

    async def recover(
        self, client: httpx.AsyncClient, downstream: Downstream, partner: System
    ) -> None:
        listing = Table(title="GET /v1/deadletters?subscription=partner-lots", title_justify="left")
        for column in ("id", "event type", "subject", "attempts", "last status", "reason"):
            listing.add_column(column)
        for item in self.dead:
            listing.add_row(
                str(item["id"]),
                item["event_type"],
                str(item["partitionkey"] or ""),
                str(item["attempts"]),
                str(item["last_status"]),
                str(item["reason"] or ""),
            )
        self.say(listing)
        if not self.dead:
            self.check("dead letters shown", False, "the portal's lots never became dead letters")
            return
        first = await expect(client.get(f"/v1/deadletters/{self.dead[0]['id']}"), 200)
        history = "\n".join(
            f"  attempt {a['attempt']}: {a['outcome']:<6} HTTP {a['status']}  "
            f"{a['duration_ms']:.0f} ms  {(a['response'] or '')[:50]}"
            for a in first["history"]
        )
        event = first.get("event") or {}
        data = event.get("data") or {}
        self.say(
            Panel(
                Text(
                    f"{first['event_type']}  lot {data.get('lot')} · MO {data.get('mo')} · "
                    f"{data.get('quantity')} {data.get('uom')} for {data.get('customer')}\n"
                    f"state {first['state']}, {first['attempts']} attempts:\n{history}"
                ),
                title=f"GET /v1/deadletters/{first['id']}",
                expand=False,
            )
        )
        attempts_ok = all(d["attempts"] == 3 for d in self.dead) and len(first["history"]) == 3
        self.check(
            "dead after 3 attempts",
            attempts_ok,
            f"{len(self.dead)} dead letters, attempts {sorted({d['attempts'] for d in self.dead})}",
        )
        await self.linger()

        downstream.partner_up = True
        self.say("[green]portal is back[/] (answers 204 now)", always=True)
        answer = await expect(
            client.post("/v1/deadletters/replay", json={"subscription": partner.subscription}),
            202,
        )
        self.replayed = int(answer["replayed"])
        self.say(
            f'POST /v1/deadletters/replay {{"subscription": "{partner.subscription}"}} '
            f"→ replayed {self.replayed}",
            always=True,
        )
        await self.until(
            "replayed lots at the portal", self.delivered_all(partner), self.scale.wait
        )
        self.dead = await dead_letters(client, None)
        self.dead_now = len(await dead_letters(client, partner.subscription))
        await self.linger()

    async def verify(self, client: httpx.AsyncClient, receiver: Receiver) -> None:
        published_ids = {e["id"] for e in self.published}
        for system in SYSTEMS:
            expected = [e["id"] for e in self.expected(system)]
            got = self.accepted(system)
            missing = set(expected) - set(got)
            extra = set(got) - set(expected)
            twice = [i for i, n in Counter(got).items() if n > 1]
            self.check(
                f"{system.path} got exactly its events",
                not missing and not extra and not twice,
                f"{len(set(got))}/{len(expected)} delivered"
                + (f", {len(missing)} missing" if missing else "")
                + (f", {len(extra)} unexpected" if extra else "")
                + (f", {len(twice)} twice" if twice else ""),
            )
        unrouted = [e for e in self.published if not any(s.wants(e["type"]) for s in SYSTEMS)]
        stray = [
            e["id"] for e in unrouted if any(r.event["id"] == e["id"] for r in receiver.received)
        ]
        self.check(
            "unsubscribed events stay in the log",
            not stray,
            f"{len(unrouted)} event(s) nobody subscribed to, {len(stray)} sent anyway",
        )

        erp = SYSTEMS[0]
        arrived = self.accepted(erp)
        broken = []
        for mo in sorted({e["subject"] for e in self.expected(erp)}):
            want = [
                e["id"]
                for e in sorted(self.expected(erp), key=lambda e: self.positions[e["id"]])
                if e["subject"] == mo
            ]
            order = [i for i in arrived if i in set(want)]
            if order != want:
                broken.append(mo)
        hiccups = sum(1 for r in receiver.received if r.path == "/erp") - len(arrived)
        self.check(
            "per-MO order at /erp",
            not broken,
            f"{len({e['subject'] for e in self.expected(erp)})} MOs in order, "
            f"{hiccups} refused attempt(s) retried in place"
            + (f"; out of order: {', '.join(broken)}" if broken else ""),
        )

        qms = [r for r in receiver.received if r.path == "/qms"]
        firsts: dict[str, float] = {}
        gaps: list[float] = []
        for r in qms:
            event_id = r.event["id"]
            if event_id in firsts:
                gaps.append(r.at - firsts.pop(event_id))
            else:
                firsts[event_id] = r.at
        qms_events = len(self.expected(SYSTEMS[1]))
        self.check(
            "/qms retried after Retry-After",
            len(gaps) == qms_events and all(gap >= 0.95 for gap in gaps),
            f"{len(gaps)}/{qms_events} retried, shortest wait "
            f"{min(gaps, default=0.0):.2f}s (asked 1s)",
        )

        stored: Counter[tuple[str, str]] = Counter()
        after = 0
        while True:
            page = await expect(
                client.get("/v1/events", params={"after": after, "limit": 1000}), 200
            )
            for record in page["events"]:
                event = record["event"]
                if event["id"] in published_ids:
                    stored[(event["source"], event["id"])] += 1
            if not page["events"]:
                break
            after = page["next_after"]
        resent = {(e["source"], e["id"]) for e in self.duplicates}
        self.check(
            "duplicate stored once",
            bool(resent)
            and all(stored[key] == 1 for key in resent)
            and len(stored) == len(published_ids)
            and all(n == 1 for n in stored.values()),
            f"{len(stored)} events in the log for {len(published_ids)} published, "
            f"{len(resent)} resent event(s) stored {sorted(stored[k] for k in resent)} time(s)",
        )

        lots = len(self.expected(SYSTEMS[2]))
        self.check(
            "dead letters replayed and delivered",
            self.replayed == lots
            and lots > 0
            and set(self.accepted(SYSTEMS[2])) >= {e["id"] for e in self.expected(SYSTEMS[2])},
            f"{self.replayed} replayed of {lots} lots, "
            f"{len(set(self.accepted(SYSTEMS[2])))} delivered",
        )
        self.check(
            "no dead letters left",
            not self.dead,
            f"GET /v1/deadletters lists {len(self.dead)}",
        )

    async def summarize(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/metrics")
        if response.status_code != 200:
            raise DemoError(f"GET /metrics answered {response.status_code}")
        counts = deliveries_total(response.text)
        table = Table(title="Summary", title_justify="left")
        for column in (
            "system",
            "subscription",
            "events",
            "delivered",
            "retries",
            "dead",
            "replayed",
        ):
            table.add_column(
                column, justify="left" if column in ("system", "subscription") else "right"
            )
        metrics_ok = True
        for system in SYSTEMS:
            expected, _, attempts = self.progress(system)
            by_outcome = counts.get(system.subscription, {})
            m_delivered = int(by_outcome.get("delivered", 0))
            m_retry = int(by_outcome.get("retry", 0))
            m_dead = int(by_outcome.get("dead", 0))
            if m_delivered != len(self.accepted(system)) or m_delivered + m_retry + m_dead != (
                attempts
            ):
                metrics_ok = False
            table.add_row(
                system.name,
                system.subscription,
                str(expected),
                str(m_delivered),
                str(m_retry),
                str(m_dead),
                str(self.replayed if system.path == "/partner" else 0),
            )
        table.caption = (
            "delivered / retries / dead: forgeline_deliveries_total from GET /metrics · "
            f"{len(self.published)} events published, {len(self.duplicates)} duplicate, "
            f"{time.monotonic() - self.started:.1f}s"
        )
        self.check(
            "/metrics agrees with the receivers",
            metrics_ok,
            "forgeline_deliveries_total{outcome=delivered|retry|dead} = attempts seen",
        )
        self.console.print(table)
        results = Table(title="Checks", title_justify="left", show_header=False)
        results.add_column("")
        results.add_column("check")
        results.add_column("detail", style="dim")
        for check in self.checks:
            mark = "[green]✓[/]" if check.ok else "[bold red]✗[/]"
            if check.ok and not self.scale.verbose:
                continue
            results.add_row(mark, check.name, check.detail)
        if results.row_count:
            self.console.print(results)
        failed = [c.name for c in self.checks if not c.ok]
        if failed:
            self.console.print(f"[bold red]FAILED[/]: {', '.join(failed)}")
        else:
            self.console.print(f"[bold green]all {len(self.checks)} checks passed[/]")


# -- HTTP helpers ----------------------------------------------------------------------------------


async def expect(request: Any, status: int) -> Any:
    """Await an httpx request and insist on ``status``; the JSON body (or None)."""
    response: httpx.Response = await request
    if response.status_code != status:
        raise DemoError(
            f"{response.request.method} {response.request.url.path} answered "
            f"{response.status_code}, expected {status}: {response.text[:300]}"
        )
    return response.json() if response.content else None


async def publish(client: httpx.AsyncClient, item: Publish) -> Any:
    status = 200 if item.duplicate else 201
    if item.mode == "binary":
        (event,) = item.events
        headers = {
            f"ce-{name}": str(value)
            for name, value in event.items()
            if name not in ("data", "datacontenttype")
        }
        headers["Content-Type"] = "application/json"
        return await expect(
            client.post("/v1/events", json=event.get("data"), headers=headers), status
        )
    if item.mode == "batch":
        body: Any = list(item.events)
        media = BATCH_CONTENT_TYPE
    elif item.mode == "structured":
        (body,) = item.events
        media = STRUCTURED_CONTENT_TYPE
    else:
        body = item.events[0] if len(item.events) == 1 else list(item.events)
        media = "application/json"
    return await expect(
        client.post("/v1/events", content=_dumps(body), headers={"Content-Type": media}),
        status,
    )


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body)


async def dead_letters(client: httpx.AsyncClient, subscription: str | None) -> list[Any]:
    params: dict[str, Any] = {"limit": 1000}
    if subscription is not None:
        params["subscription"] = subscription
    answer = await expect(client.get("/v1/deadletters", params=params), 200)
    items: list[Any] = answer["deadletters"]
    return items


def deliveries_total(text: str) -> dict[str, dict[str, float]]:
    """``forgeline_deliveries_total`` from a Prometheus exposition: subscription → outcome."""
    counts: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "forgeline_deliveries_total":
                by_outcome = counts.setdefault(sample.labels["subscription"], {})
                by_outcome[sample.labels["outcome"]] = sample.value
    return counts


# -- entry point -----------------------------------------------------------------------------------


async def run_demo(
    *, smoke: bool = False, data_dir: Path | None = None, console: Console | None = None
) -> bool:
    """Run the scenario; True iff every check passed. ``smoke`` runs it small, fast and quiet.

    Without ``data_dir`` the hub lives in a fresh temporary directory removed at the end.
    """
    scale = SMOKE if smoke else FULL
    console = console or Console()
    temporary = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="forgeline-demo-")) if data_dir is None else data_dir
    demo = Demo(scale, console, directory)
    if scale.verbose:
        console.print(
            Panel.fit(
                Group(
                    Text("Forgeline demo", style="bold"),
                    Text(
                        "A plant publishes manufacturing events; Odoo, the QMS and a customer "
                        "portal receive them.\nQMS asks for a retry, the portal is down for a "
                        "while: watch retries, dead letters and replay."
                    ),
                )
            )
        )
    try:
        async with asyncio.timeout(scale.timeout):
            return await demo.run()
    except TimeoutError:
        console.print(
            f"[bold red]FAILED[/]: the demo did not finish within {scale.timeout:g}s "
            f"(step: {demo.step})"
        )
        return False
    except (DemoError, httpx.HTTPError) as exc:
        console.print(f"[bold red]FAILED[/] at step {demo.step!r}: {exc}")
        return False
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
