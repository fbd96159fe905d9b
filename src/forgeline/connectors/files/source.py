"""The file source: drops in a partner's inbox folder into the log, then archived or quarantined.

The first stage of the data path for batch and EDI-style partners. One pass per poll::

    list inbox -> complete? (glob, not .part, size/mtime stable) -> fingerprint (hash, decode)
        -> records -> events, appended in batches -> archive/ (or quarantine/ + reason)

**Polling, not inotify.** Partner folders are often network shares (SMB, NFS) where inotify
sees nothing of what other machines write, and a poll every second costs one ``scandir``.
Polling also gives the stability rule its clock.

**When a file is complete.** Never while its name ends in a partial suffix (``.part``,
``.tmp``, ``.partial``, ``.filepart``; hidden files neither): a partner that writes
``x.csv.part`` and renames it to ``x.csv`` hands over a complete file at the rename. For
partners that write in place, a file is taken only once its size, mtime and inode have not
changed for ``stable`` seconds, as this process observes them over successive polls (its own
monotonic clock, so a share's skewed mtimes do not matter). ``stable=0`` takes files at first
sight: for partners that always rename.

**Crash safety.** The file stays in the inbox until every one of its events is durable
(``publish`` returned); only then are its sidecars written (temp, fsync, rename) and the
file renamed into ``archive/`` (atomic, same file system, folders fsynced). A crash at any
point leaves it in the inbox, and the next pass reads it again: its event ids are
deterministic (``rules``), so the log stores nothing twice. A sidecar from the interrupted
pass (same content hash) is overwritten, not duplicated. A file that changed while it was
read is not archived; it is read again once stable.

**Bad input.** A file that cannot be read (wrong encoding, no header, broken JSON) goes to
``quarantine/`` with ``<name>.reason.json`` and one ``files.quarantined.v1`` event. Bad
records: with ``on_error: rows`` the good ones are appended, each bad one becomes a
``files.quarantined.v1`` event (file, row, line, reason, the record) and a line of
``<name>.rejected.<ext>`` (the header plus the bad rows, ready to fix and drop again) beside
``<name>.reason.json``; the file itself is archived. With ``on_error: file`` the file is
checked first and, if any record is bad, quarantined whole with nothing appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..._lifecycle import AsyncResource
from ...envelope import Event
from ...exceptions import BackendError, ConfigError, InvalidInput
from ...log import Appended
from .durable import Folders, free_name, move
from .formats import Format, Item, Unreadable, fingerprint, records
from .quarantine import Rejects, Verdict, quarantine_event, write_verdict
from .rules import FileRule, RowError

__all__ = ["FileOutcome", "FileSource", "Folders", "Publish", "SourceStats"]

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event]], Awaitable[Sequence[Appended]]]
PARTIAL_SUFFIXES = (".part", ".tmp", ".partial", ".filepart", ".crdownload")


@dataclass(slots=True)
class FileOutcome:
    """What one pass did with one file."""

    name: str
    status: Literal["archived", "quarantined", "changed"]
    where: Path | None = None
    rows: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: int = 0
    reason: str | None = None


@dataclass(slots=True)
class SourceStats:
    archived: int = 0
    quarantined: int = 0
    appended: int = 0
    duplicates: int = 0
    rejected: int = 0
    failures: int = 0


@dataclass(slots=True)
class _Pass:
    """One reading of one file."""

    path: Path
    rule: FileRule
    content: str
    verdict: Verdict
    rejects: Rejects | None = None
    outcome: FileOutcome = field(init=False)

    def __post_init__(self) -> None:
        self.outcome = FileOutcome(self.path.name, "archived")


class FileSource(AsyncResource):
    """Watches ``folders.inbox`` for files matching ``rules`` and appends their records with
    ``publish`` (``log.append`` or the hub's ``publish``). ``open`` starts the poll loop in
    a task; ``run()`` is the same loop for a caller's own task; ``poll()`` is one pass."""

    def __init__(
        self,
        folders: Folders,
        rules: Sequence[FileRule],
        publish: Publish,
        *,
        system: str = "files",
        poll_interval: float = 1.0,
        stable: float = 2.0,
        max_batch: int = 1000,
        partial_suffixes: Sequence[str] = PARTIAL_SUFFIXES,
        max_backoff: float = 30.0,
    ) -> None:
        if not rules:
            raise ConfigError("a file source needs at least one rule")
        if max_batch < 1:
            raise ConfigError("max_batch must be at least 1")
        self.folders = folders
        self.rules = list(rules)
        self.system = system
        self.poll_interval = poll_interval
        self.stable = stable
        self.max_batch = max_batch
        self.partial_suffixes = tuple(partial_suffixes)
        self.max_backoff = max_backoff
        self.stats = SourceStats()
        self._publish = publish
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prepared = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._prepare()
        if self._task is None:
            self._stop.clear()
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"file-source:{self.system}"
            )

    async def run(self) -> None:
        """The loop in the calling task, until cancelled. Cancelling mid-file leaves the
        file in the inbox; the next start reads it again and the log recognises its events."""
        self._stop.clear()
        await self._run()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _prepare(self) -> None:
        if not self._prepared:
            await asyncio.to_thread(self.folders.prepare)
            self._prepared = True

    async def _run(self) -> None:
        await self._prepare()
        failures = 0
        while not self._stop.is_set():
            try:
                await self.poll()
                failures = 0
            except (BackendError, OSError) as exc:
                # The log is down or the folder is unreachable: the file stays in the inbox.
                failures += 1
                self.stats.failures += 1
                level = logging.WARNING if failures < 5 else logging.ERROR
                log.log(level, "file source %s: %s; trying again", self.system, exc)
            delay = min(self.max_backoff, self.poll_interval * 2 ** min(failures, 10))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stop.wait()

    # -- which files ---------------------------------------------------------------------------

    def complete(self) -> list[tuple[Path, FileRule]]:
        """The inbox's files that are complete now (module docstring), oldest name first."""
        now = time.monotonic()
        ready: list[tuple[Path, FileRule]] = []
        present: set[str] = set()
        with os.scandir(self.folders.inbox) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or name.lower().endswith(self.partial_suffixes):
                    continue
                rule = next((rule for rule in self.rules if rule.matches(name)), None)
                if rule is None or not entry.is_file(follow_symlinks=False):
                    continue
                stat = entry.stat(follow_symlinks=False)
                signature = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
                present.add(name)
                seen = self._seen.get(name)
                if seen is None or seen[0] != signature:
                    self._seen[name] = (signature, now)
                    seen = self._seen[name]
                if now - seen[1] >= self.stable:
                    ready.append((Path(entry.path), rule))
        for gone in self._seen.keys() - present:
            del self._seen[gone]
        return sorted(ready, key=lambda pair: pair[0].name)

    async def poll(self) -> list[FileOutcome]:
        """Process every complete file once. ``BackendError`` (the log) and ``OSError`` (the
        folders) propagate, leaving the file in the inbox for the next pass."""
        await self._prepare()
        outcomes = []
        for path, rule in await asyncio.to_thread(self.complete):
            outcome = await self.process(path, rule)
            outcomes.append(outcome)
            if outcome.status != "changed":
                self._seen.pop(path.name, None)
        return outcomes

    # -- one file ------------------------------------------------------------------------------

    async def process(self, path: Path, rule: FileRule) -> FileOutcome:
        before = await asyncio.to_thread(_signature, path)
        format = rule.format_of(path.name)
        verdict = Verdict(self.system, path.name, rule.glob)
        try:
            content = await asyncio.to_thread(fingerprint, path, rule.encoding)
        except Unreadable as exc:
            verdict.content = await asyncio.to_thread(fingerprint, path, None)
            return await self._quarantine(path, verdict, exc.reason)
        verdict.content = content
        work = _Pass(path, rule, content, verdict)
        if rule.on_error == "file":
            try:
                bad = await asyncio.to_thread(self._check, work, format)
            except Unreadable as exc:
                return await self._quarantine(path, verdict, exc.reason)
            if bad:
                return await self._quarantine(path, verdict, f"{bad} bad records (on_error: file)")
        work.rejects = Rejects(self.folders.quarantine, path, format, rule)
        try:
            await self._read(work, format)
        except Unreadable as exc:
            reason = exc.reason
            if work.outcome.appended or work.outcome.duplicates:
                reason += f" (the {exc.after} records before it were appended)"
            work.rejects.discard()
            return await self._quarantine(path, verdict, reason, work.outcome)
        except BaseException:
            work.rejects.discard()
            raise
        if await asyncio.to_thread(_signature, path) != before:
            # Still being written (or replaced): these events keep their ids; the complete
            # file is a new content with new ids. Read it again once it is stable.
            work.rejects.discard()
            log.warning("file source %s: %s changed while read", self.system, path.name)
            work.outcome.status = "changed"
            return work.outcome
        return await asyncio.to_thread(self._archive, work)

    def _check(self, work: _Pass, format: Format) -> int:
        """``on_error: file``: read the whole file once without appending; count bad records."""
        rule, bad = work.rule, 0
        for item in records(work.path, format, encoding=rule.encoding, delimiter=rule.delimiter):
            try:
                rule.event(item, system=self.system, file=work.path.name, content=work.content)
            except RowError as exc:
                bad += 1
                work.verdict.error(item, str(exc))
        return bad

    async def _read(self, work: _Pass, format: Format) -> None:
        rule = work.rule
        iterator = records(work.path, format, encoding=rule.encoding, delimiter=rule.delimiter)
        try:
            while True:
                chunk = await asyncio.to_thread(self._chunk, work, iterator)
                if not chunk:
                    return
                await self._append(work, chunk)
        finally:
            iterator.close()

    def _chunk(
        self, work: _Pass, iterator: Generator[Item, None, None]
    ) -> list[tuple[Event, Item | None]]:
        """Up to ``max_batch`` records as events (in a thread: parsing is CPU and disk);
        a bad record's entry is its quarantine event, with no item."""
        chunk: list[tuple[Event, Item | None]] = []
        name = work.path.name
        for item in iterator:
            work.outcome.rows += 1
            try:
                event = work.rule.event(item, system=self.system, file=name, content=work.content)
                chunk.append((event, item))
            except RowError as exc:
                chunk.append((self._reject(work, item, str(exc)), None))
            if len(chunk) >= self.max_batch:
                break
        return chunk

    def _reject(self, work: _Pass, item: Item, reason: str) -> Event:
        assert work.rejects is not None
        work.rejects.add(item, reason)
        work.verdict.error(item, reason)
        work.outcome.rejected += 1
        return quarantine_event(work.verdict, work.rule, reason, item)

    async def _append(self, work: _Pass, chunk: list[tuple[Event, Item | None]]) -> None:
        # Durable when ``publish`` returns; a ``BackendError`` leaves the file in the inbox.
        try:
            answers = list(await self._publish([event for event, _ in chunk]))
        except InvalidInput:
            # Ingest refused the batch (a policy, a middleware): find the records it refuses
            # and quarantine them with its reason, so the rest still go in.
            answers = []
            for index, (event, item) in enumerate(chunk):
                try:
                    answers.extend(await self._publish([event]))
                except InvalidInput as exc:
                    if item is None:
                        raise  # a quarantine event refused: nothing safe to do but stop
                    held = self._reject(work, item, f"refused at ingest: {exc.detail}")
                    answers.extend(await self._publish([held]))
                    chunk[index] = (held, None)
        for (_, item), answer in zip(chunk, answers, strict=True):
            if item is None:
                continue
            if answer.duplicate:
                work.outcome.duplicates += 1
            else:
                work.outcome.appended += 1

    # -- where it goes -----------------------------------------------------------------------

    def _archive(self, work: _Pass) -> FileOutcome:
        assert work.rejects is not None
        outcome, verdict = work.outcome, work.verdict
        verdict.counts(outcome.rows, outcome.appended, outcome.duplicates, outcome.rejected)
        if outcome.rejected:
            base = verdict.base(self.folders.quarantine)
            verdict.rejected_file = work.rejects.publish(base)
            target = self.folders.archive / free_name(self.folders.archive, work.path.name)
            verdict.archived_as = target.name
            write_verdict(self.folders.quarantine, base, verdict, "rejected-rows")
        else:
            work.rejects.discard()
            target = self.folders.archive / free_name(self.folders.archive, work.path.name)
        outcome.where = move(work.path, self.folders.archive, target.name)
        self.stats.archived += 1
        self.stats.appended += outcome.appended
        self.stats.duplicates += outcome.duplicates
        self.stats.rejected += outcome.rejected
        return outcome

    async def _quarantine(
        self, path: Path, verdict: Verdict, reason: str, outcome: FileOutcome | None = None
    ) -> FileOutcome:
        """The whole file to quarantine/: its event first (durable), then the reason, then
        the file itself; a crash in between repeats the same steps under the same names."""
        outcome = outcome or FileOutcome(path.name, "quarantined")
        outcome.status, outcome.reason = "quarantined", reason
        verdict.reason = reason
        verdict.counts(outcome.rows, outcome.appended, outcome.duplicates, outcome.rejected)
        rule = next(rule for rule in self.rules if rule.glob == verdict.rule)
        await self._publish([quarantine_event(verdict, rule, reason, None)])

        def finish() -> Path:
            base = verdict.base(self.folders.quarantine)
            write_verdict(self.folders.quarantine, base, verdict, "quarantined")
            return move(path, self.folders.quarantine, base)

        outcome.where = await asyncio.to_thread(finish)
        self.stats.quarantined += 1
        log.warning("file source %s: quarantined %s: %s", self.system, path.name, reason)
        return outcome


def _signature(path: Path) -> tuple[int, int, int]:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)
