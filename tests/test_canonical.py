"""The canonical model: catalog schemas, payload validation, status tables, AsyncAPI document.

``jsonschema`` is not installed in this environment, so schemas are checked here by a small
Draft 2020-12 structure check and a validator for the keyword subset pydantic emits; both are
in this file, independent of pydantic, so a schema that disagrees with its model shows up.
"""

from __future__ import annotations

import json
import pickle
import re
from datetime import datetime
from typing import Any

import pytest

from forgeline import canonical
from forgeline.canonical import (
    CATALOG,
    STATUS_TABLES,
    InvalidPayload,
    NoStatusTable,
    OdooRecordChange,
    UnknownEventType,
    UnknownStatus,
    asyncapi,
    json_schema,
    lookup_status,
    validate,
)
from forgeline.canonical.status_tables import ODOO_MODELS, ODOO_VERSIONS, odoo_locked
from forgeline.envelope import Event
from forgeline.sim.mes import MES_STATES
from forgeline.sim.odoo.addons.account import _payment_states
from forgeline.sim.odoo.addons.mrp_production import MO_STATES, _wo_states
from forgeline.sim.odoo.addons.purchase import _purchase_states
from forgeline.sim.odoo.addons.sale import _sale_states
from forgeline.sim.odoo.addons.stock_picking import PICKING_STATES
from forgeline.sim.qms import QMS_RESULTS
from forgeline.sim.wms import WMS_STATES

DESIGN_TYPES = {
    "production.order.released.v1",
    "production.completed.v1",
    "material.consumed.v1",
    "inventory.moved.v1",
    "lot.released.v1",
    "quality.inspection.completed.v1",
    "quality.hold.placed.v1",
    "shipment.confirmed.v1",
    "asn.received.v1",
    "maintenance.alert.v1",
    "sales.order.confirmed.v1",
    "invoice.posted.v1",
    "engineering.change.released.v1",
}
# What connectors/odoo/events.py emits: Odoo's record under "odoo." + the canonical name.
ODOO_SOURCE_TYPES = {
    "odoo.production.order.released.v1",
    "odoo.production.completed.v1",
    "odoo.sales.order.confirmed.v1",
    "odoo.invoice.posted.v1",
    "odoo.purchase.order.confirmed.v1",
    "odoo.shipment.confirmed.v1",
    "odoo.inventory.received.v1",
    "odoo.inventory.moved.v1",
    "odoo.record.changed.v1",
}

# --- a small JSON Schema checker (structure) and validator (the subset pydantic emits) -------

