"""A simulated MES (manufacturing execution system): the plant-floor source of production facts.

It speaks its own language, not Forgeline's: work orders ``WO-2026-00042`` on lines and work
centers, released against an ERP order number the ERP (through Forgeline) gave it, with the
states ``QUEUED → SETUP → RUNNING ⇄ PAUSED → COMPLETE`` (or ``SCRAPPED`` from any open state).
A production run reports, in order and at QoS 1 over MQTT (topics
``<prefix>/<site>/mes/<line>/state|consumption|production``), or by HTTP POST to one URL when
the hub has no broker (``post_to``; the topic goes in ``X-MES-Topic``), JSON messages::

    STATE        {msgId, msgType, woNumber, erpOrder, partNo, line, workCenter, status,
                  prevStatus, reasonCode, ts}
    CONSUMPTION  {msgId, msgType, woNumber, erpOrder, partNo (component), parentPartNo, qty,
                  uom, lotNo (component lot), line, workCenter, ts}
    PRODUCTION   {msgId, msgType, woNumber, erpOrder, partNo, qtyGood, qtyScrap, totalGood,
                  totalScrap, qtyOrdered, uom, lotNo, line, workCenter, ts}

``msgId`` (``<site>-<seq>``) is unique per MES and the natural dedup key. Messages wait in an
outbox until the broker acknowledged them (or the receiver answered 2xx), so a broker outage or
a publish pause (``PublishFaults``) delays but never loses or reorders them.

REST (errors ``{timestamp, status, error, code, message, path, field?}``)::

    POST /api/workorders                {erpOrder, partNo, qty, uom?, line?, bom?: [{partNo,
                                         qtyPer, uom?}]}  201; the same erpOrder again: 200
                                         with the existing work order, 409 if it differs.
                                         ``qty`` is a whole number (``12.0`` is 12); a
                                         release without ``line``/``bom`` takes them from the
                                         MES's part master (``parts``), if it has the part
    GET  /api/workorders[?status=&erpOrder=]    GET /api/workorders/{woNumber}
    POST /api/workorders/{woNumber}/start {batchSize?, scrapRate?, cycleMs?}   202
    POST /api/workorders/{woNumber}/pause | /resume | /scrap {reasonCode?}
    GET  /api/lines

Everything random (scrap, component lots) derives from ``seed`` and the work order number, so a
run is the same every time, whatever else runs beside it.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ..exceptions import ConfigError
from .mes_outbox import Message, Outbox
from .plant import (
    PlantServer,
    Rejected,
    http_phrase,
    now_ts,
    run_plant_server,
    serve_plant_in_thread,
)
from .plant_faults import FaultPlan, PublishFaults

__all__ = ["MES_STATES", "MesServer", "WorkOrder", "run", "serve_in_thread"]

MES_STATES = ("QUEUED", "SETUP", "RUNNING", "PAUSED", "COMPLETE", "SCRAPPED")
OPEN_STATES = frozenset({"QUEUED", "SETUP", "RUNNING", "PAUSED"})
UNITS = frozenset({"EA", "KG", "M", "L"})
DEFAULT_LINES = {"L1": "WC-ASSY-01", "L2": "WC-ASSY-02", "L3": "WC-PACK-01"}


@dataclass
class WorkOrder:
    wo_number: str
    erp_order: str
    part_no: str
    qty_ordered: int
    uom: str
    line: str
    work_center: str
    lot_no: str
    bom: list[dict[str, Any]]
    status: str = "QUEUED"
    qty_good: int = 0
    qty_scrap: int = 0
    released_ts: str = field(default_factory=now_ts)
    started_ts: str | None = None
    completed_ts: str | None = None
    paused_from: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "woNumber": self.wo_number,
            "erpOrder": self.erp_order,
            "partNo": self.part_no,
            "qtyOrdered": self.qty_ordered,
            "qtyGood": self.qty_good,
            "qtyScrap": self.qty_scrap,
            "uom": self.uom,
            "line": self.line,
            "workCenter": self.work_center,
            "lotNo": self.lot_no,
            "bom": self.bom,
            "status": self.status,
            "releasedTs": self.released_ts,
            "startedTs": self.started_ts,
            "completedTs": self.completed_ts,
        }


class MesServer(PlantServer):
    """The MES on ``host:port``, reporting to ``broker`` (``mqtt://[user:pass@]host:port``)
    or, without one, to ``post_to`` (an HTTP URL); with neither, messages are only recorded
    in ``sent``. ``tick``: seconds per production cycle; ``setup_seconds``: time in SETUP.
    ``parts``: the MES's own part master, ``{partNo: {"line": "L2", "bom": [{partNo, qtyPer,
    uom?}]}}`` (both keys optional): what a release that names no line or BOM runs with, as
    a real MES keeps routings and recipes of its own. Other arguments as ``PlantServer``."""

    system = "MES"

    def __init__(
        self,
        *,
        site: str = "site1",
        lines: dict[str, str] | None = None,
        broker: str | None = None,
        post_to: str | None = None,
        topic_prefix: str = "plant",
        client_id: str | None = None,
        tick: float = 1.0,
        setup_seconds: float | None = None,
        scrap_rate: float = 0.02,
        year: int | None = None,
        publish_faults: PublishFaults | None = None,
        parts: dict[str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.site = site
        self.lines = dict(lines or DEFAULT_LINES)
        self.parts = _part_master(parts or {}, self.lines)
        self.broker, self.post_to = broker, post_to
        self.topic_prefix = topic_prefix
        self.client_id = client_id or f"forgeline-sim-mes-{site}"
        self.tick = tick
        self.setup_seconds = tick if setup_seconds is None else setup_seconds
        if not 0 <= scrap_rate < 1:
            raise ValueError("scrap_rate must be within [0, 1)")
        self.scrap_rate = scrap_rate
        self.year = year or datetime.now(UTC).year
        self.publish_faults = publish_faults or PublishFaults()
        self.work_orders: dict[str, WorkOrder] = {}
        self._next_wo = 1
        self._next_msg = 1
        self.outbox = Outbox(
            broker=broker,
            post_to=post_to,
            client_id=self.client_id,
            faults=self.publish_faults,
            on_change=self.save,
        )
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._resumed: dict[str, asyncio.Event] = {}
        self._publisher: asyncio.Task[None] | None = None

    # --- the work order model -----------------------------------------------------------------

    def topic(self, line: str, kind: str) -> str:
        return f"{self.topic_prefix}/{self.site}/mes/{line}/{kind}"

    def work_order(self, wo_number: str) -> WorkOrder:
        wo = self.work_orders.get(wo_number)
        if wo is None:
            raise Rejected(404, "WO_NOT_FOUND", f"work order {wo_number} does not exist")
        return wo

    def release(self, spec: dict[str, Any]) -> tuple[WorkOrder, bool]:
        """Create the work order ``spec`` asks for; ``(wo, False)`` if it already exists."""
        erp_order = _text(spec, "erpOrder")
        part_no = _text(spec, "partNo")
        qty = _whole(spec.get("qty"))
        if qty is None or not 0 < qty <= 1_000_000:
            raise Rejected(422, "INVALID_QTY", "qty must be a whole number 1..1000000", field="qty")
        uom = spec.get("uom", "EA")
        if uom not in UNITS:
            raise Rejected(422, "INVALID_UOM", f"uom must be one of {sorted(UNITS)}", field="uom")
        master = self.parts.get(part_no, {})
        line = spec.get("line", master.get("line", next(iter(self.lines))))
        if line not in self.lines:
            raise Rejected(
                422,
                "UNKNOWN_LINE",
                f"line {line!r} is not one of {sorted(self.lines)}",
                field="line",
            )
        bom = _bom(spec.get("bom", master.get("bom", [])), uom)
        for wo in self.work_orders.values():
            if wo.erp_order == erp_order and wo.status != "SCRAPPED":
                if (wo.part_no, wo.qty_ordered, wo.line) != (part_no, qty, line):
                    raise Rejected(
                        409,
                        "DUPLICATE_ERP_ORDER",
                        f"ERP order {erp_order} is already work order {wo.wo_number} "
                        "with other data",
                        field="erpOrder",
                        woNumber=wo.wo_number,
                    )
                return wo, False
        seq, self._next_wo = self._next_wo, self._next_wo + 1
        wo_number = f"WO-{self.year}-{seq:05d}"
        rng = random.Random(f"{self.seed}:{wo_number}:lots")
        for item in bom:
            item["lotNo"] = f"RM{rng.randrange(10**6):06d}"
        wo = WorkOrder(
            wo_number=wo_number,
            erp_order=erp_order,
            part_no=part_no,
            qty_ordered=qty,
            uom=uom,
            line=line,
            work_center=self.lines[line],
            lot_no=f"{line}-{self.year % 100:02d}{seq:05d}",
            bom=bom,
        )
        self.work_orders[wo_number] = wo
        self._state_message(wo, None)
        self.save()
        return wo, True

    def _set_status(self, wo: WorkOrder, status: str, reason: str | None = None) -> None:
        previous, wo.status = wo.status, status
        if status in ("COMPLETE", "SCRAPPED"):
            wo.completed_ts = now_ts()
        self._state_message(wo, previous, reason)
        self.save()

    def start(self, wo: WorkOrder, options: dict[str, Any]) -> None:
        if wo.status != "QUEUED":
            raise Rejected(409, "INVALID_STATE", f"{wo.wo_number} is {wo.status}, not QUEUED")
        batch = options.get("batchSize", max(1, math.ceil(wo.qty_ordered / 10)))
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise Rejected(
                422, "INVALID_PARAMETER", "batchSize must be a whole number >= 1", field="batchSize"
            )
        scrap = options.get("scrapRate", self.scrap_rate)
        if isinstance(scrap, bool) or not isinstance(scrap, int | float) or not 0 <= scrap < 1:
            raise Rejected(
                422, "INVALID_PARAMETER", "scrapRate must be within [0, 1)", field="scrapRate"
            )
        cycle_ms = options.get("cycleMs", self.tick * 1000)
        if isinstance(cycle_ms, bool) or not isinstance(cycle_ms, int | float) or cycle_ms < 0:
            raise Rejected(422, "INVALID_PARAMETER", "cycleMs must be >= 0", field="cycleMs")
        wo.started_ts = now_ts()
        self._set_status(wo, "SETUP")
        self._launch(wo, batch, float(scrap), cycle_ms / 1000)
        self._resumed[wo.wo_number].set()

    def _launch(self, wo: WorkOrder, batch: int, scrap_rate: float, cycle: float) -> None:
        self._resumed[wo.wo_number] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(
            self._run(wo, batch, scrap_rate, cycle), name=f"mes-run-{wo.wo_number}"
        )
        self._runs[wo.wo_number] = task
        task.add_done_callback(lambda _: self._runs.pop(wo.wo_number, None))

    def pause(self, wo: WorkOrder, reason: str | None) -> None:
        if wo.status not in ("SETUP", "RUNNING"):
            raise Rejected(409, "INVALID_STATE", f"{wo.wo_number} is {wo.status}, not running")
        wo.paused_from = wo.status
        self._resumed.setdefault(wo.wo_number, asyncio.Event()).clear()
        self._set_status(wo, "PAUSED", reason)

    def resume(self, wo: WorkOrder) -> None:
        if wo.status != "PAUSED":
            raise Rejected(409, "INVALID_STATE", f"{wo.wo_number} is {wo.status}, not PAUSED")
        if wo.wo_number not in self._runs:
            # Paused by a restart of the MES: the run goes on with the server's defaults.
            self._launch(wo, max(1, math.ceil(wo.qty_ordered / 10)), self.scrap_rate, self.tick)
        self._set_status(wo, wo.paused_from or "RUNNING")
        wo.paused_from = None
        self._resumed[wo.wo_number].set()

    def scrap(self, wo: WorkOrder, reason: str | None) -> None:
        if wo.status not in OPEN_STATES:
            raise Rejected(409, "INVALID_STATE", f"{wo.wo_number} is {wo.status}, already closed")
        self._set_status(wo, "SCRAPPED", reason)
        self._resumed.setdefault(wo.wo_number, asyncio.Event()).set()

    async def _cycle(self, wo: WorkOrder, seconds: float) -> bool:
        """Wait one cycle and any pause; False when the order was scrapped meanwhile."""
        await asyncio.sleep(seconds)
        await self._resumed[wo.wo_number].wait()
        return wo.status != "SCRAPPED"

    async def _run(self, wo: WorkOrder, batch: int, scrap_rate: float, cycle: float) -> None:
        rng = random.Random(f"{self.seed}:{wo.wo_number}:run:{wo.qty_good + wo.qty_scrap}")
        if wo.status == "SETUP" and not await self._cycle(wo, self.setup_seconds):
            return
        if wo.status == "SETUP":
            self._set_status(wo, "RUNNING")
        while wo.qty_good < wo.qty_ordered:
            if not await self._cycle(wo, cycle):
                return
            made = min(batch, wo.qty_ordered - wo.qty_good)
            scrapped = sum(rng.random() < scrap_rate for _ in range(made))
            for item in wo.bom:
                self._emit(
                    wo,
                    "consumption",
                    {
                        "partNo": item["partNo"],
                        "parentPartNo": wo.part_no,
                        "qty": _round(item["qtyPer"] * made),
                        "uom": item["uom"],
                        "lotNo": item["lotNo"],
                    },
                )
            wo.qty_good += made - scrapped
            wo.qty_scrap += scrapped
            self._emit(
                wo,
                "production",
                {
                    "partNo": wo.part_no,
                    "qtyGood": made - scrapped,
                    "qtyScrap": scrapped,
                    "totalGood": wo.qty_good,
                    "totalScrap": wo.qty_scrap,
                    "qtyOrdered": wo.qty_ordered,
                    "uom": wo.uom,
                    "lotNo": wo.lot_no,
                },
            )
            self.save()
        self._set_status(wo, "COMPLETE")

    # --- the outbox ----------------------------------------------------------------------------

    def _state_message(
        self, wo: WorkOrder, previous: str | None, reason: str | None = None
    ) -> None:
        self._emit(
            wo,
            "state",
            {
                "partNo": wo.part_no,
                "status": wo.status,
                "prevStatus": previous,
                "reasonCode": reason,
            },
        )

    def _emit(self, wo: WorkOrder, kind: str, fields: dict[str, Any]) -> None:
        seq, self._next_msg = self._next_msg, self._next_msg + 1
        body = {
            "msgId": f"{self.site}-{seq:08d}",
            "msgType": kind.upper(),
            "woNumber": wo.wo_number,
            "erpOrder": wo.erp_order,
            **fields,
            "line": wo.line,
            "workCenter": wo.work_center,
            "ts": now_ts(),
        }
        self.outbox.put(Message(kind, self.topic(wo.line, kind), body))

    @property
    def sent(self) -> deque[Message]:
        """Messages the broker (or receiver) acknowledged, in order."""
        return self.outbox.sent

    async def flush(self, timeout: float = 10.0) -> None:
        """Wait until the outbox is empty (tests; shutdown)."""
        await self.outbox.flush(timeout)

    # --- the server -----------------------------------------------------------------------------

    async def on_open(self) -> None:
        if self.broker is not None:
            try:
                import aiomqtt  # noqa: F401
            except ImportError as exc:
                raise ConfigError(
                    "the MES simulator on MQTT needs: pip install forgeline[mqtt]"
                ) from exc
        self._publisher = asyncio.get_running_loop().create_task(
            self.outbox.run(), name="mes-outbox"
        )

    async def on_close(self) -> None:
        for task in list(self._runs.values()):
            task.cancel()
        if not self.publish_faults.is_paused():
            # A moment for what is in flight; the rest stays in the state file (if any).
            with suppress(TimeoutError):
                await self.flush(timeout=1.0)
        tasks = [*self._runs.values(), *([self._publisher] if self._publisher else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._publisher = None

    def error_body(
        self, status: int, code: str, message: str, *, field: str | None, path: str, **extra: Any
    ) -> dict[str, Any]:
        body = {
            "timestamp": now_ts(),
            "status": status,
            "error": http_phrase(status),
            "code": code,
            "message": message,
            "path": path,
        }
        if field is not None:
            body["field"] = field
        return body | extra

    def snapshot(self) -> dict[str, Any]:
        return {
            "nextWo": self._next_wo,
            "nextMsg": self._next_msg,
            "workOrders": [asdict(wo) for wo in self.work_orders.values()],
            "outbox": [asdict(m) for m in self.outbox.queue],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._next_wo, self._next_msg = state["nextWo"], state["nextMsg"]
        for spec in state["workOrders"]:
            wo = WorkOrder(**spec)
            if wo.status in ("SETUP", "RUNNING"):  # the MES went down mid-run: operator resumes
                wo.paused_from, wo.status = wo.status, "PAUSED"
            self.work_orders[wo.wo_number] = wo
        for spec in state["outbox"]:
            self.outbox.put(Message(**spec))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/workorders", self._post_release)
        app.router.add_get("/api/workorders", self._get_list)
        app.router.add_get("/api/workorders/{wo}", self._get_one)
        app.router.add_post("/api/workorders/{wo}/{action}", self._post_action)
        app.router.add_get("/api/lines", self._get_lines)

    def admin_routes(self, app: web.Application) -> None:
        app.router.add_get("/__sim__/publish-faults", self._get_publish_faults)
        app.router.add_post("/__sim__/publish-faults", self._post_publish_faults)
        app.router.add_get("/__sim__/messages", self._get_messages)

    async def _post_release(self, request: web.Request) -> web.StreamResponse:
        wo, created = self.release(await self.read_json(request))
        return self.json(wo.to_json(), 201 if created else 200)

    async def _get_list(self, request: web.Request) -> web.StreamResponse:
        status, erp = request.query.get("status"), request.query.get("erpOrder")
        if status is not None and status not in MES_STATES:
            raise Rejected(
                400, "INVALID_PARAMETER", f"status must be one of {MES_STATES}", field="status"
            )
        found = [
            wo.to_json()
            for wo in self.work_orders.values()
            if status in (None, wo.status) and erp in (None, wo.erp_order)
        ]
        return self.json({"workOrders": found, "count": len(found)})

    async def _get_one(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.work_order(request.match_info["wo"]).to_json())

    async def _post_action(self, request: web.Request) -> web.StreamResponse:
        wo = self.work_order(request.match_info["wo"])
        options = await self.read_json(request) if request.can_read_body else {}
        reason = options.get("reasonCode")
        if reason is not None and not isinstance(reason, str):
            raise Rejected(
                422, "INVALID_PARAMETER", "reasonCode must be a string", field="reasonCode"
            )
        actions: dict[str, Callable[[], None]] = {
            "start": lambda: self.start(wo, options),
            "pause": lambda: self.pause(wo, reason),
            "resume": lambda: self.resume(wo),
            "scrap": lambda: self.scrap(wo, reason),
        }
        action = actions.get(request.match_info["action"])
        if action is None:
            raise Rejected(
                404,
                "NOT_FOUND",
                f"no action {request.match_info['action']!r}; use one of {sorted(actions)}",
            )
        action()
        return self.json(wo.to_json(), 202 if request.match_info["action"] == "start" else 200)

    async def _get_lines(self, request: web.Request) -> web.StreamResponse:
        active = {
            wo.line: wo.wo_number
            for wo in self.work_orders.values()
            if wo.status in OPEN_STATES - {"QUEUED"}
        }
        return self.json(
            {
                "site": self.site,
                "lines": [
                    {"line": line, "workCenter": wc, "activeWo": active.get(line)}
                    for line, wc in self.lines.items()
                ],
            }
        )

    async def _get_publish_faults(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.publish_faults.to_dict() | {"pending": len(self.outbox.queue)})

    async def _post_publish_faults(self, request: web.Request) -> web.StreamResponse:
        try:
            plan = PublishFaults.from_dict(await self.read_json(request))
        except (ValueError, TypeError) as exc:
            raise Rejected(400, "BAD_FAULT_PLAN", str(exc)) from exc
        self.publish_faults.replace(plan)
        return self.json(self.publish_faults.to_dict())

    async def _get_messages(self, request: web.Request) -> web.StreamResponse:
        return self.json([asdict(m) for m in self.sent])


def _text(spec: dict[str, Any], name: str) -> str:
    value = spec.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise Rejected(
            422,
            "MISSING_FIELD" if value is None else "INVALID_FIELD",
            f"{name} must be a non-empty string of at most 64 characters",
            field=name,
        )
    return value.strip()


def _whole(value: Any) -> int | None:
    """A whole number as an int (``12`` or ``12.0``: an ERP sends quantities as floats), else
    None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _part_master(parts: dict[str, dict[str, Any]], lines: dict[str, str]) -> dict[str, Any]:
    """The part master checked at start: a bad entry fails the MES, not a later release."""
    checked: dict[str, dict[str, Any]] = {}
    for part, entry in parts.items():
        unknown = set(entry) - {"line", "bom"}
        if unknown:
            raise ValueError(f"parts[{part!r}]: unknown keys {sorted(unknown)} (line, bom)")
        if "line" in entry and entry["line"] not in lines:
            raise ValueError(
                f"parts[{part!r}].line {entry['line']!r} is not one of {sorted(lines)}"
            )
        if "bom" in entry:
            try:
                _bom(entry["bom"], "EA")
            except Rejected as exc:
                raise ValueError(f"parts[{part!r}]: {exc.message}") from None
        checked[part] = dict(entry)
    return checked


