"""Compilation: a checked :class:`MappingSpec` into one Python function, built once at load.

Generated source, not a closure tree, for the same reason the route stage's filter
expressions are a code object: each field becomes a few lines of straight bytecode (a
subscript chain inside ``try``, a dict lookup, a constant) with no call per step, and the
result is one dict display. ``python -m bench.mapping`` measures both on the same 20-field
mapping in the same run (figures in the package docstring).

Safety: nothing from the mapping document is pasted into the source as code. Keys, field
names and table names appear only as ``repr()`` literals; constants, defaults, tables and
functions are bound in the function's globals by generated names; expressions enter as the
house expression compiler's checked, rewritten AST, turned back into source. The function
sees no builtins beyond the names bound here.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..route.expression import _NAMESPACE as _EXPRESSION_HELPERS
from ..route.expression import _Compiler as _ExpressionCompiler
from .errors import MappingError
from .spec import Field, MappingSpec, SourcePath
from .xref import CrossReference, convert

__all__ = ["MappingFunctionType", "generate"]

MappingFunctionType = Callable[[Mapping[str, Any], CrossReference], dict[str, Any]]
_MISSING = (KeyError, IndexError, TypeError)  # what a subscript chain raises on a gap
_UNKNOWN = (KeyError, TypeError)  # a word not in a table, or an unhashable one


def _fail(field: str, path: str, reason: str) -> MappingError:
    return MappingError(field=field, path=path, reason=reason)


def _required(field: str, path: str) -> MappingError:
    return MappingError(field=field, path=path, reason="required value is missing (or null)")


def _unknown_word(
    word: Any, table: str, known: Mapping[Any, Any], field: str, path: str
) -> MappingError:
    words = ", ".join(map(str, list(known)[:12]))
    return MappingError(
        field=field, path=path, reason=f"unknown word {word!r} in status table {table!r} "
        f"(known: {words})",
    )  # fmt: skip


def _no_xref(system: str, entity: str, external: str, field: str, path: str) -> MappingError:
    reason = f"no canonical id for {system} {entity} {external!r} in the cross-reference"
    return MappingError(field=field, path=path, reason=reason)


def _convert(value: Any, unit: Any, target: str, field: str, path: str) -> Any:
    try:
        return convert(value, unit, target)
    except ValueError as exc:
        raise MappingError(field=field, path=path, reason=str(exc)) from None


def _function_failed(name: str, exc: Exception, field: str, path: str) -> MappingError:
    reason = f"mapping function {name!r} failed: {type(exc).__name__}: {exc}"
    return MappingError(field=field, path=path, reason=reason)


def _expression_failed(exc: Exception, field: str, path: str) -> MappingError:
    return MappingError(field=field, path=path, reason=f"expression failed: {exc!r}")


def _map_items(
    sub: MappingFunctionType,
    ev: Mapping[str, Any],
    elements: list[Any],
    xref: CrossReference,
    field: str,
    path: str,
) -> list[dict[str, Any]]:
    mapped = []
    for index, element in enumerate(elements):
        child = dict(ev)
        child["data"] = element
        try:
            mapped.append(sub(child, xref))
        except MappingError as exc:
            raise exc.within(field, path, index) from None
    return mapped


_RUNTIME: dict[str, Any] = {
    **_EXPRESSION_HELPERS,
    "__builtins__": {},
    "str": str, "type": type, "list": list, "Exception": Exception, "MappingError": MappingError,
    "_MISSING": _MISSING, "_UNKNOWN": _UNKNOWN, "_deepcopy": copy.deepcopy,
    "_fail": _fail, "_required": _required,
    "_unknown_word": _unknown_word, "_no_xref": _no_xref, "_convert": _convert,
    "_function_failed": _function_failed, "_expression_failed": _expression_failed,
    "_map_items": _map_items,
}  # fmt: skip


def _expression_source(text: str) -> str:
    """The house compiler's rewritten form of ``text`` (already checked when loaded)."""
    source = text.lstrip()
    tree = ast.parse(source, mode="eval")
    body = _ExpressionCompiler(text, len(text) - len(source)).gen(tree.body)
    return ast.unparse(ast.fix_missing_locations(body))


