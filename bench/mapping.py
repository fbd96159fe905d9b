"""Mapping throughput: a compiled Forgeline mapping vs the same transformation hand-written
in Python, as a closure tree, and in JSONata (``jsonata-python``), same run.

The transformation: a simulated MES production message (``forgeline.sim.mes``, enriched with
the work order's status) into canonical production-completed data, 20 fields: 2 status-table
lookups, 3 cross-reference lookups (``InMemoryCrossReference``), 2 unit conversions (the
document's own ``uom``), 1 computed expression, a default, a constant, an event attribute and
plain paths. Every contender must produce the same dict (checked before timing).

* **hand-written**: the function a competent developer writes for this one message, with the
  same checks (unknown status word, missing cross-reference: an error naming the field);
* **compiled**: ``load_mapping`` (generated Python source, compiled once) — what ships;
* **closures**: the same checked spec compiled into a tree of closures instead (kept here,
  not in the package, so the choice stays measured);
* **jsonata**: one JSONata expression, with the tables as bindings and the cross-reference
  and unit conversion as registered Python functions.

Each is timed best-of ``--runs`` over ``--count`` calls; ops/s and the ratio to the
hand-written function (target for compiled >= 0.3x).

    .venv/bin/python -m bench.mapping [--count 50000] [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from forgeline.mapping import InMemoryCrossReference, MappingError, load_mapping
from forgeline.mapping.compiler import _expression_source
from forgeline.mapping.spec import Field, SourcePath
from forgeline.mapping.xref import convert
from forgeline.route.expression import _NAMESPACE

RESULTS = Path(__file__).resolve().parent / "results" / "mapping.json"

WO_STATUS = {"QUEUED": "released", "SETUP": "in_progress", "RUNNING": "in_progress",
             "PAUSED": "on_hold", "COMPLETE": "completed", "SCRAPPED": "cancelled"}  # fmt: skip
MSG_KIND = {"PRODUCTION": "production.reported", "CONSUMPTION": "material.consumed",
            "STATE": "work_order.changed"}  # fmt: skip

MAPPING: dict[str, Any] = {
    "name": "mes-production-to-canonical",
    "tables": {"wo_status": WO_STATUS, "msg_kind": MSG_KIND},
    "fields": {
        "event_id": "data.msgId",
        "kind": {"path": "data.msgType", "lookup": "msg_kind"},
        "status": {"path": "data.status", "lookup": "wo_status"},
        "production_order_id": {
            "path": "data.erpOrder", "xref": {"system": "mes", "entity": "production_order"},
        },
        "erp_order": "data.erpOrder",
        "work_order": "data.woNumber",
        "product_id": {"path": "data.partNo", "xref": {"system": "mes", "entity": "product"}},
        "work_center_id": {
            "path": "data.workCenter", "xref": {"system": "mes", "entity": "work_center"},
        },
        "line": "data.line",
        "lot": "data.lotNo",
        "quantity_good_g": {"path": "data.qtyGood", "unit": {"from_path": "data.uom", "to": "g"}},
        "quantity_scrap_g": {
            "path": "data.qtyScrap", "unit": {"from_path": "data.uom", "to": "g"},
        },
        "total_good": "data.totalGood",
        "total_scrap": "data.totalScrap",
        "quantity_ordered": "data.qtyOrdered",
        "complete": {"expr": "data.totalGood + data.totalScrap >= data.qtyOrdered"},
        "produced_at": "data.ts",
        "shift": {"path": "data.shift", "default": "day"},
        "source_system": {"const": "mes"},
        "reported_by": "source",
    },
}  # fmt: skip

EVENT: dict[str, Any] = {
    "specversion": "1.0", "id": "site1-00000042", "source": "mes/site1",
    "type": "mes.production.v1", "subject": "WO-2026-00042", "time": "2026-11-27T05:00:00Z",
    "data": {
        "msgId": "site1-00000042", "msgType": "PRODUCTION", "woNumber": "WO-2026-00042",
        "erpOrder": "WH/MO/00042", "partNo": "FG-1000", "status": "RUNNING",
        "qtyGood": 12.5, "qtyScrap": 0.25, "totalGood": 50, "totalScrap": 1,
        "qtyOrdered": 100, "uom": "KG", "lotNo": "L1-2600042", "line": "L1",
        "workCenter": "WC-ASSY-01", "ts": "2026-11-27T05:00:00.000Z",
    },
}  # fmt: skip


def cross_reference() -> InMemoryCrossReference:
    return InMemoryCrossReference([
        ("mes", "production_order", "WH/MO/00042", "po-42"),
        ("mes", "product", "FG-1000", "prod-1000"),
        ("mes", "work_center", "WC-ASSY-01", "wc-assy-01"),
    ])  # fmt: skip


def hand_written(ev: dict[str, Any], xref: InMemoryCrossReference) -> dict[str, Any]:
    d = ev["data"]

    def ref(entity: str, value: str, field: str, path: str) -> str:
        found = xref.resolve("mes", entity, value)
        if found is None:
            raise MappingError(field=field, path=path, reason="no canonical id")
        return found

    kind = MSG_KIND.get(d["msgType"])
    if kind is None:
        raise MappingError(field="kind", path="data.msgType", reason="unknown word")
    status = WO_STATUS.get(d["status"])
    if status is None:
        raise MappingError(field="status", path="data.status", reason="unknown word")
    uom = d["uom"]
    return {
        "event_id": d["msgId"],
        "kind": kind,
        "status": status,
        "production_order_id": ref("production_order", d["erpOrder"], "po", "data.erpOrder"),
        "erp_order": d["erpOrder"],
        "work_order": d["woNumber"],
        "product_id": ref("product", d["partNo"], "product_id", "data.partNo"),
        "work_center_id": ref("work_center", d["workCenter"], "wc", "data.workCenter"),
        "line": d["line"],
        "lot": d["lotNo"],
        "quantity_good_g": convert(d["qtyGood"], uom, "g"),
        "quantity_scrap_g": convert(d["qtyScrap"], uom, "g"),
        "total_good": d["totalGood"],
        "total_scrap": d["totalScrap"],
        "quantity_ordered": d["qtyOrdered"],
        "complete": d["totalGood"] + d["totalScrap"] >= d["qtyOrdered"],
        "produced_at": d["ts"],
        "shift": d.get("shift") or "day",
        "source_system": "mes",
        "reported_by": ev["source"],
    }


# --- the road not taken: the same spec as a closure tree ------------------------------------

_Step = Callable[[Any, Any, Any], Any]  # (value, event, xref) -> value


def _reader(path: SourcePath) -> Callable[[Any], Any]:
    keys = path.keys

    def read(ev: Any) -> Any:
        try:
            for key in keys:
                ev = ev[key]
        except (KeyError, IndexError, TypeError):
            return None
        return ev

    return read


def _closure_field(field: Field, tables: Any) -> Callable[[Any, Any], Any]:
    target, where = field.target, field.source_text
    literal_unit = field.unit is not None and field.unit.source is not None
    if field.items is not None or field.function is not None or literal_unit:
        raise NotImplementedError("the bench's closure tree covers what MAPPING uses")
    if field.is_const:
        const = field.const
        return lambda ev, xref: const
    if field.expr is not None:
        # one function per expression (no eval per call), as fair to closures as it gets
        namespace = dict(_NAMESPACE)
        lambda_source = f"lambda ev: {_expression_source(field.expr)}"
        source: Callable[[Any], Any] = eval(compile(lambda_source, "<expr>", "eval"), namespace)
    else:
        assert field.path is not None
        source = _reader(field.path)
    steps: list[_Step] = []
    if field.lookup is not None:
        table, name = tables[field.lookup], field.lookup

        def lookup(v: Any, ev: Any, xref: Any) -> Any:
            try:
                return table[v]
            except (KeyError, TypeError):
                raise MappingError(
                    field=target, path=where, reason=f"{v!r} not in {name}"
                ) from None

        steps.append(lookup)
    if field.xref is not None:
        system, entity = field.xref

        def resolve(v: Any, ev: Any, xref: Any) -> Any:
            found = xref.resolve(system, entity, v if type(v) is str else str(v))
            if found is None:
                raise MappingError(field=target, path=where, reason="no canonical id")
            return found

        steps.append(resolve)
    if field.unit is not None and field.unit.source_path is not None:
        unit_of, to = _reader(field.unit.source_path), field.unit.to
        steps.append(lambda v, ev, xref: convert(v, unit_of(ev), to))
    default, has_default = field.default, field.has_default

    def run(ev: Any, xref: Any) -> Any:
        v = source(ev)
        if v is None:
            if has_default:
                return default
            raise MappingError(field=target, path=where, reason="required")
        for step in steps:
            v = step(v, ev, xref)
        return v

    return run


def closure_mapping(document: dict[str, Any]) -> Callable[[Any, Any], dict[str, Any]]:
    spec = load_mapping(document).spec
    fields = [(f.target, _closure_field(f, spec.tables)) for f in spec.fields]
    return lambda ev, xref: {target: run(ev, xref) for target, run in fields}


# --- JSONata --------------------------------------------------------------------------------

JSONATA = """{
  "event_id": data.msgId,
  "kind": $lookup($msg_kind, data.msgType),
  "status": $lookup($wo_status, data.status),
  "production_order_id": $xref("production_order", data.erpOrder),
  "erp_order": data.erpOrder,
  "work_order": data.woNumber,
  "product_id": $xref("product", data.partNo),
  "work_center_id": $xref("work_center", data.workCenter),
  "line": data.line,
  "lot": data.lotNo,
  "quantity_good_g": $convert(data.qtyGood, data.uom, "g"),
  "quantity_scrap_g": $convert(data.qtyScrap, data.uom, "g"),
  "total_good": data.totalGood,
  "total_scrap": data.totalScrap,
  "quantity_ordered": data.qtyOrdered,
  "complete": data.totalGood + data.totalScrap >= data.qtyOrdered,
  "produced_at": data.ts,
  "shift": data.shift ? data.shift : "day",
  "source_system": "mes",
  "reported_by": source
}"""


def jsonata_mapping(xref: InMemoryCrossReference) -> Callable[[Any, Any], Any] | None:
    try:
        import jsonata  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    expression = jsonata.Jsonata(JSONATA)
    expression.register_lambda("xref", lambda entity, v: xref.resolve("mes", entity, v))
    expression.register_lambda("convert", convert)
    bindings = {"msg_kind": MSG_KIND, "wo_status": WO_STATUS}
    return lambda ev, _xref: expression.evaluate(ev, bindings)


def measure(function: Callable[[Any, Any], Any], xref: Any, count: int, runs: int) -> float:
    """Best ops/s of ``runs`` runs of ``count`` calls."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(count):
            function(EVENT, xref)
        best = min(best, time.perf_counter() - start)
    return count / best


