"""Master-data ownership: who may change what, and which ids name the same record.

Governance around the route stage. Two parts:

- :mod:`.registry` — ownership rules from the config (``ownership:``, a list of
  ``{entity, owner, tenant?, plant?}``, the most specific winning); ``check`` raises
  :class:`OwnershipConflict` for a change from a system that does not own the entity, and
  :func:`quarantine_event` turns the refused change into a
  ``masterdata.change.quarantined.v1`` event that is stored, shown and replayable, never
  applied (:mod:`.quarantine`).
- :mod:`.xref` — the cross-reference in the store: ``bind``/``resolve``/``reverse`` between
  (system, entity, external id) and canonical ids, on SQLite or PostgreSQL
  (:func:`open_cross_references` by the store URL), and :class:`CachedCrossReference`, the
  in-memory copy the mapping engine reads synchronously (:mod:`.cache`).
"""

from __future__ import annotations

from .cache import CachedCrossReference
from .quarantine import QUARANTINE_SOURCE, QUARANTINE_TYPE, original, quarantine_event
from .registry import (
    ENTITIES,
    MASTER_DATA,
    Change,
    OwnershipConflict,
    OwnershipRegistry,
    OwnershipRule,
)
from .xref import Binding, CrossReferences, Key, mint, open_cross_references

__all__ = [
    "ENTITIES",
    "MASTER_DATA",
    "QUARANTINE_SOURCE",
    "QUARANTINE_TYPE",
    "Binding",
    "CachedCrossReference",
    "Change",
    "CrossReferences",
    "Key",
    "OwnershipConflict",
    "OwnershipRegistry",
    "OwnershipRule",
    "mint",
    "open_cross_references",
    "original",
    "quarantine_event",
]
