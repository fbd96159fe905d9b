"""The second half of ``forgeline demo``'s scenario: the customer portal's webhook endpoint;
the floor builds while the hub's flows carry its reports to Odoo, the WMS and the QMS; what
went wrong on the way; an MES user changing a product the PLM owns; and the operator's work
on the dead letters and the portal's outage."""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..sim.mes import MesServer
from .api import DemoError, dead_letters, expect, publish
from .checks import QUARANTINED, Checks
from .downstream import HISTORIAN
from .odoo import plant_products
from .plant import BY_SKU, FAILING_MO, HICCUP_MO, SCRAP_MO
from .wiring import PlantSecrets

__all__ = ["LOT_TYPES", "MES_SOURCE", "PRODUCTS_FLOW", "Operations"]

MES_SOURCE = "mes://plant-1"
#: A subscription the flows of plant.yaml make (``<flow>.<target>``) that the demo watches.
PRODUCTS_FLOW = "products-to-erp.odoo"
#: What the customer portal subscribes to at its webhook endpoint.
LOT_TYPES = ["lot.released.v1"]
#: The endpoint's retries, short for the demo: 3 attempts 0.2 s apart, then dead.
PORTAL_SCHEDULE = [0.2, 0.2]
PORTAL_METADATA = {"demo": "customer-portal"}


