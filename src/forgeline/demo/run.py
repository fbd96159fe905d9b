"""The scenario of ``forgeline demo``: a plant whose systems talk only to the hub, and the hub
does what its config's flows say - nothing in this file moves an event from one system to
another.

Everything runs for real on loopback, over HTTP:

* a simulated Odoo 19 is the ERP (JSON-2 with an API key, its database in the data
  directory); the simulated MES, WMS and QMS are the shop floor, each in its own vocabulary;
  a stand-in receiver is the plant's historian, and a customer portal verifies the signed
  webhooks of the endpoint the operator registers for it (``portal.py``);
* the hub runs from ``plant.yaml``, written into the data directory from the package's
  template (``wiring.py``): five systems, one ownership rule, eleven mappings, ten flows;
* the demo plays the people: the PLM releases the products (a signed webhook), the ERP's
  administrators set up BoMs, stock, customers and a supplier, planners confirm MOs in Odoo,
  the operator starts the work orders at the MES, an MES user renames a product it does not
  own, and the operator handles the dead letters and the portal's outage;
* and the plant's own software: the operator gives a line-side application and the customer
  portal identities of their own, and they call the business APIs instead of Odoo
  (``apps.py``: availability, a purchase request, a confirmed transaction, customer
  validation, and what a partner may not do).

What goes wrong on purpose: Odoo loses the answer to one ``button_mark_done`` after
committing it, the historian asks once to get a report later (503, ``Retry-After``), the QMS
rejects one lot, the portal is down until the operator brings it back (and asks its endpoint
to ``recover``). At the end the demo
checks each system's own end state (``checks.py``) and answers whether every check passed.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..business import BusinessSettings
from ..config import Settings
from ..connectors.odoo import OdooClient, odoo_source
from ..exceptions import ForgelineError
from ..hub import Hub
from ..route.subscription import HttpSink, OdooSink, PublishSink, RestSink, SubscriptionSpec
from ..sim.mes import MesServer
from ..sim.odoo.faults import LoseAnswers
from ..sim.odoo.server import OdooServer
from ..sim.qms import QmsServer
from ..sim.wms import WmsServer
from ..store import DeadLetterFilter
from ..testing import Receiver
from .api import DemoError, expect, log_head, post_signed
from .apps import Applications
from .downstream import HISTORIAN
from .floor import Floor
from .odoo import OdooPlant, odoo_units, seed_accounts, seed_plant
from .operations import PRODUCTS_FLOW, Operations
from .plant import (
    CUSTOMERS,
    FULL,
    LINES,
    SMOKE,
    SUPPLIER,
    Scale,
    mes_part_master,
    plm_items,
    production_plan,
)
from .portal import Portal
from .serving import serve_hub
from .state import DemoResult, Order
from .wiring import CONFIG_FILE, PlantAddresses, PlantSecrets, write_plant_config

__all__ = ["run_demo"]

ODOO_DB = "odoo-sim.db"  # the simulated Odoo's database, in the data directory
PLAN_PREFIX = "PLAN/"  # origin of the MOs the demo plans: what the hub watches
ERP = "plant-erp"  # the Odoo system's name in plant.yaml


def _free_port() -> int:
    """A loopback port for the MES, chosen before the hub's config names it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _target(spec: SubscriptionSpec) -> str:
    """One flow target in a few words: ``odoo mrp.production button_mark_done``."""
    sink = spec.sink
    if isinstance(sink, OdooSink):
        what = sink.odoo.method if sink.odoo.action != "upsert" else "upsert"
        return f"odoo {sink.odoo.model} {what}"
    if isinstance(sink, RestSink):
        return f"{sink.rest.method} {urlsplit(sink.rest.url).path}"
    if isinstance(sink, PublishSink):
        return f"→ {sink.publish.type}"
    if isinstance(sink, HttpSink):
        return f"webhook {urlsplit(sink.url).path}"
    return spec.name


