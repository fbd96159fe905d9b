"""Reading a value out of an event by path, for the sinks that take values from events."""

from __future__ import annotations

from typing import Any

from ..exceptions import PermanentDeliveryError

__all__ = ["event_path"]

_MISSING = object()


def event_path(document: dict[str, Any], path: str) -> Any:
    """The value at ``data.lines.0.sku`` in an event's structured-JSON dict, or a
    permanent failure naming the path (the event does not fit the target)."""
    value: Any = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part, _MISSING)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            value = _MISSING
        if value is _MISSING:
            raise PermanentDeliveryError(f"the event has no {path!r}")
    return value