def main(count: int, runs: int) -> dict[str, Any]:
    xref = cross_reference()
    expected = hand_written(EVENT, xref)
    compiled = load_mapping(MAPPING)
    contenders: dict[str, Callable[[Any, Any], Any] | None] = {
        "hand-written": hand_written,
        "compiled": lambda ev, x: compiled(ev, xref=x),
        "closures": closure_mapping(MAPPING),
        "jsonata": jsonata_mapping(xref),
    }
    results: dict[str, Any] = {"count": count, "runs": runs, "fields": len(MAPPING["fields"])}
    for name, function in contenders.items():
        if function is None:
            print(f"{name:>13}: skipped (pip install jsonata-python)")
            continue
        got = function(EVENT, xref)
        if got != expected:
            raise SystemExit(f"{name} disagrees with the hand-written function:\n{got}")
        # JSONata is ~100x slower: fewer calls keep the run short, the rate is the same.
        n = max(count // 100, 200) if name == "jsonata" else count
        rate = measure(function, xref, n, runs)
        results[name] = {"ops_per_s": round(rate), "calls": n}
    hand = results["hand-written"]["ops_per_s"]
    for name in contenders:
        if name in results:
            results[name]["ratio_to_hand_written"] = round(results[name]["ops_per_s"] / hand, 3)
    for name in contenders:
        if name in results:
            row = results[name]
            print(f"{name:>13}: {row['ops_per_s']:>10,} ops/s  {row['ratio_to_hand_written']:.3f}x")
    ratio = results["compiled"]["ratio_to_hand_written"]
    verdict = "ok" if ratio >= 0.3 else "MISSED"
    print(f"compiled / hand-written = {ratio:.2f}x (target >= 0.3x): {verdict}")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.mapping", description=__doc__)
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    figures = main(args.count, args.runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(figures, indent=2) + "\n")