class _Generator:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = dict(_RUNTIME)
        self.counter = 0
        self.sources: list[str] = []  # line-item sub-mappings, for ``CompiledMapping.source``

    def bind(self, value: Any, prefix: str = "_k") -> str:
        self.counter += 1
        name = f"{prefix}{self.counter}"
        self.namespace[name] = value
        return name

    def value(self, value: Any) -> str:
        """An expression for a constant: a literal for scalars, a fresh copy for the rest
        (a caller changing one result must not change the next)."""
        if value is None or type(value) in (str, int, float, bool):
            return repr(value)
        return f"_deepcopy({self.bind(value)})"

    def function(self, spec: MappingSpec, name: str) -> str:
        roots: dict[str, str] = {}  # first key -> local: data is read once, not per field
        body: list[str] = []
        results: list[str] = []
        for number, field in enumerate(spec.fields):
            result = f"v{number}"
            body.extend(self.field(spec, field, result, roots))
            results.append(f"{field.target!r}: {result}")
        head = [f"    {local} = ev.get({key!r})" for key, local in roots.items()]
        lines = [f"def {name}(ev, xref):", *head, *body, f"    return {{{', '.join(results)}}}"]
        return "\n".join(lines) + "\n"

    def read(self, path: SourcePath, target: str, roots: dict[str, str], indent: str) -> list[str]:
        first, rest = path.keys[0], path.keys[1:]
        if not isinstance(first, str):
            return [f"{indent}{target} = None"]
        local = roots.setdefault(first, f"r{len(roots)}")
        if not rest:
            return [f"{indent}{target} = {local}"]
        chain = local + "".join(f"[{key!r}]" for key in rest)
        return [
            f"{indent}try:",
            f"{indent}    {target} = {chain}",
            f"{indent}except _MISSING:",
            f"{indent}    {target} = None",
        ]

    def field(
        self, spec: MappingSpec, field: Field, result: str, roots: dict[str, str]
    ) -> list[str]:
        f, p = repr(field.target), repr(field.source_text)
        if field.is_const:
            return [f"    {result} = {self.value(field.const)}"]
        lines: list[str] = []
        if field.expr is not None:
            lines += [
                "    try:",
                f"        v = {_expression_source(field.expr)}",
                "    except Exception as exc:",
                f"        raise _expression_failed(exc, {f}, {p}) from None",
            ]
        elif field.path is not None:
            lines += self.read(field.path, "v", roots, "    ")
        else:  # a function alone: the escape hatch sees the whole document
            call = self.bind(spec.functions[field.function or ""], "_fn")
            return [
                "    try:",
                f"        {result} = {call}(ev)",
                "    except MappingError:",
                "        raise",
                "    except Exception as exc:",
                f"        raise _function_failed({field.function!r}, exc, {f}, {p}) from None",
            ]
        missing = (
            f"        {result} = {self.value(field.default)}"
            if field.has_default
            else f"        raise _required({f}, {p})"
        )
        lines += ["    if v is None:", missing, "    else:"]
        lines += [f"        {line}" for line in self.transforms(spec, field, roots)]
        lines.append(f"        {result} = v")
        return lines

    def transforms(self, spec: MappingSpec, field: Field, roots: dict[str, str]) -> list[str]:
        f, p = repr(field.target), repr(field.source_text)
        lines: list[str] = []
        if field.items is not None:
            sub_name = f"_items{self.counter + 1}"
            self.counter += 1
            sub_source = self.function(field.items, sub_name)
            self.sources.append(sub_source)
            exec(compile(sub_source, f"<mapping {spec.name}>", "exec"), self.namespace)  # noqa: S102
            lines += [
                "if type(v) is not list:",
                f"    raise _fail({f}, {p}, 'expected a list, got ' + type(v).__name__)",
                f"v = _map_items({sub_name}, ev, v, xref, {field.target!r}, {p})",
            ]
        if field.lookup is not None:
            table = spec.tables[field.lookup]
            name = self.bind(table, "_table")
            lines += [
                "try:",
                f"    v = {name}[v]",
                "except _UNKNOWN:",
                f"    raise _unknown_word(v, {field.lookup!r}, {name}, {f}, {p}) from None",
            ]
        if field.xref is not None:
            system, entity = map(repr, field.xref)
            lines += [
                "x = v if type(v) is str else str(v)",
                f"v = xref.resolve({system}, {entity}, x)",
                "if v is None:",
                f"    raise _no_xref({system}, {entity}, x, {f}, {p})",
            ]
        if field.unit is not None:
            unit = field.unit
            if unit.source_path is not None:
                lines += self.read(unit.source_path, "u", roots, "")
                lines.append(f"v = _convert(v, u, {unit.to!r}, {f}, {unit.source_path.text!r})")
            elif unit.source != unit.to:
                lines.append(f"v = _convert(v, {unit.source!r}, {unit.to!r}, {f}, {p})")
        if field.function is not None:
            call = self.bind(spec.functions[field.function], "_fn")
            lines += [
                "try:",
                f"    v = {call}(v)",
                "except MappingError:",
                "    raise",
                "except Exception as exc:",
                f"    raise _function_failed({field.function!r}, exc, {f}, {p}) from None",
            ]
        return lines


def generate(spec: MappingSpec) -> tuple[MappingFunctionType, str]:
    """The compiled mapping function ``(event, xref) -> dict`` and its Python source."""
    generator = _Generator()
    source = generator.function(spec, "_mapping")
    # exec runs source generated above from a checked spec (see the module docstring).
    exec(compile(source, f"<mapping {spec.name}>", "exec"), generator.namespace)  # noqa: S102
    function: MappingFunctionType = generator.namespace["_mapping"]
    return function, "\n".join([*generator.sources, source])
