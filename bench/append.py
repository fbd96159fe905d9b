"""Measurement 1: ``SqliteLog.append`` in batches vs plain ``sqlite3``, the faster of
``executemany`` and multi-row ``INSERT … VALUES`` statements of 400 rows (what the log does).

Both sides write the same rows (id, source, recorded_at, serialized body) into the same table
and indexes (the log's own ``SCHEMA``), with the same PRAGMAs (WAL, synchronous=FULL) and one
transaction per batch, on a fresh file in the same temp directory. The events are built and
validated before the clock starts; serializing them (``Event.to_json``) is part of the log's
work, while the raw side gets the bodies already serialized.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from forgeline.envelope import Event
from forgeline.log.sqlite import SCHEMA, SqliteLog

from .events import make_event

_INSERT = "INSERT INTO events (id, source, recorded_at, body) VALUES (?, ?, ?, ?)"


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


_CHUNK = 400


def raw_append(
    path: Path, batches: list[list[tuple[str, str, float, bytes]]], *, multirow: bool = False
) -> float:
    """Seconds to write every batch with plain sqlite3, one transaction per batch:
    ``executemany``, or (``multirow``) statements of up to 400 rows each."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
        start = time.perf_counter()
        for batch in batches:
            conn.execute("BEGIN IMMEDIATE")
            if multirow:
                for first in range(0, len(batch), _CHUNK):
                    rows = batch[first : first + _CHUNK]
                    conn.execute(
                        _INSERT.removesuffix("(?, ?, ?, ?)") + ",".join("(?,?,?,?)" for _ in rows),
                        [value for row in rows for value in row],
                    )
            else:
                conn.executemany(_INSERT, batch)
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


async def log_append(path: Path, batches: list[list[Event]]) -> float:
    """Seconds to append every batch through ``SqliteLog.append``, one batch at a time."""
    log = SqliteLog(f"sqlite:///{path}")
    await log.open()
    try:
        start = time.perf_counter()
        for batch in batches:
            await log.append(batch)
        return time.perf_counter() - start
    finally:
        await log.aclose()


async def run(
    batch_sizes: tuple[int, ...] = (100, 1000), total: int = 20_000, repeats: int = 2
) -> list[dict[str, Any]]:
    """For each batch size: events/s of the log and of raw sqlite3 (best of ``repeats``)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="forgeline-bench-append-") as tmp:
        for size in batch_sizes:
            best_log = best_raw = float("inf")
            for attempt in range(repeats):
                # Fresh events each time: the log deduplicates on (source, id).
                events = [Event.from_dict(make_event(i, "append")) for i in range(total)]
                now = time.time()
                rows = [(e.id, e.source, now, e.to_json()) for e in events]
                log_path = Path(tmp) / f"log-{size}-{attempt}.db"
                for multirow in (False, True):
                    raw_path = Path(tmp) / f"raw-{size}-{attempt}-{multirow}.db"
                    raw = raw_append(raw_path, _batches(rows, size), multirow=multirow)
                    best_raw = min(best_raw, raw)
                best_log = min(best_log, await log_append(log_path, _batches(events, size)))
            body_bytes = sum(len(r[3]) for r in rows) / len(rows)
            results.append(
                {
                    "batch": size,
                    "events": total,
                    "body_bytes": round(body_bytes),
                    "log_events_per_s": total / best_log,
                    "raw_events_per_s": total / best_raw,
                    "ratio": best_raw / best_log,
                }
            )
    return results


def main() -> None:  # pragma: no cover - manual use: python -m bench.append
    for row in asyncio.run(run()):
        print(row)


if __name__ == "__main__":
    main()
