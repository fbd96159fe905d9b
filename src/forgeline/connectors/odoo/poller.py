"""The write-date poller: Odoo's changes in, with nothing missed and nothing yielded twice.

This is the reconciliation half of the Odoo source (webhooks are the fast, lossy half): it
reads records whose ``write_date`` is at or after the watermark minus an *overlap*, in
``(write_date, id)`` order, and drops the ``(id, write_date, values digest)`` it has
already handed out (the digest, because two writes in one second share a ``write_date``).
Two facts of Odoo make the overlap necessary:

* ``write_date`` has one-second resolution on the wire, so many records share a value;
* ``write_date`` is the time the transaction *started*: a long transaction commits records
  stamped earlier than ones already seen. The overlap must exceed the longest transaction
  (Odoo's ``limit_time_real``, 120 s by default, is the safe production value).

The watermark moves only on :meth:`WriteDatePoller.commit`, which the caller runs after it
has stored what :meth:`~WriteDatePoller.poll` gave it: a crash in between re-yields the same
changes (at-least-once; the hub's ``(source, id)`` dedup absorbs them), it never loses one.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import OdooProtocolError
from .events import values_digest

if TYPE_CHECKING:
    from .client import OdooClient

__all__ = ["JsonFileState", "MemoryState", "WatermarkState", "WriteDatePoller"]

_FORMAT = "%Y-%m-%d %H:%M:%S"


def _next_second(stamp: str) -> str:
    return (datetime.strptime(stamp, _FORMAT) + timedelta(seconds=1)).strftime(_FORMAT)


class WatermarkState(Protocol):
    """Where a poller keeps its position: a JSON-able dict, loaded once, saved on commit."""

    async def load(self) -> dict[str, Any] | None: ...

    async def save(self, state: dict[str, Any]) -> None: ...


class MemoryState:
    """A state that lives as long as the object (tests, one-shot syncs)."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state = json.loads(json.dumps(state)) if state is not None else None
        self.saves = 0

    async def load(self) -> dict[str, Any] | None:
        return json.loads(json.dumps(self.state)) if self.state is not None else None

    async def save(self, state: dict[str, Any]) -> None:
        self.state = json.loads(json.dumps(state))
        self.saves += 1


class JsonFileState:
    """A JSON file replaced atomically (temporary file, fsync, rename, fsync of the
    directory): after a crash it holds the previous state or the new one, never half."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    async def load(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._load)

    async def save(self, state: dict[str, Any]) -> None:
        await asyncio.to_thread(self._save, json.dumps(state, sort_keys=True))

    def _load(self) -> dict[str, Any] | None:
        try:
            loaded = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        return loaded if isinstance(loaded, dict) else None

    def _save(self, text: str) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class WriteDatePoller:
    """Changes of one model, by ``write_date``. Use::

        batch = await poller.poll()       # up to page_size changed records, oldest first
        ... store them ...
        await poller.commit()             # only now does the watermark move

    ``poll`` returns ``[]`` when nothing new is left.
    """

    def __init__(
        self,
        client: OdooClient,
        model: str,
        fields: Sequence[str] = (),
        *,
        domain: Sequence[Any] = (),
        overlap: timedelta = timedelta(seconds=5),
        page_size: int = 500,
        state: WatermarkState | None = None,
    ) -> None:
        self.client = client
        self.model = model
        wanted = list(fields)
        self.fields = [*wanted, *(f for f in ("write_date",) if f not in wanted)] if wanted else []
        self.domain = list(domain)
        self.overlap = overlap
        self.page_size = page_size
        self.state: WatermarkState = state if state is not None else MemoryState()
        self.watermark: str | None = None
        # (id, write_date) handed out and committed, within the overlap of the watermark.
        self._seen: set[tuple[int, str, str]] = set()
        self._pending: dict[tuple[int, str, str], None] = {}
        self._cursor: tuple[str, int] | None = None
        self._loaded = False

    async def _load(self) -> None:
        if self._loaded:
            return
        saved = await self.state.load() or {}
        self.watermark = saved.get("watermark")
        self._seen = {(int(i), str(w), str(d)) for i, w, d in saved.get("seen", [])}
        self._loaded = True

    def _since(self) -> str | None:
        if self.watermark is None:
            return None
        return (datetime.strptime(self.watermark, _FORMAT) - self.overlap).strftime(_FORMAT)

    async def poll(self) -> list[dict[str, Any]]:
        """The next changed records not handed out before, at most ``page_size``."""
        await self._load()
        since = self._since()
        # A record never written has no write_date (migrated or SQL-loaded data): it cannot be
        # placed behind a watermark, so it is not this poller's to find.
        window: list[Any] = [("write_date", "!=", False)]
        if since is not None:
            window.append(("write_date", ">=", since))
        # Nothing is recorded until the batch is returned: a failed page leaves the poller as
        # it was, so a retry cannot skip what the failed call would have handed out.
        fresh: list[dict[str, Any]] = []
        keys: dict[tuple[int, str, str], None] = {}
        cursor = self._cursor
        while True:
            keyset: list[Any] = []
            if cursor is not None:
                stamp, last_id = cursor
                # (write_date, id) > cursor, spelled in Odoo's prefix notation, comparing whole
                # seconds: Odoo stores microseconds but sends the second, so "= stamp" would
                # match nothing and "> stamp" would re-read the whole second for ever.
                following = _next_second(stamp)
                keyset = [
                    "|", ("write_date", ">=", following),
                    "&", "&", ("write_date", ">=", stamp), ("write_date", "<", following),
                    ("id", ">", last_id),
                ]  # fmt: skip
            page = await self.client.search_read(
                self.model,
                [*self.domain, *window, *keyset],
                self.fields or None,
                limit=self.page_size,
                order="write_date asc, id asc",
            )
            before = cursor
            for record in page:
                key = (int(record["id"]), str(record["write_date"]), values_digest(record))
                cursor = (key[1], key[0])
                if key not in self._seen and key not in self._pending and key not in keys:
                    keys[key] = None
                    fresh.append(record)
            if page and cursor == before:
                # A full page that does not move the cursor would be asked for again and again.
                raise OdooProtocolError(
                    f"{self.model}: a page of {len(page)} records did not advance the "
                    "(write_date, id) cursor; is write_date sortable on this server?"
                )
            if len(page) < self.page_size:
                # End of this pass: the next poll starts again at watermark - overlap, which is
                # how records committed late (stamped before ones already seen) are found.
                cursor = None
            if fresh or cursor is None:
                self._cursor = cursor
                self._pending.update(keys)
                return fresh

    async def commit(self) -> None:
        """Everything ``poll`` returned so far is stored: move the watermark and save it."""
        await self._load()
        if not self._pending:
            return
        stamps = [stamp for _, stamp, _ in self._pending]
        if self.watermark is not None:
            stamps.append(self.watermark)
        self.watermark = max(stamps)
        since = self._since() or self.watermark
        self._seen = {key for key in (*self._seen, *self._pending) if key[1] >= since}
        self._pending.clear()
        await self.state.save(
            {
                "model": self.model,
                "watermark": self.watermark,
                "seen": sorted([i, w, d] for i, w, d in self._seen),
            }
        )

    def rewind(self) -> None:
        """Forget what was polled but not committed (the caller failed to store it)."""
        self._pending.clear()
        self._cursor = None
