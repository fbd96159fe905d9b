"""The systems downstream of the hub in ``forgeline demo``, and how each one answers.

Four stand-ins on one loopback ``Receiver`` (the MES, a historian, the QMS, a customer
portal) plus the Odoo sink that closes MOs in the plant's ERP. ``Downstream.script`` is where
their failures are scripted: a 502 hiccup at the historian, 503 + ``Retry-After`` at the QMS,
a portal down until the operator brings it back.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..testing import Reply

__all__ = [
    "COMPLETED",
    "ERP",
    "ERP_SINK",
    "HISTORIAN",
    "MES",
    "PARTNER",
    "QMS",
    "RELEASED",
    "SYSTEM",
    "SYSTEMS",
    "Downstream",
    "System",
]

SYSTEM = "plant-erp"  # the Odoo system's name in the hub's config
RELEASED = "production.order.released.v1"
COMPLETED = "production.completed.v1"


@dataclass(frozen=True, slots=True)
class System:
    path: str
    name: str
    subscription: str
    types: tuple[str, ...]
    source: str | None
    policy: dict[str, Any]

    def wants(self, event: dict[str, Any]) -> bool:
        # fnmatch, not the hub's own matcher: the check must not share the code it checks.
        return any(fnmatch.fnmatchcase(event["type"], p) for p in self.types) and (
            self.source is None or fnmatch.fnmatchcase(event["source"], self.source)
        )


SYSTEMS = (
    System(
        "/mes",
        "MES",
        "mes-releases",
        (RELEASED,),
        "odoo://*",
        {"retry": {"initial_delay": 0.2, "max_attempts": 10}},
    ),
    System(
        "/historian",
        "Historian",
        "historian",
        ("production.*", "material.*"),
        "mes://*",
        {"ordering": "key", "retry": {"initial_delay": 0.5, "max_attempts": 10}},
    ),
    System(
        "/qms",
        "QMS",
        "qms-holds",
        ("quality.*",),
        None,
        {"retry": {"initial_delay": 0.2, "max_attempts": 5}},
    ),
    System(
        "/partner",
        "Portal",
        "partner-lots",
        ("lot.released.v1",),
        None,
        {"retry": {"initial_delay": 0.2, "max_attempts": 3}, "timeout": 2.0},
    ),
)
MES, HISTORIAN, QMS, PARTNER = SYSTEMS
#: The MES's production reports close the MOs in Odoo, through the hub's Odoo sink.
ERP = System(
    "",
    "Odoo ERP",
    "erp-production",
    (COMPLETED,),
    "mes://*",
    {
        "ordering": "key",
        # One MO closed at a time: Odoo runs few workers, and the first close is then
        # always the one whose answer the demo's Odoo loses.
        "concurrency": 1,
        "retry": {"initial_delay": 0.3, "max_attempts": 6},
    },
)
ERP_SINK = {
    "odoo": {
        "system": SYSTEM,
        "model": "mrp.production",
        "action": "action",
        "method": "button_mark_done",
        "find": {"name": "data.mo"},
        "values": {"qty_producing": "data.quantity"},
        "backorder": "no",  # the scrapped unit is not made later
    }
}


class Downstream:
    """How the receivers answer. Counts attempts per (path, event id) itself: the
    receiver's ``seen`` counts per event id across every path."""

    def __init__(self) -> None:
        self.partner_up = False
        self.hiccup_id: str | None = None
        self._attempts: Counter[tuple[str, str]] = Counter()

    def script(self, path: str, event: dict[str, Any], seen: int) -> Reply:
        key = (path, str(event.get("id", "")))
        attempt = self._attempts[key]
        self._attempts[key] += 1
        if path == "/qms" and attempt == 0:
            return Reply(503, "QMS is re-indexing, come back later", headers={"Retry-After": "1"})
        if path == "/partner" and not self.partner_up:
            return Reply(500, '{"error": "portal under maintenance"}')
        if path == "/historian" and key[1] == self.hiccup_id and attempt == 0:
            return Reply(502, "Bad gateway: historian collector restarting")
        return Reply(200 if path == "/historian" else 204)
