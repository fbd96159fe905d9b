"""Which configured system an event came from, by its ``source``: what ownership rules ask.

Every connector stamps the events it takes in with a source it derives from its system's
settings: an Odoo database is ``odoo://host:port/db``, a files system's records
``files://<system>/<file>`` (or its ``watch`` entries' templates), an MQTT subscription its
``source`` template (``mes://{1}``), a webhook system its ``source``. Those templates, with
their placeholders read as wildcards, are the system's origins. An event whose source no
system claims (published through the events API by anyone) has no origin: where a rule
governs its entity, it cannot be the owner's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from .connectors.odoo.events import odoo_source
from .route.subscription import compile_glob

__all__ = ["Origins"]

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


class Origins:
    """Source patterns by system name, compiled once; the first system that matches wins
    (systems are tried in the config's order)."""

    def __init__(self, systems: Mapping[str, Any]) -> None:
        self._matchers = [
            (name, compile_glob(patterns).fullmatch)
            for name, spec in systems.items()
            if (patterns := sorted(set(_origins(name, spec))))
        ]

    def system_of(self, source: str) -> str | None:
        for name, matches in self._matchers:
            if matches(source):
                return name
        return None


def _origins(name: str, spec: Any) -> Iterator[str]:
    kind = getattr(spec, "kind", None)
    if kind == "odoo":
        yield odoo_source(spec.url, spec.db)
        return
    templates = [getattr(spec, "source", None)]
    for entry in [*(getattr(spec, "watch", None) or []), *(getattr(spec, "subscribe", None) or [])]:
        templates.append(getattr(entry, "source", None))
    for template in templates:
        if isinstance(template, str) and template:
            yield _PLACEHOLDER.sub("*", template.replace("{system}", name))
