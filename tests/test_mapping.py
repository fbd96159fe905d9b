"""Mappings: the declarative form, its checks at load, the compiled function and its errors."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import pytest

from forgeline.exceptions import ConfigError, InvalidInput
from forgeline.mapping import (
    InMemoryCrossReference,
    MappingError,
    MappingSpecError,
    load_mapping,
    map_test,
    mapping_function,
    read_mapping,
)
from forgeline.mapping.xref import convert


def event(**data: Any) -> dict[str, Any]:
    return {"specversion": "1.0", "id": "1", "source": "mes/site1", "type": "mes.x.v1",
            "subject": "WO-1", "data": data}  # fmt: skip


def one(spec: Any, **options: Any) -> Any:
    return load_mapping({"fields": {"out": spec}}, **options)


def spec_errors(document: Any) -> list[dict[str, str]]:
    with pytest.raises(MappingSpecError) as info:
        load_mapping(document)
    return info.value.errors


# --- each feature -------------------------------------------------------------------------


def test_paths_read_nested_keys_indexes_and_event_attributes() -> None:
    mapping = load_mapping({"fields": {
        "sku": "data.lines[0].sku", "last": "data.lines[-1].sku", "subject": "subject",
        "deep": {"path": "data.a.b-c.d"},
    }})  # fmt: skip
    doc = event(lines=[{"sku": "A"}, {"sku": "B"}], a={"b-c": {"d": 4}})
    assert mapping(doc) == {"sku": "A", "last": "B", "subject": "WO-1", "deep": 4}


def test_constants_are_fresh_copies_and_defaults_fill_missing_or_null() -> None:
    mapping = load_mapping({"fields": {
        "tags": {"const": ["mes"]},
        "shift": {"path": "data.shift", "default": "day"},
        "lot": {"path": "data.lot", "default": None},
    }})  # fmt: skip
    first = mapping(event(shift=None))
    assert first == {"tags": ["mes"], "shift": "day", "lot": None}
    first["tags"].append("changed")
    assert mapping(event(shift="night"))["tags"] == ["mes"]
    assert mapping(event(shift="night"))["shift"] == "night"


def test_a_missing_required_value_names_field_and_path() -> None:
    mapping = one("data.qtyGood")
    for doc in (event(), event(qtyGood=None), {"data": "not an object"}, {}):
        with pytest.raises(MappingError) as info:
            mapping(doc)
        assert (info.value.field, info.value.path) == ("out", "data.qtyGood")
        assert "missing" in info.value.reason
    with pytest.raises(MappingError, match="expected a JSON object, got list"):
        mapping([1])  # type: ignore[arg-type]


def test_status_lookup_and_an_unknown_word_names_word_and_table() -> None:
    mapping = load_mapping(
        {
            "tables": {"mes_status": {"RUNNING": "in_progress", "COMPLETE": "completed"}},
            "fields": {"status": {"path": "data.status", "lookup": "mes_status"}},
        }
    )
    assert mapping(event(status="COMPLETE")) == {"status": "completed"}
    with pytest.raises(MappingError) as info:
        mapping(event(status="DONEE"))
    assert info.value.field == "status" and info.value.path == "data.status"
    assert "'DONEE'" in str(info.value) and "'mes_status'" in str(info.value)
    with pytest.raises(MappingError, match="unknown word"):
        mapping(event(status=["unhashable"]))


def test_shared_tables_are_given_at_load() -> None:
    mapping = one(
        {"path": "data.s", "lookup": "odoo17_mrp"}, tables={"odoo17_mrp": {"done": "completed"}}
    )
    assert mapping(event(s="done")) == {"out": "completed"}


def test_cross_reference_lookup_and_a_missing_id() -> None:
    xref = InMemoryCrossReference(
        [("mes", "product", "P-1", "prod-1"), ("odoo", "product", "7", "prod-1")]
    )
    mapping = load_mapping({"fields": {
        "mes": {"path": "data.partNo", "xref": {"system": "mes", "entity": "product"}},
        "odoo": {"path": "data.productId", "xref": {"system": "odoo", "entity": "product"}},
    }})  # fmt: skip
    assert mapping(event(partNo="P-1", productId=7), xref=xref) == {
        "mes": "prod-1",
        "odoo": "prod-1",
    }
    with pytest.raises(MappingError) as info:
        mapping(event(partNo="P-2", productId=7), xref=xref)
    assert info.value.field == "mes" and info.value.path == "data.partNo"
    assert "mes product 'P-2'" in info.value.reason
    with pytest.raises(MappingError, match="cross-reference"):
        mapping(event(partNo="P-1", productId=7))  # no cross-reference given at all


def test_unit_conversion_from_a_literal_or_the_documents_unit() -> None:
    mapping = load_mapping({"fields": {
        "g": {"path": "data.kg", "unit": {"from": "kg", "to": "g"}},
        "mm": {"path": "data.len", "unit": {"from_path": "data.lenUnit", "to": "mm"}},
        "l": {"path": "data.vol", "unit": {"from": "ml", "to": "l"}},
        "each": {"path": "data.n", "unit": {"from_path": "data.uom", "to": "each"}},
    }})  # fmt: skip
    doc = event(kg=1.1, len=2, lenUnit="M", vol=1500, n=3, uom="EA")
    assert mapping(doc) == {"g": 1100.0, "mm": 2000, "l": 1.5, "each": 3}
    with pytest.raises(MappingError) as info:
        mapping(event(kg=1, len=2, lenUnit="furlong", vol=1, n=3, uom="EA"))
    assert (info.value.field, info.value.path) == ("mm", "data.lenUnit")
    assert "unknown unit 'furlong'" in info.value.reason
    with pytest.raises(MappingError, match="cannot convert kg"):
        mapping(event(kg=1, len=2, lenUnit="KG", vol=1, n=3, uom="EA"))
    with pytest.raises(MappingError, match="expected a number"):
        mapping(event(kg="1", len=2, lenUnit="m", vol=1, n=3, uom="EA"))


def test_convert_keeps_integers_exact() -> None:
    assert convert(2000, "g", "kg") == 2 and isinstance(convert(2000, "g", "kg"), int)
    assert convert(1500, "g", "kg") == 1.5
    assert convert(3, "pcs", "each") == 3


def test_computed_expressions_use_the_house_language() -> None:
    mapping = load_mapping({"fields": {
        "total": {"expr": "data.qtyGood + data.qtyScrap"},
        "done": {"expr": "data.totalGood >= data.qtyOrdered"},
        "line": {"expr": "data.line.lower()"},
        "ratio": {"expr": "data.qtyScrap / data.qtyGood", "default": 0},
    }})  # fmt: skip
    doc = event(qtyGood=8, qtyScrap=2, totalGood=100, qtyOrdered=100, line="L1")
    assert mapping(doc) == {"total": 10, "done": True, "line": "l1", "ratio": 0.25}
    assert mapping(event(qtyGood=0, qtyScrap=2, totalGood=1, qtyOrdered=2, line="L1"))["ratio"] == 0
    with pytest.raises(MappingError) as info:
        mapping(event(qtyGood="x", qtyScrap=2, totalGood=1, qtyOrdered=2, line="L1"))
    assert info.value.field == "total" and "data.qtyGood + data.qtyScrap" in info.value.path


def test_line_items_map_each_element_with_a_sub_mapping() -> None:
    xref = InMemoryCrossReference(
        [("mes", "product", "C-1", "prod-c1"), ("mes", "product", "C-2", "prod-c2")]
    )
    mapping = load_mapping({"fields": {
        "order": "data.woNumber",
        "components": {"items": "data.bom", "map": {
            "product_id": {"path": "data.partNo", "xref": {"system": "mes", "entity": "product"}},
            "qty_g": {"path": "data.qty", "unit": {"from_path": "data.uom", "to": "g"}},
            "work_order": "subject",  # the event's attributes stay reachable
            "scrap": {"expr": "data.qty * 0.5"},
        }},
        "notes": {"items": "data.notes", "default": [], "map": {"text": "data.t"}},
    }})  # fmt: skip
    doc = event(woNumber="WO-1", bom=[
        {"partNo": "C-1", "qty": 2, "uom": "KG"}, {"partNo": "C-2", "qty": 500, "uom": "g"},
    ])  # fmt: skip
    assert mapping(doc, xref=xref) == {
        "order": "WO-1",
        "components": [
            {"product_id": "prod-c1", "qty_g": 2000, "work_order": "WO-1", "scrap": 1.0},
            {"product_id": "prod-c2", "qty_g": 500, "work_order": "WO-1", "scrap": 250.0},
        ],
        "notes": [],
    }
    doc["data"]["bom"][1]["partNo"] = "C-9"
    with pytest.raises(MappingError) as info:
        mapping(doc, xref=xref)
    assert info.value.field == "components[1].product_id"
    assert info.value.path == "data.bom[1].partNo"
    with pytest.raises(MappingError, match="expected a list, got dict"):
        mapping(event(woNumber="WO-1", bom={"partNo": "C-1"}), xref=xref)


@mapping_function("test_parse_mes_ts")
def _parse_mes_ts(value: str) -> str:
    return value.replace(".000Z", "Z")


@mapping_function("test_whole_document")
def _whole(document: dict[str, Any]) -> str:
    return f"{document['source']}#{document['data']['msgId']}"


def test_escape_hatch_functions_on_a_value_or_the_whole_document() -> None:
    mapping = load_mapping({"fields": {
        "ts": {"path": "data.ts", "function": "test_parse_mes_ts"},
        "key": {"function": "test_whole_document"},
        "local": {"path": "data.n", "function": "double"},
    }}, functions={"double": lambda v: v * 2})  # fmt: skip
    assert mapping(event(ts="2026-01-01T00:00:00.000Z", msgId="m-1", n=2)) == {
        "ts": "2026-01-01T00:00:00Z", "key": "mes/site1#m-1", "local": 4,
    }  # fmt: skip
    with pytest.raises(MappingError) as info:
        mapping(event(ts=5, msgId="m-1", n=2))
    assert info.value.field == "ts" and "AttributeError" in info.value.reason
    with pytest.raises(MappingError) as info:
        mapping(event(ts="t", n=2))
    assert info.value.field == "key" and "KeyError" in info.value.reason


def test_registering_another_function_under_a_taken_name_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        mapping_function("test_parse_mes_ts")(lambda v: v)
    assert mapping_function("test_parse_mes_ts")(_parse_mes_ts) is _parse_mes_ts


# --- checks at load -----------------------------------------------------------------------


def test_every_problem_is_reported_with_its_path_at_load() -> None:
    errors = spec_errors({
        "name": "broken",
        "tables": {"st": {"A": "a"}, "empty": {}},
        "extra": 1,
        "fields": {
            "a": {"path": "data.x", "lookup": "nope"},
            "b": {"expr": "data.x +"},
            "c": {"path": "data..x"},
            "d": {"path": "data.x", "const": 1},
            "e": {"path": "data.x", "xref": {"system": "mes"}},
            "f": {"path": "data.x", "unit": {"from": "kg", "to": "mm"}},
            "g": {"path": "data.x", "unit": {"from": "stone", "to": "kg"}},
            "h": {"path": "data.x", "function": "no_such_function"},
            "i": {"items": "data.lines", "map": {"j": {"path": "data.y", "lookup": "missing"}}},
            "k": {"items": "data.lines", "lookup": "st", "map": {"x": "data.x"}},
            "l": {"const": 1, "default": 2},
            "m": {"pth": "data.x"},
            "n": {"expr": "__import__('os')"},
            "o": 5,
        },
    })  # fmt: skip
    by_path = {e["path"]: e["message"] for e in errors}
    assert "unknown key" in by_path["extra"]
    assert "non-empty" in by_path["tables.empty"]
    assert "unknown status table 'nope'" in by_path["fields.a.lookup"]
    assert "syntax error" in by_path["fields.b.expr"]
    assert "not a source path" in by_path["fields.c.path"]
    assert "exactly one source" in by_path["fields.d"]
    assert "required" in by_path["fields.e.xref.entity"]
    assert "another dimension" in by_path["fields.f.unit"]
    assert "unknown unit 'stone'" in by_path["fields.g.unit.from"]
    assert "unknown mapping function 'no_such_function'" in by_path["fields.h.function"]
    assert "unknown status table 'missing'" in by_path["fields.i.map.j.lookup"]
    assert "no transforms" in by_path["fields.k.lookup"]
    assert "no transforms and no default" in by_path["fields.l.default"]
    assert "unknown key" in by_path["fields.m.pth"]
    assert "needs a source" in by_path["fields.m"]
    assert "not allowed" in by_path["fields.n.expr"]
    assert "expected a source path" in by_path["fields.o"]


def test_the_summary_names_the_mapping_and_the_first_path() -> None:
    with pytest.raises(MappingSpecError) as info:
        load_mapping({"name": "mes-prod", "fields": {"a": {"lookup": "x", "path": "data.a"}}})
    assert str(info.value).startswith("mapping 'mes-prod': fields.a.lookup: unknown status table")
    assert isinstance(info.value, ConfigError)
    for document in ({}, {"fields": {}}, [1]):
        with pytest.raises(MappingSpecError):
            load_mapping(document)  # type: ignore[arg-type]


def test_mapping_error_is_invalid_input_and_survives_pickling() -> None:
    error = MappingError(field="qty", path="data.qtyGood", reason="required value is missing")
    assert isinstance(error, InvalidInput) and error.status == 422
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.field, copy.path, copy.reason, str(copy)) == (
        "qty", "data.qtyGood", "required value is missing", str(error),
    )  # fmt: skip


def test_names_and_strings_never_become_code() -> None:
    tricky = "x'); import os; ('"
    mapping = load_mapping(
        {
            "tables": {tricky: {tricky: tricky}},
            "fields": {tricky: {"path": "data.s", "lookup": tricky}, "c": {"const": tricky}},
        }
    )
    assert mapping(event(s=tricky)) == {tricky: tricky, "c": tricky}


# --- the realistic case -------------------------------------------------------------------

MES_PRODUCTION = {
    "msgId": "site1-00000042", "msgType": "PRODUCTION", "woNumber": "WO-2026-00007",
    "erpOrder": "WH/MO/00042", "partNo": "FG-1000", "qtyGood": 24, "qtyScrap": 1,
    "totalGood": 100, "totalScrap": 2, "qtyOrdered": 100, "uom": "KG", "lotNo": "L1-2600007",
    "line": "L1", "workCenter": "WC-ASSY-01", "ts": "2026-11-27T05:00:00.000Z",
}  # fmt: skip
MES_TO_CANONICAL = {  # onto the canonical ProductionCompleted (forgeline.canonical)
    "name": "mes-production-to-canonical",
    "fields": {
        "production_order": "data.erpOrder",
        "product": {"path": "data.partNo", "xref": {"system": "mes", "entity": "product"}},
        "quantity_good": {"path": "data.totalGood", "unit": {"from_path": "data.uom", "to": "kg"}},
        "quantity_scrap": {
            "path": "data.totalScrap", "unit": {"from_path": "data.uom", "to": "kg"},
        },
        "quantity_ordered": {
            "path": "data.qtyOrdered", "unit": {"from_path": "data.uom", "to": "kg"},
        },
        "uom": {"const": "KG"},
        "lots": {"path": "data.lotNo", "function": "test_as_list"},
        "work_order": "data.woNumber",
        "work_center": {
            "path": "data.workCenter", "xref": {"system": "mes", "entity": "work_center"},
        },
        "completed_at": "data.ts",
    },
}  # fmt: skip
XREF_ROWS = [
    ["mes", "product", "FG-1000", "FG-1000"],
    ["mes", "work_center", "WC-ASSY-01", "assembly-1"],
]


@mapping_function("test_as_list")
def _as_list(value: Any) -> list[Any]:
    return [value]


def test_a_mes_production_message_becomes_canonical_production_completed_data() -> None:
    mapping = load_mapping(MES_TO_CANONICAL)
    xref = InMemoryCrossReference(tuple(row) for row in XREF_ROWS)  # type: ignore[misc]
    doc = {**event(), "type": "mes.production.v1", "data": MES_PRODUCTION}
    result = mapping(doc, xref=xref)
    assert result == {
        "production_order": "WH/MO/00042", "product": "FG-1000", "quantity_good": 100,
        "quantity_scrap": 2, "quantity_ordered": 100, "uom": "KG", "lots": ["L1-2600007"],
        "work_order": "WO-2026-00007", "work_center": "assembly-1",
        "completed_at": "2026-11-27T05:00:00.000Z",
    }  # fmt: skip
    try:
        from forgeline.canonical.production import ProductionCompleted
    except ImportError:  # the canonical model lands separately
        return
    ProductionCompleted.model_validate_json(json.dumps(result))


def test_mapping_is_deterministic() -> None:
    xref = InMemoryCrossReference(tuple(row) for row in XREF_ROWS)  # type: ignore[misc]
    doc = {"data": MES_PRODUCTION, "source": "mes/site1"}
    first, second = load_mapping(MES_TO_CANONICAL), load_mapping(MES_TO_CANONICAL)
    assert first.source == second.source
    results = [json.dumps(m(doc, xref=xref)) for m in (first, second, first)]
    assert len(set(results)) == 1
    assert list(json.loads(results[0])) == list(MES_TO_CANONICAL["fields"])  # spec order
    assert doc["data"] is MES_PRODUCTION and MES_PRODUCTION["uom"] == "KG"  # input untouched


# --- map test -----------------------------------------------------------------------------


def test_map_test_prints_the_result_or_the_exact_error(tmp_path: Path) -> None:
    import yaml

    mapping_file = tmp_path / "mes.yaml"
    mapping_file.write_text(yaml.safe_dump(MES_TO_CANONICAL, sort_keys=False))
    sample = tmp_path / "sample.json"
    sample.write_text(json.dumps(MES_PRODUCTION))  # the message alone: it becomes ``data``
    xref_file = tmp_path / "xref.json"
    xref_file.write_text(json.dumps(XREF_ROWS))
    result = json.loads(map_test(mapping_file, sample, xref_file))
    assert result["work_center"] == "assembly-1" and result["quantity_good"] == 100
    assert read_mapping(mapping_file).name == "mes-production-to-canonical"

    sample.write_text(json.dumps(event(**{**MES_PRODUCTION, "uom": "BOX"})))  # a CloudEvent
    with pytest.raises(
        MappingError, match=re.escape("field 'quantity_good' (from data.uom): unknown unit 'BOX'")
    ):
        map_test(mapping_file, sample, xref_file)
    sample.write_text(json.dumps(event(**MES_PRODUCTION)))
    with pytest.raises(MappingError, match="no canonical id for mes product 'FG-1000'"):
        map_test(mapping_file, sample)
    broken = tmp_path / "broken.yaml"
    broken.write_text("fields: {a: {lookup: nope, path: data.a}}")
    with pytest.raises(MappingSpecError, match=r"fields\.a\.lookup"):
        map_test(broken, sample)
    with pytest.raises(ConfigError, match="cannot read sample"):
        map_test(tmp_path / "mes.yaml", tmp_path / "absent.json")
    xref_file.write_text('{"not": "rows"}')
    with pytest.raises(ConfigError, match="rows"):
        map_test(tmp_path / "mes.yaml", sample, xref_file)
