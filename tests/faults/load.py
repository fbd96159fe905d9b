"""The load generator: publishes events to the API and records which were acknowledged.

Keys are dealt out to publisher tasks, so each partition key has exactly one publisher, which
sends the key's events in sequence (``data.seq``) and sends the next only once the previous
were acknowledged. That makes the publisher's sequence the key's log order, which is what the
checker compares deliveries against. Rounds alternate between a single event (structured
mode) and a batch (``application/cloudevents-batch+json``) spanning several of the task's
keys. With several API processes, the tasks are spread over them, so their appends race in
the log. A POST that fails — connection refused or reset, timeout, 5xx — is retried with the
same events (the same ids) until it is acknowledged or the load stops, as a real producer
relying on ``(source, id)`` dedup would; events still unanswered at the end stay
*unacknowledged*. A 4xx is a bug in the test, and fails it.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import orjson

from .checker import Published

__all__ = ["Load"]

SOURCE = "faults/load"
EVENT_TYPE = "faults.tick.v1"
BATCH_TYPE = "application/cloudevents-batch+json"
STRUCTURED_TYPE = "application/cloudevents+json"


class Load:
    def __init__(
        self,
        urls: list[str],
        admin_key: str,
        run: str,
        *,
        keys: int = 24,
        tasks: int = 4,
        rate: float = 200.0,
        batch: tuple[int, int] = (5, 20),
        seed: int = 1,
    ) -> None:
        self.urls = urls
        self.admin_key = admin_key
        self.run = run
        self.rate = rate
        self.batch = batch
        self.events: dict[str, Published] = {}
        self.posts_in_flight = 0
        self.batches_in_flight = 0
        self.failed_posts = 0
        # Events a retried POST found already stored: their first POST's answer was lost.
        self.stored_unanswered = 0
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._keys = [f"MO/{index:03d}" for index in range(keys)]
        self._next_seq = dict.fromkeys(self._keys, 0)
        self._tasks_n = tasks
        self._random = random.Random(seed)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def acked(self) -> int:
        return sum(event.acked_at is not None for event in self.events.values())

    def start(self) -> None:
        self.started_at = time.time()
        for index in range(self._tasks_n):
            mine = self._keys[index :: self._tasks_n]
            url = self.urls[index % len(self.urls)]
            task = asyncio.create_task(self._publisher(url, mine), name=f"load-{index}")
            self._tasks.append(task)

    @property
    def stopping(self) -> bool:
        """Told to stop: no new POST starts."""
        return self._stop.is_set()

    async def stop(self) -> None:
        self._stop.set()
        try:
            for task in self._tasks:
                await task  # a failing publisher (a 4xx) fails the scenario here
        finally:
            for task in self._tasks:
                task.cancel()
            self.stopped_at = time.time()

    def _event(self, key: str) -> dict[str, Any]:
        seq = self._next_seq[key]
        self._next_seq[key] = seq + 1
        event_id = f"{self.run}-{key.replace('/', '')}-{seq}"
        self.events[event_id] = Published(event_id, SOURCE, key, seq, time.time())
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": SOURCE,
            "type": EVENT_TYPE,
            "subject": key,
            "datacontenttype": "application/json",
            "data": {"seq": seq, "run": self.run},
        }

    async def _publisher(self, url: str, keys: list[str]) -> None:
        share = self.rate / self._tasks_n  # events per second for this task
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=5.0) as client:
            single = True
            while not self._stop.is_set():
                began = time.monotonic()
                if single:
                    events = [self._event(self._random.choice(keys))]
                    body, media = orjson.dumps(events[0]), STRUCTURED_TYPE
                else:
                    size = self._random.randint(*self.batch)
                    # Several keys, each key's events in sequence order within the batch.
                    events = [self._event(self._random.choice(keys)) for _ in range(size)]
                    body, media = orjson.dumps(events), BATCH_TYPE
                single = not single
                await self._publish(client, events, body, media)
                pause = len(events) / share - (time.monotonic() - began)
                if pause > 0:
                    try:
                        async with asyncio.timeout(pause):
                            await self._stop.wait()
                    except TimeoutError:
                        pass

    async def _publish(
        self, client: httpx.AsyncClient, events: list[dict[str, Any]], body: bytes, media: str
    ) -> None:
        """Until acknowledged or stopped; the key's next events wait for this."""
        while True:
            self.posts_in_flight += 1
            self.batches_in_flight += media == BATCH_TYPE
            try:
                response = await client.post(
                    "/v1/events", content=body, headers={"Content-Type": media}
                )
            except httpx.HTTPError:
                response = None  # refused, reset or timed out: the outcome is unknown
            finally:
                self.posts_in_flight -= 1
                self.batches_in_flight -= media == BATCH_TYPE
            if response is not None and response.status_code in (200, 201):
                now = time.time()
                answers = response.json()["events"]
                assert [a["id"] for a in answers] == [e["id"] for e in events], answers
                for event, answer in zip(events, answers, strict=True):
                    self.stored_unanswered += bool(answer["duplicate"])
                    published = self.events[event["id"]]
                    self.events[event["id"]] = Published(
                        published.id,
                        published.source,
                        published.key,
                        published.seq,
                        published.sent_at,
                        now,
                        int(answer["position"]),
                    )
                return
            if response is not None and response.status_code < 500:
                raise AssertionError(
                    f"the API refused a valid request: {response.status_code} {response.text}"
                )
            self.failed_posts += 1
            if self._stop.is_set():
                return  # stays unacknowledged
            await asyncio.sleep(0.2)
