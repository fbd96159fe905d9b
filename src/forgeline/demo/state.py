"""What a ``forgeline demo`` run knows as it goes - what was planned, released and built, where
the plant's systems are - and how it is shown (step headings, the plant's progress table)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, RenderableType
from rich.table import Table

from ..sim.mes import MesServer
from ..sim.qms import QmsServer
from ..sim.wms import WmsServer
from ..testing import Receiver
from .api import read_log
from .downstream import HISTORIAN, Downstream
from .floor import Floor
from .odoo import OdooPlant
from .plant import Product, Scale
from .portal import Portal

__all__ = ["ApiCall", "ApiRun", "Check", "DemoResult", "DemoState", "Order"]


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
    odoo_source: str  # the source of the events the hub made of Odoo's changes
    orders: list[dict[str, Any]]  # this run's MOs as Odoo has them at the end
    work_orders: list[dict[str, Any]]  # the MES's work orders for them, at the end
    config: Path | None  # the hub's config the run wrote (in the data directory)

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Order:
    """One MO of this run, as the plant's systems came to know it."""

    index: int  # in the production plan
    mo: str  # Odoo's name: WH/MO/00003
    product: Product
    quantity: float
    wo: dict[str, Any] = field(default_factory=dict)  # the MES's work order, once released

    @property
    def lot(self) -> str:
        return str(self.wo.get("lotNo", ""))


@dataclass(frozen=True)
class ApiCall:
    """One answer of the hub's API, as its caller got it."""

    status: int
    headers: dict[str, str]
    body: Any
    seconds: float = 0.0  # how long the caller waited

    @property
    def fields(self) -> dict[str, Any]:
        """The body if it is a JSON object, else empty: what the narration and checks read."""
        return self.body if isinstance(self.body, dict) else {}

    @classmethod
    def of(cls, response: httpx.Response, seconds: float = 0.0) -> ApiCall:
        try:
            body = response.json() if response.content else None
        except ValueError:  # not JSON (a proxy's page): kept as text for the checks to show
            body = response.text
        headers = {name.lower(): value for name, value in response.headers.items()}
        return cls(response.status_code, headers, body, seconds)


@dataclass
class ApiRun:
    """What the plant's application and the partner did through the hub's API (step 8), for
    the checks: who they are, and what each call answered."""

    app: dict[str, Any] = field(default_factory=dict)  # the plant application principal
    partner: dict[str, Any] = field(default_factory=dict)  # the partner principal
    #: "app key" (the application's API key), "app key id", "secret id" (the partner's)
    credentials: dict[str, str] = field(default_factory=dict)
    token: dict[str, Any] = field(default_factory=dict)  # the partner's /oauth/token answer
    sku: str = ""  # the component whose availability the application asked
    availability: list[ApiCall] = field(default_factory=list)  # fresh, cached, Odoo slow
    odoo_fetches: int = 0  # the hub's reads of Odoo for the first two answers
    odoo_on_hand: float | None = None  # what Odoo itself says is on hand
    purchase: dict[str, Any] = field(default_factory=dict)  # the request's body
    purchases: list[ApiCall] = field(default_factory=list)  # first, then the same again
    rfq_marker: str = ""  # the origin Odoo's RFQ carries for the request's key
    customers: dict[str, ApiCall] = field(default_factory=dict)  # by reference
    rework: str = ""  # the MO the line-side application confirms
    transaction: ApiCall | None = None  # POST /v1/transactions
    transaction_status: ApiCall | None = None  # its status URL, once settled
    refused: dict[str, ApiCall] = field(default_factory=dict)  # what the partner may not
    audit: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by tenant


@dataclass
class Progress:
    """Where the plant is, read from each system (for the table)."""

    odoo_done: int = 0
    mes_complete: int = 0
    wms_stored: int = 0
    qms_decided: int = 0
    dead_at_portal: int = 0


