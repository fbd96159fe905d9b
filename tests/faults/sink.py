"""The fault tests' sink: a receiver process that writes down every delivery attempt it sees.

Run as ``python tests/faults/sink.py PORT FILE FAIL_PERCENT DELAY_MS [DROP_PERCENT]``
(a plain script: the harness starts it by path, so it imports nothing from Forgeline). For
each POST it appends one JSON line to FILE — arrival order ``n``, time, event id,
``Idempotency-Key``, subject, ``data.seq``, the attempt number this sink has seen for the id,
and the status it answered — and answers only once the line is fsynced: a 2xx means the
delivery is on the sink's disk, as a real idempotent receiver would commit before
acknowledging.

``FAIL_PERCENT`` of first attempts are answered 503, picked by a hash of the event id so a run
is reproducible; later attempts of the same id always succeed. Every answer takes at least
``DELAY_MS``, as a real downstream system does: deliveries are then in flight when a fault
strikes, which is what the scenarios need to test.

``DROP_PERCENT`` exists to sabotage a run, so the harness can prove it notices: that many
first attempts (other ids than the failing ones) are answered 204 but never journalled — a
sink that loses what it acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import zlib
from typing import Any

import orjson
from aiohttp import web


class Journal:
    """Appends lines in arrival order; one fsync covers every line queued meanwhile."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_loop())

    async def append(self, line: bytes) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((line, future))
        self._wake.set()
        await future

    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            data = b"".join(line for line, _ in batch)
            # In a thread: an fsync must not stall the requests arriving meanwhile.
            await asyncio.to_thread(self._write, data)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)


class Sink:
    def __init__(self, journal: Journal, fail: int, delay: float, drop_percent: int) -> None:
        self.journal = journal
        self.fail_percent = fail
        self.delay = delay
        self.drop_percent = drop_percent
        self.seen: dict[str, int] = {}
        self.count = 0

    async def receive(self, request: web.Request) -> web.Response:
        arrived = time.time()
        try:
            event: dict[str, Any] = orjson.loads(await request.read())
            event_id = str(event["id"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return web.Response(status=400)
        attempt = self.seen.get(event_id, 0) + 1
        self.seen[event_id] = attempt
        bucket = zlib.crc32(event_id.encode()) % 100
        failing = attempt == 1 and bucket < self.fail_percent
        dropping = attempt == 1 and 0 <= bucket - self.fail_percent < self.drop_percent
        status = 503 if failing else 204
        if dropping:
            await asyncio.sleep(self.delay)
            return web.Response(status=status)
        self.count += 1
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        line = {
            "n": self.count,  # numbered before any await: arrival order
            "t": arrived,
            "id": event_id,
            "idem": request.headers.get("Idempotency-Key"),
            "subject": event.get("subject"),
            "source": event.get("source"),
            "seq": data.get("seq"),
            "attempt": attempt,
            "status": status,
        }
        journalled = self.journal.append(orjson.dumps(line) + b"\n")
        await asyncio.gather(journalled, asyncio.sleep(self.delay))
        return web.Response(status=status)


async def main(port: int, path: str, fail_percent: int, delay_ms: int, drop_percent: int) -> None:
    journal = Journal(path)
    journal.start()
    sink = Sink(journal, fail_percent, delay_ms / 1000.0, drop_percent)
    app = web.Application()
    app.router.add_post("/{tail:.*}", sink.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"sink ready on {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    port, path, fail, delay, drop = [*sys.argv[1:], "0"][:5]
    asyncio.run(main(int(port), path, int(fail), int(delay), int(drop)))
