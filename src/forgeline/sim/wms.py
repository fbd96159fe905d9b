"""A simulated WMS (warehouse management system): put-away tasks and stock by bin, over REST.

Its own words, not Forgeline's: a put-away task ``PA-000001`` moves ``qty`` of a ``sku``
(optionally a ``lot``) from a location (``fromLoc``: a dock, a line's outfeed) to a bin
(``toBin``: ``A-01-1`` = aisle A, bay 01, level 1), through ``NEW → ASSIGNED → IN_PROGRESS →
DONE``, or ``CANCELLED`` before work starts. Without a ``toBin`` the WMS slots one: a bin that
already holds the sku and lot, else the sku, else an empty bin picked with the seeded random.
Stock changes when a task is DONE.

Creating is idempotent by the body field ``clientRef`` (the caller's reference, e.g. the event
id or the ERP order): the same ``clientRef`` again answers 200 with the existing task (header
``X-Idempotent-Replay: true``), or 409 if the sku, qty, lot or fromLoc differ.

    POST /api/v1/putaway-tasks       {clientRef, sku, qty, uom?, lot?, fromLoc, toBin?,
                                      priority?, callbackUrl?}  -> 201 task
    GET  /api/v1/putaway-tasks[?status=&sku=&clientRef=]  -> {data: [...], total}
    GET  /api/v1/putaway-tasks/{taskId}
    POST /api/v1/putaway-tasks/{taskId}/assign {operator, toBin?} | /start |
         /complete {qtyConfirmed?, toBin?} | /cancel {reason}
    GET  /api/v1/stock[?bin=&sku=&lot=]  -> {data: [{bin, sku, lot, qty, uom}], total}
    GET  /api/v1/bins

``auto_complete`` seconds: every new task walks to DONE by itself (assigned to ``AUTO`` after a
third, started after two thirds), as a busy warehouse would. On DONE and CANCELLED the task's
``callbackUrl`` (or the server's ``callback_url``) gets ``{eventId, eventType:
PUTAWAY_CONFIRMED|PUTAWAY_CANCELLED, occurredAt, task}``. Errors look like JSON:API's:
``{errors: [{status, code, title, detail, source?: {pointer}}]}``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .plant import (
    PlantServer,
    Rejected,
    http_phrase,
    now_ts,
    run_plant_server,
    serve_plant_in_thread,
)
from .plant_faults import FaultPlan

__all__ = ["WMS_STATES", "PutawayTask", "WmsServer", "run", "serve_in_thread"]

WMS_STATES = ("NEW", "ASSIGNED", "IN_PROGRESS", "DONE", "CANCELLED")
OPEN_STATES = frozenset({"NEW", "ASSIGNED", "IN_PROGRESS"})
UNITS = frozenset({"EA", "KG", "M", "L", "PAL", "BOX"})
DEFAULT_BINS = tuple(
    f"{aisle}-{bay:02d}-{level}" for aisle in "ABC" for bay in range(1, 11) for level in (1, 2, 3)
)


@dataclass
class PutawayTask:
    task_id: str
    client_ref: str
    sku: str
    qty: float
    uom: str
    lot: str | None
    from_loc: str
    to_bin: str
    priority: int
    callback_url: str | None
    status: str = "NEW"
    operator: str | None = None
    qty_confirmed: float | None = None
    cancel_reason: str | None = None
    created_at: str = ""
    updated_at: str = ""
    completed_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "type": "PUTAWAY",
            "clientRef": self.client_ref,
            "sku": self.sku,
            "qty": self.qty,
            "qtyConfirmed": self.qty_confirmed,
            "uom": self.uom,
            "lot": self.lot,
            "fromLoc": self.from_loc,
            "toBin": self.to_bin,
            "priority": self.priority,
            "status": self.status,
            "operator": self.operator,
            "cancelReason": self.cancel_reason,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "completedAt": self.completed_at,
        }


class WmsServer(PlantServer):
    """The WMS on ``host:port``. ``bins``: the bin layout (default: aisles A–C, bays 01–10,
    levels 1–3); ``stock``: initial ``[{bin, sku, lot?, qty, uom?}]``; ``auto_complete``:
    seconds after which a new task is DONE on its own (None: only by ``/complete``);
    ``callback_url``: where completions go when a task names none. Others as ``PlantServer``."""

    system = "WMS"

    def __init__(
        self,
        *,
        bins: tuple[str, ...] = DEFAULT_BINS,
        stock: list[dict[str, Any]] | None = None,
        auto_complete: float | None = None,
        callback_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bins = tuple(bins)
        self.auto_complete = auto_complete
        self.callback_url = callback_url
        self.tasks: dict[str, PutawayTask] = {}
        self.stock: dict[tuple[str, str, str | None], tuple[float, str]] = {}
        for row in stock or []:
            key = (row["bin"], row["sku"], row.get("lot"))
            self.stock[key] = (row["qty"], row.get("uom", "EA"))
        self._next_task = 1
        self._next_event = 1
        self._walkers: set[asyncio.Task[None]] = set()

    # --- the model ------------------------------------------------------------------------------

    def task(self, task_id: str) -> PutawayTask:
        task = self.tasks.get(task_id)
        if task is None:
            raise Rejected(404, "task_not_found", f"no put-away task {task_id}")
        return task

    def create(self, spec: dict[str, Any]) -> tuple[PutawayTask, bool]:
        client_ref = _text(spec, "clientRef")
        sku = _text(spec, "sku")
        qty = _positive(spec, "qty")
        uom = spec.get("uom", "EA")
        if uom not in UNITS:
            raise Rejected(422, "uom_invalid", f"uom must be one of {sorted(UNITS)}", field="uom")
        lot = _text(spec, "lot") if spec.get("lot") is not None else None
        from_loc = _text(spec, "fromLoc")
        priority = spec.get("priority", 5)
        if isinstance(priority, bool) or not isinstance(priority, int) or not 1 <= priority <= 9:
            raise Rejected(422, "priority_invalid", "priority is 1 (first) to 9", field="priority")
        callback = spec.get("callbackUrl")
        if callback is not None and not (
            isinstance(callback, str) and callback.startswith(("http://", "https://"))
        ):
            raise Rejected(
                422, "callback_invalid", "callbackUrl must be an http(s) URL", field="callbackUrl"
            )
        to_bin = spec.get("toBin")
        if to_bin is not None:
            self._check_bin(to_bin, "toBin")
        for task in self.tasks.values():
            if task.client_ref == client_ref:
                if (task.sku, task.qty, task.lot, task.from_loc) != (sku, qty, lot, from_loc):
                    raise Rejected(
                        409,
                        "client_ref_conflict",
                        f"clientRef {client_ref} is task {task.task_id} with other data",
                        field="clientRef",
                        taskId=task.task_id,
                    )
                return task, False
        seq, self._next_task = self._next_task, self._next_task + 1
        task_id = f"PA-{seq:06d}"
        now = now_ts()
        task = PutawayTask(
            task_id=task_id,
            client_ref=client_ref,
            sku=sku,
            qty=qty,
            uom=uom,
            lot=lot,
            from_loc=from_loc,
            to_bin=to_bin or self._slot(task_id, sku, lot),
            priority=priority,
            callback_url=callback,
            created_at=now,
            updated_at=now,
        )
        self.tasks[task_id] = task
        self.save()
        if self.auto_complete is not None:
            walker = asyncio.get_running_loop().create_task(self._walk(task, self.auto_complete))
            self._walkers.add(walker)
            walker.add_done_callback(self._walkers.discard)
        return task, True

    def _check_bin(self, value: Any, name: str) -> str:
        if value not in self.bins:
            raise Rejected(
                422, "bin_unknown", f"{value!r} is not a bin of this warehouse", field=name
            )
        return str(value)

    def _slot(self, task_id: str, sku: str, lot: str | None) -> str:
        """Where a new task should go: with the same sku and lot, the same sku, else empty."""
        held = [key for key, (qty, _) in self.stock.items() if qty > 0]
        for wanted in ((sku, lot), (sku,)):
            for key in held:
                if key[1 : 1 + len(wanted)] == wanted:
                    return key[0]
        taken = {key[0] for key in held} | {
            t.to_bin for t in self.tasks.values() if t.status in OPEN_STATES
        }
        free = [b for b in self.bins if b not in taken] or list(self.bins)
        return random.Random(f"{self.seed}:{task_id}").choice(free)

    def _touch(self, task: PutawayTask, status: str) -> None:
        task.status, task.updated_at = status, now_ts()
        self.save()

    def assign(self, task: PutawayTask, operator: Any, to_bin: Any = None) -> None:
        if task.status != "NEW":
            raise Rejected(409, "invalid_state", f"{task.task_id} is {task.status}, not NEW")
        if not isinstance(operator, str) or not operator:
            raise Rejected(422, "operator_missing", "operator is required", field="operator")
        if to_bin is not None:
            task.to_bin = self._check_bin(to_bin, "toBin")
        task.operator = operator
        self._touch(task, "ASSIGNED")

    def start(self, task: PutawayTask) -> None:
        if task.status != "ASSIGNED":
            raise Rejected(409, "invalid_state", f"{task.task_id} is {task.status}, not ASSIGNED")
        self._touch(task, "IN_PROGRESS")

    def complete(self, task: PutawayTask, spec: dict[str, Any]) -> None:
        if task.status not in OPEN_STATES:
            raise Rejected(409, "invalid_state", f"{task.task_id} is {task.status}, not open")
        qty = _positive(spec, "qtyConfirmed") if "qtyConfirmed" in spec else task.qty
        if qty > task.qty:
            raise Rejected(
                422,
                "qty_exceeds_task",
                f"qtyConfirmed {qty} > task qty {task.qty}",
                field="qtyConfirmed",
            )
        if spec.get("toBin") is not None:
            task.to_bin = self._check_bin(spec["toBin"], "toBin")
        task.qty_confirmed = qty
        key = (task.to_bin, task.sku, task.lot)
        held, _ = self.stock.get(key, (0, task.uom))
        self.stock[key] = (held + qty, task.uom)
        task.completed_at = now_ts()
        self._touch(task, "DONE")
        self._notify(task, "PUTAWAY_CONFIRMED")

    def cancel(self, task: PutawayTask, reason: Any) -> None:
        if task.status not in ("NEW", "ASSIGNED"):
            raise Rejected(409, "invalid_state", f"{task.task_id} is {task.status}: too late")
        if not isinstance(reason, str) or not reason:
            raise Rejected(422, "reason_missing", "a cancel needs a reason", field="reason")
        task.cancel_reason = reason
        self._touch(task, "CANCELLED")
        self._notify(task, "PUTAWAY_CANCELLED")

    def _notify(self, task: PutawayTask, event_type: str) -> None:
        url = task.callback_url or self.callback_url
        if url is None:
            return
        seq, self._next_event = self._next_event, self._next_event + 1
        self.callbacks.send(
            url,
            {
                "eventId": f"WMS-EVT-{seq:08d}",
                "eventType": event_type,
                "occurredAt": now_ts(),
                "task": task.to_json(),
            },
        )

    async def _walk(self, task: PutawayTask, seconds: float) -> None:
        # Steps skip themselves when someone moved the task on (or cancelled it) meanwhile.
        await asyncio.sleep(seconds / 3)
        if task.status == "NEW":
            self.assign(task, "AUTO")
        await asyncio.sleep(seconds / 3)
        if task.status == "ASSIGNED":
            self.start(task)
        await asyncio.sleep(seconds / 3)
        if task.status == "IN_PROGRESS":
            self.complete(task, {})

    def stock_rows(self, bin_: str | None, sku: str | None, lot: str | None) -> list[Any]:
        return [
            {"bin": key[0], "sku": key[1], "lot": key[2], "qty": qty, "uom": uom}
            for key, (qty, uom) in sorted(self.stock.items(), key=lambda kv: str(kv[0]))
            if qty > 0
            and bin_ in (None, key[0])
            and sku in (None, key[1])
            and lot in (None, key[2])
        ]

    # --- the server -----------------------------------------------------------------------------

    async def on_close(self) -> None:
        for walker in list(self._walkers):
            walker.cancel()
        if self._walkers:
            await asyncio.wait(set(self._walkers))

    def error_body(
        self, status: int, code: str, message: str, *, field: str | None, path: str, **extra: Any
    ) -> dict[str, Any]:
        error: dict[str, Any] = {
            "status": str(status),
            "code": code.lower(),
            "title": http_phrase(status),
            "detail": message,
        }
        if field is not None:
            error["source"] = {"pointer": "/" + field}
        if extra:
            error["meta"] = extra
        return {"errors": [error]}

    def snapshot(self) -> dict[str, Any]:
        return {
            "nextTask": self._next_task,
            "nextEvent": self._next_event,
            "tasks": [asdict(t) for t in self.tasks.values()],
            "stock": [
                {"bin": k[0], "sku": k[1], "lot": k[2], "qty": q, "uom": u}
                for k, (q, u) in self.stock.items()
            ],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._next_task, self._next_event = state["nextTask"], state["nextEvent"]
        self.tasks = {spec["task_id"]: PutawayTask(**spec) for spec in state["tasks"]}
        self.stock = {(r["bin"], r["sku"], r["lot"]): (r["qty"], r["uom"]) for r in state["stock"]}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v1/putaway-tasks", self._post_task)
        app.router.add_get("/api/v1/putaway-tasks", self._get_tasks)
        app.router.add_get("/api/v1/putaway-tasks/{id}", self._get_task)
        app.router.add_post("/api/v1/putaway-tasks/{id}/{action}", self._post_action)
        app.router.add_get("/api/v1/stock", self._get_stock)
        app.router.add_get("/api/v1/bins", self._get_bins)

    async def _post_task(self, request: web.Request) -> web.StreamResponse:
        task, created = self.create(await self.read_json(request))
        response = self.json(task.to_json(), 201 if created else 200)
        if not created:
            response.headers["X-Idempotent-Replay"] = "true"
        return response

    async def _get_tasks(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        status = query.get("status")
        if status is not None and status not in WMS_STATES:
            raise Rejected(
                400, "status_invalid", f"status must be one of {WMS_STATES}", field="status"
            )
        found = [
            t.to_json()
            for t in self.tasks.values()
            if status in (None, t.status)
            and query.get("sku") in (None, t.sku)
            and query.get("clientRef") in (None, t.client_ref)
        ]
        return self.json({"data": found, "total": len(found)})

    async def _get_task(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.task(request.match_info["id"]).to_json())

    async def _post_action(self, request: web.Request) -> web.StreamResponse:
        task = self.task(request.match_info["id"])
        spec = await self.read_json(request) if request.can_read_body else {}
        actions: dict[str, Callable[[], None]] = {
            "assign": lambda: self.assign(task, spec.get("operator"), spec.get("toBin")),
            "start": lambda: self.start(task),
            "complete": lambda: self.complete(task, spec),
            "cancel": lambda: self.cancel(task, spec.get("reason")),
        }
        action = actions.get(request.match_info["action"])
        if action is None:
            raise Rejected(404, "action_unknown", f"use one of {sorted(actions)}")
        action()
        return self.json(task.to_json())

    async def _get_stock(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        rows = self.stock_rows(q.get("bin"), q.get("sku"), q.get("lot"))
        return self.json({"data": rows, "total": len(rows)})

    async def _get_bins(self, request: web.Request) -> web.StreamResponse:
        used = {key[0] for key, (qty, _) in self.stock.items() if qty > 0}
        return self.json(
            {
                "data": [{"bin": b, "empty": b not in used} for b in self.bins],
                "total": len(self.bins),
            }
        )


def _text(spec: dict[str, Any], name: str) -> str:
    value = spec.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 80:
        code = f"{name.lower()}_missing" if value is None else f"{name.lower()}_invalid"
        raise Rejected(
            422, code, f"{name} must be a non-empty string (at most 80 characters)", field=name
        )
    return value.strip()


def _positive(spec: dict[str, Any], name: str) -> float:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e9:
        raise Rejected(422, f"{name.lower()}_invalid", f"{name} must be a number > 0", field=name)
    return value  # ints stay ints: 12, not 12.0, in every answer


def serve_in_thread(**kwargs: Any) -> AbstractContextManager[WmsServer]:
    """``WmsServer(**kwargs)`` on a background event loop, for blocking code."""
    return serve_plant_in_thread(lambda: WmsServer(**kwargs))


def run(
    port: int = 8072,
    host: str = "127.0.0.1",
    *,
    auto_complete: float | None = None,
    callback_url: str | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    faults: FaultPlan | None = None,
    admin: bool | None = None,
    ready: Callable[[WmsServer], None] | None = None,
) -> None:
    """Serve a simulated WMS until SIGINT/SIGTERM (``forgeline sim wms``)."""
    run_plant_server(
        lambda: WmsServer(
            auto_complete=auto_complete,
            callback_url=callback_url,
            seed=seed,
            data=data,
            faults=faults,
            admin=admin,
            host=host,
            port=port,
        ),
        ready,
        f"(auto-complete: {auto_complete if auto_complete is not None else 'off'})",
    )
