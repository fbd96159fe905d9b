"""A simulated QMS (quality management system): lot inspections, results, holds, over REST.

Its own words: an inspection ``QI-000001`` samples a lot (``lotNo``, ``partNo``) by a plan
(``AQL-0.65``, ``AQL-1.0``, ``AQL-2.5``, ``AQL-4.0``, ``FULL``, ``SKIP``); the sample size comes
from the lot quantity (ISO 2859-1, general level II) unless given. An inspection is ``OPEN``
until decided, then ``CLOSED`` with a ``result``: ``ACCEPTED``, ``REJECTED``, ``ON_HOLD`` or
``CONDITIONAL``. A lot's ``usage`` follows, in SAP QM's terms: ``QUALITY_INSPECTION`` while
an inspection is open, ``UNRESTRICTED`` when accepted (or conditional), ``BLOCKED`` when
rejected, put on hold by a result or by hand; a release lifts the holds (a rejected lot's
release needs a ``comment``: the MRB disposition).

Which result a lot gets is scripted, so a demo or a test can make one lot fail: by lot
(``script(lot=..., result=...)``), else by part, else ``REJECTED`` with probability
``reject_rate`` drawn from the seed and the lot number, else ``ACCEPTED``. A result recorded by
hand (``POST .../results``) wins over all. Decisions come ``decide_after`` seconds after the
inspection is created (None: only by hand).

    POST /api/inspections   {lotNo, partNo, plan, lotQty?, sampleSize?, sourceRef?,
                             callbackUrl?}  -> 201; 409 (with inspectionId) while the lot
                             has an OPEN inspection
    GET  /api/inspections[?lotNo=&status=&result=]   GET /api/inspections/{inspectionId}
    POST /api/inspections/{inspectionId}/results {result, defectsFound?, inspector?, remarks?}
    GET  /api/lots/{lotNo}
    POST /api/lots/{lotNo}/hold {reason, by?} -> 201      POST /api/lots/{lotNo}/release {by?,
                                                           comment?}

Callbacks ``{eventId, event, ts, ...}``: ``INSPECTION_COMPLETED`` (with ``inspection``) to the
inspection's ``callbackUrl`` and the server's ``callback_url``; ``LOT_HOLD_PLACED`` (``lot``,
``hold``) and ``LOT_RELEASED`` (``lot``) to the server's. Errors: ``{fault: {code: "QMS-422",
reason, text, target?}}``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .plant import PlantServer, Rejected, now_ts, run_plant_server, serve_plant_in_thread
from .plant_faults import FaultPlan

__all__ = ["QMS_RESULTS", "Inspection", "QmsServer", "run", "serve_in_thread"]

QMS_RESULTS = ("ACCEPTED", "REJECTED", "ON_HOLD", "CONDITIONAL")
PLANS = {"AQL-0.65": 0.65, "AQL-1.0": 1.0, "AQL-2.5": 2.5, "AQL-4.0": 4.0, "FULL": 0.0, "SKIP": 0.0}
# ISO 2859-1 general inspection level II: (largest lot size, sample size).
_SAMPLE_SIZES = (
    (8, 2),
    (15, 3),
    (25, 5),
    (50, 8),
    (90, 13),
    (150, 20),
    (280, 32),
    (500, 50),
    (1200, 80),
    (3200, 125),
    (10000, 200),
    (35000, 315),
    (150000, 500),
)


@dataclass
class Inspection:
    inspection_id: str
    lot_no: str
    part_no: str
    plan: str
    lot_qty: int | None
    sample_size: int
    accept_no: int
    source_ref: str | None
    callback_url: str | None
    status: str = "OPEN"
    result: str | None = None
    defects_found: int | None = None
    inspector: str | None = None
    remarks: str | None = None
    created_ts: str = field(default_factory=now_ts)
    decided_ts: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "inspectionId": self.inspection_id,
            "lotNo": self.lot_no,
            "partNo": self.part_no,
            "plan": self.plan,
            "lotQty": self.lot_qty,
            "sampleSize": self.sample_size,
            "acceptNo": self.accept_no,
            "sourceRef": self.source_ref,
            "status": self.status,
            "result": self.result,
            "defectsFound": self.defects_found,
            "inspector": self.inspector,
            "remarks": self.remarks,
            "createdTs": self.created_ts,
            "decidedTs": self.decided_ts,
        }


@dataclass
class Lot:
    lot_no: str
    part_no: str
    usage: str = "QUALITY_INSPECTION"
    last_result: str | None = None
    holds: list[dict[str, Any]] = field(default_factory=list)
    inspections: list[str] = field(default_factory=list)

    @property
    def active_holds(self) -> list[dict[str, Any]]:
        return [h for h in self.holds if h["releasedTs"] is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "lotNo": self.lot_no,
            "partNo": self.part_no,
            "usage": self.usage,
            "onHold": bool(self.active_holds),
            "lastResult": self.last_result,
            "holds": self.holds,
            "inspections": self.inspections,
        }


class QmsServer(PlantServer):
    """The QMS on ``host:port``. ``lots``/``parts``: scripted results by lot or part number;
    ``reject_rate``: the chance an unscripted lot is rejected; ``decide_after``: seconds from
    creation to the automatic decision (None: results only by hand); ``callback_url``: gets
    every event. Others as ``PlantServer``."""

    system = "QMS"

    def __init__(
        self,
        *,
        lots: dict[str, str] | None = None,
        parts: dict[str, str] | None = None,
        reject_rate: float = 0.0,
        decide_after: float | None = 0.5,
        callback_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.by_lot: dict[str, str] = {}
        self.by_part: dict[str, str] = {}
        self.script(lots=lots, parts=parts)
        if not 0 <= reject_rate <= 1:
            raise ValueError("reject_rate must be within [0, 1]")
        self.reject_rate = reject_rate
        self.decide_after = decide_after
        self.callback_url = callback_url
        self.inspections: dict[str, Inspection] = {}
        self.lots: dict[str, Lot] = {}
        self._next_id = 1
        self._next_event = 1
        self._deciders: set[asyncio.Task[None]] = set()

    def script(
        self,
        *,
        lot: str | None = None,
        part: str | None = None,
        result: str | None = None,
        lots: dict[str, str] | None = None,
        parts: dict[str, str] | None = None,
    ) -> None:
        """Fix the result of a lot or a part (``result=None`` forgets it), or of many at once."""
        wanted = {**(lots or {}), **({lot: result} if lot is not None else {})}
        by_part = {**(parts or {}), **({part: result} if part is not None else {})}
        for table, changes in ((self.by_lot, wanted), (self.by_part, by_part)):
            for key, value in changes.items():
                if value is None:
                    table.pop(key, None)
                elif value not in QMS_RESULTS:
                    raise ValueError(f"result must be one of {QMS_RESULTS}, not {value!r}")
                else:
                    table[key] = value

    # --- the model ------------------------------------------------------------------------------

    def inspection(self, inspection_id: str) -> Inspection:
        found = self.inspections.get(inspection_id)
        if found is None:
            raise Rejected(404, "INSPECTION_NOT_FOUND", f"no inspection {inspection_id}")
        return found

    def lot(self, lot_no: str) -> Lot:
        found = self.lots.get(lot_no)
        if found is None:
            raise Rejected(404, "LOT_NOT_FOUND", f"lot {lot_no} is unknown to quality")
        return found

    def create(self, spec: dict[str, Any]) -> Inspection:
        lot_no, part_no = _text(spec, "lotNo"), _text(spec, "partNo")
        plan = spec.get("plan")
        if plan not in PLANS:
            raise Rejected(
                422, "PLAN_UNKNOWN", f"plan must be one of {sorted(PLANS)}", field="plan"
            )
        lot_qty = _count(spec, "lotQty")
        sample = _count(spec, "sampleSize")
        if sample is None:
            if lot_qty is None:
                raise Rejected(422, "SAMPLE_UNDEFINED", "give lotQty or sampleSize", field="lotQty")
            sample = lot_qty if plan == "FULL" else _sample_size(lot_qty)
        if plan == "SKIP":
            sample = 0
        if lot_qty is not None and sample > lot_qty:
            raise Rejected(
                422,
                "SAMPLE_TOO_LARGE",
                f"sampleSize {sample} > lotQty {lot_qty}",
                field="sampleSize",
            )
        callback = spec.get("callbackUrl")
        if callback is not None and not (
            isinstance(callback, str) and callback.startswith(("http://", "https://"))
        ):
            raise Rejected(
                422, "CALLBACK_INVALID", "callbackUrl must be an http(s) URL", field="callbackUrl"
            )
        source_ref = spec.get("sourceRef")
        if source_ref is not None and not isinstance(source_ref, str):
            raise Rejected(422, "FIELD_INVALID", "sourceRef must be a string", field="sourceRef")
        lot = self.lots.get(lot_no)
        if lot is not None and lot.part_no != part_no:
            raise Rejected(
                422, "LOT_PART_MISMATCH", f"lot {lot_no} is of part {lot.part_no}", field="partNo"
            )
        for other in self.inspections.values():
            if other.lot_no == lot_no and other.status == "OPEN":
                raise Rejected(
                    409,
                    "INSPECTION_OPEN",
                    f"lot {lot_no} is being inspected in {other.inspection_id}",
                    field="lotNo",
                    inspectionId=other.inspection_id,
                )
        seq, self._next_id = self._next_id, self._next_id + 1
        inspection = Inspection(
            inspection_id=f"QI-{seq:06d}",
            lot_no=lot_no,
            part_no=part_no,
            plan=plan,
            lot_qty=lot_qty,
            sample_size=sample,
            accept_no=int(sample * PLANS[plan] / 100),
            source_ref=source_ref,
            callback_url=callback,
        )
        self.inspections[inspection.inspection_id] = inspection
        if lot is None:
            lot = self.lots[lot_no] = Lot(lot_no, part_no)
        lot.inspections.append(inspection.inspection_id)
        if not lot.active_holds:
            lot.usage = "QUALITY_INSPECTION"
        self.save()
        if self.decide_after is not None:
            decider = asyncio.get_running_loop().create_task(self._decide_later(inspection))
            self._deciders.add(decider)
            decider.add_done_callback(self._deciders.discard)
        return inspection

    def outcome(self, inspection: Inspection) -> str:
        scripted = self.by_lot.get(inspection.lot_no) or self.by_part.get(inspection.part_no)
        if scripted is not None:
            return scripted
        if inspection.plan == "SKIP":
            return "ACCEPTED"
        draw = random.Random(f"{self.seed}:{inspection.lot_no}").random()
        return "REJECTED" if draw < self.reject_rate else "ACCEPTED"

    async def _decide_later(self, inspection: Inspection) -> None:
        await asyncio.sleep(self.decide_after or 0.0)
        if inspection.status == "OPEN":  # not decided by hand meanwhile
            self.decide(inspection, self.outcome(inspection), inspector="AUTO")

    def decide(
        self,
        inspection: Inspection,
        result: str,
        *,
        defects: int | None = None,
        inspector: str | None = None,
        remarks: str | None = None,
    ) -> None:
        if inspection.status != "OPEN":
            raise Rejected(
                409,
                "INSPECTION_CLOSED",
                f"{inspection.inspection_id} was decided: {inspection.result}",
            )
        if defects is None and result != "ON_HOLD":
            rng = random.Random(f"{self.seed}:{inspection.inspection_id}:defects")
            ac = inspection.accept_no
            defects = {
                "ACCEPTED": rng.randint(0, ac),
                "CONDITIONAL": ac,
                "REJECTED": ac + rng.randint(1, 3),
            }[result]
        inspection.status, inspection.result = "CLOSED", result
        inspection.defects_found, inspection.inspector = defects, inspector
        inspection.remarks = remarks or (
            "accepted with deviation" if result == "CONDITIONAL" else None
        )
        inspection.decided_ts = now_ts()
        lot = self.lots[inspection.lot_no]
        lot.last_result = result
        if result in ("ACCEPTED", "CONDITIONAL"):
            lot.usage = "BLOCKED" if lot.active_holds else "UNRESTRICTED"
        body = {"inspection": inspection.to_json()}
        self._notify("INSPECTION_COMPLETED", body, inspection.callback_url)
        if result in ("REJECTED", "ON_HOLD"):
            self.hold(lot, f"{result} by {inspection.inspection_id}", "QMS")
        self.save()

    def hold(self, lot: Lot, reason: Any, by: Any) -> dict[str, Any]:
        if not isinstance(reason, str) or not reason.strip():
            raise Rejected(422, "REASON_MISSING", "a hold needs a reason", field="reason")
        hold = {
            "holdId": f"H-{lot.lot_no}-{len(lot.holds) + 1}",
            "reason": reason,
            "placedBy": by if isinstance(by, str) else None,
            "placedTs": now_ts(),
            "releasedTs": None,
            "releasedBy": None,
            "comment": None,
        }
        lot.holds.append(hold)
        lot.usage = "BLOCKED"
        self._notify("LOT_HOLD_PLACED", {"lot": lot.to_json(), "hold": hold})
        self.save()
        return hold

    def release(self, lot: Lot, by: Any, comment: Any) -> None:
        if not lot.active_holds:
            raise Rejected(409, "LOT_NOT_ON_HOLD", f"lot {lot.lot_no} has no active hold")
        if lot.last_result == "REJECTED" and not (isinstance(comment, str) and comment.strip()):
            raise Rejected(
                422,
                "DISPOSITION_MISSING",
                "releasing a rejected lot needs a comment (the MRB disposition)",
                field="comment",
            )
        for hold in lot.active_holds:
            hold.update(releasedTs=now_ts(), releasedBy=by, comment=comment)
        open_inspection = any(self.inspections[i].status == "OPEN" for i in lot.inspections)
        lot.usage = "QUALITY_INSPECTION" if open_inspection else "UNRESTRICTED"
        self._notify("LOT_RELEASED", {"lot": lot.to_json()})
        self.save()

    def _notify(self, event: str, fields: dict[str, Any], extra_url: str | None = None) -> None:
        urls = [u for u in dict.fromkeys((extra_url, self.callback_url)) if u is not None]
        if not urls:
            return
        seq, self._next_event = self._next_event, self._next_event + 1
        body = {"eventId": f"QMS-{seq:08d}", "event": event, "ts": now_ts(), **fields}
        for url in urls:
            self.callbacks.send(url, body)

    # --- the server -----------------------------------------------------------------------------

    async def on_close(self) -> None:
        for decider in list(self._deciders):
            decider.cancel()
        if self._deciders:
            await asyncio.wait(set(self._deciders))

    def error_body(
        self, status: int, code: str, message: str, *, field: str | None, path: str, **extra: Any
    ) -> dict[str, Any]:
        fault: dict[str, Any] = {"code": f"QMS-{status}", "reason": code, "text": message}
        if field is not None:
            fault["target"] = field
        return {"fault": fault | extra}

    def snapshot(self) -> dict[str, Any]:
        return {
            "nextId": self._next_id,
            "nextEvent": self._next_event,
            "inspections": [asdict(i) for i in self.inspections.values()],
            "lots": [asdict(lot) for lot in self.lots.values()],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self._next_id, self._next_event = state["nextId"], state["nextEvent"]
        self.inspections = {s["inspection_id"]: Inspection(**s) for s in state["inspections"]}
        self.lots = {s["lot_no"]: Lot(**s) for s in state["lots"]}

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/inspections", self._post_inspection)
        app.router.add_get("/api/inspections", self._get_inspections)
        app.router.add_get("/api/inspections/{id}", self._get_inspection)
        app.router.add_post("/api/inspections/{id}/results", self._post_result)
        app.router.add_get("/api/lots/{lot}", self._get_lot)
        app.router.add_post("/api/lots/{lot}/hold", self._post_hold)
        app.router.add_post("/api/lots/{lot}/release", self._post_release)

    def admin_routes(self, app: web.Application) -> None:
        app.router.add_get("/__sim__/script", self._get_script)
        app.router.add_post("/__sim__/script", self._post_script)

    async def _post_inspection(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.create(await self.read_json(request)).to_json(), 201)

    async def _get_inspections(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        found = [
            i.to_json()
            for i in self.inspections.values()
            if q.get("lotNo") in (None, i.lot_no)
            and q.get("status") in (None, i.status)
            and q.get("result") in (None, i.result)
        ]
        return self.json({"inspections": found, "count": len(found)})

    async def _get_inspection(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.inspection(request.match_info["id"]).to_json())

    async def _post_result(self, request: web.Request) -> web.StreamResponse:
        inspection = self.inspection(request.match_info["id"])
        spec = await self.read_json(request)
        result = spec.get("result")
        if result not in QMS_RESULTS:
            raise Rejected(
                422, "RESULT_UNKNOWN", f"result must be one of {QMS_RESULTS}", field="result"
            )
        self.decide(
            inspection,
            result,
            defects=_count(spec, "defectsFound"),
            inspector=spec.get("inspector"),
            remarks=spec.get("remarks"),
        )
        return self.json(inspection.to_json())

    async def _get_lot(self, request: web.Request) -> web.StreamResponse:
        return self.json(self.lot(request.match_info["lot"]).to_json())

    async def _post_hold(self, request: web.Request) -> web.StreamResponse:
        lot = self.lot(request.match_info["lot"])
        spec = await self.read_json(request)
        hold = self.hold(lot, spec.get("reason"), spec.get("by"))
        return self.json({"lot": lot.to_json(), "hold": hold}, 201)

    async def _post_release(self, request: web.Request) -> web.StreamResponse:
        lot = self.lot(request.match_info["lot"])
        spec = await self.read_json(request) if request.can_read_body else {}
        self.release(lot, spec.get("by"), spec.get("comment"))
        return self.json(lot.to_json())

    async def _get_script(self, request: web.Request) -> web.StreamResponse:
        return self.json({"lots": self.by_lot, "parts": self.by_part})

    async def _post_script(self, request: web.Request) -> web.StreamResponse:
        spec = await self.read_json(request)
        try:
            self.script(lots=spec.get("lots"), parts=spec.get("parts"))
        except (ValueError, TypeError, AttributeError) as exc:
            raise Rejected(400, "BAD_SCRIPT", str(exc)) from exc
        return self.json({"lots": self.by_lot, "parts": self.by_part})


def _sample_size(lot_qty: int) -> int:
    if lot_qty < 2:
        return lot_qty
    return next((n for limit, n in _SAMPLE_SIZES if lot_qty <= limit), 800)


def _text(spec: dict[str, Any], name: str) -> str:
    value = spec.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        raise Rejected(
            422,
            "FIELD_MISSING" if value is None else "FIELD_INVALID",
            f"{name} must be a non-empty string of at most 64 characters",
            field=name,
        )
    return value.strip()


def _count(spec: dict[str, Any], name: str) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Rejected(422, "FIELD_INVALID", f"{name} must be a whole number >= 0", field=name)
    return value


def serve_in_thread(**kwargs: Any) -> AbstractContextManager[QmsServer]:
    """``QmsServer(**kwargs)`` on a background event loop, for blocking code."""
    return serve_plant_in_thread(lambda: QmsServer(**kwargs))


def run(
    port: int = 8073,
    host: str = "127.0.0.1",
    *,
    lots: dict[str, str] | None = None,
    parts: dict[str, str] | None = None,
    reject_rate: float = 0.0,
    decide_after: float | None = 0.5,
    callback_url: str | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    faults: FaultPlan | None = None,
    admin: bool | None = None,
    ready: Callable[[QmsServer], None] | None = None,
) -> None:
    """Serve a simulated QMS until SIGINT/SIGTERM (``forgeline sim qms``)."""
    run_plant_server(
        lambda: QmsServer(
            lots=lots,
            parts=parts,
            reject_rate=reject_rate,
            decide_after=decide_after,
            callback_url=callback_url,
            seed=seed,
            data=data,
            faults=faults,
            admin=admin,
            host=host,
            port=port,
        ),
        ready,
        f"(reject rate {reject_rate:g}, scripted lots: {len(lots or {})})",
    )
