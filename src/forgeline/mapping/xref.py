"""Cross-references and units: the lookups a mapping makes besides its own status tables.

A cross-reference turns one system's id for an entity into the canonical id
(``("mes", "product", "P-100") -> "prod-7f3a"``). Mappings read it through the small
:class:`CrossReference` protocol, synchronously, because they run once per event on the hot
path: a store-backed implementation keeps a cache in memory and refreshes it, rather than
awaiting a query per field. :class:`InMemoryCrossReference` is the one tests and
``forgeline map test`` use.

The unit table is deliberately small (count, mass, length, volume); a conversion between
dimensions or from an unknown unit is an error, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Protocol

__all__ = ["UNITS", "CrossReference", "InMemoryCrossReference", "convert", "unit_name"]


class CrossReference(Protocol):
    """Canonical ids by system id. ``None`` when the external id is not known."""

    def resolve(self, system: str, entity: str, external_id: str) -> str | None: ...


class InMemoryCrossReference:
    """A cross-reference held in a dict: ``add`` entries, then ``resolve`` them."""

    def __init__(self, entries: Iterable[tuple[str, str, str, str]] = ()) -> None:
        self._ids: dict[tuple[str, str, str], str] = {}
        for system, entity, external_id, canonical_id in entries:
            self.add(system, entity, external_id, canonical_id)

    def add(self, system: str, entity: str, external_id: str, canonical_id: str) -> None:
        self._ids[(system, entity, external_id)] = canonical_id

    def resolve(self, system: str, entity: str, external_id: str) -> str | None:
        return self._ids.get((system, entity, external_id))

    def __len__(self) -> int:
        return len(self._ids)


# unit -> (dimension, size in the dimension's smallest unit); integers keep int maths exact.
UNITS: Final[dict[str, tuple[str, int]]] = {
    "each": ("count", 1),
    "g": ("mass", 1), "kg": ("mass", 1000),
    "mm": ("length", 1), "m": ("length", 1000),
    "ml": ("volume", 1), "l": ("volume", 1000),
}  # fmt: skip
_ALIASES: Final = {"ea": "each", "pc": "each", "pcs": "each", "unit": "each", "units": "each"}


def unit_name(unit: Any) -> str | None:
    """The table's name for ``unit`` (case-insensitive, ``EA``/``PCS`` are ``each``), or None."""
    if not isinstance(unit, str):
        return None
    name = unit.strip().lower()
    name = _ALIASES.get(name, name)
    return name if name in UNITS else None


def convert(value: Any, source: Any, target: str) -> Any:
    """``value`` in ``source`` units, expressed in ``target`` units. Raises ValueError with
    the reason a person needs (unknown unit, other dimension, not a number)."""
    name = unit_name(source)
    if name is None:
        known = ", ".join(UNITS)
        raise ValueError(f"unknown unit {source!r} (known: {known}, and EA/PCS for each)")
    (dimension, size), (target_dimension, target_size) = UNITS[name], UNITS[target]
    if dimension != target_dimension:
        raise ValueError(f"cannot convert {name} ({dimension}) to {target} ({target_dimension})")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number to convert, got {type(value).__name__}")
    if size == target_size:
        return value
    if size > target_size:
        result = value * (size // target_size)
    elif isinstance(value, int) and value % (target_size // size) == 0:
        return value // (target_size // size)
    else:
        result = value / (target_size // size)
    # 1.1 kg is 1100.0000000000002 g in binary floating point: nobody wants that in an ERP.
    return round(result, 9) if isinstance(result, float) else result
