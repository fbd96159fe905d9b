"""The simulated business addons (product, stock, mrp, sale, purchase, account, and what
account and sale add to partners).

Importing this package declares their models; ``install(env)`` creates the data installing
them creates in a real database (warehouse WH, its locations, operation types and routes).
"""

from __future__ import annotations

from typing import Any

from . import (
    account,
    mrp,
    mrp_production,
    partner,
    product,
    purchase,
    sale,
    stock,
    stock_install,
    stock_move,
    stock_picking,
)

__all__ = [
    "account",
    "install",
    "mrp",
    "mrp_production",
    "partner",
    "product",
    "purchase",
    "sale",
    "stock",
    "stock_install",
    "stock_move",
    "stock_picking",
]


def install(env: Any) -> None:
    """Create the addons' base data in a fresh database (idempotent)."""
    stock_install.install(env)
