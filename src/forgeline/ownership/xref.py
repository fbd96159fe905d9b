"""The persistent cross-reference: each system's id for a record ↔ the record's canonical id.

``("mes", "product", "P-100")`` and ``("odoo", "product", "42")`` both stand for canonical
product ``product_01JD…``. The rows live in the store's ``xrefs`` table (migration 0002), on
SQLite or PostgreSQL, chosen by the store URL (``open_cross_references``). A canonical id has
at most one external id per system, so ``reverse`` answers ``{system: external id}``.

Two ways in:

- ``CrossReferences`` (async, one query per call): what writers use. ``bind`` is idempotent
  and safe under concurrency: two processes binding the same external id at once get the
  same canonical id, because the store keeps one row per external id and the loser of the
  race reads the winner's.
- ``CachedCrossReference`` (``cache.py``): the mapping engine's synchronous
  ``CrossReference``, an in-memory copy refreshed from the store.

The Odoo connector's idempotent writes key on the canonical id: ``upsert(client, model,
canonical_id, vals)`` writes external id ``forgeline.<canonical id>`` (ULID-based ids are
valid names as they are), then ``bind("odoo", entity, str(record_id), canonical_id)``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from ulid import ULID

from .._lifecycle import AsyncResource
from ..exceptions import ConfigError, Conflict, InvalidInput

__all__ = [
    "Binding",
    "CrossReferences",
    "Key",
    "mint",
    "open_cross_references",
]

#: (system, entity, external id)
Key = tuple[str, str, str]

_MAX_NAME = 128
_MAX_ID = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Binding:
    """One row: ``system``'s ``external_id`` for an ``entity`` is ``canonical_id``."""

    system: str
    entity: str
    external_id: str
    canonical_id: str
    #: Insertion order in the store; a cache fetches the rows after the last one it saw.
    seq: int
    created_at: float

    @property
    def key(self) -> Key:
        return (self.system, self.entity, self.external_id)


def mint(entity: str) -> str:
    """A new canonical id: ``<entity>_<ULID>`` (sortable by creation, unique without a
    round trip, and a valid Odoo external-id name)."""
    return f"{entity}_{ULID()}"


class CrossReferences(AsyncResource, ABC):
    """The cross-reference in the store. Backends supply the four primitives below; the rules
    (validation, minting, what a conflict is) live here once."""

    async def bind(
        self, system: str, entity: str, external_id: str, canonical_id: str | None = None
    ) -> str:
        """The canonical id of ``system``'s ``external_id``, recorded if it was not yet.

        New external ids get ``canonical_id``, or a newly minted one when it is None. Binding
        again is a no-op that answers the same id. Raises ``Conflict`` when the external id is
        bound to another canonical id than the one given, or when ``system`` already has
        another external id for that canonical id."""
        _check_key(system, entity, external_id)
        if canonical_id is not None:
            _check_text("canonical_id", canonical_id, _MAX_ID)
        binding = await self.claim(
            Binding(system, entity, external_id, canonical_id or mint(entity), 0, 0.0)
        )
        if canonical_id is not None and binding.canonical_id != canonical_id:
            raise Conflict(
                f"{system} {entity} {external_id!r} is bound to {binding.canonical_id!r},"
                f" not {canonical_id!r}"
            )
        return binding.canonical_id

    async def resolve(self, system: str, entity: str, external_id: str) -> str | None:
        """The canonical id of ``system``'s ``external_id``, or None when it is not bound."""
        found = await self.lookup([(system, entity, external_id)])
        return found[0].canonical_id if found else None

    async def reverse(self, canonical_id: str, *, entity: str | None = None) -> dict[str, str]:
        """``{system: external id}`` of one canonical object ({} when none is bound).

        Minted ids are unique across entities; business keys used as canonical ids may not be
        (``FG-1000`` a product and a lot): then name the ``entity``, or this raises
        ``Conflict``."""
        rows = await self.by_canonical(canonical_id, entity)
        entities = sorted({row.entity for row in rows})
        if len(entities) > 1:
            raise Conflict(
                f"canonical id {canonical_id!r} names records of {', '.join(entities)}:"
                " say which entity"
            )
        return {row.system: row.external_id for row in rows}

    # -- what a backend supplies --------------------------------------------------------------

    @abstractmethod
    async def claim(self, wanted: Binding) -> Binding:
        """Insert ``wanted`` unless its key is bound; answer the stored row either way.

        Atomic against other processes. Raises ``Conflict`` if ``wanted.system`` already
        has another external id for ``wanted.canonical_id`` and entity."""

    @abstractmethod
    async def lookup(self, keys: Sequence[Key]) -> list[Binding]:
        """The stored rows of those ``keys`` that are bound (in no particular order)."""

    @abstractmethod
    async def scan(self, after: int, limit: int) -> list[Binding]:
        """Up to ``limit`` rows with ``seq > after``, in ``seq`` order."""

    @abstractmethod
    async def by_canonical(self, canonical_id: str, entity: str | None) -> list[Binding]:
        """Every row of ``canonical_id`` (of ``entity``, when given)."""


def open_cross_references(url: str) -> CrossReferences:
    """The cross-reference in the store at ``url``, not yet opened: the store's own URL,
    ``sqlite:///PATH`` or ``postgresql://…?schema=NAME`` (needs ``forgeline[postgres]``)."""
    if url.startswith("sqlite:"):
        from ._sqlite import SqliteCrossReferences

        return SqliteCrossReferences(url)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from ._postgres import PostgresCrossReferences
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs extra packages ({exc.name} is missing):"
                " pip install 'forgeline[postgres]'"
            ) from exc
        return PostgresCrossReferences(url)
    raise ConfigError(
        f"no store backend for {url!r}; use sqlite:///PATH or postgresql://HOST/DB?schema=NAME"
    )


def already_bound(wanted: Binding, external_id: str) -> Conflict:
    """The error for ``wanted`` when its system has ``external_id`` for that canonical id."""
    return Conflict(
        f"{wanted.system} already has {wanted.entity} {external_id!r} as canonical"
        f" {wanted.canonical_id!r}; cannot also bind {wanted.external_id!r} to it"
    )


def _check_key(system: str, entity: str, external_id: str) -> None:
    _check_text("system", system, _MAX_NAME)
    _check_text("entity", entity, _MAX_NAME)
    _check_text("external_id", external_id, _MAX_ID)


def _check_text(name: str, value: object, limit: int) -> None:
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        raise InvalidInput(
            f"{name} must be a non-empty string of at most {limit} characters without control"
            f" characters, not {value!r:.80}",
            errors=[{"path": name, "message": f"1-{limit} characters, no control characters"}],
        )
