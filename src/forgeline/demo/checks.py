"""The checks that end ``forgeline demo``: what arrived where - receivers, Odoo, the log,
``/metrics`` - against what was published, and the tables that show it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
from rich.table import Table

from ..hub import Hub
from ..sim.odoo.server import OdooServer
from ..sources import WEBHOOK_TYPE
from ..store import DeadLetterFilter
from ..testing import Receiver
from .api import DemoError, deliveries_total, expect, read_log
from .downstream import COMPLETED, ERP, HISTORIAN, PARTNER, QMS, RELEASED, SYSTEMS
from .plant import FAILING_MO
from .state import DemoState

__all__ = ["Checks"]


class Checks(DemoState):
    """The run's state, and the checks and summary over it."""

    async def verify(
        self, client: httpx.AsyncClient, receiver: Receiver, hub: Hub, odoo: OdooServer
    ) -> None:
        self.odoo_events = await self.odoo_log(client)
        for system in SYSTEMS:
            expected = [e["id"] for e in self.expected(system)]
            got = self.accepted(system)
            missing = set(expected) - set(got)
            extra = set(got) - set(expected)
            twice = [i for i, n in Counter(got).items() if n > 1]
            self.check(
                f"{system.path} got exactly its events",
                bool(expected) and not missing and not extra and not twice,
                f"{len(set(got))}/{len(expected)} delivered"
                + (f", {len(missing)} missing" if missing else "")
                + (f", {len(extra)} unexpected" if extra else "")
                + (f", {len(twice)} twice" if twice else ""),
            )
        self.verify_releases(odoo)
        unrouted = [e for e in self.published if not any(s.wants(e) for s in (*SYSTEMS, ERP))]
        stray = [
            e["id"] for e in unrouted if any(r.event["id"] == e["id"] for r in receiver.received)
        ]
        self.check(
            "unsubscribed events stay in the log",
            bool(unrouted) and not stray,
            f"{len(unrouted)} event(s) nobody subscribed to, {len(stray)} sent anyway",
        )
        self.verify_historian(receiver)
        self.verify_qms(receiver)
        await self.verify_log(client)

        lots = len(self.expected(PARTNER))
        self.check(
            "dead letters replayed and delivered",
            self.replayed == lots
            and lots > 0
            and set(self.accepted(PARTNER)) >= {e["id"] for e in self.expected(PARTNER)},
            f"{self.replayed} replayed of {lots} lots, "
            f"{len(set(self.accepted(PARTNER)))} delivered",
        )
        self.check(
            "no dead letters left",
            not self.dead,
            f"GET /v1/deadletters lists {len(self.dead)}",
        )
        await self.verify_odoo(client, hub)
        await self.verify_reported_back(client)

    def verify_releases(self, odoo: OdooServer) -> None:
        """Each MO confirmed in Odoo became one release, delivered to the MES once, though both
        Odoo's webhook and the hub's poller saw the confirmation."""
        at_mes = Counter(e["subject"] for e in self.releases_at_mes())
        logged = Counter(e["subject"] for e in self.odoo_events if e["type"] == RELEASED)
        hooks = sum(1 for e in self.odoo_events if e["type"] == WEBHOOK_TYPE)
        sent = sum(1 for a in odoo.webhooks.attempts if a.ok)
        self.check(
            "every MO released in Odoo reached the MES once",
            bool(self.planned)
            and all(at_mes[name] == 1 and logged[name] == 1 for name in self.planned),
            f"{len(self.planned)} MOs confirmed in Odoo → {sum(logged.values())} release "
            f"events stored, {sum(at_mes.values())} at the MES; {sent} webhook notification(s) "
            f"sent by Odoo, {hooks} taken, each waking the poller",
        )

    def verify_historian(self, receiver: Receiver) -> None:
        arrived = self.accepted(HISTORIAN)
        expected = sorted(self.expected(HISTORIAN), key=lambda e: self.positions[e["id"]])
        broken = []
        mos = sorted({e["subject"] for e in expected})
        for mo in mos:
            want = [e["id"] for e in expected if e["subject"] == mo]
            order = [i for i in arrived if i in set(want)]
            if order != want:
                broken.append(mo)
        refused = sum(1 for r in receiver.received if r.path == HISTORIAN.path) - len(arrived)
        self.check(
            "per-MO order at /historian",
            bool(mos) and not broken,
            f"{len(mos)} MOs in order, {refused} refused attempt(s) retried in place"
            + (f"; out of order: {', '.join(broken)}" if broken else ""),
        )

    def verify_qms(self, receiver: Receiver) -> None:
        firsts: dict[str, float] = {}
        gaps: list[float] = []
        for r in receiver.received:
            if r.path != QMS.path:
                continue
            event_id = r.event["id"]
            if event_id in firsts:
                gaps.append(r.at - firsts.pop(event_id))
            else:
                firsts[event_id] = r.at
        qms_events = len(self.expected(QMS))
        self.check(
            "/qms retried after Retry-After",
            len(gaps) == qms_events and all(gap >= 0.95 for gap in gaps),
            f"{len(gaps)}/{qms_events} retried, shortest wait "
            f"{min(gaps, default=0.0):.2f}s (asked 1s)",
        )

    async def verify_log(self, client: httpx.AsyncClient) -> None:
        published_ids = {e["id"] for e in self.published}
        stored: Counter[tuple[str, str]] = Counter()
        every: Counter[tuple[str, str]] = Counter()
        for record in await read_log(client, self.log_start):
            event = record["event"]
            every[(event["source"], event["id"])] += 1
            if event["id"] in published_ids:
                stored[(event["source"], event["id"])] += 1
        resent = {(e["source"], e["id"]) for e in self.duplicates}
        self.check(
            "duplicate stored once",
            bool(resent)
            and all(stored[key] == 1 for key in resent)
            and len(stored) == len(published_ids)
            and all(n == 1 for n in every.values()),
            f"{len(stored)} MES events in the log for {len(published_ids)} published, "
            f"{len(resent)} resent event(s) stored {sorted({stored[k] for k in resent})} "
            f"time(s); {len(every)} events this run, none twice",
        )

    async def verify_odoo(self, client: httpx.AsyncClient, hub: Hub) -> None:
        assert self.odoo is not None
        self.rows = await self.odoo.orders()
        reported = {
            e["data"]["mo"]: float(e["data"]["quantity"])
            for e in self.published
            if e["type"] == COMPLETED
        }
        wrong = [
            r["name"]
            for r in self.rows
            if r["state"] != "done" or float(r["qty_produced"]) != reported.get(r["name"])
        ]
        self.check(
            "every MO done in Odoo as the MES reported",
            len(self.rows) == len(self.planned) and not wrong,
            f"{len(self.rows) - len(wrong)}/{len(self.planned)} MOs done with qty_produced = "
            "the MES's quantity" + (f"; not: {', '.join(wrong)}" if wrong else ""),
        )
        moves = Counter(int(r["finished_moves"]) for r in self.rows)
        self.check(
            "one production per MO",
            bool(self.rows) and set(moves) == {1},
            f"done finished moves per MO: {dict(sorted(moves.items()))}",
        )
        # How many attempts each close took is the hub's business: no endpoint shows the
        # attempts of a delivered event, so this one check reads the hub's store.
        subscription = await expect(client.get(f"/v1/subscriptions/{ERP.subscription}"), 200)
        delivered = await hub.store.list_deliveries(
            "delivered", DeadLetterFilter(subscription["id"]), 1000
        )
        attempts = Counter(d.attempts for d in delivered)
        retried = [d for d in delivered if d.attempts > 1]
        by_id = {e["id"]: e["subject"] for e in self.published}
        for row in self.rows:
            row["attempts"] = next(
                (d.attempts for d in delivered if by_id.get(d.event_id) == row["name"]), 0
            )
        self.check(
            "the lost answer retried (2 attempts), counted once",
            len(self.odoo.faults.lost) == 1
            and len(delivered) == len(self.planned)
            and attempts == Counter({1: len(self.planned) - 1, 2: 1}),
            f"{len(self.odoo.faults.lost)} answer lost after Odoo committed; "
            f"{len(delivered)} closes delivered, attempts {dict(sorted(attempts.items()))}"
            + (f"; {by_id.get(retried[0].event_id)} retried and found done" if retried else ""),
        )
        counts = await self.odoo.product_counts()
        self.check(
            "the plant seeded once",
            set(counts.values()) == {1},
            f"{len(counts)} products, each once in Odoo (upserts by external id)",
        )

    async def verify_reported_back(self, client: httpx.AsyncClient) -> None:
        """Odoo's side of the loop: the poller turns each MO the sink closed into Odoo's own
        production.completed.v1, even one confirmed and closed within the same second."""
        names = {str(row["name"]) for row in self.rows}
        deadline = time.monotonic() + self.scale.wait
        while True:
            done = {
                str(e.get("subject")) for e in await self.odoo_log(client) if e["type"] == COMPLETED
            }
            if names <= done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.check(
            "Odoo reported every close back",
            bool(names) and names <= done,
            f"{len(names & done)}/{len(names)} MOs as {COMPLETED} from {self.odoo_source}",
        )

    async def summarize(self, client: httpx.AsyncClient) -> None:
        if self.rows and self.scale.verbose:
            self.console.print(self.odoo_table())
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
                str(self.replayed if system is PARTNER else 0),
            )
        erp = counts.get(ERP.subscription, {})
        table.add_row(
            ERP.name,
            ERP.subscription,
            str(len(self.expected(ERP))),
            str(int(erp.get("delivered", 0))),
            str(int(erp.get("retry", 0))),
            str(int(erp.get("dead", 0))),
            "0",
        )
        erp_ok = erp.get("delivered") == len(self.planned) and erp.get("retry") == 1
        table.caption = (
            "delivered / retries / dead: forgeline_deliveries_total from GET /metrics · "
            f"{len(self.published)} MES events published, {len(self.duplicates)} duplicate, "
            f"{time.monotonic() - self.started:.1f}s"
        )
        self.check(
            "/metrics agrees with the receivers and Odoo",
            metrics_ok and erp_ok,
            "forgeline_deliveries_total{outcome=delivered|retry|dead} = attempts seen; "
            f"{ERP.subscription}: {int(erp.get('delivered', 0))} delivered, "
            f"{int(erp.get('retry', 0))} retry",
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

    def odoo_table(self) -> Table:
        reported = {
            e["data"]["mo"]: e["data"]["quantity"] for e in self.published if e["type"] == COMPLETED
        }
        table = Table(
            title=f"Odoo: mrp.production, origin {self.odoo.plan if self.odoo else ''} · "
            "attempts: the hub's closes of the MO",
            title_justify="left",
        )
        for column in ("MO", "product", "planned", "MES made", "qty_produced", "state", "attempts"):
            table.add_column(
                column, justify="left" if column in ("MO", "product", "state") else "right"
            )
        for row in self.rows:
            index, planned = self.planned.get(row["name"], (-1, 0.0))
            note = " (scrap 1, no backorder)" if index == FAILING_MO else ""
            colour = "green" if row["state"] == "done" else "red"
            table.add_row(
                row["name"],
                str(row["product_id"][1]).partition("]")[0].lstrip("["),
                f"{planned:g}",
                f"{reported.get(row['name'], 0.0):g}{note}",
                f"{row['qty_produced']:g}",
                f"[{colour}]{row['state']}[/]",
                str(row.get("attempts", ""))
                + (" (answer lost)" if row.get("attempts") == 2 else ""),
            )
        return table
