"""An event log in process memory (``memory://``): for tests and throwaway runs; nothing is
durable, so nothing it acknowledges survives the process."""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence

from ..envelope import Event
from .base import Appended, EventLog, Record

__all__ = ["MemoryLog"]


class MemoryLog(EventLog):
    def __init__(self, url: str = "memory://") -> None:
        super().__init__()
        self.url = url
        self._records: list[Record] = []  # position order; trimming removes from the front
        self._by_key: dict[tuple[str, str], Record] = {}
        self._last = 0

    async def _append(self, events: Sequence[Event]) -> list[Appended]:
        now = time.time()
        answers: list[Appended] = []
        for event in events:
            key = (event.source, event.id)
            existing = self._by_key.get(key)
            if existing is not None:
                answers.append(Appended(existing.position, True))
                continue
            self._last += 1
            record = Record(self._last, now, event)
            self._records.append(record)
            self._by_key[key] = record
            answers.append(Appended(self._last, False))
        return answers

    def _index_after(self, after: int) -> int:
        return bisect.bisect_right(self._records, after, key=lambda r: r.position)

    async def read(self, after: int = 0, limit: int = 500) -> list[Record]:
        start = self._index_after(after)
        return self._records[start : start + limit]

    async def get(self, source: str, id: str) -> Record | None:
        return self._by_key.get((source, id))

    async def find(self, id: str) -> list[Record]:
        return sorted(
            (r for (_, event_id), r in self._by_key.items() if event_id == id),
            key=lambda r: r.position,
        )

    async def get_many(self, positions: Sequence[int]) -> list[Record]:
        found = []
        for position in sorted(set(positions)):
            index = self._index_after(position - 1)
            if index < len(self._records) and self._records[index].position == position:
                found.append(self._records[index])
        return found

    async def head(self) -> int:
        return self._last

    async def position_at(self, time: float) -> int:
        index = bisect.bisect_left(self._records, time, key=lambda r: r.recorded_at)
        if index == 0:
            return self._records[0].position - 1 if self._records else self._last
        return self._records[index - 1].position

    async def trim(self, before: float, *, keep_from: int | None = None) -> int:
        count = 0
        for record in self._records:
            if record.recorded_at >= before or (
                keep_from is not None and record.position >= keep_from
            ):
                break
            count += 1
        for record in self._records[:count]:
            del self._by_key[(record.event.source, record.event.id)]
        del self._records[:count]
        return count
