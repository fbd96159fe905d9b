"""kill -9 of a real hub process: every acknowledged event is delivered after a restart.

The hub runs in a subprocess (uvicorn serving ``create_app`` on a data directory) and the sink is
a ``Receiver`` in the test process. Events are published concurrently, the hub is SIGKILLed while
posts and deliveries are in flight, and a new process is started on the same data directory.
At-least-once: every event that got a 2xx must arrive; duplicates are allowed but carry the same
id (and ``Idempotency-Key``); nothing arrives that was never published.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from forgeline.testing import Receiver, Reply

pytestmark = pytest.mark.slow

LAUNCHER = (
    "import sys\n"
    "from pathlib import Path\n"
    "import uvicorn\n"
    "import forgeline\n"
    "import forgeline.api.app\n"
    "settings = forgeline.Settings.load(env={}, data_dir=Path(sys.argv[1]))\n"
    "uvicorn.run(forgeline.api.app.create_app(settings), host='127.0.0.1',"
    " port=int(sys.argv[2]), log_level='warning')\n"
)
SOURCE = "test/crash"
_ids = count(1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def new_event(**data: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"crash-{os.getpid()}-{time.time_ns()}-{next(_ids)}",
        "source": SOURCE,
        "type": "order.created.v1",
        "subject": f"SO/{next(_ids) % 7}",
        "datacontenttype": "application/json",
        "data": data or {"n": 1},
    }


class HubProcess:
    """One ``forgeline`` hub process on ``data_dir``; ``start`` waits for /readyz."""

    def __init__(self, data_dir: Path, logs: Path) -> None:
        self.data_dir = data_dir
        self.logs = logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.runs = 0

    async def start(self, timeout: float = 20.0) -> None:
        self.runs += 1
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with (self.logs / f"hub-{self.runs}.log").open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(self.data_dir), str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=1.0) as probe:
            while True:
                if self.proc.poll() is not None:
                    raise AssertionError(f"hub exited {self.proc.returncode}: {self.log_text()}")
                try:
                    if (await probe.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(f"hub not ready in {timeout}s: {self.log_text()}")
                await asyncio.sleep(0.05)

    def log_text(self) -> str:
        return (self.logs / f"hub-{self.runs}.log").read_text(errors="replace")[-4000:]

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.admin_key}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)


@asynccontextmanager
async def hub_process(tmp_path: Path) -> AsyncIterator[HubProcess]:
    hub = HubProcess(tmp_path / "hub", tmp_path)
    try:
        yield hub
    finally:
        hub.kill()


async def subscribe(hub: HubProcess, sink_url: str, policy: dict[str, Any]) -> None:
    body = {"name": "crash", "types": ["order.*"], "sink": {"url": sink_url}, "policy": policy}
    async with hub.client() as client:
        response = await client.post("/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text


class Publishers:
    """Tasks posting single events and batches until stopped or the hub goes away."""

    def __init__(self, hub: HubProcess, tasks: int = 4) -> None:
        self.hub = hub
        self.attempted: dict[str, dict[str, Any]] = {}  # every event ever sent
        self.acked: set[str] = set()  # events whose POST answered 2xx
        self.posts_in_flight = 0
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(tasks)]

    async def _run(self, index: int) -> None:
        async with self.hub.client() as client:
            round_ = 0
            while not self._stop.is_set():
                round_ += 1
                if round_ % 2:
                    events = [new_event(task=index, round=round_)]
                    content = orjson.dumps(events[0])
                    media = "application/cloudevents+json"
                else:
                    events = [new_event(task=index, round=round_, i=i) for i in range(10)]
                    content = orjson.dumps(events)
                    media = "application/cloudevents-batch+json"
                for event in events:
                    self.attempted[event["id"]] = event
                self.posts_in_flight += 1
                try:
                    response = await client.post(
                        "/v1/events", content=content, headers={"Content-Type": media}
                    )
                except httpx.HTTPError:
                    return  # the hub died under this request: outcome unknown
                finally:
                    self.posts_in_flight -= 1
                assert response.status_code in (200, 201), response.text
                self.acked.update(event["id"] for event in events)

    async def stop(self) -> None:
        self._stop.set()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def check_deliveries(receiver: Receiver, published: dict[str, dict[str, Any]]) -> None:
    """Nothing unpublished arrived; every copy of an event is that event, keyed by its id."""
    for got in receiver.received:
        event_id = got.event["id"]
        assert event_id in published, f"delivered an event never published: {event_id}"
        expected = published[event_id]
        assert {k: got.event[k] for k in expected} == expected
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert headers["idempotency-key"] == event_id


async def drained(hub: HubProcess) -> dict[str, int]:
    async with hub.client() as client:
        return (await client.get("/v1/subscriptions/crash")).json()["backlog"]


async def test_kill_9_while_publishing_and_delivering(tmp_path: Path) -> None:
    def script(path: str, event: dict[str, Any], seen: int) -> Reply:
        return Reply(204, delay=0.05 if hash(event["id"]) % 3 == 0 else 0.0)

    policy = {
        "retry": {"initial_delay": 0.05, "max_delay": 0.2, "jitter": 0, "max_attempts": 1000},
        "timeout": 5.0,
        "concurrency": 4,  # so a backlog builds up and deliveries are in flight at the kill
    }
    async with Receiver(script) as receiver, hub_process(tmp_path) as hub:
        await hub.start()
        await subscribe(hub, receiver.url("/sink"), policy)
        publishers = Publishers(hub)
        await until(lambda: len(publishers.acked) >= 300, 15, "300 acknowledged events")
        await until(lambda: publishers.posts_in_flight > 0, 5, "a post in flight")
        backlog_at_kill = len(publishers.acked - set(receiver.ids()))
        hub.kill()
        await publishers.stop()
        assert backlog_at_kill > 0, "nothing was left to deliver when the hub was killed"
        assert receiver.accepted, "nothing was delivered before the kill"

        acked = set(publishers.acked)
        await hub.start()
        await until(lambda: acked <= set(receiver.ids()), 25, "every acked event delivered")
        await asyncio.sleep(0.2)
        check_deliveries(receiver, publishers.attempted)
        backlog = await drained(hub)
        assert not backlog.get("dead"), backlog


async def test_kill_9_during_a_burst_of_retries(tmp_path: Path) -> None:
    def script(path: str, event: dict[str, Any], seen: int) -> Reply:
        # Every event fails its first attempt (slowly), then succeeds.
        return Reply(503, delay=0.02) if seen == 0 else Reply(204, delay=0.01)

    policy = {
        "retry": {"initial_delay": 0.1, "max_delay": 0.5, "jitter": 0, "max_attempts": 1000},
        "timeout": 5.0,
        "concurrency": 16,
        "ordering": "key",
    }
    async with Receiver(script) as receiver, hub_process(tmp_path) as hub:
        await hub.start()
        await subscribe(hub, receiver.url("/retrying"), policy)
        events = [new_event(n=i) for i in range(150)]
        async with hub.client() as client:
            for start in range(0, len(events), 50):
                response = await client.post("/v1/events", json=events[start : start + 50])
                assert response.status_code == 201, response.text
        acked = {event["id"] for event in events}

        # Mid-retry: some events succeeded on their retry, many are still failing or waiting.
        await until(lambda: len(receiver.accepted) >= 20, 15, "the first retried deliveries")
        assert len(set(receiver.ids())) < len(acked)
        hub.kill()
        delivered_before = set(receiver.ids())

        await hub.start()
        await until(lambda: acked <= set(receiver.ids()), 25, "every acked event delivered")
        await asyncio.sleep(0.2)
        check_deliveries(receiver, {event["id"]: event for event in events})
        assert delivered_before < set(receiver.ids())
        # Per key, the first successful deliveries come in publish order.
        first_seen: dict[str, list[int]] = {}
        done: set[str] = set()
        for got in receiver.accepted:
            if got.event["id"] not in done:
                done.add(got.event["id"])
                first_seen.setdefault(got.event["subject"], []).append(got.event["data"]["n"])
        for subject, order in first_seen.items():
            assert order == sorted(order), (subject, order)
        backlog = await drained(hub)
        assert not backlog.get("dead"), backlog
