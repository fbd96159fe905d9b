"""Loading a mapping (from a dict or a YAML/JSON file) into a :class:`CompiledMapping`, and
``forgeline map test``: what a person runs to see a mapping's result or its exact error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..canonical.status_tables import STATUS_TABLES
from ..exceptions import ConfigError
from .compiler import MappingFunctionType, generate
from .errors import MappingError
from .functions import MappingFunction, registered_functions
from .spec import MappingSpec, parse_mapping
from .xref import CrossReference, InMemoryCrossReference

__all__ = ["CompiledMapping", "load_mapping", "map_test", "read_mapping", "shared_tables"]

_NO_XREF = InMemoryCrossReference()


class CompiledMapping:
    """A checked, compiled mapping. Call it with a structured-JSON event dict."""

    __slots__ = ("_function", "source", "spec")

    def __init__(self, spec: MappingSpec) -> None:
        self.spec = spec
        self._function: MappingFunctionType
        self._function, self.source = generate(spec)  # ``source``: the generated Python

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(
        self, event: Mapping[str, Any], *, xref: CrossReference | None = None
    ) -> dict[str, Any]:
        """The mapped document. Raises :class:`MappingError` naming the field and path;
        with no ``xref``, every cross-reference lookup fails with that error."""
        document: Any = event  # parsed JSON from outside: the annotation is a hope, not a fact
        if type(document) is not dict and not isinstance(document, Mapping):
            reason = f"expected a JSON object, got {type(document).__name__}"
            raise MappingError(field="*", path="$", reason=reason)
        return self._function(event, _NO_XREF if xref is None else xref)

    def __repr__(self) -> str:
        return f"<CompiledMapping {self.name!r}: {len(self.spec.fields)} fields>"


@cache
def shared_tables() -> Mapping[str, Mapping[str, str]]:
    """The canonical status tables by name, known to every mapping's ``lookup``:
    ``odoo19.production_order``, ``mes.work_order``, ``qms.lot``… (system, Odoo version,
    entity; the words map to the canonical status as a string)."""
    tables: dict[str, Mapping[str, str]] = {}
    for (system, entity, version), words in STATUS_TABLES.items():
        name = f"{system}{version if version is not None else ''}.{entity}"
        tables[name] = {word: str(status) for word, status in words.items()}
    return tables


def load_mapping(
    document: Mapping[str, Any],
    *,
    tables: Mapping[str, Mapping[Any, Any]] | None = None,
    functions: Mapping[str, MappingFunction] | None = None,
) -> CompiledMapping:
    """Check and compile a mapping document (the dict a YAML or JSON file holds).

    ``tables``: status tables the mapping may name besides its own and the canonical ones
    (:func:`shared_tables`). ``functions``:
    escape-hatch functions for this mapping, on top of the ``@mapping_function`` registry.
    Raises :class:`MappingSpecError` listing every problem with its path.
    """
    known = registered_functions()
    known.update(functions or {})
    return CompiledMapping(
        parse_mapping(document, tables={**shared_tables(), **(tables or {})}, functions=known)
    )


def _read(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} {path} is not valid {path.suffix[1:].upper()}: {exc}") from exc


def read_mapping(path: str | Path, **options: Any) -> CompiledMapping:
    """:func:`load_mapping` on a YAML (``.yaml``/``.yml``) or JSON file."""
    return load_mapping(_read(Path(path), "mapping"), **options)


def map_test(
    mapping_path: str | Path, sample_path: str | Path, xref_path: str | Path | None = None
) -> str:
    """The mapped sample as indented JSON. Raises the exact error otherwise: a
    ``MappingSpecError`` (the mapping), a ``MappingError`` (the sample did not fit) or a
    ``ConfigError`` (a file that cannot be read).

    The sample is a structured CloudEvent (it has ``specversion``) or else the event's
    ``data`` alone. ``xref_path``: a JSON/YAML list of ``[system, entity, external id,
    canonical id]`` rows for the cross-reference lookups.
    """
    mapping = read_mapping(mapping_path)
    sample = _read(Path(sample_path), "sample")
    event = sample if isinstance(sample, dict) and "specversion" in sample else {"data": sample}
    xref = InMemoryCrossReference()
    if xref_path is not None:
        rows = _read(Path(xref_path), "cross-reference")
        if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) for v in row)
            for row in rows
        ):
            raise ConfigError(
                f"cross-reference {xref_path}: expected a list of "
                "[system, entity, external id, canonical id] rows of strings"
            )
        for system, entity, external, canonical in rows:
            xref.add(system, entity, external, canonical)
    return json.dumps(mapping(event, xref=xref), indent=2, ensure_ascii=False, default=str)
