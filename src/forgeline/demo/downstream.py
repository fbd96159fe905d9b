"""The plant's historian in ``forgeline demo``, downstream of the hub on a loopback
``Receiver`` (``/historian``). ``Downstream.script`` is how it answers: it asks once, with 503
and ``Retry-After: 1``, to get one consumption report later (the MO's later reports wait their
turn: the flow orders by MO). The customer portal is a partner's webhook endpoint of its own
(``portal.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..testing import Reply

__all__ = ["HISTORIAN", "HISTORIAN_TYPES", "Downstream"]

HISTORIAN = "/historian"
#: What the historian flow sends (from the MES): the checks' own list, not the config's.
HISTORIAN_TYPES = ("production.completed.v1", "material.consumed.v1")


class Downstream:
    """How the receiver answers. Counts attempts per (path, event id) itself."""

    def __init__(self) -> None:
        self.hiccup_mo: str | None = None  # the MO whose first consumption is asked again
        self.hiccup_id: str | None = None  # that event, once it came
        self._attempts: Counter[tuple[str, str]] = Counter()

    def script(self, path: str, event: dict[str, Any], seen: int) -> Reply:
        key = (path, str(event.get("id", "")))
        attempt = self._attempts[key]
        self._attempts[key] += 1
        if (
            path == HISTORIAN
            and self.hiccup_id is None
            and self.hiccup_mo is not None
            and event.get("type") == "material.consumed.v1"
            and event.get("subject") == self.hiccup_mo
        ):
            self.hiccup_id = key[1]
        if path == HISTORIAN and key[1] == self.hiccup_id and attempt == 0:
            return Reply(503, "historian compacting, come back later", headers={"Retry-After": "1"})
        return Reply(200)
