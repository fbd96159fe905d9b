"""The checks that end ``forgeline demo``: each system's own end state compared with what the
plant did, independently of the hub's code - Odoo through its API, the MES, WMS and QMS
through theirs, the stand-ins' records, the hub's log and dead letters through its HTTP API,
``/metrics`` as Prometheus reads it, every event of a catalog type against the published
catalog (whoever published it: Odoo's own events carry ``odoo.*`` types and Odoo's shape, the
canonical ones come from the flows).

Only one check reads the hub's store (how many attempts a delivered close took: no endpoint
shows the attempts of a delivered event).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
from rich import box
from rich.table import Table

from ..canonical import CATALOG, InvalidPayload, validate
from ..hub import Hub
from ..sim.mes import MesServer
from ..sim.odoo.server import OdooServer
from ..sources import WEBHOOK_TYPE
from ..store import DeadLetterFilter
from .api import DemoError, deliveries_total, expect, webhook_requests
from .downstream import HISTORIAN, HISTORIAN_TYPES
from .odoo import plant_products
from .plant import FAILING_MO, PRODUCTS
from .state import DemoState

__all__ = ["QUARANTINED", "Checks"]

QUARANTINED = "masterdata.change.quarantined.v1"
RELEASED = "production.order.released.v1"
COMPLETED = "production.completed.v1"
#: Odoo's own events (the Odoo source's types: Odoo's record, not the canonical shape).
ODOO_RELEASED = "odoo.production.order.released.v1"
ODOO_DONE = "odoo.production.completed.v1"
LOT_RELEASED = "lot.released.v1"
HOLD = "quality.hold.placed.v1"
MOVED = "inventory.moved.v1"
MES_MESSAGE = "mes.message.v1"
ERP_CLOSE = "production-completed.erp"  # the flow target that closes MOs in Odoo
API_SOURCE = "api/"  # the source of what principals post to /v1/transactions: api/<id>


class Checks(DemoState):
    """The run's state, and the checks and summary over it."""

    async def verify(
        self, client: httpx.AsyncClient, hub: Hub, odoo: OdooServer, mes: MesServer
    ) -> None:
        await self.until("the flows' last events", lambda: self.caught_up(client), self.scale.wait)
        events = await self.run_log(client)
        await self.verify_products()
        await self.verify_releases(events, odoo)
        self.verify_erp_releases(events)
        self.verify_mes_messages(events, mes)
        await self.verify_odoo(client, hub)
        await self.verify_warehouse()
        await self.verify_quality(events)
        self.verify_canonical(events, mes)
        self.verify_historian(events)
        self.verify_portal(events)
        self.verify_quarantine(events)
        left = await expect(client.get("/v1/deadletters", params={"limit": 1000}), 200)
        self.check(
            "no dead letters left",
            not left["deadletters"] and bool(self.discarded),
            f"GET /v1/deadletters lists {len(left['deadletters'])}; the operator replayed "
            f"{self.replayed} and discarded {len(self.discarded)}",
        )
        await self.verify_reported_back(client)

    async def caught_up(self, client: httpx.AsyncClient) -> bool:
        """The WMS's and QMS's last callbacks have become events: the checks start from a
        plant at rest, not from one caught mid-flight."""
        kinds = Counter(e["type"] for e in await self.run_log(client))
        total = len(self.orders)
        return (
            kinds[RELEASED] >= total
            and kinds[COMPLETED] >= total
            and kinds[MOVED] >= total
            and kinds["quality.inspection.completed.v1"] >= total
            and kinds[HOLD] >= (1 if self.failing_lot() else 0)
        )

    # -- master data -----------------------------------------------------------------------

    async def verify_products(self) -> None:
        """The PLM's products are in Odoo once each, with the PLM's descriptions: the MES's
        rename never applied."""
        assert self.odoo is not None
        found = await plant_products(self.odoo.client)
        names = {p.sku: p.name for p in PRODUCTS} | {
            c.sku: c.name for p in PRODUCTS for c in p.components
        }
        wrong = [
            sku for sku, rows in found.items() if len(rows) != 1 or rows[0]["name"] != names[sku]
        ]
        self.check(
            "the PLM's products in Odoo, once each",
            not wrong and len(self.plm_ids) == len(found),
            f"{len(found) - len(wrong)}/{len(found)} products by part number with the PLM's "
            "description" + (f"; not: {', '.join(wrong)}" if wrong else ""),
        )

    # -- planning --------------------------------------------------------------------------

    async def verify_releases(self, events: list[dict[str, Any]], odoo: OdooServer) -> None:
        """Each MO confirmed in Odoo became one release event, though Odoo's webhook and the
        hub's poller both saw it, and one work order at the MES for the right part - which
        only the cross-reference the product flow filled could name."""
        assert self.floor is not None
        logged = Counter(
            e["subject"]
            for e in events
            if e["type"] == ODOO_RELEASED and e["source"] == self.odoo_source
        )
        wrong = []
        for order in self.orders:
            at_mes = await self.floor.work_orders(order.mo)
            if (
                logged[order.mo] != 1
                or len(at_mes) != 1
                or at_mes[0]["partNo"] != order.product.sku
                or at_mes[0]["qtyOrdered"] != order.quantity
                or at_mes[0]["uom"] != order.product.uom
            ):
                wrong.append(order.mo)
        hooks = sum(
            1 for e in events if e["type"] == WEBHOOK_TYPE and e["source"] == self.odoo_source
        )
        sent = sum(1 for a in odoo.webhooks.attempts if a.ok)
        self.check(
            "every MO released in Odoo became one MES work order",
            bool(self.orders) and not wrong,
            f"{len(self.orders)} MOs confirmed → {sum(logged.values())} release events, "
            f"{len(self.orders) - len(wrong)} work orders with Odoo's part and quantity; "
            f"{sent} webhook notification(s) sent by Odoo, {hooks} taken"
            + (f"; wrong: {', '.join(wrong)}" if wrong else ""),
        )

    def verify_erp_releases(self, events: list[dict[str, Any]]) -> None:
        """Each of Odoo's releases became one canonical production.order.released.v1, in the
        hub's words (the part number, the plant's unit, the canonical status) and caused by
        Odoo's event: the flow did the mapping, Odoo never spoke the canonical name."""
        odoo_ids = {
            e["id"]: e["subject"]
            for e in events
            if e["type"] == ODOO_RELEASED and e["source"] == self.odoo_source
        }
        released: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if event["type"] == RELEASED:
                released.setdefault(str(event.get("subject")), []).append(event)
        wrong = []
        for order in self.orders:
            found = released.get(order.mo, [])
            data = (found[0].get("data") or {}) if len(found) == 1 else {}
            if not (
                data.get("number") == order.mo
                and data.get("product") == order.product.sku
                and data.get("quantity") == order.quantity
                and data.get("uom") == order.product.uom
                and data.get("status") == "released"
                and odoo_ids.get(str(found[0].get("causationid"))) == order.mo
            ):
                wrong.append(order.mo)
        self.check(
            "Odoo's releases mapped to canonical events",
            bool(self.orders) and not wrong and len(released) == len(self.orders),
            f"{len(odoo_ids)} {ODOO_RELEASED} → {sum(map(len, released.values()))} {RELEASED} "
            "with the part number, unit and status in the hub's words"
            + (f"; wrong: {', '.join(wrong)}" if wrong else ""),
        )

    def verify_mes_messages(self, events: list[dict[str, Any]], mes: MesServer) -> None:
        mos = {order.mo for order in self.orders}
        sent = [m.body["msgId"] for m in mes.sent if m.body.get("erpOrder") in mos]
        stored = Counter(
            e["id"] for e in events if e["type"] == MES_MESSAGE and e["subject"] in mos
        )
        self.check(
            "the MES's messages stored once each",
            bool(sent)
            and set(stored) == set(sent)
            and set(stored.values()) == {1}
            and self.resent.get("duplicate") is True,
            f"{len(sent)} messages posted to /hooks/mes → {len(stored)} mes.message.v1 events; "
            f"a resent one answered duplicate={self.resent.get('duplicate')}",
        )

    # -- Odoo ------------------------------------------------------------------------------

    async def verify_odoo(self, client: httpx.AsyncClient, hub: Hub) -> None:
        assert self.odoo is not None
        self.rows = await self.odoo.orders()
        made = {order.mo: float(order.wo.get("qtyGood", -1)) for order in self.orders}
        wrong = [
            r["name"]
            for r in self.rows
            if r["state"] != "done" or float(r["qty_produced"]) != made.get(r["name"])
        ]
        self.check(
            "every MO done in Odoo with the MES's quantity",
            len(self.rows) == len(self.orders) and not wrong,
            f"{len(self.rows) - len(wrong)}/{len(self.orders)} MOs done with qty_produced = "
            "the MES's good quantity" + (f"; not: {', '.join(wrong)}" if wrong else ""),
        )
        moves = Counter(int(r["finished_moves"]) for r in self.rows)
        self.check(
            "one production per MO",
            bool(self.rows) and set(moves) == {1},
            f"done finished moves per MO: {dict(sorted(moves.items()))}",
        )
        # How many attempts each close took is the hub's business: no endpoint shows the
        # attempts of a delivered event, so this one check reads the hub's store.
        subscription = await expect(client.get(f"/v1/subscriptions/{ERP_CLOSE}"), 200)
        delivered = await hub.store.list_deliveries(
            "delivered", DeadLetterFilter(subscription["id"]), 1000
        )
        ours = [d for d in delivered if d.partitionkey in {o.mo for o in self.orders}]
        attempts = Counter(d.attempts for d in ours)
        retried = next((d.partitionkey for d in ours if d.attempts > 1), None)
        for row in self.rows:
            row["attempts"] = next((d.attempts for d in ours if d.partitionkey == row["name"]), 0)
        self.check(
            "the lost answer retried (2 attempts), counted once",
            len(self.odoo.faults.lost) == 1
            and len(ours) == len(self.orders)
            and attempts == Counter({1: len(self.orders) - 1, 2: 1}),
            f"{len(self.odoo.faults.lost)} answer lost after Odoo committed; {len(ours)} "
            f"closes delivered, attempts {dict(sorted(attempts.items()))}"
            + (f"; {retried} retried and found done" if retried else ""),
        )

    async def verify_reported_back(self, client: httpx.AsyncClient) -> None:
        """Odoo's side of the loop: the poller turns each MO the flow closed into Odoo's own
        odoo.production.completed.v1 - done, with the MES's quantity - even one confirmed
        and closed within the same second."""
        made = {order.mo: float(order.wo.get("qtyGood", -1)) for order in self.orders}
        names = {str(row["name"]) for row in self.rows}
        deadline = time.monotonic() + self.scale.wait
        while True:
            done = {
                str(e.get("subject"))
                for e in await self.run_log(client)
                if e["type"] == ODOO_DONE
                and e["source"] == self.odoo_source
                and _reports_done(e, made.get(str(e.get("subject"))))
            }
            if names <= done or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        self.check(
            "Odoo reported every close back",
            bool(names) and names <= done,
            f"{len(names & done)}/{len(names)} MOs as {ODOO_DONE} from {self.odoo_source}, "
            "done with the MES's quantity",
        )

    # -- WMS and QMS -----------------------------------------------------------------------

    async def verify_warehouse(self) -> None:
        assert self.floor is not None
        wrong = []
        bins: set[str] = set()
        for order in self.orders:
            rows = await self.floor.stock(order.lot)
            bins.update(r["bin"] for r in rows)
            held = sum(float(r["qty"]) for r in rows)
            if held != float(order.wo.get("qtyGood", -1)) or not all(r["bin"] for r in rows):
                wrong.append(order.lot)
        self.check(
            "WMS stock holds every produced lot in a bin",
            bool(self.orders) and not wrong,
            f"{len(self.orders) - len(wrong)}/{len(self.orders)} lots in {len(bins)} bin(s) "
            "with the MES's good quantity" + (f"; not: {', '.join(wrong)}" if wrong else ""),
        )

    def failing_lot(self) -> str | None:
        return self.orders[FAILING_MO].lot if len(self.orders) > FAILING_MO else None

    async def verify_quality(self, events: list[dict[str, Any]]) -> None:
        assert self.floor is not None
        failing = self.failing_lot()
        usages: dict[str, str] = {}
        for order in self.orders:
            lot = await self.floor.lot(order.lot)
            usages[order.lot] = lot["usage"] if lot else "unknown"
        wanted = {
            order.lot: "BLOCKED" if order.lot == failing else "UNRESTRICTED"
            for order in self.orders
        }
        self.check(
            "QMS lot usages as inspected",
            bool(usages) and usages == wanted,
            ", ".join(f"{lot} {usage}" for lot, usage in usages.items()),
        )
        releases = Counter(
            (e.get("data") or {}).get("lot") for e in events if e["type"] == LOT_RELEASED
        )
        holds = Counter((e.get("data") or {}).get("lot") for e in events if e["type"] == HOLD)
        accepted = {lot for lot in wanted if lot != failing}
        self.check(
            "one lot release per accepted lot, a hold for the rejected one",
            releases == Counter(dict.fromkeys(accepted, 1))
            and holds == (Counter({failing: 1}) if failing else Counter()),
            f"{sum(releases.values())} {LOT_RELEASED} for {len(accepted)} accepted lots; "
            f"{HOLD} for {', '.join(str(k) for k in holds) or 'none'}"
            + (f" (rejected: {failing})" if failing else ""),
        )

    def verify_canonical(self, events: list[dict[str, Any]], mes: MesServer) -> None:
        """Every event of a catalog type is what the catalog publishes for it, whoever
        published it - Odoo's own (``odoo.*``, Odoo's shape) and the flows' canonical ones -
        and there are as many canonical events as the plant made."""
        typed = [e for e in events if e["type"] in CATALOG]
        invalid = []
        for event in typed:
            try:
                validate(event["type"], event.get("data"), path="data")
            except InvalidPayload as exc:
                invalid.append(f"{event['type']} {event['id']}: {exc}")
        mos = {order.mo for order in self.orders}
        consumption = sum(
            1
            for m in mes.sent
            if m.body.get("erpOrder") in mos and m.body["msgType"] == "CONSUMPTION"
        )
        # The plant's own: what an application posted to /v1/transactions is counted apart.
        kinds = Counter(e["type"] for e in typed if not e["source"].startswith(API_SOURCE))
        posted = len(typed) - kinds.total()
        counts_ok = (
            kinds[RELEASED] == len(self.orders)
            and kinds["material.consumed.v1"] == consumption
            and kinds[COMPLETED] == len(self.orders)
            and kinds[MOVED] == len(self.orders)
            and kinds["quality.inspection.completed.v1"] == len(self.orders)
        )
        self.check(
            "events valid by the catalog, whoever published them",
            bool(typed) and not invalid and counts_ok,
            f"{len(typed)} events: "
            + ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
            + (f", {posted} posted through the API" if posted else "")
            + (f"; invalid: {invalid[0]}" if invalid else ""),
        )

    # -- the stand-ins ---------------------------------------------------------------------

    def historian_expected(self) -> int:
        """What the historian should get, as the MES tells it: one completion per MO and one
        consumption report per CONSUMPTION message."""
        assert self.mes is not None
        mos = {order.mo for order in self.orders}
        consumption = sum(
            1
            for m in self.mes.sent
            if m.body.get("erpOrder") in mos and m.body["msgType"] == "CONSUMPTION"
        )
        return consumption + len(self.orders)

    def verify_historian(self, events: list[dict[str, Any]]) -> None:
        assert self.receiver is not None
        expected = sorted(
            (
                e
                for e in events
                if e["type"] in HISTORIAN_TYPES and e["source"].startswith("mes://")
            ),
            key=lambda e: int(e["position"]),
        )
        arrived = self.receiver.ids(HISTORIAN)
        broken = []
        mos = sorted({str(e["subject"]) for e in expected})
        for mo in mos:
            want = [e["id"] for e in expected if e["subject"] == mo]
            wanted = set(want)
            seen = [i for i in dict.fromkeys(arrived) if i in wanted]
            if seen != want:
                broken.append(mo)
        attempts = [r for r in self.receiver.received if r.path == HISTORIAN]
        hiccup = [r.at for r in attempts if r.event["id"] == self.downstream.hiccup_id]
        waited = hiccup[1] - hiccup[0] if len(hiccup) >= 2 else 0.0
        self.check(
            "per-MO order at the historian, Retry-After honoured",
            bool(mos)
            and not broken
            and len(expected) == self.historian_expected()
            and (self.downstream.hiccup_id is None or waited >= 0.95),
            f"{len(expected)} reports of {len(mos)} MOs in log order per MO; "
            f"{len(attempts) - len(set(arrived))} refused attempt(s), retried after "
            f"{waited:.2f}s (asked 1s)"
            + (f"; out of order: {', '.join(broken)}" if broken else ""),
        )

    def verify_portal(self, events: list[dict[str, Any]]) -> None:
        """Every lot release reached the customer portal's webhook endpoint, signed, and the
        portal's own check (the ``standardwebhooks`` package) verified each; the endpoint's
        attempt log shows the outage: three refused attempts per lot, then the delivery that
        ``recover`` made."""
        assert self.portal is not None
        released = {e["id"] for e in events if e["type"] == LOT_RELEASED}
        dead = {d["event_id"] for d in self.dead}
        got = self.partner_got()
        unverified = self.portal.unverified()
        self.check(
            "every lot release at the portal, signed and verified",
            bool(released)
            and got == released
            and not unverified
            and dead == released
            and self.replayed == len(dead),
            f"{len(got & released)}/{len(released)} {LOT_RELEASED} verified by standardwebhooks "
            f"at the portal, {len(unverified)} refused; recover resent {self.replayed} of "
            f"{len(dead)} dead",
        )
        outage = {
            str(m["event_id"]): [a["status"] for a in m["history"] if a["outcome"] != "delivered"]
            for m in self.attempts
        }
        self.check(
            "the endpoint's attempt log shows the outage",
            set(outage) == released
            and all(m["state"] == "delivered" for m in self.attempts)
            and all(statuses == [500, 500, 500] for statuses in outage.values()),
            f"{len(self.attempts)} messages, failed attempts: "
            + ", ".join(sorted({" ".join(map(str, s)) or "none" for s in outage.values()})),
        )

    # -- governance ------------------------------------------------------------------------

    def verify_quarantine(self, events: list[dict[str, Any]]) -> None:
        change = self.refused_change
        found = [
            e
            for e in events
            if e["type"] == QUARANTINED
            and (e.get("data") or {}).get("event", {}).get("id") == change.get("id")
        ]
        data = found[0]["data"] if found else {}
        self.check(
            "the non-owner's product change quarantined, not applied",
            len(found) == 1
            and data.get("owner") == "plm"
            and data.get("system") == "mes"
            and data.get("entity") == "product",
            f"{len(found)} {QUARANTINED}: {data.get('reason', 'none')}",
        )

    def verify_dead_left(self, left: list[dict[str, Any]]) -> None:
        """After the replay, what is dead is the refused change and nothing else."""
        refused = [
            d
            for d in left
            if d["event_id"] == self.refused_change.get("id")
            and str(d.get("reason") or "").startswith("quarantined")
        ]
        self.check(
            "nothing dead but the refused change",
            len(refused) == 1 and len(left) == 1,
            f"{len(left)} dead letter(s): "
            + ", ".join(f"{d['event_type']}: {d['reason']}" for d in left),
        )

    # -- the summary -----------------------------------------------------------------------

    async def summarize(self, client: httpx.AsyncClient) -> None:
        if self.rows and self.scale.verbose:
            self.console.print(self.odoo_table())
        response = await client.get("/metrics")
        if response.status_code != 200:
            raise DemoError(f"GET /metrics answered {response.status_code}")
        counts = deliveries_total(response.text)
        assert self.receiver is not None
        assert self.portal is not None
        # What each receiver saw: (requests it took, requests it got).
        seen = {
            f"webhook-{self.endpoint.get('id')}": (
                len(self.portal.accepted()),
                len(self.portal.requests),
            ),
            "historian.http": (
                len(self.receiver.ids(HISTORIAN)),
                sum(1 for r in self.receiver.received if r.path == HISTORIAN),
            ),
        }
        metrics_ok = True
        for subscription, (taken, attempts) in seen.items():
            outcome = counts.get(subscription, {})
            delivered, retry, dead = (
                int(outcome.get(k, 0)) for k in ("delivered", "retry", "dead")
            )
            if delivered != taken or delivered + retry + dead != attempts:
                metrics_ok = False
        hooks = webhook_requests(response.text)
        hooks_ok = self.hooks_counted(hooks)
        table = Table(title="Summary: deliveries per flow target (/metrics)", title_justify="left")
        for column in ("flow target", "delivered", "retries", "dead"):
            table.add_column(column, justify="left" if column == "flow target" else "right")
        for subscription in sorted(counts):
            outcome = counts[subscription]
            table.add_row(
                subscription,
                str(int(outcome.get("delivered", 0))),
                str(int(outcome.get("retry", 0))),
                str(int(outcome.get("dead", 0))),
            )
        self.check(
            "/metrics consistent with what the systems saw",
            metrics_ok and bool(counts) and hooks_ok,
            f"{len(counts)} flow targets counted, portal and historian attempts match; "
            "hooks taken: "
            + ", ".join(
                f"{system} {hooks[(system, 'accepted')]}"
                + (f"+{hooks[(system, 'duplicate')]} dup" if hooks[(system, "duplicate")] else "")
                for system in ("plm", "mes", "wms", "qms")
            ),
        )
        self.say(table)
        self.console.print(self.checks_table())
        passed = sum(1 for check in self.checks if check.ok)
        elapsed = time.monotonic() - self.started
        if passed == len(self.checks):
            self.console.print(
                f"[bold green]all {passed} checks passed[/] in {elapsed:.1f}s", highlight=False
            )
        else:
            self.console.print(
                f"[bold red]{len(self.checks) - passed} of {len(self.checks)} checks failed[/]",
                highlight=False,
            )

    def hooks_counted(self, hooks: Counter[tuple[str, str]]) -> bool:
        """What the hub counted at /hooks/<system> is what each sender says it delivered:
        the MES its acknowledged messages (and one resend), the WMS and QMS their callbacks
        answered 2xx, the PLM its items (known ones from an earlier run as duplicates)."""
        assert self.mes is not None
        assert self.wms is not None
        assert self.qms is not None
        return (
            hooks[("mes", "accepted")] == len(self.mes.sent)
            and hooks[("mes", "duplicate")] == 1
            and hooks[("wms", "accepted")] == len(self.wms.callbacks.delivered())
            and hooks[("qms", "accepted")] == len(self.qms.callbacks.delivered())
            and hooks[("plm", "accepted")] + hooks[("plm", "duplicate")] == len(self.plm_ids)
            and not any(outcome in ("rejected", "failed") for _, outcome in hooks)
        )

    def odoo_table(self) -> Table:
        table = Table(
            title="Odoo 19 · mrp.production (read back over JSON-2)",
            title_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for column in ("MO", "product", "made/planned", "state", "closes", "lot"):
            table.add_column(column, no_wrap=True)
        by_mo = {order.mo: order for order in self.orders}
        for row in self.rows:
            order = by_mo.get(str(row["name"]))
            table.add_row(
                str(row["name"]),
                order.product.sku if order else "",
                f"{row['qty_produced']:g}/{row['product_qty']:g}",
                str(row["state"]),
                str(row.get("attempts", "")),
                order.lot if order else "",
            )
        return table

    def checks_table(self) -> Table:
        table = Table(title="Checks", title_justify="left")
        table.add_column("")
        table.add_column("check")
        table.add_column("detail")
        for check in self.checks:
            table.add_row("[green]✓[/]" if check.ok else "[red]✗[/]", check.name, check.detail)
        return table


def _reports_done(event: dict[str, Any], made: float | None) -> bool:
    """Odoo's event shows its MO done with ``made`` produced (Odoo's record, as read)."""
    record = (event.get("data") or {}).get("record") or {}
    produced = record.get("qty_produced")
    return (
        record.get("state") == "done"
        and isinstance(produced, int | float)
        and float(produced) == made
    )
