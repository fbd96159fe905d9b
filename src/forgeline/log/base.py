"""The event log contract: the ``log`` stage of the data path.

A backend supplies a handful of primitives (append, read, get, trim); the base class owns the
algorithms built on them (streaming, filtered paging, locating a time), so every backend
behaves the same and the contract tests in ``tests/contract`` hold for all of them.

Positions are integers that grow with every appended event, starting at 1; position 0 means
"before the first event". Acknowledged means durable: ``append`` returns only once the backend
has made the events survive a crash (see each backend for the setting it relies on).
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from .._lifecycle import AsyncResource
from ..envelope import Event

__all__ = ["Appended", "EventLog", "RecentRecords", "Record"]


@dataclass(frozen=True, slots=True)
class Record:
    """An event as the log holds it: where it sits and when the log accepted it (epoch s)."""

    position: int
    recorded_at: float
    event: Event


@dataclass(frozen=True, slots=True)
class Appended:
    """The answer to one appended event: its position, and whether it was already there."""

    position: int
    duplicate: bool


class RecentRecords:
    """The last ``size`` records kept, by position, oldest out first. A record never changes
    once logged, so a copy held here is as good as the log's, for as long as it is held."""

    __slots__ = ("_records", "_size")

    def __init__(self, size: int) -> None:
        self._records: OrderedDict[int, Record] = OrderedDict()
        self._size = size

    def add(self, records: Iterable[Record]) -> None:
        held = self._records
        for record in records:
            held[record.position] = record
        while len(held) > self._size:
            held.popitem(last=False)

    def get(self, position: int) -> Record | None:
        return self._records.get(position)

    def clear(self) -> None:
        self._records.clear()


class EventLog(AsyncResource, ABC):
    """An append-only, replayable log of events, idempotent on ``(source, id)``."""

    #: How often ``stream`` re-reads when nothing woke it: appends made by another process
    #: are seen within this delay; appends in this process wake streams at once.
    poll_interval: float = 0.5

    def __init__(self) -> None:
        self._appended = asyncio.Event()

    # -- primitives a backend supplies -----------------------------------------------------

    @abstractmethod
    async def _append(self, events: Sequence[Event]) -> list[Appended]:
        """Durably append, skipping ``(source, id)`` pairs already present (also within
        ``events``); answer in input order."""

    @abstractmethod
    async def read(self, after: int = 0, limit: int = 500) -> list[Record]:
        """Up to ``limit`` records with position > ``after``, in position order."""

    @abstractmethod
    async def get(self, source: str, id: str) -> Record | None:
        """The record stored under ``(source, id)``."""

    @abstractmethod
    async def find(self, id: str) -> list[Record]:
        """Every record with this id, whatever its source (usually one)."""

    @abstractmethod
    async def get_many(self, positions: Sequence[int]) -> list[Record]:
        """The records at these positions that still exist, in position order."""

    @abstractmethod
    async def head(self) -> int:
        """The last position written, 0 for an empty log."""

    @abstractmethod
    async def position_at(self, time: float) -> int:
        """The last position recorded strictly before ``time``: read ``after`` it to start
        at that time."""

    @abstractmethod
    async def trim(self, before: float, *, keep_from: int | None = None) -> int:
        """Delete records older than ``before`` (epoch s), keeping every position >=
        ``keep_from``; answer how many were deleted."""

    # -- algorithms ------------------------------------------------------------------------

    async def append(self, events: Sequence[Event]) -> list[Appended]:
        """Append one batch durably; duplicates answer with the first copy's position."""
        if not events:
            return []
        result = await self._append(events)
        self.notify()
        return result

    def notify(self) -> None:
        """Wake everything waiting on the current ``changed()`` signal."""
        signal, self._appended = self._appended, asyncio.Event()
        signal.set()

    def changed(self) -> asyncio.Event:
        """A signal set by the next append. Take it *before* reading, then wait on it: an
        append that lands between the read and the wait still wakes you."""
        return self._appended

    async def wait(self, signal: asyncio.Event, timeout: float | None = None) -> None:
        """Sleep until ``signal`` is set, or ``timeout`` (default ``poll_interval``) passes,
        whichever is first; the timeout is how appends by other processes are noticed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout or self.poll_interval):
                await signal.wait()

    async def stream(self, after: int = 0, *, batch: int = 500) -> AsyncIterator[Record]:
        """Every record after ``after``, then new ones as they arrive, forever."""
        while True:
            signal = self.changed()
            records = await self.read(after, batch)
            for record in records:
                yield record
                after = record.position
            if len(records) < batch:
                await self.wait(signal)

    async def query(
        self,
        after: int = 0,
        limit: int = 100,
        *,
        match: Callable[[Event], bool] | None = None,
        until: int | None = None,
        scan_limit: int = 50_000,
    ) -> tuple[list[Record], int]:
        """A page of records after ``after`` that ``match``, and the position to continue from.

        Scans at most ``scan_limit`` records so a rare filter cannot pin a request; the
        continuation position then points past what was scanned, and paging goes on.
        """
        found: list[Record] = []
        scanned = 0
        cursor = after
        while len(found) < limit and scanned < scan_limit:
            records = await self.read(cursor, min(1000, scan_limit - scanned))
            if not records:
                break
            for record in records:
                if until is not None and record.position > until:
                    return found, cursor
                cursor = record.position
                scanned += 1
                if match is None or match(record.event):
                    found.append(record)
                    if len(found) == limit:
                        break
        return found, cursor
