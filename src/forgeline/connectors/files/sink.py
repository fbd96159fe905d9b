"""The file sink: the deliver stage's last hop to a partner who collects files from a folder.

Each delivery attempt hands one event to :meth:`FileSink.write`; events for the same target
(and the same values of the name's event placeholders) are gathered into one batch, which
is written as one file when it holds ``max_events`` or ``max_delay`` seconds after its first
event, whichever comes first. ``write`` returns only when the file holding the event is
durable under its final name, so "delivered" means "in the partner's outbox". The
dispatcher's ``concurrency`` bounds how many events wait at once, hence how large a file
gets: raise it for bigger files.

**Atomic files.** A batch is written to a hidden temp name in the outbox (``.<name>.<hex>
.tmp``: no partner glob matches it), fsynced, then linked to its final name — ``link``
fails rather than replace an existing file, so a name is never overwritten — and the
directory fsynced (``durable.publish``). A reader polling the outbox sees nothing, then the
whole file.

**Names.** ``name`` is a template: ``{type}``, ``{tenant}``, ``{subject}`` (from the events:
a batch holds one value of each used), ``{date}`` (``YYYYMMDD``, UTC), ``{time}``
(``HHMMSS``) and ``{seq}`` (required: a counter, six digits, kept across restarts in the
outbox's ``.forgeline-seq``; a name that is taken anyway moves to the next number).

**At-least-once.** A crash after the rename but before the delivery is recorded writes the
event again into a later file: ``payload: event`` lines carry the event id for the partner
to dedupe on; CSV files can carry it as a column (``columns: [id, …]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from ..._lifecycle import AsyncResource
from ...envelope import Event
from ...exceptions import ConfigError, PermanentDeliveryError, TransientDeliveryError
from ..mqtt.topics import MissingField, Template, lookup
from .durable import OUR_TEMP, publish, temp_path

__all__ = ["FileSink", "OutboxTarget"]

_EVENT_NAMES = ("type", "tenant", "subject")
_CLOCK_NAMES = ("date", "time", "seq")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SEQ_FILE = ".forgeline-seq"


@dataclass(frozen=True, slots=True)
class OutboxTarget:
    """How events become files: ``name`` (see the module docstring), ``format`` (``jsonl``
    or ``csv``; from the name's extension when not given), ``payload`` (the whole event or
    its data) and, for CSV, ``columns``: paths into the event (``id``, ``subject``,
    ``data.qty``) or, with ``payload: data``, into its data (``qty``)."""

    name: str = "{type}-{date}-{seq}.jsonl"
    format: Literal["jsonl", "csv"] | None = None
    payload: Literal["event", "data"] = "event"
    columns: tuple[str, ...] = ()
    delimiter: str = ","
    template: Template = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        template = Template.compile(
            self.name, lambda name: name in _EVENT_NAMES + _CLOCK_NAMES, what="outbox name"
        )
        if "seq" not in template.names:
            raise ConfigError(f"outbox name {self.name!r}: {{seq}} keeps two files apart")
        if "/" in self.name or self.name.startswith("."):
            raise ConfigError(f"outbox name {self.name!r}: a plain, visible file name")
        if self.file_format == "csv" and not self.columns:
            raise ConfigError("a CSV outbox needs columns: the header partners read")
        if len(self.delimiter) != 1:
            raise ConfigError("the delimiter is one character")
        object.__setattr__(self, "template", template)

    @property
    def file_format(self) -> Literal["jsonl", "csv"]:
        if self.format is not None:
            return self.format
        return "csv" if self.name.lower().endswith(".csv") else "jsonl"

    def key(self, event: Event) -> tuple[str, ...]:
        """The event's values of the name's event placeholders (one batch per key)."""
        values = []
        for name in _EVENT_NAMES:
            if name in self.template.names:
                value = getattr(event, name)
                if not value:
                    raise PermanentDeliveryError(
                        f"the event has no {name} for the file name {self.name!r}"
                    )
                values.append(_UNSAFE.sub("_", str(value))[:100])
        return tuple(values)

    def render(self, key: tuple[str, ...], when: datetime, seq: int) -> str:
        values = dict(zip((n for n in _EVENT_NAMES if n in self.template.names), key, strict=True))
        values.update(date=when.strftime("%Y%m%d"), time=when.strftime("%H%M%S"), seq=f"{seq:06d}")
        return self.template.render(values.__getitem__)

    def encode(self, events: list[Event]) -> bytes:
        documents = [e.to_dict() if self.payload == "event" else e.data for e in events]
        if self.file_format == "jsonl":
            return b"".join(orjson.dumps(document) + b"\n" for document in documents)
        out = io.StringIO()
        writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(self.columns)
        for document in documents:
            writer.writerow([_cell(document, column) for column in self.columns])
        return out.getvalue().encode("utf-8")


def _cell(document: Any, column: str) -> str:
    try:
        value = lookup(document, column.split("."))
    except MissingField:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


@dataclass(slots=True)
class _Batch:
    target: OutboxTarget
    key: tuple[str, ...]
    entries: list[tuple[Event, asyncio.Future[Path]]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class FileSink(AsyncResource):
    """Writes events into ``outbox`` as files, in batches (module docstring)."""

    def __init__(self, outbox: Path, *, max_events: int = 1000, max_delay: float = 1.0) -> None:
        if max_events < 1:
            raise ConfigError("max_events must be at least 1")
        self.outbox = outbox
        self.max_events = max_events
        self.max_delay = max_delay
        self.files = 0
        self._seq = 0
        self._batches: dict[tuple[OutboxTarget, tuple[str, ...]], _Batch] = {}
        self._lock = asyncio.Lock()
        self._flushing: set[asyncio.Task[None]] = set()
        self._opened = False

    async def open(self) -> None:
        if not self._opened:
            await asyncio.to_thread(self._prepare)
            self._opened = True

    def _prepare(self) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        for leftover in self.outbox.iterdir():
            if OUR_TEMP.match(leftover.name):  # a batch a crash interrupted: never published
                leftover.unlink(missing_ok=True)
        with contextlib.suppress(OSError, ValueError):
            self._seq = int((self.outbox / _SEQ_FILE).read_text().strip())

    async def aclose(self) -> None:
        """Write what is waiting, then return."""
        for batch_key in list(self._batches):
            self._flush_soon(batch_key)
        while self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def write(self, event: Event, target: OutboxTarget) -> Path:
        """Add ``event`` to its batch; the file it is in, once that file is durable."""
        await self.open()
        key = target.key(event)
        batch_key = (target, key)
        batch = self._batches.get(batch_key)
        if batch is None:
            batch = self._batches[batch_key] = _Batch(target, key)
            loop = asyncio.get_running_loop()
            batch.timer = loop.call_later(self.max_delay, self._flush_soon, batch_key)
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        batch.entries.append((event, future))
        if len(batch.entries) >= self.max_events:
            self._flush_soon(batch_key)
        # A cancelled attempt (its timeout) leaves the batch before it is written; once
        # written, the retry writes the event again: at-least-once.
        return await future

    def _flush_soon(self, batch_key: tuple[OutboxTarget, tuple[str, ...]]) -> None:
        batch = self._batches.pop(batch_key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: _Batch) -> None:
        entries = [(event, future) for event, future in batch.entries if not future.done()]
        if not entries:
            return
        try:
            async with self._lock:  # one writer: the sequence numbers stay in order
                path = await asyncio.to_thread(
                    self._write_file, batch.target, batch.key, [event for event, _ in entries]
                )
        except OSError as exc:
            # A full disk, a share gone away, permissions: the dispatcher retries on its
            # schedule (and dead-letters after max_age), nothing is half-written.
            failure = TransientDeliveryError(f"cannot write to the outbox {self.outbox}: {exc}")
            for _, future in entries:
                if not future.done():
                    future.set_exception(failure)
            return
        for _, future in entries:
            if not future.done():
                future.set_result(path)

    def _write_file(self, target: OutboxTarget, key: tuple[str, ...], events: list[Event]) -> Path:
        when = datetime.now(UTC)
        first = self._seq + 1
        temp = temp_path(self.outbox, target.render(key, when, first))
        try:
            with temp.open("xb") as handle:
                handle.write(target.encode(events))
                handle.flush()
                os.fsync(handle.fileno())
            final, self._seq = publish(
                temp, self.outbox, lambda n: target.render(key, when, n), first
            )
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self.files += 1
        # A hint across restarts, not a promise: a taken name is skipped by ``publish``.
        with contextlib.suppress(OSError):
            state = temp_path(self.outbox, _SEQ_FILE)
            state.write_text(str(self._seq))
            os.replace(state, self.outbox / _SEQ_FILE)
        return final
