"""The scenario of ``forgeline demo``: Odoo plans, the MES builds, the hub carries it all.

Everything runs for real on loopback, and the demo only talks HTTP, like any publisher,
operator or ERP would:

* a simulated Odoo 19 is the plant's ERP (JSON-2 with an API key, its database in the data
  directory), seeded through Forgeline's connector; the hub watches its manufacturing orders
  with a ``write_date`` poller and takes its "Send Webhook Notification" automation;
* Odoo plans and confirms MOs; the hub publishes each release once, whichever of poller and
  webhook saw it first, and ``mes-releases`` delivers it to the MES (``/mes``);
* the MES reports its work; ``erp-production`` closes each MO in Odoo (``button_mark_done``)
  and Odoo loses one answer after committing it: the redelivery finds the MO done;
* ``/historian`` takes the MES's ``production.*`` and ``material.*`` ordered by MO and answers
  502 once; ``/qms`` answers 503 with ``Retry-After: 1`` to every first attempt; ``/partner``
  (a customer portal) is down until the demo brings it back: dead letters, then a replay.

At the end the demo checks what arrived where - receivers, Odoo, the log, ``/metrics`` -
against what was published, and answers whether every check passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..config import Settings
from ..connectors.odoo import OdooClient, odoo_source
from ..exceptions import ForgelineError
from ..sim.odoo.faults import LoseAnswers
from ..sim.odoo.server import OdooServer
from ..sources import WEBHOOK_TYPE
from ..systems import OdooPoll, OdooSystem
from ..testing import Receiver, running_hub
from .api import DemoError, dead_letters, expect, log_head, publish
from .checks import Checks
from .downstream import (
    ERP,
    ERP_SINK,
    HISTORIAN,
    MES,
    PARTNER,
    QMS,
    RELEASED,
    SYSTEM,
    SYSTEMS,
    Downstream,
)
from .odoo import OdooPlant, seed_plant
from .plant import FULL, HICCUP_MO, SMOKE, Order, Publish, plant_schedule, production_plan
from .state import DemoResult

__all__ = ["DemoResult", "run_demo"]

ODOO_DB = "odoo-sim.db"  # the simulated Odoo's database, in the data directory
PLAN_PREFIX = "PLAN/"  # origin of the MOs the demo plans: what the hub watches


class Demo(Checks):
    """The scenario, step by step."""

    # -- steps -----------------------------------------------------------------------------

    async def run(self) -> bool:
        downstream = Downstream()
        token = secrets.token_urlsafe(16)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        plan = f"{PLAN_PREFIX}{stamp}-{secrets.token_hex(2)}"
        # Odoo commits the first MO close, then its answer is lost on the way back: the hub
        # cannot know the MO is done, and must find out on the redelivery.
        faults = LoseAnswers(("/mrp.production/button_mark_done",))

        self.heading(1, "Start Odoo 19 (simulated), the hub and the plant's systems")
        async with (
            OdooServer(version=19, faults=faults, data=self.data_dir / ODOO_DB) as odoo,
            Receiver(downstream.script) as receiver,
        ):
            self.receiver = receiver
            key = odoo.simulator.create_api_key("demo", 2, "forgeline hub")
            system = OdooSystem(
                url=odoo.url,
                db="demo",
                api_key=key,
                # The MOs the plant's planning makes, once released or done. Leaving drafts
                # out also keeps the release safe: the connector keys a change by (id,
                # write_date) at one-second resolution, so a draft polled in the second of its
                # confirmation would hide the confirmation as "already handed out".
                poll=[
                    OdooPoll(
                        model="mrp.production",
                        every=0.3,
                        overlap=2,
                        domain=[
                            ("origin", "=like", f"{PLAN_PREFIX}%"),
                            ("state", "in", ["confirmed", "done"]),
                        ],
                    )
                ],
                webhook_token=token,
            )
            settings = Settings.load(env={}, data_dir=self.data_dir, systems={SYSTEM: system})
            self.odoo_source = odoo_source(odoo.url, "demo")
            async with (
                running_hub(settings) as (hub, url),
                OdooClient(odoo.url, "demo", api_key=key) as erp,
                httpx.AsyncClient(
                    base_url=url,
                    headers={"Authorization": f"Bearer {hub.admin_key}"},
                    timeout=10.0,
                ) as client,
            ):
                self.log_start = await log_head(client)
                self.say(f"hub API   {url}  ·  data {self.data_dir} (SQLite)", always=True)
                self.say(
                    f"Odoo {odoo.version}  {odoo.url}  db demo, JSON-2 + API key  "
                    f"·  {ODOO_DB} in the data directory",
                    always=True,
                )
                for item in SYSTEMS:
                    self.say(f"{item.name:<10}{receiver.url(item.path)}")
                await self.linger()

                self.heading(2, "Seed the plant into Odoo (idempotent: upserts by external id)")
                hook = f"{url}/hooks/odoo/{SYSTEM}/{token}"
                seeded = await seed_plant(erp, hook, PLAN_PREFIX)
                self.odoo = OdooPlant(erp, faults, plan, seeded)
                self.say(
                    f"   {len(seeded.products)} products, {seeded.boms} BoMs, "
                    f"{seeded.counted} components counted on hand, webhook automation "
                    f"#{seeded.automation} → /hooks/odoo/{SYSTEM}/…",
                    always=True,
                )
                await self.linger()

                self.heading(3, "Subscribe the systems (POST /v1/subscriptions)")
                await self.subscribe(client, receiver)
                await self.linger()

                self.heading(4, f"Odoo plans production: {self.scale.mos} manufacturing orders")
                await self.plan(client)
                await self.linger()

                schedule = plant_schedule(self.orders)
                hiccup = self.orders[HICCUP_MO].mo if len(self.orders) > HICCUP_MO else None
                downstream.hiccup_id = next(
                    (p.events[0]["id"] for p in schedule if p.mo == hiccup and not p.duplicate),
                    None,
                )
                self.heading(5, "The MES builds them and reports (POST /v1/events)")
                live: contextlib.AbstractContextManager[Any] = (
                    Live(self, console=self.console, refresh_per_second=8, transient=True)
                    if self.scale.verbose and self.console.is_terminal
                    else contextlib.nullcontext()
                )
                with live:
                    await self.publish_all(client, schedule)

                    self.heading(6, "Failures: Odoo loses an answer, QMS says later, portal down")
                    await self.until(
                        "historian and QMS deliveries",
                        self.delivered_all(HISTORIAN, QMS),
                        self.scale.wait,
                    )
                    await self.wait_odoo_done()
                    await self.wait_dead(client, len(self.expected(PARTNER)))
                    self.narrate_failures(hiccup)
                    self.say(self.dashboard())
                    await self.linger()

                    self.heading(7, "Operate: inspect the dead letters, fix the portal, replay")
                    await self.recover(client, downstream)

                self.heading(8, "Summary")
                await self.verify(client, receiver, hub, odoo)
                await self.summarize(client)
        return all(check.ok for check in self.checks)

    async def subscribe(self, client: httpx.AsyncClient, receiver: Receiver) -> None:
        for system in (MES, ERP, *SYSTEMS[1:]):
            # A data directory kept from an earlier run: start that subscription afresh.
            if (await client.get(f"/v1/subscriptions/{system.subscription}")).status_code == 200:
                await expect(client.delete(f"/v1/subscriptions/{system.subscription}"), 204)
            spec: dict[str, Any] = {
                "name": system.subscription,
                "types": list(system.types),
                "sink": ERP_SINK if system is ERP else {"url": receiver.url(system.path)},
                "policy": system.policy,
            }
            if system.source is not None:
                spec["source"] = system.source
            created = await expect(client.post("/v1/subscriptions", json=spec), 201)
            policy = created["policy"]
            retry = policy["retry"]
            target = f"Odoo {SYSTEM}: button_mark_done" if system is ERP else (system.path)
            self.say(
                f"[green]✓[/] {system.subscription:<15}{', '.join(system.types):<30}"
                f"{system.source or '*':<10}→ {target}  ordering={policy['ordering']} "
                f"retry {retry['initial_delay']:g}s×{retry['multiplier']:g} "
                f"≤{retry['max_attempts']}"
            )
        if not self.scale.verbose:
            self.console.print(f"   {len(SYSTEMS) + 1} subscriptions created")

    async def plan(self, client: httpx.AsyncClient) -> None:
        assert self.odoo is not None
        started = time.time()  # the receiver stamps arrivals with time.time()
        for index, (product, quantity) in enumerate(production_plan(self.scale.mos)):
            name = await self.odoo.plan_mo(product, quantity)
            self.planned[name] = (index, quantity)
            self.say(
                f"[blue]⚙[/] Odoo  {name}  {quantity:g} {product.uom} × {product.name}  "
                f"confirmed (origin {self.odoo.plan})"
            )
            if self.scale.pace:
                await asyncio.sleep(self.scale.pace)
        arrived = await self.until(
            "the releases at the MES",
            lambda: set(self.planned) <= {e["subject"] for e in self.releases_at_mes()},
            self.scale.wait,
        )
        if not arrived:
            raise DemoError("the MES never learnt every released MO")
        assert self.receiver is not None
        arrivals = {
            r.event["subject"]: r.at
            for r in reversed(self.receiver.accepted)
            if r.path == MES.path and r.event.get("subject") in self.planned
        }
        by_name = {e["subject"]: e for e in self.releases_at_mes()}
        self.orders = [Order.from_release(by_name[name]) for name in self.planned]
        for order in self.orders:
            self.say(
                f"[green]←[/] MES   {order.mo}  {RELEASED}: {order.quantity:g} "
                f"{order.product.uom} {order.product.sku}  (+{arrivals[order.mo] - started:.1f}s)"
            )
        self.odoo_events = await self.odoo_log(client)
        hooks = sum(1 for e in self.odoo_events if e["type"] == WEBHOOK_TYPE)
        self.say(
            f"   the hub's poller published each release once (source {self.odoo_source}); "
            f"Odoo's {hooks} webhook notification(s) woke it up · the MES knew all "
            f"{len(self.orders)} MOs after {max(arrivals.values()) - started:.1f}s",
            always=True,
        )

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
                    f"[yellow]↺[/] {item.mo:<12} {item.label:<32} "
                    f"duplicate={results[0]['duplicate']} (stored once, not delivered again)"
                )
            else:
                if any(r["duplicate"] for r in results):
                    published_ok = False
                for event, result in zip(item.events, results, strict=True):
                    self.published.append(event)
                    self.positions[event["id"]] = result["position"]
                targets = sorted(
                    {
                        s.path.lstrip("/") or "odoo"
                        for s in (*SYSTEMS, ERP)
                        for e in item.events
                        if s.wants(e)
                    }
                )
                count = f" ×{len(item.events)}" if len(item.events) > 1 else ""
                self.say(
                    f"[blue]→[/] {item.mo:<12} {item.label + count:<32} {item.mode:<10} "
                    f"→ {', '.join(targets) or '(log only)'}"
                )
            if self.scale.verbose:  # for the live table
                self.dead_now = len(await dead_letters(client, PARTNER.subscription))
                assert self.odoo is not None
                self.odoo_done = await self.odoo.done()
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

    def narrate_failures(self, hiccup: str | None) -> None:
        assert self.odoo is not None
        lost = len(self.odoo.faults.lost)
        self.say(
            f"Odoo committed one button_mark_done and lost its answer ({lost}×) → the hub "
            f"retried, found the MO done → {self.odoo_done}/{len(self.planned)} MOs done",
            always=True,
        )
        self.say(
            f"QMS answered 503 + Retry-After: 1 to every first attempt → retried, "
            f"delivered {len(set(self.accepted(QMS)))}",
            always=True,
        )
        if hiccup is not None:
            self.say(
                f"the historian refused one consumption of {hiccup} once (502) → retried; "
                "that MO's later events waited their turn",
                always=True,
            )
        self.say(
            f"portal answered 500 three times per lot → {self.dead_now} dead letters",
            always=True,
        )

    async def wait_dead(self, client: httpx.AsyncClient, lots: int) -> None:
        deadline = time.monotonic() + self.scale.wait
        while time.monotonic() < deadline:
            self.dead = await dead_letters(client, PARTNER.subscription)
            self.dead_now = len(self.dead)
            if self.dead_now >= lots:
                return
            await asyncio.sleep(0.2)
        self.say(
            f"[red]only {self.dead_now} of {lots} lot releases became dead letters", always=True
        )

    async def recover(self, client: httpx.AsyncClient, downstream: Downstream) -> None:
        listing = Table(
            title=f"GET /v1/deadletters?subscription={PARTNER.subscription}", title_justify="left"
        )
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
            client.post("/v1/deadletters/replay", json={"subscription": PARTNER.subscription}),
            202,
        )
        self.replayed = int(answer["replayed"])
        self.say(
            f'POST /v1/deadletters/replay {{"subscription": "{PARTNER.subscription}"}} '
            f"→ replayed {self.replayed}",
            always=True,
        )
        await self.until(
            "replayed lots at the portal", self.delivered_all(PARTNER), self.scale.wait
        )
        self.dead = await dead_letters(client, None)
        self.dead_now = len(await dead_letters(client, PARTNER.subscription))
        await self.linger()


# -- entry point -----------------------------------------------------------------------------------


async def run_demo(
    *, smoke: bool = False, data_dir: Path | None = None, console: Console | None = None
) -> DemoResult:
    """Run the scenario; the result is true iff every check passed. ``smoke`` runs it small,
    fast and quiet.

    Without ``data_dir`` the hub and the simulated Odoo live in a fresh temporary directory
    removed at the end; a kept one may be used again (the plant is upserted into Odoo).
    """
    scale = SMOKE if smoke else FULL
    console = console or Console()
    temporary = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="forgeline-demo-")) if data_dir is None else data_dir
    directory.mkdir(parents=True, exist_ok=True)
    demo = Demo(scale, console, directory)
    if scale.verbose:
        console.print(
            Panel.fit(
                Group(
                    Text("Forgeline demo", style="bold"),
                    Text(
                        "Odoo (simulated, over HTTP) plans manufacturing orders; the hub tells "
                        "the MES, the MES reports back, the hub closes the MOs in Odoo.\n"
                        "A lost Odoo answer, a historian hiccup, a QMS asking to retry later, "
                        "a portal that is down: watch retries, dead letters and replay."
                    ),
                )
            )
        )
    ok = False
    try:
        async with asyncio.timeout(scale.timeout):
            ok = await demo.run()
    except TimeoutError:
        console.print(
            f"[bold red]FAILED[/]: the demo did not finish within {scale.timeout:g}s "
            f"(step: {demo.step})"
        )
    except (DemoError, httpx.HTTPError, ForgelineError) as exc:
        console.print(f"[bold red]FAILED[/] at step {demo.step!r}: {exc}")
    finally:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    return DemoResult(ok, demo.checks, demo.published, demo.odoo_source, demo.rows)