def _bom(spec: Any, uom: str) -> list[dict[str, Any]]:
    if not isinstance(spec, list):
        raise Rejected(422, "INVALID_BOM", "bom must be a list", field="bom")
    bom = []
    for i, item in enumerate(spec):
        where = f"bom[{i}]"
        if not isinstance(item, dict):
            raise Rejected(422, "INVALID_BOM", f"{where} must be an object", field=where)
        part = _text(item, "partNo") if "partNo" in item else None
        per = item.get("qtyPer")
        if part is None or isinstance(per, bool) or not isinstance(per, int | float) or per <= 0:
            raise Rejected(422, "INVALID_BOM", f"{where} needs partNo and qtyPer > 0", field=where)
        unit = item.get("uom", uom)
        if unit not in UNITS:
            raise Rejected(
                422,
                "INVALID_UOM",
                f"{where}.uom must be one of {sorted(UNITS)}",
                field=f"{where}.uom",
            )
        bom.append({"partNo": part, "qtyPer": per, "uom": unit})
    return bom


def _round(qty: float) -> float | int:
    return int(qty) if float(qty).is_integer() else round(qty, 6)


def serve_in_thread(**kwargs: Any) -> AbstractContextManager[MesServer]:
    """``MesServer(**kwargs)`` on a background event loop, for blocking code."""
    return serve_plant_in_thread(lambda: MesServer(**kwargs))


def run(
    port: int = 8071,
    host: str = "127.0.0.1",
    *,
    site: str = "site1",
    broker: str | None = None,
    post_to: str | None = None,
    topic_prefix: str = "plant",
    tick: float = 1.0,
    seed: int = 0,
    data: str | Path | None = None,
    faults: FaultPlan | None = None,
    admin: bool | None = None,
    ready: Callable[[MesServer], None] | None = None,
) -> None:
    """Serve a simulated MES until SIGINT/SIGTERM (``forgeline sim mes``)."""
    target = (
        f"publishing to mqtt {broker}"
        if broker
        else f"posting to {post_to}"
        if post_to
        else "keeping messages in memory"
    )
    run_plant_server(
        lambda: MesServer(
            site=site,
            broker=broker,
            post_to=post_to,
            topic_prefix=topic_prefix,
            tick=tick,
            seed=seed,
            data=data,
            faults=faults,
            admin=admin,
            host=host,
            port=port,
        ),
        ready,
        f"(site {site}, {target})",
    )