def _business(scale: Scale) -> BusinessSettings:
    """The availability cache timed to the run, so the demo need not sit out a plant's
    seconds to show a cached and then a stale answer."""
    return BusinessSettings(
        availability_ttl=scale.cache_ttl, availability_deadline=scale.erp_deadline
    )


class Demo(Operations, Applications):
    """The scenario, step by step (then ``operations.Operations``, ``apps.Applications``)."""

    async def run(self) -> bool:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        plan = f"{PLAN_PREFIX}{stamp}-{secrets.token_hex(2)}"
        # Odoo commits the first MO close, then its answer is lost on the way back: the hub
        # cannot know the MO is done, and must find out on the redelivery.
        faults = LoseAnswers(("/mrp.production/button_mark_done",))
        settle = self.scale.settle

        self.heading(1, "Start the plant: Odoo 19, MES, WMS, QMS (simulated) and the hub")
        async with OdooServer(version=19, faults=faults, data=self.data_dir / ODOO_DB) as odoo:
            keys = PlantSecrets(odoo.simulator.create_api_key("demo", 2, "forgeline hub"))
            async with (
                OdooClient(odoo.url, "demo", api_key=keys.odoo_api_key) as erp,
                Receiver(self.downstream.script) as receiver,
                Portal() as portal,
                WmsServer(
                    auto_complete=settle,
                    callback_secret=keys.wms_callback_secret,
                    data=self.data_dir / "wms.json",
                ) as wms,
                QmsServer(
                    decide_after=settle,
                    callback_secret=keys.qms_callback_secret,
                    data=self.data_dir / "qms.json",
                    admin=True,  # /__sim__/script: the demo fails one lot on purpose
                ) as qms,
                httpx.AsyncClient(timeout=10.0) as http,
            ):
                self.receiver, self.portal = receiver, portal
                unit, kg = await odoo_units(erp)
                mes_url = f"http://127.0.0.1:{_free_port()}"
                self.config = write_plant_config(
                    self.data_dir,
                    PlantAddresses(
                        odoo_url=odoo.url,
                        mes_url=mes_url,
                        wms_url=wms.url,
                        qms_url=qms.url,
                        historian_url=receiver.url(HISTORIAN),
                        plan_prefix=PLAN_PREFIX,
                        uom_unit_id=unit,
                        uom_kg_id=kg,
                    ),
                    keys,
                )
                settings = Settings.load(config_file=self.config, env={})
                self.odoo_source = odoo_source(odoo.url, "demo")
                async with (
                    serve_hub(settings, _business(self.scale)) as (hub, url, business),
                    httpx.AsyncClient(
                        base_url=url,
                        headers={"Authorization": f"Bearer {hub.admin_key}"},
                        timeout=10.0,
                    ) as client,
                    MesServer(
                        port=int(mes_url.rsplit(":", 1)[1]),
                        site="plant1",
                        lines=LINES,
                        parts=mes_part_master(),
                        post_to=f"{url}/hooks/mes/{keys.mes_hook_token}",
                        tick=self.scale.cycle,
                        setup_seconds=self.scale.cycle,
                        scrap_rate=0.0,
                        data=self.data_dir / "mes.json",
                    ) as mes,
                ):
                    # The WMS and the QMS call back to the hub, signing with their secrets.
                    wms.callback_url = f"{url}/hooks/wms"
                    qms.callback_url = f"{url}/hooks/qms"
                    self.floor = Floor(http, mes.url, wms.url, qms.url)
                    self.client, self.hub_url = client, url
                    self.mes, self.wms, self.qms = mes, wms, qms
                    self.log_start = await log_head(client)
                    self.introduce(settings, url, odoo.url, mes.url, wms.url, qms.url)
                    await self.register_portal(client)
                    await self.linger()

                    self.heading(2, "The PLM releases the products; a flow upserts them into Odoo")
                    await self.release_products(client, http, hub, url, keys)
                    seeded = await seed_plant(
                        erp, f"{url}/hooks/odoo/{ERP}/{keys.odoo_hook_token}", PLAN_PREFIX
                    )
                    self.odoo = OdooPlant(erp, faults, plan, seeded)
                    await seed_accounts(erp)
                    self.say(
                        f"   Odoo's administrators add {seeded.boms} BoMs, count "
                        f"{seeded.counted} components on hand and the MO webhook automation "
                        f"#{seeded.automation} → /hooks/odoo/{ERP}/…; accounting adds "
                        f"{len(CUSTOMERS)} customers (credit limits on) and supplier "
                        f"{SUPPLIER.ref}",
                        always=True,
                    )
                    await self.linger()

                    self.heading(
                        3, f"Odoo plans {self.scale.mos} MOs; a flow releases each to the MES"
                    )
                    await self.plan()
                    await self.linger()

                    self.heading(4, "The floor builds: MES reports, Odoo, WMS and QMS follow")
                    await self.build(mes, keys)
                    await self.linger()

                    self.heading(5, "What went wrong on the way, and what the hub did")
                    self.narrate_failures()
                    await self.linger()

                    self.heading(6, "Governance: the MES renames a product the PLM owns")
                    await self.rename_from_the_floor(client)
                    await self.linger()

                    self.heading(7, "Operate: dead letters, the portal back, its endpoint recovers")
                    await self.recover(client)

                    self.heading(8, "Business APIs: a plant application and a partner call the hub")
                    await self.call_business_apis(
                        client, url, plan.removeprefix(PLAN_PREFIX), business.availability
                    )
                    await self.linger()

                    self.heading(9, "Summary")
                    await self.verify(client, hub, odoo, mes)
                    await self.verify_apis(hub)
                    await self.summarize(client)
        return all(check.ok for check in self.checks)

    # -- steps -----------------------------------------------------------------------------

    def introduce(self, settings: Settings, hub: str, *peers: str) -> None:
        flows = {s.flow for s in settings.subscriptions if s.flow}
        self.say(
            f"hub API   {hub}  ·  data {self.data_dir} (SQLite)  ·  config {self.config}",
            always=True,
        )
        self.say(
            f"   {len(settings.systems)} systems, {len(flows)} flows → "
            f"{len(settings.subscriptions)} targets, ownership: "
            + ", ".join(rule.describe() for rule in settings.ownership),
            always=True,
        )
        for name, peer in zip(("Odoo 19", "MES", "WMS", "QMS"), peers, strict=True):
            self.say(f"   {name:<10}{peer}")
        assert self.receiver is not None
        assert self.portal is not None
        self.say(f"   {'Portal':<10}{self.portal.url}")
        self.say(f"   {'Historian':<10}{self.receiver.url(HISTORIAN)}")
        self.say(self.flows_table(settings))

    def flows_table(self, settings: Settings) -> Table:
        """The config's flows as the hub expanded them: what each listens to, where it goes."""
        table = Table(title=f"{CONFIG_FILE} · flows", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("flow", no_wrap=True)
        table.add_column("on", min_width=24)
        table.add_column("targets", min_width=30)
        flows: dict[str, list[SubscriptionSpec]] = {}
        for spec in settings.subscriptions:
            flows.setdefault(spec.flow or spec.name, []).append(spec)
        for flow, targets in flows.items():
            on = ", ".join(targets[0].types)
            if targets[0].source:
                on += f" from {targets[0].source}"
            table.add_row(flow, on, "\n".join(_target(t) for t in targets))
        return table

    async def release_products(
        self,
        client: httpx.AsyncClient,
        http: httpx.AsyncClient,
        hub: Hub,
        url: str,
        keys: PlantSecrets,
    ) -> None:
        released_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        items = plm_items(released_at)
        again = 0
        for item in items:
            answer = await post_signed(
                http,
                f"{url}/hooks/plm",
                item,
                secret=keys.plm_hook_secret,
                header="X-PLM-Signature",
            )
            self.plm_ids.append(str(answer["id"]))
            again += bool(answer["duplicate"])
            self.say(
                f"[blue]→[/] PLM   {item['partNo']:<16} rev {item['revision']} "
                f"{item['uom']:<3} {item['description']}"
                + ("  (released before: stored once)" if answer["duplicate"] else "")
            )
        # Delivered means upserted in Odoo and bound in the cross-reference, in one delivery.
        subscription = await expect(client.get(f"/v1/subscriptions/{PRODUCTS_FLOW}"), 200)

        async def upserted() -> bool:
            delivered = await hub.store.list_deliveries(
                "delivered", DeadLetterFilter(subscription["id"]), 1000
            )
            return set(self.plm_ids) <= {d.event_id for d in delivered}

        if not await self.until("the products in Odoo", upserted, self.scale.wait):
            raise DemoError("the PLM's products never reached Odoo")
        self.say(
            f"   {len(items)} items POSTed to /hooks/plm (HMAC-signed)"
            + (f", {again} already known" if again else "")
            + f" → flow {PRODUCTS_FLOW}: upsert product.product by part number, Odoo's id "
            "bound to it in the cross-reference",
            always=True,
        )

    async def plan(self) -> None:
        assert self.odoo is not None
        started = time.monotonic()
        for index, (product, quantity) in enumerate(production_plan(self.scale.mos)):
            name = await self.odoo.plan_mo(product, quantity)
            self.orders.append(Order(index, name, product, quantity))
            self.say(
                f"[blue]⚙[/] Odoo  {name}  {quantity:g} {product.uom} × {product.name}  "
                f"confirmed (origin {self.odoo.plan})"
            )
            if self.scale.pace:
                await asyncio.sleep(self.scale.pace)

        async def released() -> bool:
            assert self.floor is not None
            for order in self.orders:
                if not order.wo:
                    found = await self.floor.work_orders(order.mo)
                    if found:
                        order.wo = found[0]
            return all(order.wo for order in self.orders)

        if not await self.until("a work order per MO at the MES", released, self.scale.wait):
            raise DemoError("the MES never got a work order for every released MO")
        for order in self.orders:
            wo = order.wo
            self.say(
                f"[green]←[/] MES   {order.mo} → {wo['woNumber']}  {wo['qtyOrdered']} "
                f"{wo['uom']} {wo['partNo']} on {wo['line']} ({wo['workCenter']}), "
                f"lot {wo['lotNo']}"
            )
        self.say(
            f"   the poller (and Odoo's webhook) published each release once, as Odoo's "
            f"odoo.production.order.released.v1; flow release-to-mes mapped it (product id → "
            f"part number by cross-reference) and POSTed it: {len(self.orders)} work orders "
            f"after {time.monotonic() - started:.1f}s; flow erp-releases published it as the "
            "canonical production.order.released.v1",
            always=True,
        )


# -- entry point -----------------------------------------------------------------------------------


async def run_demo(
    *, smoke: bool = False, data_dir: Path | None = None, console: Console | None = None
) -> DemoResult:
    """Run the scenario; the result is true iff every check passed. ``smoke`` runs it small,
    fast and quiet.

    Without ``data_dir`` the hub and the simulated plant live in a fresh temporary directory
    removed at the end; a kept one may be used again (the plant's state carries over).
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
                        "A plant whose systems talk only to the hub: the PLM releases "
                        "products, Odoo plans MOs, the MES builds them, the WMS stores and the "
                        "QMS inspects the lots, a portal hears of released lots (signed "
                        "webhooks).\n"
                        "The hub's flows (plant.yaml) do all the carrying. A lost Odoo answer, "
                        "a historian asking to wait, a rejected lot, a portal that is down, a "
                        "product changed by the wrong system: watch what the hub does.\n"
                        "Then a plant application and a partner, each with its own identity, "
                        "call the hub's business APIs instead of Odoo."
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
    return DemoResult(
        ok,
        demo.checks,
        demo.odoo_source,
        demo.rows,
        [order.wo for order in demo.orders],
        None if temporary else demo.config,
    )