@dataclass
class DemoState:
    """What the run knows, and how it is shown; ``checks.Checks`` and the scenario
    (``run.Demo``) build on it."""

    scale: Scale
    console: Console
    data_dir: Path
    step: str = "starting"
    checks: list[Check] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    downstream: Downstream = field(default_factory=Downstream)
    receiver: Receiver | None = None  # the historian
    portal: Portal | None = None  # the customer portal's webhook endpoint
    endpoint: dict[str, Any] = field(default_factory=dict)  # the hub's, for the portal
    floor: Floor | None = None
    client: httpx.AsyncClient | None = None  # the hub's API, as the admin
    hub_url: str = ""
    mes: MesServer | None = None
    wms: WmsServer | None = None
    qms: QmsServer | None = None
    odoo: OdooPlant | None = None
    odoo_source: str = ""
    config: Path | None = None
    log_start: int = 0  # the log's last position before this run
    orders: list[Order] = field(default_factory=list)
    plm_ids: list[str] = field(default_factory=list)  # the PLM's product events
    resent: dict[str, Any] = field(default_factory=dict)  # the hub's answer to a resend
    refused_change: dict[str, Any] = field(default_factory=dict)  # the MES's product change
    dead: list[dict[str, Any]] = field(default_factory=list)  # at the portal, before recovery
    replayed: int = 0  # what the endpoint's recover resent
    attempts: list[dict[str, Any]] = field(default_factory=list)  # the endpoint's attempt log
    discarded: list[str] = field(default_factory=list)  # dead letters the operator discarded
    rows: list[dict[str, Any]] = field(default_factory=list)  # Odoo's MOs at the end
    progress: Progress = field(default_factory=Progress)
    apis: ApiRun = field(default_factory=ApiRun)

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
            title=f"The plant · {len(self.orders)} MOs · {elapsed:4.1f}s",
            title_justify="left",
            expand=False,
        )
        for column in ("system", "what", "done", "of"):
            table.add_column(column, justify="left" if column in ("system", "what") else "right")
        total = len(self.orders)
        assert self.receiver is not None
        historian = len(set(self.receiver.ids(HISTORIAN)))
        rows = (
            ("Odoo", "MOs done", self.progress.odoo_done, total),
            ("MES", "work orders complete", self.progress.mes_complete, total),
            ("WMS", "lots put away", self.progress.wms_stored, total),
            ("QMS", "lots decided", self.progress.qms_decided, total),
            ("Historian", "reports stored in MO order", historian, None),
            ("Portal", "lot releases dead (portal down)", self.progress.dead_at_portal, None),
        )
        for system, what, done, of in rows:
            colour = "green" if of is None or done == of else "yellow"
            table.add_row(system, what, f"[{colour}]{done}[/]", "" if of is None else str(of))
        return table

    def __rich__(self) -> RenderableType:
        return self.dashboard()

    # -- bookkeeping -----------------------------------------------------------------------

    async def until(
        self, what: str, done: Callable[[], bool | Awaitable[bool]], timeout: float
    ) -> bool:
        """Poll ``done`` until it holds; False (and a red line) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            answer = done()
            if inspect.isawaitable(answer):
                answer = await answer
            if answer:
                return True
            if time.monotonic() > deadline:
                self.say(f"[red]gave up waiting for {what} after {timeout:g}s", always=True)
                return False
            await asyncio.sleep(0.1)

    async def run_log(self, client: httpx.AsyncClient) -> list[dict[str, Any]]:
        """This run's events, oldest first (each with its ``position``)."""
        return [
            {**record["event"], "position": record["position"]}
            for record in await read_log(client, self.log_start)
        ]

    def by_lot(self) -> dict[str, Order]:
        return {order.lot: order for order in self.orders if order.lot}

    def partner_got(self) -> set[str]:
        """The events the portal took: verified, and answered 2xx."""
        assert self.portal is not None
        return set(self.portal.accepted())

    @property
    def portal_subscription(self) -> str:
        """The subscription behind the portal's endpoint (its deliveries, its dead letters)."""
        return str(self.endpoint.get("subscription", ""))
