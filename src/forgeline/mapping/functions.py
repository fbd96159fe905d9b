"""The Python escape hatch: named functions a mapping step may call for the rare hard case.

``@mapping_function("parse_mes_ts")`` registers a one-argument function; a mapping field
``{path: data.ts, function: parse_mes_ts}`` calls it with the value read (or, with no
``path``/``expr``, with the whole source document). A mapping names its functions when it is
loaded, so register them before loading; ``load_mapping(..., functions={...})`` supplies
extra ones (or overrides) for one mapping without touching the registry. Whatever a function
raises becomes a :class:`~forgeline.mapping.MappingError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MappingFunction", "mapping_function", "registered_functions"]

MappingFunction = Callable[[Any], Any]
F = TypeVar("F", bound=MappingFunction)

_REGISTRY: dict[str, MappingFunction] = {}


def mapping_function(name: str) -> Callable[[F], F]:
    """Register the decorated function under ``name`` (a second, different one is an error)."""
    if not name.isidentifier():
        raise ValueError(f"mapping function name {name!r} must be an identifier")

    def register(function: F) -> F:
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not function:
            raise ValueError(f"mapping function {name!r} is already registered ({existing!r})")
        _REGISTRY[name] = function
        return function

    return register


def registered_functions() -> dict[str, MappingFunction]:
    """A copy of the registry: name -> function."""
    return dict(_REGISTRY)