_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}
_SCHEMA_MAPS = {"properties", "$defs", "patternProperties", "dependentSchemas"}
_SCHEMA_LISTS = {"anyOf", "allOf", "oneOf", "prefixItems"}
_SCHEMA_ONE = {"items", "additionalProperties", "not", "if", "then", "else", "contains"}
_KEYWORDS = (
    _SCHEMA_MAPS
    | _SCHEMA_LISTS
    | _SCHEMA_ONE
    | {"$schema", "$id", "$ref", "$comment", "type", "enum", "const", "required", "format"}
    | {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
    | {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    | {"minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems"}
    | {"minProperties", "maxProperties", "unevaluatedProperties", "propertyNames"}
)


def _resolve(root: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local refs are expected, got {ref}"
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def check_schema(schema: Any, root: dict[str, Any], at: str = "#") -> None:
    """Raise AssertionError where ``schema`` is not a well-formed Draft 2020-12 schema."""
    if isinstance(schema, bool):
        return
    assert isinstance(schema, dict), f"{at}: a schema is an object or a boolean"
    for key, value in schema.items():
        where = f"{at}/{key}"
        assert key in _KEYWORDS or key.startswith("x-"), f"{where}: unknown keyword"
        if key == "type":
            types = value if isinstance(value, list) else [value]
            assert types and set(types) <= _TYPES, f"{where}: {value!r}"
        elif key == "required":
            assert isinstance(value, list) and len(set(value)) == len(value)
            assert set(value) <= set(schema.get("properties", {})), f"{where}: {value}"
        elif key == "enum":
            assert isinstance(value, list) and value, where
        elif key == "pattern":
            re.compile(value)
        elif key == "$ref":
            _resolve(root, value)
        elif key in _SCHEMA_MAPS:
            assert isinstance(value, dict), where
            for name, sub in value.items():
                check_schema(sub, root, f"{where}/{name}")
        elif key in _SCHEMA_LISTS:
            assert isinstance(value, list) and value, where
            for index, sub in enumerate(value):
                check_schema(sub, root, f"{where}/{index}")
        elif key in _SCHEMA_ONE:
            check_schema(value, root, where)
        elif key in {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
            assert isinstance(value, int | float) and not isinstance(value, bool), where
        elif key in {"minLength", "maxLength", "minItems", "maxItems"}:
            assert isinstance(value, int) and value >= 0, where


def schema_errors(instance: Any, schema: Any, root: dict[str, Any], at: str = "$") -> list[str]:
    """Where ``instance`` breaks ``schema`` (the keywords pydantic emits), as paths."""
    if schema is True:
        return []
    if schema is False:
        return [at]
    if "$ref" in schema:
        return schema_errors(instance, _resolve(root, schema["$ref"]), root, at)
    errors: list[str] = []
    if "anyOf" in schema and all(schema_errors(instance, s, root, at) for s in schema["anyOf"]):
        errors.append(f"{at}: anyOf")
    for sub in schema.get("allOf", []):
        errors += schema_errors(instance, sub, root, at)
    kinds = {
        "object": dict,
        "array": list,
        "string": str,
        "boolean": bool,
        "null": type(None),
    }
    kind = schema.get("type")
    if kind in kinds and not isinstance(instance, kinds[kind]):
        return [*errors, f"{at}: not {kind}"]
    if kind in ("number", "integer") and (
        isinstance(instance, bool)
        or not isinstance(instance, int if kind == "integer" else int | float)
    ):
        return [*errors, f"{at}: not {kind}"]
    if "enum" in schema and instance not in schema["enum"]:
        errors.append(f"{at}: enum")
    if "const" in schema and instance != schema["const"]:
        errors.append(f"{at}: const")
    if isinstance(instance, int | float) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            errors.append(f"{at}: minimum")
        if "exclusiveMinimum" in schema and instance <= schema["exclusiveMinimum"]:
            errors.append(f"{at}: exclusiveMinimum")
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            errors.append(f"{at}: minLength")
        if len(instance) > schema.get("maxLength", len(instance)):
            errors.append(f"{at}: maxLength")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            errors.append(f"{at}: pattern")
        if schema.get("format") == "date-time":
            try:
                assert datetime.fromisoformat(instance).tzinfo is not None
            except (ValueError, AssertionError):
                errors.append(f"{at}: date-time")
    if isinstance(instance, list):
        if len(instance) < schema.get("minItems", 0):
            errors.append(f"{at}: minItems")
        for index, item in enumerate(instance):
            errors += schema_errors(item, schema.get("items", True), root, f"{at}[{index}]")
    if isinstance(instance, dict):
        properties = schema.get("properties", {})
        errors += [
            f"{at}.{name}: required" for name in schema.get("required", []) if name not in instance
        ]
        for name, value in instance.items():
            sub = properties.get(name, schema.get("additionalProperties", True))
            errors += schema_errors(value, sub, root, f"{at}.{name}")
    return errors


def example(event_type: str) -> dict[str, Any]:
    examples = json_schema(event_type)["examples"]
    assert isinstance(examples, list) and examples
    return dict(examples[0])


ALL_TYPES = sorted(CATALOG)


# --- the catalog -----------------------------------------------------------------------------


def test_catalog_holds_the_design_types_and_what_the_odoo_source_emits() -> None:
    from forgeline.connectors.odoo.events import EVENT_TYPES

    assert set(CATALOG) >= DESIGN_TYPES
    assert set(EVENT_TYPES) == ODOO_SOURCE_TYPES
    assert set(CATALOG) >= ODOO_SOURCE_TYPES
    # Each typed Odoo event stands for a canonical one, and is about the same entity (the
    # ownership rules that govern the one govern the other).
    for odoo_type in ODOO_SOURCE_TYPES - {"odoo.record.changed.v1"}:
        canonical_type = odoo_type.removeprefix("odoo.")
        assert canonical_type in CATALOG, odoo_type
        assert CATALOG[odoo_type].model is OdooRecordChange
        assert CATALOG[odoo_type].entity == CATALOG[canonical_type].entity
        assert canonical_type in CATALOG[odoo_type].summary
    for entry in canonical.catalog_entries():
        assert entry["version"] == int(entry["type"].rsplit(".v", 1)[1])
        assert entry["schema"] == f"https://forgeline.dev/schemas/{entry['type']}.json"
        Event.new(entry["type"], "forgeline://test")  # every type is a valid CloudEvents type


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_schema_is_valid_2020_12_and_accepts_its_example(event_type: str) -> None:
    schema = json_schema(event_type)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://forgeline.dev/schemas/{event_type}.json"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    json.loads(json.dumps(schema))
    check_schema(schema, schema)
    sample = example(event_type)
    assert schema_errors(sample, schema, schema) == []
    model = validate(event_type, sample)
    assert isinstance(model, CATALOG[event_type].model)
    assert model.model_dump(mode="json", exclude_unset=True) == sample  # nothing coerced


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_schema_and_model_reject_the_same_broken_samples(event_type: str) -> None:
    schema = json_schema(event_type)
    sample = example(event_type)
    required = schema["required"][0]
    broken = [
        {k: v for k, v in sample.items() if k != required},
        {**sample, "unexpected_field": 1},
        {**sample, required: 12345 if isinstance(sample[required], str) else "12345"},
    ]
    for bad in broken:
        assert schema_errors(bad, schema, schema), bad
        with pytest.raises(InvalidPayload):
            validate(event_type, bad)


def test_every_field_is_documented() -> None:
    models = [getattr(canonical, name) for name in canonical.__all__]
    models = [m for m in models if isinstance(m, type) and issubclass(m, canonical.CanonicalModel)]
    assert len(models) > 25
    for model in models:
        undocumented = [n for n, info in model.model_fields.items() if not info.description]
        assert not undocumented, (model.__name__, undocumented)


def test_validate_names_every_bad_path() -> None:
    data = example("shipment.confirmed.v1")
    data["status"] = "shipd"
    data["shipped_at"] = "2026-11-28T10:00:00"  # no offset
    data["lines"] = [{**data["lines"][0], "quantity": "100", "colour": "red"}]
    with pytest.raises(InvalidPayload) as caught:
        validate("shipment.confirmed.v1", data, path="data")
    paths = {error["path"] for error in caught.value.errors}
    assert paths == {
        "data.status",
        "data.shipped_at",
        "data.lines[0].quantity",
        "data.lines[0].colour",
    }
    assert caught.value.status == 422
    assert str(caught.value).startswith("shipment.confirmed.v1 data: data.")
    assert "(and 3 more)" in str(caught.value)


def test_validate_rejects_non_objects_and_non_json() -> None:
    with pytest.raises(InvalidPayload) as caught:
        validate("lot.released.v1", [1, 2])
    assert caught.value.errors[0]["path"] == "$"
    with pytest.raises(InvalidPayload, match="not JSON"):
        validate("lot.released.v1", {"lot": {1, 2}})


def test_strict_numbers_stay_numbers() -> None:
    data = example("material.consumed.v1")
    assert validate("material.consumed.v1", {**data, "quantity": 8}).quantity == 8.0  # type: ignore[attr-defined]
    with pytest.raises(InvalidPayload, match="quantity"):
        validate("material.consumed.v1", {**data, "quantity": "8"})
    with pytest.raises(InvalidPayload, match="quantity"):
        validate("material.consumed.v1", {**data, "quantity": -1})


def test_unknown_event_type_is_a_404_naming_it() -> None:
    with pytest.raises(UnknownEventType, match=r"'production\.done\.v1' is not in the") as c:
        json_schema("production.done.v1")
    assert c.value.status == 404
    with pytest.raises(UnknownEventType):
        validate("production.done.v1", {})


ODOO_RECORDS = [
    ("mrp.production", {"name": "WH/MO/00007", "state": "draft"}, "odoo.record.changed.v1"),
    ("mrp.production", {"name": "WH/MO/00007", "state": "confirmed", "product_id": [7, "P"]},
     "odoo.production.order.released.v1"),
    ("mrp.production", {"name": "WH/MO/00007", "state": "done", "qty_produced": 3.0},
     "odoo.production.completed.v1"),
    ("sale.order", {"name": "S00001", "state": "sale"}, "odoo.sales.order.confirmed.v1"),
    ("stock.picking", {"name": "WH/IN/1", "state": "done", "picking_type_code": "incoming"},
     "odoo.inventory.received.v1"),
]  # fmt: skip


@pytest.mark.parametrize(("model", "values", "event_type"), ODOO_RECORDS)
def test_what_the_odoo_source_emits_is_valid_by_the_catalog_under_its_own_name(
    model: str, values: dict[str, Any], event_type: str
) -> None:
    """Odoo's record is valid as the Odoo type it is published under, and is no canonical
    event: were it published under the canonical name, a consumer validating by the catalog
    would refuse it - which is why the source names its events ``odoo.*``."""
    from forgeline.connectors.odoo.events import record_to_event

    record = {"id": 7, "write_date": "2026-11-27 08:00:00", **values}
    event = record_to_event(model, record, source="odoo://demo/db", version=17)
    assert event.type == event_type
    assert isinstance(validate(event.type, event.data), OdooRecordChange)
    canonical_type = event_type.removeprefix("odoo.")
    if canonical_type in CATALOG:
        with pytest.raises(InvalidPayload):
            validate(canonical_type, event.data)


# --- status tables ---------------------------------------------------------------------------

VERSIONED_CASES = [
    # mrp.workorder: 18 folded pending/waiting into blocked
    ("work_order", 16, "pending", "blocked"),
    ("work_order", 17, "waiting", "blocked"),
    ("work_order", 18, "blocked", "blocked"),
    ("work_order", 19, "progress", "running"),
    # sale.order: 16 had done (locked); 17+ keeps the order in sale with a locked flag
    ("sales_order", 16, "done", "confirmed"),
    ("sales_order", 17, "sale", "confirmed"),
    ("sales_order", 19, "sent", "quoted"),
    # purchase.order: done until 18, locked flag in 19
    ("purchase_order", 18, "done", "confirmed"),
    ("purchase_order", 19, "purchase", "confirmed"),
    ("purchase_order", 16, "to approve", "to_approve"),
    # account.move payment_state gained blocked in 18
    ("invoice_payment", 18, "blocked", "blocked"),
    ("invoice_payment", 16, "invoicing_legacy", "legacy"),
    ("invoice", 17, "posted", "posted"),
    ("production_order", 16, "to_close", "completed"),
    ("production_order", 19, "done", "closed"),
    ("production_order", 17, "confirmed", "released"),
    ("inventory_movement", 18, "assigned", "ready"),
    ("shipment", 17, "done", "shipped"),
    ("asn", 19, "done", "received"),
]


@pytest.mark.parametrize(("entity", "version", "word", "expected"), VERSIONED_CASES)
def test_odoo_words_by_version(entity: str, version: int, word: str, expected: str) -> None:
    assert lookup_status("odoo", entity, word, version) == expected


@pytest.mark.parametrize(
    ("entity", "version", "word"),
    [
        ("work_order", 18, "pending"),
        ("work_order", 19, "waiting"),
        ("work_order", 17, "blocked"),
        ("sales_order", 17, "done"),
        ("purchase_order", 19, "done"),
        ("invoice_payment", 17, "blocked"),
    ],
)
def test_words_a_version_dropped_or_not_yet_had_fail(entity: str, version: int, word: str) -> None:
    with pytest.raises(UnknownStatus) as caught:
        lookup_status("odoo", entity, word, version)
    message = str(caught.value)
    assert repr(word) in message and f"odoo {version}" in message and entity in message
    assert ODOO_MODELS[entity] in message
    error = caught.value
    assert (error.word, error.system, error.entity, error.version) == (
        word,
        "odoo",
        entity,
        version,
    )


@pytest.mark.parametrize(
    ("system", "entity", "word", "expected"),
    [
        ("mes", "work_order", "QUEUED", "ready"),
        ("mes", "work_order", "PAUSED", "paused"),
        ("mes", "work_order", "SCRAPPED", "scrapped"),
        ("mes", "production_order", "RUNNING", "in_progress"),
        ("mes", "production_order", "COMPLETE", "completed"),
        ("wms", "inventory_movement", "NEW", "ready"),
        ("wms", "inventory_movement", "ASSIGNED", "assigned"),
        ("wms", "inventory_movement", "CANCELLED", "cancelled"),
        ("qms", "quality_inspection", "OPEN", "pending"),
        ("qms", "quality_inspection", "CONDITIONAL", "conditional"),
        ("qms", "lot", "UNRESTRICTED", "released"),
        ("qms", "lot", "BLOCKED", "blocked"),
    ],
)
def test_simulated_system_words(system: str, entity: str, word: str, expected: str) -> None:
    assert lookup_status(system, entity, word) == expected
    assert lookup_status(system, entity, word, version=2) == expected  # unversioned systems


def test_tables_cover_exactly_the_simulators_words() -> None:
    """The simulators are the systems' faithful stand-ins: every word they can send maps,
    and the tables hold no word they cannot."""
    assert set(STATUS_TABLES["mes", "work_order", None]) == set(MES_STATES)
    assert set(STATUS_TABLES["mes", "production_order", None]) == set(MES_STATES)
    assert set(STATUS_TABLES["wms", "inventory_movement", None]) == set(WMS_STATES)
    assert set(STATUS_TABLES["qms", "quality_inspection", None]) == {"OPEN", *QMS_RESULTS}
    selections = {
        "production_order": lambda v: MO_STATES,
        "work_order": _wo_states,
        "inventory_movement": lambda v: PICKING_STATES,
        "shipment": lambda v: PICKING_STATES,
        "asn": lambda v: PICKING_STATES,
        "sales_order": _sale_states,
        "purchase_order": _purchase_states,
        "invoice": lambda v: [("draft", ""), ("posted", ""), ("cancel", "")],
        "invoice_payment": _payment_states,
    }
    for version in ODOO_VERSIONS:
        for entity, states in selections.items():
            words = {word for word, _ in states(version)}
            assert set(STATUS_TABLES["odoo", entity, version]) == words, (entity, version)


def test_every_mapped_value_is_a_canonical_status() -> None:
    vocabularies = {getattr(canonical.status, name) for name in canonical.status.__all__}
    for key, table in STATUS_TABLES.items():
        assert table, key
        for word, status in table.items():
            assert type(status) in vocabularies, (key, word)
    # One entity, one vocabulary, whichever system speaks.
    by_entity: dict[str, set[type]] = {}
    for (_, entity, _), table in STATUS_TABLES.items():
        by_entity.setdefault(entity, set()).update(type(s) for s in table.values())
    assert all(len(kinds) == 1 for kinds in by_entity.values()), by_entity


def test_unknown_words_fail_clearly() -> None:
    with pytest.raises(UnknownStatus) as caught:
        lookup_status("mes", "work_order", "DONE")
    error = caught.value
    assert str(error) == (
        "unknown status 'DONE' from mes work_order; "
        "known: COMPLETE, PAUSED, QUEUED, RUNNING, SCRAPPED, SETUP"
    )
    assert (error.word, error.system, error.entity, error.status) == (
        "DONE",
        "mes",
        "work_order",
        422,
    )
    again = pickle.loads(pickle.dumps(error))
    assert (again.word, again.system, again.entity, str(again)) == (
        "DONE",
        "mes",
        "work_order",
        str(error),
    )
    with pytest.raises(UnknownStatus, match="'done'"):
        lookup_status("wms", "inventory_movement", "done")  # words are case-sensitive


def test_missing_tables_say_what_exists() -> None:
    with pytest.raises(NoStatusTable, match="give one of 16, 17, 18, 19, not None"):
        lookup_status("odoo", "work_order", "ready")
    with pytest.raises(NoStatusTable, match="not 15"):
        lookup_status("odoo", "work_order", "ready", 15)
    with pytest.raises(NoStatusTable, match=r"its entities: .*production_order"):
        lookup_status("odoo", "routing", "x", 17)
    with pytest.raises(NoStatusTable, match="known systems: mes, odoo, qms, wms"):
        lookup_status("sap", "production_order", "REL")


def test_odoo_lock_by_state_or_flag() -> None:
    assert odoo_locked("sales_order", 16, "done")
    assert not odoo_locked("sales_order", 17, "sale")
    assert odoo_locked("sales_order", 17, "sale", locked=True)
    assert odoo_locked("purchase_order", 18, "done")
    assert odoo_locked("purchase_order", 19, "purchase", locked=True)
    assert not odoo_locked("purchase_order", 19, "purchase")


# --- AsyncAPI --------------------------------------------------------------------------------


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_asyncapi_document_describes_every_event_type() -> None:
    document = json.loads(json.dumps(asyncapi()))
    assert set(document) == {
        "asyncapi",
        "info",
        "defaultContentType",
        "channels",
        "operations",
        "components",
    }
    assert document["asyncapi"] == "3.0.0"
    assert {"title", "version"} <= set(document["info"])
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(CATALOG)
    for ref in _refs(document):
        _resolve(document, ref)  # raises KeyError on a dangling reference
    for key, operation in document["operations"].items():
        assert operation["action"] == "send", key
        channel_ref = operation["channel"]["$ref"]
        assert all(m["$ref"].startswith(channel_ref + "/messages/") for m in operation["messages"])
    schemas = document["components"]["schemas"]
    for name, schema in schemas.items():
        check_schema(schema, document, f"#/components/schemas/{name}")
    for message in document["components"]["messages"].values():
        event_type = message["name"]
        headers = message["headers"]["allOf"][1]["properties"]
        assert headers["type"]["const"] == event_type
        assert headers["dataschema"]["const"] == CATALOG[event_type].schema_url
        assert message["correlationId"]["location"] == "$message.header#/correlationid"
        sample = message["examples"][0]
        assert schema_errors(sample["payload"], message["payload"], document) == []
        assert schema_errors(sample["headers"], message["headers"], document) == []
    attributes = schemas["CloudEventAttributes"]["properties"]
    for name in ("partitionkey", "correlationid", "causationid", "traceparent", "tenant"):
        assert name in attributes
