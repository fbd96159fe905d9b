"""Small helpers the simulated business addons share: float tolerance, version switches and
the "is this product stocked?" question whose answer moved between Odoo 17 and 18."""

from __future__ import annotations

from typing import Any

__all__ = [
    "EPSILON",
    "compare",
    "is_storable",
    "is_zero",
    "storable_domain",
]

# Odoo rounds quantities to the unit of measure's rounding (0.01 for Units by default); the
# simulator keeps one unit of measure per product and compares with a fixed tolerance.
EPSILON = 1e-6


def is_zero(value: float) -> bool:
    return abs(value) < EPSILON


def compare(a: float, b: float) -> int:
    """-1, 0 or 1 like Odoo's ``float_compare``."""
    if abs(a - b) < EPSILON:
        return 0
    return -1 if a < b else 1


def is_storable(product: Any) -> bool:
    """Whether stock is kept in quants: ``type == 'product'`` up to 17, ``is_storable`` from 18."""
    if not product:
        return False
    if product.env.version >= 18:
        return bool(product.is_storable)
    return bool(product.type == "product")


def storable_domain(version: int) -> list[Any]:
    if version >= 18:
        return [("is_storable", "=", True)]
    return [("type", "=", "product")]
