"""The benchmark's event: a small manufacturing CloudEvent of about 300 bytes of JSON."""

from __future__ import annotations

import time
from typing import Any

from ulid import ULID

SOURCE = "mes/line-1"
TYPE = "production.completed.v1"
_STAMP = "2026-11-27T08:00:00.000000Z"


def make_event(seq: int, phase: str, sent: float | None = None) -> dict[str, Any]:
    """One structured-mode event; ``data.sent`` carries the client's send time (epoch s)."""
    mo = f"MO/{seq % 10_000:05d}"
    return {
        "specversion": "1.0",
        "id": str(ULID()),
        "source": SOURCE,
        "type": TYPE,
        "subject": mo,
        "time": _STAMP,
        "datacontenttype": "application/json",
        "data": {
            "mo": mo,
            "product": "WIDGET-A",
            "qty": seq % 97 + 1,
            "workcenter": "WC-3",
            "lot": f"L{seq:06d}",
            "phase": phase,
            "seq": seq,
            "sent": time.time() if sent is None else sent,
        },
    }