class Operations(Checks):
    """The portal, the floor, the failures, governance and recovery, step by step."""

    async def register_portal(self, client: httpx.AsyncClient) -> None:
        """The operator registers the customer portal's endpoint over the API and hands the
        portal its ``whsec_`` secret, which the hub shows this once."""
        assert self.portal is not None
        # A kept data directory has an earlier run's endpoint, on a port long closed: gone.
        listed = await expect(client.get("/v1/webhooks/endpoints", params={"limit": 1000}), 200)
        for earlier in listed["endpoints"]:
            if earlier["metadata"] == PORTAL_METADATA:
                await expect(client.delete(f"/v1/webhooks/endpoints/{earlier['id']}"), 204)
        answer = await expect(
            client.post(
                "/v1/webhooks/endpoints",
                json={
                    "url": self.portal.url,
                    "types": LOT_TYPES,
                    "description": "customer portal: released lots",
                    "metadata": PORTAL_METADATA,
                    "schedule": PORTAL_SCHEDULE,
                    "timeout": 2,
                },
            ),
            201,
        )
        self.portal.secret = answer.pop("secret")
        self.endpoint = answer
        self.say(
            f"   operator: POST /v1/webhooks/endpoints {{url: portal, types: {LOT_TYPES}}} → "
            f"{answer['id']} with a whsec_ secret shown once (the portal keeps it); signed "
            f"{answer['signing']}, retries after {PORTAL_SCHEDULE} s",
            always=True,
        )

    async def build(self, mes: MesServer, keys: PlantSecrets) -> None:
        assert self.floor is not None
        failing = self.orders[FAILING_MO] if len(self.orders) > FAILING_MO else None
        if failing is not None:
            await self.floor.script_result(failing.lot, "REJECTED")
        if len(self.orders) > HICCUP_MO:
            self.downstream.hiccup_mo = self.orders[HICCUP_MO].mo
        live: contextlib.AbstractContextManager[Any] = (
            Live(self, console=self.console, refresh_per_second=8, transient=True)
            if self.scale.verbose and self.console.is_terminal
            else contextlib.nullcontext()
        )
        with live:
            for order in self.orders:
                scrap = 0.15 if order.index == SCRAP_MO else 0.0
                wo = order.wo
                await self.floor.start(
                    wo["woNumber"],
                    batch=math.ceil(wo["qtyOrdered"] / 3),
                    cycle=self.scale.cycle,
                    scrap_rate=scrap,
                )
                self.say(
                    f"[blue]▶[/] MES   operator starts {wo['woNumber']} ({order.mo}) on "
                    f"{wo['line']}" + (f", scrap rate {scrap:.0%}" if scrap else "")
                )
                if self.scale.pace:
                    await asyncio.sleep(self.scale.pace)
            if not await self.until("the plant to settle", self.settled, self.scale.wait):
                raise DemoError(f"the plant did not settle: {self.progress}")
        # A shop-floor gateway that timed out resends a message it had sent: one event.
        first = next(m.body for m in mes.sent if m.body["erpOrder"] == self.orders[0].mo)
        self.resent = await expect(
            self.floor.http.post(f"{self.hub_url}/hooks/mes/{keys.mes_hook_token}", json=first),
            (200, 202),
        )
        self.say(self.dashboard())
        self.say(
            f"   MES → /hooks/mes: {self.mes_messages(mes)} messages · resent "
            f"{first['msgId']}: duplicate={self.resent['duplicate']} (stored once)",
            always=True,
        )

    async def settled(self) -> bool:
        """Every system done with this run's MOs, and the portal's releases dead."""
        assert self.odoo is not None
        assert self.floor is not None
        progress = self.progress
        progress.odoo_done = await self.odoo.done()
        complete = stored = decided = 0
        for order in self.orders:
            order.wo = wo = await self.floor.work_order(order.wo["woNumber"])
            complete += wo["status"] == "COMPLETE"
            stored += bool(await self.floor.stock(order.lot))
            lot = await self.floor.lot(order.lot)
            decided += lot is not None and lot["lastResult"] is not None
        progress.mes_complete, progress.wms_stored, progress.qms_decided = (
            complete,
            stored,
            decided,
        )
        accepted = len(self.orders) - (1 if len(self.orders) > FAILING_MO else 0)
        total = len(self.orders)
        done = (progress.odoo_done, complete, stored, decided) == (total,) * 4
        if done and progress.dead_at_portal < accepted:
            progress.dead_at_portal = await self.portal_dead()
        # The MES's outbox empty too: no message of this run is still on its way to the hub.
        assert self.mes is not None
        return (
            done
            and not self.mes.outbox.queue
            and progress.dead_at_portal >= accepted
            and self.historian_has_all()
        )

    async def portal_dead(self) -> int:
        assert self.client is not None
        self.dead = await dead_letters(self.client, self.portal_subscription)
        return len(self.dead)

    def narrate_failures(self) -> None:
        assert self.odoo is not None
        lost = len(self.odoo.faults.lost)
        self.say(
            f"Odoo committed one button_mark_done and lost its answer ({lost}×) → flow target "
            f"production-completed.erp retried, found the MO done → "
            f"{self.progress.odoo_done}/{len(self.orders)} MOs done",
            always=True,
        )
        if self.downstream.hiccup_id is not None:
            self.say(
                f"the historian asked for one consumption report of {self.downstream.hiccup_mo} "
                "later (503, Retry-After: 1) → retried after 1s; that MO's later reports "
                "waited their turn (ordering: key)",
                always=True,
            )
        if len(self.orders) > FAILING_MO:
            failing = self.orders[FAILING_MO]
            self.say(
                f"the QMS rejected lot {failing.lot} ({failing.mo}) → its hold became "
                "quality.hold.placed.v1, and no lot.released.v1 went out for it",
                always=True,
            )
        self.say(
            f"the portal answered 500 three times per lot → {len(self.dead)} lot releases dead",
            always=True,
        )

    async def rename_from_the_floor(self, client: httpx.AsyncClient) -> None:
        """An MES user 'fixes' a product description: a product change from a system that does
        not own products. The hub stores it, refuses to apply it, and says why."""
        assert self.odoo is not None
        product = self.orders[0].product if self.orders else next(iter(BY_SKU.values()))
        change_id = f"MES-FIX-{secrets.token_hex(4)}"
        self.refused_change = {
            "specversion": "1.0",
            "id": change_id,
            "source": MES_SOURCE,
            "type": "product.changed.v1",
            "subject": product.sku,
            "data": {
                "changeId": change_id,
                "partNo": product.sku,
                "revision": "A",
                "description": f"{product.name} (renamed at the line)",
                "uom": product.uom,
                "makeOrBuy": "MAKE",
                "releasedAt": datetime.now(UTC).isoformat(timespec="seconds"),
                "releasedBy": "mes.operator",
            },
        }
        await publish(client, self.refused_change)
        self.say(
            f"[blue]→[/] POST /v1/events  product.changed.v1 from {MES_SOURCE}: "
            f'{product.sku} "{self.refused_change["data"]["description"]}"'
        )

        async def quarantined() -> bool:
            return any(
                e["type"] == QUARANTINED
                and (e.get("data") or {}).get("event", {}).get("id") == change_id
                for e in await self.run_log(client)
            )

        await self.until("the quarantine event", quarantined, self.scale.wait)
        found = await plant_products(self.odoo.client)
        name = found[product.sku][0]["name"] if found[product.sku] else "?"
        self.say(
            f"   {QUARANTINED}: the rule says plm owns product, the change came from mes → "
            f'not applied; Odoo still calls {product.sku} "{name}"',
            always=True,
        )

    async def recover(self, client: httpx.AsyncClient) -> None:
        listing = Table(
            title=f"GET /v1/deadletters?subscription={self.portal_subscription} "
            f"(the portal's endpoint {self.endpoint.get('id')})",
            title_justify="left",
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
        data = (first.get("event") or {}).get("data") or {}
        self.say(
            Panel(
                Text(
                    f"{first['event_type']}  lot {data.get('lot')} · {data.get('product')} · "
                    f"{data.get('status')} by {data.get('released_by')}\n"
                    f"state {first['state']}, {first['attempts']} attempts:\n{history}"
                ),
                title=f"GET /v1/deadletters/{first['id']}",
                expand=False,
            )
        )
        self.check(
            "dead after 3 attempts",
            all(d["attempts"] == 3 for d in self.dead) and len(first["history"]) == 3,
            f"{len(self.dead)} dead letters, attempts {sorted({d['attempts'] for d in self.dead})}",
        )
        await self.linger()

        await self.recover_portal(client)
        await self.linger()

        # What is left dead is the refused product change: the operator decides it stays
        # refused (the PLM owns products) and discards it, with the reason on record.
        left = await dead_letters(client)
        self.verify_dead_left(left)
        for item in left:
            if str(item.get("reason") or "").startswith("quarantined"):
                await expect(
                    client.post(
                        f"/v1/deadletters/{item['id']}/discard",
                        json={"reason": "refused: products are changed in the PLM"},
                    ),
                    (200, 204),
                )
                self.discarded.append(str(item["id"]))
        self.say(
            f"the refused product change ({PRODUCTS_FLOW}) discarded by the operator: "
            "products are changed in the PLM",
            always=True,
        )

    async def recover_portal(self, client: httpx.AsyncClient) -> None:
        """The portal is back: the operator asks its endpoint to resend what failed since it
        was registered, then reads the endpoint's attempt log."""
        assert self.portal is not None
        self.portal.up = True
        self.say("[green]portal is back[/] (answers 204 now)", always=True)
        endpoint = self.endpoint["id"]
        since = datetime.fromtimestamp(float(self.endpoint["created_at"]), UTC).isoformat()
        answer = await expect(
            client.post(f"/v1/webhooks/endpoints/{endpoint}/recover", json={"since": since}),
            202,
        )
        self.replayed = int(answer["recovered"])
        self.say(
            f"POST /v1/webhooks/endpoints/{endpoint}/recover {{since: {since[11:19]}}} → "
            f"recovered {self.replayed}",
            always=True,
        )
        wanted = {d["event_id"] for d in self.dead}
        await self.until(
            "recovered lots at the portal", lambda: wanted <= self.partner_got(), self.scale.wait
        )
        # The portal has the events before the hub has recorded the outcomes: wait for them.
        deadline = time.monotonic() + self.scale.wait
        while True:
            log = await expect(
                client.get(f"/v1/webhooks/endpoints/{endpoint}/attempts", params={"limit": 1000}),
                200,
            )
            self.attempts = list(log["messages"])
            settled = all(m["state"] == "delivered" for m in self.attempts)
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        table = Table(title=f"GET /v1/webhooks/endpoints/{endpoint}/attempts", title_justify="left")
        for column in ("event", "lot", "state", "attempts: HTTP status"):
            table.add_column(column)
        lots = {d["event_id"]: d["partitionkey"] for d in self.dead}
        for message in self.attempts:
            table.add_row(
                str(message["event_id"]),
                str(lots.get(message["event_id"], "")),
                str(message["state"]),
                " ".join(str(a["status"]) for a in message["history"]),
            )
        self.say(table)
        self.say(
            f"   the portal took {len(self.partner_got())} lot releases, each verified with "
            "standardwebhooks and the endpoint's whsec_ secret",
            always=True,
        )

    def historian_has_all(self) -> bool:
        """Every report the MES made of this run's MOs reached the historian (the count is
        the MES's own: one completion per MO, one per consumption message)."""
        assert self.receiver is not None
        return len(set(self.receiver.ids(HISTORIAN))) >= self.historian_expected()

    def mes_messages(self, mes: MesServer) -> int:
        mos = {order.mo for order in self.orders}
        return sum(1 for m in mes.sent if m.body.get("erpOrder") in mos)
