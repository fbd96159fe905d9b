"""SQLite for an asyncio process: one writer thread with group commit, one reader thread.

Both the SQLite event log and the SQLite store sit on this. SQLite allows one writer at a time
and an ``fsync`` per commit is the price of ``synchronous=FULL``; so every write queued while a
commit is running joins the next transaction (group commit), each in its own SAVEPOINT so one
failing write never takes its neighbours down. A write's future resolves only after COMMIT
returned, which is what lets the API answer 2xx only for events that are on disk.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .exceptions import BackendError, BackendUnavailable

T = TypeVar("T")

Job = Callable[[sqlite3.Connection], Any]

_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    # FULL: a commit survives power loss in WAL mode; NORMAL would not (DESIGN.md §6).
    "PRAGMA synchronous=FULL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)


def sqlite_path(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs.db`` or ``sqlite:///:memory:``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return url[len("sqlite:///") :]


class Database:
    """An SQLite file opened for one process: ``await db.write(fn)`` and ``await db.read(fn)``."""

    def __init__(self, path: str, *, name: str = "db") -> None:
        self.path = path
        self._name = name
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-writer")
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix=f"{name}-reader")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._queue: list[tuple[Job, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def open(self, schema: str) -> None:
        loop = asyncio.get_running_loop()
        memory = self.path == ":memory:"
        if not memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            conn.create_function("forgeline_match", 2, _regex_match, deterministic=True)
            return conn

        try:
            self._writer = await loop.run_in_executor(self._writer_pool, connect)
            await loop.run_in_executor(self._writer_pool, self._writer.executescript, schema)
            if memory:
                # A private in-memory database has one connection; reads share its thread and
                # run between group commits, so they never see half a transaction.
                self._reader, self._reader_pool = self._writer, self._writer_pool
            else:
                self._reader = await loop.run_in_executor(self._reader_pool, connect)
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._task = asyncio.create_task(self._write_loop(), name=f"{self._name}-group-commit")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._wake.set()
            await self._task
        loop = asyncio.get_running_loop()
        pairs = [(self._reader, self._reader_pool), (self._writer, self._writer_pool)]
        if self._reader is self._writer:
            pairs = pairs[1:]
        for conn, pool in pairs:
            if conn is not None:
                await loop.run_in_executor(pool, conn.close)
            pool.shutdown(wait=True)

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` inside the next group transaction; return once it is committed."""
        if self._closed:
            raise BackendUnavailable(f"{self._name} database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((job, future))
        self._wake.set()
        return await future

    async def read(self, job: Callable[[sqlite3.Connection], T]) -> T:
        if self._reader is None:
            raise BackendUnavailable(f"{self._name} database is not open")
        reader = self._reader

        def run() -> T:
            try:
                return job(reader)
            except sqlite3.Error as exc:
                raise BackendError(f"{self._name} read failed: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, run)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                outcomes = await loop.run_in_executor(self._writer_pool, self._commit, batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller was cancelled; the write still happened
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
            if self._closed and not self._queue:
                return

    def _commit(self, batch: list[tuple[Job, asyncio.Future[Any]]]) -> list[tuple[bool, Any]]:
        conn = self._writer
        assert conn is not None
        outcomes: list[tuple[bool, Any]] = []
        # A job alone in its group needs no savepoint: if it fails, so does the transaction.
        # (Each statement hands the GIL back and must win it again from the busy event loop.)
        alone = len(batch) == 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job, _ in batch:
                if not alone:
                    conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job(conn)))
                except Exception as exc:  # this job fails alone; its caller gets the error
                    conn.execute("ROLLBACK" if alone else "ROLLBACK TO job")
                    outcomes.append((False, _translate(exc, self._name)))
                    if alone:
                        return outcomes
                if not alone:
                    conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # The commit itself failed (disk full, I/O error): nothing in the group is durable.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = BackendError(f"{self._name} commit failed: {exc}")
            error.__cause__ = exc
            return [(False, error)] * len(batch)
        return outcomes


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.DOTALL)


def _regex_match(pattern: str, value: str | None) -> bool:
    """SQL ``forgeline_match(regex, value)``: a full match, for filters written as globs."""
    return value is not None and _compiled(pattern).fullmatch(value) is not None


def _translate(exc: Exception, name: str) -> Exception:
    if isinstance(exc, sqlite3.Error):
        error = BackendError(f"{name} write failed: {exc}")
        error.__cause__ = exc
        return error
    return exc
