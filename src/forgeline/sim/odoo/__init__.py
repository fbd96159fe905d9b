"""An Odoo 16–19 simulator: a small ORM that mimics Odoo's, and the service the server calls.

``OdooSimulator`` (``service.py``) is the entry point; ``fields``, ``orm`` and ``errors`` are
what simulated addons are written against, like Odoo code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["OdooSimulator"]

if TYPE_CHECKING:
    from .service import OdooSimulator


def __getattr__(name: str) -> Any:
    # Lazy, so that ``from forgeline.sim.odoo import fields`` in an addon does not import the
    # service (which imports the addons): no import cycle.
    if name == "OdooSimulator":
        from .service import OdooSimulator

        return OdooSimulator
    raise AttributeError(name)
