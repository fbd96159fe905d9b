"""The cross-reference in memory, for the mapping engine's synchronous lookups.

Mappings resolve ids once per field on the hot path and cannot await a query each time, so
this keeps the store's bindings in a dict (``resolve`` is one dict lookup) and refreshes it:

- ``open`` loads every binding (or the newest ``maxsize``, then kept as an LRU);
- ``bind`` writes through to the store and remembers the answer, so this process sees its
  own bindings at once;
- ``refresh`` (``run`` calls it every few seconds) fetches the rows stored since the last one
  it saw, and asks the store explicitly for every key ``resolve`` missed since. The second
  part is what makes it exact: on PostgreSQL a row's ``id`` is taken before its transaction
  commits, so a row may become visible after one with a higher id was read; scanning by id
  could pass it over, but a key someone looked for is fetched by name.

A miss answers None: the mapping fails with "missing cross-reference" and the event is
dead-lettered with that reason, to be replayed once the binding exists (by then a refresh
has fetched it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from .._lifecycle import AsyncResource
from ..exceptions import BackendError
from .xref import Binding, CrossReferences, Key

__all__ = ["CachedCrossReference"]

log = logging.getLogger(__name__)


class CachedCrossReference(AsyncResource):
    """A ``forgeline.mapping.CrossReference`` over ``store``, which it opens and closes.

    ``maxsize`` bounds the bindings held (least recently used go first; a miss is then
    fetched by the next refresh); None holds them all. ``max_misses`` bounds the keys
    remembered for that, so garbage ids in bad payloads cannot grow it without end.
    """

    def __init__(
        self,
        store: CrossReferences,
        *,
        maxsize: int | None = None,
        max_misses: int = 10_000,
        page: int = 5_000,
    ) -> None:
        if maxsize is not None and maxsize < 1:
            raise ValueError("maxsize must be positive (or None: no bound)")
        self.store = store
        self.maxsize = maxsize
        self.max_misses = max_misses
        self.page = page
        self._ids: OrderedDict[Key, str] = OrderedDict()
        self._misses: OrderedDict[Key, None] = OrderedDict()
        self._seq = 0  # the highest store ``seq`` read by a scan
        self._lock = asyncio.Lock()
        self._reloading: dict[Key, str] | None = None

    async def open(self) -> None:
        await self.store.open()
        await self.reload()

    async def aclose(self) -> None:
        await self.store.aclose()

    # -- the mapping engine's side: synchronous --------------------------------------------

    def resolve(self, system: str, entity: str, external_id: str) -> str | None:
        """The canonical id, from memory; None (and a note to fetch it) when not held."""
        key = (system, entity, external_id)
        found = self._ids.get(key)
        if found is None:
            self._misses[key] = None
            if len(self._misses) > self.max_misses:
                self._misses.popitem(last=False)
            return None
        if self.maxsize is not None:
            self._ids.move_to_end(key)
        return found

    def __len__(self) -> int:
        return len(self._ids)

    # -- writers' side: through to the store ---------------------------------------------------

    async def bind(
        self, system: str, entity: str, external_id: str, canonical_id: str | None = None
    ) -> str:
        """``CrossReferences.bind``, remembered here."""
        found = await self.store.bind(system, entity, external_id, canonical_id)
        self._remember((system, entity, external_id), found)
        return found

    async def fetch(self, system: str, entity: str, external_id: str) -> str | None:
        """The canonical id from memory, else from the store (then remembered)."""
        key = (system, entity, external_id)
        found = self._ids.get(key)
        if found is not None:
            return found
        found = await self.store.resolve(*key)
        if found is not None:
            self._remember(key, found)
            self._misses.pop(key, None)
        return found

    async def reverse(self, canonical_id: str, *, entity: str | None = None) -> dict[str, str]:
        """``CrossReferences.reverse``: always from the store (it is not on a hot path)."""
        return await self.store.reverse(canonical_id, entity=entity)

    # -- keeping up with the store ---------------------------------------------------------------

    async def reload(self) -> int:
        """Read every binding afresh; answer how many are held."""
        async with self._lock:
            self._reloading = {}
            try:
                fresh: OrderedDict[Key, str] = OrderedDict()
                seq = 0
                while True:
                    rows = await self.store.scan(seq, self.page)
                    self._learn(fresh, rows)
                    if rows:
                        seq = rows[-1].seq
                    if len(rows) < self.page:
                        break
                # Bound while this ran: not necessarily in a page read before it committed.
                for key, canonical_id in self._reloading.items():
                    fresh[key] = canonical_id
                self._ids, self._seq = fresh, seq
                self._trim()
            finally:
                self._reloading = None
            return len(self._ids)

    async def refresh(self) -> int:
        """Fetch the bindings stored since the last scan and the keys missed since the last
        refresh; answer how many bindings were new here."""
        async with self._lock:
            before = len(self._ids)
            while True:
                rows = await self.store.scan(self._seq, self.page)
                self._learn(self._ids, rows)
                if rows:
                    self._seq = rows[-1].seq
                if len(rows) < self.page:
                    break
            missed = [key for key in self._misses if key not in self._ids]
            for key in list(self._misses):
                del self._misses[key]
            if missed:
                self._learn(self._ids, await self.store.lookup(missed))
            self._trim()
            return max(0, len(self._ids) - before)

    async def run(self, interval: float = 5.0) -> None:
        """``refresh`` every ``interval`` seconds until cancelled; a store that cannot be
        reached is tried again next time (the cache keeps answering what it holds)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except BackendError as exc:
                log.warning("cross-reference refresh failed, retrying in %ss: %s", interval, exc)

    # -- internals -----------------------------------------------------------------------------

    def _remember(self, key: Key, canonical_id: str) -> None:
        self._ids[key] = canonical_id
        self._ids.move_to_end(key)
        if self._reloading is not None:
            self._reloading[key] = canonical_id
        self._trim()

    def _learn(self, into: OrderedDict[Key, str], rows: list[Binding]) -> None:
        for row in rows:
            into[row.key] = row.canonical_id
            into.move_to_end(row.key)
        if self.maxsize is not None:
            while len(into) > self.maxsize:
                into.popitem(last=False)

    def _trim(self) -> None:
        if self.maxsize is not None:
            while len(self._ids) > self.maxsize:
                self._ids.popitem(last=False)
