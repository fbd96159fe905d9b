"""The declarative mapping form, checked when loaded: a dict (from YAML or JSON) into a
:class:`MappingSpec` that the compiler can trust. Every problem is collected with its path in
the mapping (``fields.lines.map.product.xref.entity``) and raised together.

The form::

    name: mes-production-to-canonical        # optional, shown in errors
    tables:                                  # status tables: source word -> canonical word
      mes_status: {COMPLETE: completed, RUNNING: in_progress}
    fields:                                  # target field <- one source, then transforms
      work_order: data.woNumber              # a string is a source path
      order_id: {path: data.erpOrder, xref: {system: mes, entity: production_order}}
      status:   {path: data.status, lookup: mes_status}
      qty_kg:   {path: data.qty, unit: {from_path: data.uom, to: kg}}   # or from: g
      total:    {expr: "data.qtyGood + data.qtyScrap"}                  # house expressions
      kind:     {const: production}
      lot:      {path: data.lotNo, default: null}
      ts:       {path: data.ts, function: parse_mes_ts}                 # escape hatch
      lines:    {items: data.components, map: {product: data.partNo, qty: data.qty}}

A source is exactly one of ``path``, ``expr``, ``const``, ``items`` (with ``map``), or a
``function`` alone (called with the whole document). Transforms apply in this order:
``lookup``, ``xref``, ``unit``, ``function``. A missing value (absent or null) takes the
``default`` as it is (not transformed); without a default it is an error. Inside ``items``
``data`` is the list element; the event's other attributes stay as they were.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..route.expression import ExpressionError, compile_expression
from .errors import MappingSpecError
from .functions import MappingFunction
from .xref import UNITS, unit_name

__all__ = ["Field", "MappingSpec", "SourcePath", "UnitStep", "parse_mapping"]

_SOURCES: Final = ("path", "expr", "const", "items")
_TRANSFORMS: Final = ("lookup", "xref", "unit", "function")
_FIELD_KEYS: Final = frozenset({*_SOURCES, *_TRANSFORMS, "default", "map"})
_TOP_KEYS: Final = frozenset({"name", "description", "tables", "fields"})
_PATH_RE: Final = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[-?\d+\])*")
_STEP_RE: Final = re.compile(r"\.?([A-Za-z_][\w-]*)|\[(-?\d+)\]")
_SCALARS: Final = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class SourcePath:
    """``data.lines[0].sku`` as keys: ``("data", "lines", 0, "sku")``."""

    text: str
    keys: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class UnitStep:
    to: str
    source: str | None = None  # a literal unit, already normalised, or
    source_path: SourcePath | None = None  # where the document says its unit


@dataclass(frozen=True, slots=True)
class Field:
    target: str
    where: str  # its path in the mapping, for messages
    path: SourcePath | None = None
    expr: str | None = None
    const: Any = None
    is_const: bool = False
    items: MappingSpec | None = None
    lookup: str | None = None
    xref: tuple[str, str] | None = None
    unit: UnitStep | None = None
    function: str | None = None
    default: Any = None
    has_default: bool = False

    @property
    def source_text(self) -> str:
        """What a runtime error names as the source."""
        if self.path is not None:
            return self.path.text
        if self.expr is not None:
            return f"expr {self.expr!r}"
        return f"function {self.function}" if self.function else "const"


@dataclass(frozen=True, slots=True)
class MappingSpec:
    name: str
    fields: tuple[Field, ...]
    tables: Mapping[str, Mapping[Any, Any]]
    functions: Mapping[str, MappingFunction]


def parse_path(text: str) -> SourcePath | None:
    if not isinstance(text, str) or not _PATH_RE.fullmatch(text):
        return None
    keys = tuple(name if name else int(index) for name, index in _STEP_RE.findall(text))
    return SourcePath(text, keys)


class _Checker:
    def __init__(
        self, tables: Mapping[str, Mapping[Any, Any]], functions: Mapping[str, MappingFunction]
    ) -> None:
        self.tables, self.functions = tables, functions
        self.errors: list[dict[str, str]] = []

    def bad(self, where: str, message: str) -> None:
        self.errors.append({"path": where, "message": message})

    def fields(self, raw: Any, where: str, name: str) -> tuple[Field, ...]:
        if not isinstance(raw, Mapping) or not raw:
            self.bad(where, "required: a non-empty mapping of target field -> source")
            return ()
        parsed = []
        for target, spec in raw.items():
            at = f"{where}.{target}"
            if not isinstance(target, str) or not target:
                self.bad(at, "a target field name must be a non-empty string")
                continue
            field = self.field(target, spec, at, name)
            if field is not None:
                parsed.append(field)
        return tuple(parsed)

    def path(self, text: Any, where: str) -> SourcePath | None:
        parsed = parse_path(text)
        if parsed is None:
            self.bad(where, f"{text!r} is not a source path such as 'data.lines[0].sku'")
        return parsed

    def field(self, target: str, spec: Any, at: str, name: str) -> Field | None:
        if isinstance(spec, str):
            path = self.path(spec, at)
            return None if path is None else Field(target, at, path=path)
        if not isinstance(spec, Mapping):
            self.bad(at, "expected a source path or a mapping such as {path: data.x}")
            return None
        errors = len(self.errors)
        for key in spec:
            if key not in _FIELD_KEYS:
                self.bad(f"{at}.{key}", f"unknown key (expected one of {sorted(_FIELD_KEYS)})")
        sources = [key for key in _SOURCES if key in spec]
        if not sources and "function" not in spec:
            self.bad(at, "needs a source: path, expr, const, items or function")
        if len(sources) > 1:
            self.bad(at, f"has {' and '.join(sources)}: give exactly one source")
        values: dict[str, Any] = {"target": target, "where": at}
        if "path" in spec:
            values["path"] = self.path(spec["path"], f"{at}.path")
        if "expr" in spec:
            values["expr"] = self.expr(spec["expr"], f"{at}.expr")
        if "const" in spec:
            values["const"], values["is_const"] = spec["const"], True
            for key in (*_TRANSFORMS, "default"):
                if key in spec:
                    self.bad(f"{at}.{key}", "a const takes no transforms and no default")
        if "items" in spec:
            values["path"] = self.path(spec["items"], f"{at}.items")
            values["items"] = MappingSpec(
                name, self.fields(spec.get("map"), f"{at}.map", name), self.tables, self.functions
            )
            for key in _TRANSFORMS:
                if key in spec:
                    self.bad(f"{at}.{key}", "line items take no transforms: put them in 'map'")
        elif "map" in spec:
            self.bad(f"{at}.map", "'map' goes with 'items' (a source list)")
        if "lookup" in spec:
            values["lookup"] = self.lookup(spec["lookup"], f"{at}.lookup")
        if "xref" in spec:
            values["xref"] = self.xref(spec["xref"], f"{at}.xref")
        if "unit" in spec:
            values["unit"] = self.unit(spec["unit"], f"{at}.unit")
        if "function" in spec:
            values["function"] = self.function(spec["function"], f"{at}.function")
        if "default" in spec:
            values["default"], values["has_default"] = spec["default"], True
        return Field(**values) if len(self.errors) == errors else None

    def expr(self, text: Any, where: str) -> str | None:
        if not isinstance(text, str):
            self.bad(where, "an expression must be a string")
            return None
        try:
            compile_expression(text)  # the house checks: whitelist, limits, error columns
        except ExpressionError as exc:
            self.bad(where, str(exc).replace("filter expression", "expression"))
            return None
        return text

    def lookup(self, table: Any, where: str) -> str | None:
        if table not in self.tables:
            known = ", ".join(sorted(self.tables)) or "none"
            self.bad(where, f"unknown status table {table!r} (tables: {known})")
            return None
        return str(table)

    def xref(self, spec: Any, where: str) -> tuple[str, str] | None:
        if not isinstance(spec, Mapping):
            self.bad(where, "expected {system: ..., entity: ...}")
            return None
        ok = True
        for key in spec:
            if key not in ("system", "entity"):
                self.bad(f"{where}.{key}", "unknown key (expected system, entity)")
                ok = False
        for key in ("system", "entity"):
            if not isinstance(spec.get(key), str) or not spec[key]:
                self.bad(f"{where}.{key}", "required, a non-empty string")
                ok = False
        return (spec["system"], spec["entity"]) if ok else None

    def unit(self, spec: Any, where: str) -> UnitStep | None:
        if not isinstance(spec, Mapping):
            self.bad(where, "expected {from: kg, to: g} or {from_path: data.uom, to: g}")
            return None
        for key in spec:
            if key not in ("from", "from_path", "to"):
                self.bad(f"{where}.{key}", "unknown key (expected from or from_path, and to)")
        target = unit_name(spec.get("to"))
        if target is None:
            self.bad(f"{where}.to", f"unknown unit {spec.get('to')!r} (known: {', '.join(UNITS)})")
        if ("from" in spec) == ("from_path" in spec):
            self.bad(where, "give exactly one of 'from' (a unit) or 'from_path' (a source path)")
            return None
        if "from" in spec:
            source = unit_name(spec["from"])
            if source is None:
                self.bad(f"{where}.from", f"unknown unit {spec['from']!r}")
            elif target is not None and UNITS[source][0] != UNITS[target][0]:
                self.bad(where, f"cannot convert {source} to {target}: another dimension")
            return UnitStep(target, source=source) if target and source else None
        path = self.path(spec["from_path"], f"{where}.from_path")
        return UnitStep(target, source_path=path) if target and path else None

    def function(self, name: Any, where: str) -> str | None:
        if name not in self.functions:
            known = ", ".join(sorted(self.functions)) or "none registered"
            self.bad(where, f"unknown mapping function {name!r} (known: {known})")
            return None
        return str(name)


def parse_mapping(
    raw: Any,
    *,
    tables: Mapping[str, Mapping[Any, Any]] | None = None,
    functions: Mapping[str, MappingFunction],
) -> MappingSpec:
    """Check a mapping document and return its spec; raises :class:`MappingSpecError`
    listing every problem. ``tables`` are shared status tables (a mapping's own ``tables``
    add to them and win on a name clash)."""
    if not isinstance(raw, Mapping):
        raise MappingSpecError.from_errors("?", [{"path": "$", "message": "expected a mapping"}])
    raw_name = raw.get("name")
    name = raw_name if isinstance(raw_name, str) and raw_name else "mapping"
    all_tables: dict[str, Mapping[Any, Any]] = dict(tables or {})
    checker = _Checker(all_tables, functions)
    for key in raw:
        if key not in _TOP_KEYS:
            checker.bad(str(key), f"unknown key (expected one of {sorted(_TOP_KEYS)})")
    own = raw.get("tables", {})
    if not isinstance(own, Mapping):
        checker.bad("tables", "expected a mapping of table name -> {word: canonical word}")
        own = {}
    for table, words in own.items():
        if not isinstance(words, Mapping) or not words:
            checker.bad(f"tables.{table}", "expected a non-empty mapping of word -> word")
            continue
        for word, value in words.items():
            if not isinstance(word, _SCALARS) or not isinstance(value, _SCALARS):
                checker.bad(f"tables.{table}.{word}", "words are strings, numbers or booleans")
        all_tables[str(table)] = dict(words)
    fields = checker.fields(raw.get("fields"), "fields", name)
    if checker.errors:
        raise MappingSpecError.from_errors(name, checker.errors)
    return MappingSpec(name, fields, all_tables, functions)
