"""Delivery end to end: the real HTTP API in front, a real loopback ``Receiver`` behind.

Every test publishes through ``POST /v1/events``, manages subscriptions and dead letters through
the admin API and observes what actually arrived at the sink. Retry delays are tiny and jitter is
off, so the schedule is fast and predictable.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate
from itertools import count, pairwise
from typing import Any

import httpx
import pytest

from forgeline import Hub
from forgeline.deliver import dispatcher
from forgeline.deliver.sinks import EXCERPT_LIMIT
from forgeline.exceptions import BackendError
from forgeline.log import RecentRecords
from forgeline.testing import Receiver, Reply

SOURCE = "test/delivery"
_ids = count(1)


def ev(type: str = "order.created.v1", subject: str | None = None, **data: Any) -> dict[str, Any]:
    """A structured CloudEvent with a unique id."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"evt-{time.time_ns()}-{next(_ids)}",
        "source": SOURCE,
        "type": type,
        "time": "2026-11-27T08:00:00Z",
        "datacontenttype": "application/json",
        "data": data or {"n": 1},
    }
    if subject is not None:
        body["subject"] = subject
    return body


def policy(
    *,
    initial_delay: float = 0.02,
    max_attempts: int = 5,
    multiplier: float = 1.0,
    max_delay: float = 0.05,
    max_age: float = 3600.0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "retry": {
            "initial_delay": initial_delay,
            "multiplier": multiplier,
            "max_delay": max_delay,
            "jitter": 0,
            "max_attempts": max_attempts,
            "max_age": max_age,
        },
        "timeout": 2.0,
        **extra,
    }


async def subscribe(
    client: httpx.AsyncClient,
    name: str,
    sink: dict[str, Any],
    *,
    types: tuple[str, ...] = ("order.*",),
    pol: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body = {"name": name, "types": list(types), "sink": sink, "policy": pol or policy()}
    response = await client.post("/v1/subscriptions", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def publish(client: httpx.AsyncClient, *events: dict[str, Any]) -> list[int]:
    """Publish (as one batch), answer the log positions."""
    response = await client.post("/v1/events", json=list(events))
    assert response.status_code == 201, response.text
    return [item["position"] for item in response.json()["events"]]


async def eventually(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def dead_letters(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/v1/deadletters", params=params)
    assert response.status_code == 200, response.text
    return response.json()["deadletters"]


async def wait_dead(client: httpx.AsyncClient, n: int, timeout: float = 5.0, **params: Any) -> list:
    deadline = time.monotonic() + timeout
    while True:
        found = await dead_letters(client, **params)
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} dead letters, expected {n}")
        await asyncio.sleep(0.02)


async def deadletter(client: httpx.AsyncClient, id: int) -> dict[str, Any]:
    response = await client.get(f"/v1/deadletters/{id}")
    assert response.status_code == 200, response.text
    return response.json()


async def backlog_empty(client: httpx.AsyncClient, name: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        backlog = (await client.get(f"/v1/subscriptions/{name}")).json()["backlog"]
        if not any(backlog.get(s) for s in ("pending", "retrying", "inflight")):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"backlog of {name} not drained: {backlog}")
        await asyncio.sleep(0.02)


async def metric(client: httpx.AsyncClient, subscription: str, outcome: str) -> float:
    text = (await client.get("/metrics")).text
    for line in text.splitlines():
        if (
            line.startswith("forgeline_deliveries_total{")
            and f'subscription="{subscription}"' in line
            and f'outcome="{outcome}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def spy_on_hand_backs(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The positions of the claims the dispatcher hands back, as its rounds record them."""
    handed_back: list[int] = []
    settle = hub.store.settle

    async def spy(owner: str, now: float, **round: Any) -> Any:
        handed_back.extend(claim.position for claim in round.get("released", ()))
        return await settle(owner, now, **round)

    monkeypatch.setattr(hub.store, "settle", spy)
    return handed_back


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the happy path -----------------------------------------------------------------------------


async def test_delivered_once_as_structured_cloudevents_with_headers_and_auth(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sinks = {
        "/bearer": {"auth": {"type": "bearer", "token": "tok-123"}},
        "/basic": {"auth": {"type": "basic", "username": "ann", "password": "s3cret"}},
        "/header": {"auth": {"type": "header", "name": "X-Api-Key", "value": "k-9"}},
    }
    for index, (path, extra) in enumerate(sinks.items()):
        sink = {"url": receiver.url(path), "headers": {"X-Plant": f"P{index}"}, **extra}
        await subscribe(client, f"happy{index}", sink)
    events = [ev(subject="MO/1", n=i) for i in range(3)]
    await publish(client, *events)
    for path in sinks:
        await receiver.wait_for(3, path=path)
    await asyncio.sleep(0.2)  # nothing more arrives: each event exactly once per sink

    for index, path in enumerate(sinks):
        got = [r for r in receiver.received if r.path == path]
        assert [r.event for r in got] == events  # the published JSON, in publish order
        for r in got:
            headers = lower(r.headers)
            assert headers["content-type"] == "application/cloudevents+json"
            assert headers["idempotency-key"] == r.event["id"]
            assert headers["x-plant"] == f"P{index}"
    auth = {path: lower(r.headers) for r in receiver.received for path in [r.path]}
    assert auth["/bearer"]["authorization"] == "Bearer tok-123"
    assert auth["/basic"]["authorization"] == "Basic " + base64.b64encode(b"ann:s3cret").decode()
    assert auth["/header"]["x-api-key"] == "k-9"
    assert "authorization" not in auth["/header"]


async def test_credentials_are_not_shown_by_the_api(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    sink = {"url": receiver.url("/x"), "auth": {"type": "bearer", "token": "tok-secret"}}
    created = await subscribe(client, "secret", sink)
    assert "tok-secret" not in str(created)
    assert "tok-secret" not in (await client.get("/v1/subscriptions/secret")).text


async def test_claims_that_outwaited_their_lease_budget_go_back_unattempted(
    client: httpx.AsyncClient, hub: Hub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lane claims ahead of its workers. With one delivery at a time to a sink that takes
    its time, the claims behind it wait longer than their lease leaves room for an attempt:
    they are handed back and claimed again with a fresh lease, never attempted on a lease
    that could run out mid-way (when another claim would send them a second time). Each event
    still arrives once, and no attempt is counted that was not made."""
    monkeypatch.setattr(dispatcher, "LEASE_MARGIN", 0.5)  # an attempt may start 0.25 s late
    monkeypatch.setattr(dispatcher, "_RECORDING", 0.25)
    handed_back = spy_on_hand_backs(hub, monkeypatch)
    receiver.script = lambda path, event, seen: Reply(delay=0.4)
    await subscribe(client, "slow", {"url": receiver.url("/slow")}, pol=policy(concurrency=1))
    positions = await publish(client, *(ev(n=i) for i in range(4)))
    await receiver.wait_for(4, path="/slow", timeout=15)
    await backlog_empty(client, "slow")

    assert sorted(r.event["data"]["n"] for r in receiver.received) == [0, 1, 2, 3]
    assert handed_back and set(handed_back) <= set(positions[1:])
    for position in positions:
        (delivery,) = await hub.store.deliveries_of_event(position)
        assert (delivery.state, delivery.attempts) == ("delivered", 1)


async def test_a_lane_of_slow_attempts_claims_no_further_ahead_than_its_leases_allow(
    client: httpx.AsyncClient, hub: Hub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its first claims are made before anything is known of the sink, and the ones that
    outwait their lease budget go back; after that the lane claims only as far ahead as its
    typical attempt leaves room for, and nothing more is handed back (with a fixed depth of
    four times the concurrency, every wave would hand some back)."""
    monkeypatch.setattr(dispatcher, "LEASE_MARGIN", 1.0)  # an attempt may start 0.6 s late
    monkeypatch.setattr(dispatcher, "_RECORDING", 0.4)
    monkeypatch.setattr(dispatcher, "_SLOW_FOR", 0.0)  # no pause after a hand-back
    handed_back = spy_on_hand_backs(hub, monkeypatch)
    receiver.script = lambda path, event, seen: Reply(delay=0.3)
    await subscribe(client, "steady", {"url": receiver.url("/steady")}, pol=policy(concurrency=2))
    await publish(client, *(ev(n=i) for i in range(24)))
    await receiver.wait_for(24, path="/steady", timeout=20)
    await backlog_empty(client, "steady")
    assert len(handed_back) <= 4, handed_back  # the first wave's overshoot at most


async def test_claims_whose_events_could_not_be_read_are_handed_back(
    client: httpx.AsyncClient, hub: Hub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimed on disk, then the log read for their events fails: the claims go back with the
    next round instead of waiting out their lease, and count no attempt."""
    records = hub.dispatcher._records
    failures = [BackendError("the log is away")]

    async def flaky(positions: list[int]) -> Any:
        if failures:
            raise failures.pop()
        return await records(positions)

    monkeypatch.setattr(hub.dispatcher, "_records", flaky)
    await subscribe(client, "unread", {"url": receiver.url("/unread")})
    positions = await publish(client, *(ev(n=i) for i in range(3)))
    await receiver.wait_for(3, path="/unread", timeout=8)  # a lease would last 17 s
    await backlog_empty(client, "unread")
    assert not failures
    for position in positions:
        (delivery,) = await hub.store.deliveries_of_event(position)
        assert (delivery.state, delivery.attempts) == ("delivered", 1)


async def test_claims_past_the_dispatchers_cache_are_read_from_the_log_in_runs(
    client: httpx.AsyncClient, hub: Hub, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst runs the router past the records the dispatcher keeps: the claims that missed
    them are read from the log, several rounds' worth at a time, and each event still goes
    out once with its own content."""
    # Smaller than the burst, larger than a run read ahead (as 4,096 is beside 1,024).
    monkeypatch.setattr(hub.dispatcher, "_recent", RecentRecords(40))
    reads: list[str] = []
    log = hub.log

    class Counted:  # the dispatcher's view of the log, counting its trips
        async def read(self, after: int = 0, limit: int = 500) -> Any:
            reads.append("read")
            return await log.read(after, limit)

        async def get_many(self, positions: Any) -> Any:
            reads.append("get_many")
            return await log.get_many(positions)

    monkeypatch.setattr(hub.dispatcher, "_log", Counted())
    # Four ahead at most: many rounds, each of which could make a trip of its own.
    monkeypatch.setattr(dispatcher, "_AHEAD", 4)
    await subscribe(client, "burst", {"url": receiver.url("/burst")}, pol=policy(concurrency=1))
    await publish(client, *(ev(n=i) for i in range(120)))
    await receiver.wait_for(120, path="/burst", timeout=15)
    await backlog_empty(client, "burst")

    assert sorted(r.event["data"]["n"] for r in receiver.received) == list(range(120))
    claims = 120 // 4  # one worker claims four ahead at most: at least 30 rounds claimed
    # A run at a time: far fewer trips than rounds.
    assert 0 < len(reads) < claims, reads


async def test_a_rate_limit_holds_when_a_slow_sink_speeds_up(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Paced at 4 attempts a second: while the first attempts hang, no claims pile up behind
    them to go out at once when they end - the attempts stay spaced."""
    receiver.script = lambda path, event, seen: Reply(delay=1.5 if event["data"]["n"] < 4 else 0)
    pol = policy(concurrency=4, rate_limit=4.0) | {"timeout": 5.0}
    await subscribe(client, "paced", {"url": receiver.url("/paced")}, pol=pol)
    await publish(client, *(ev(n=i) for i in range(10)))
    await receiver.wait_for(10, path="/paced", timeout=15)
    # Arrivals of the fast ones (the slow ones answer late but arrive paced too).
    arrivals = sorted(r.at for r in receiver.received)
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert min(gaps) > 0.1, [round(gap, 3) for gap in gaps]


@pytest.mark.parametrize("busy", [{"concurrency": 1}, {"rate_limit": 20.0}], ids=["one", "paced"])
async def test_a_round_claims_only_for_subscriptions_that_may_have_work(
    client: httpx.AsyncClient,
    hub: Hub,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    busy: dict[str, Any],
) -> None:
    """A busy subscription's rounds do not query every idle one: an idle lane is claimed for
    when it was routed to, when its outcomes were recorded, or by the sweep once a second.
    A paced subscription's next slot wakes the dispatcher for it alone."""
    for i in range(5):
        await subscribe(client, f"idle-{i}", {"url": receiver.url("/idle")}, types=("idle.*",))
    await subscribe(client, "busy", {"url": receiver.url("/busy")}, pol=policy(**busy))
    asked: list[str] = []
    settle = hub.store.settle

    async def spy(owner: str, now: float, **round: Any) -> Any:
        asked.extend(request.subscription.spec.name for request in round.get("claims", ()))
        return await settle(owner, now, **round)

    monkeypatch.setattr(hub.store, "settle", spy)
    # Many rounds for the busy lane, each a chance to query the idle ones needlessly.
    monkeypatch.setattr(dispatcher, "_AHEAD", 4)
    started = time.monotonic()
    await publish(client, *(ev(n=i) for i in range(40)))
    await receiver.wait_for(40, path="/busy", timeout=10)
    seconds = time.monotonic() - started

    assert asked.count("busy") >= 10  # four at a time at most (one worker, claimed ahead)
    idle = [name for name in asked if name.startswith("idle-")]
    # Once each for the wake of the last subscription made, then once per sweep.
    assert len(idle) <= 5 * (2 + int(seconds)), (len(idle), asked.count("busy"), seconds)
    assert not [r for r in receiver.received if r.path == "/idle"]


async def test_a_retry_falls_due_while_other_subscriptions_keep_the_dispatcher_busy(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """Nothing hints at a retry coming due: the sweep claims it, busy dispatcher or not."""
    receiver.script = lambda path, event, seen: Reply(
        delay=0.2 if path == "/busy" else 0, status=503 if path == "/later" and not seen else 204
    )
    await subscribe(client, "busy", {"url": receiver.url("/busy")}, pol=policy(concurrency=1))
    await subscribe(
        client,
        "later",
        {"url": receiver.url("/later")},
        types=("later.*",),
        pol=policy(initial_delay=0.3, max_delay=0.3),
    )
    await publish(client, *(ev(n=i) for i in range(20)))  # 4 s of attempts, one at a time
    await publish(client, ev("later.created.v1"))
    started = time.monotonic()
    await receiver.wait_for(1, path="/later", timeout=3)  # the second attempt, a 204
    assert time.monotonic() - started < 2.5  # due after 0.3 s, claimed within a sweep
    assert len([r for r in receiver.received if r.path == "/busy"]) < 20  # still busy


# -- retries ------------------------------------------------------------------------------------


async def test_5xx_is_retried_with_the_same_idempotency_key_until_delivered(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = lambda path, event, seen: Reply(503 if seen < 2 else 204)
    await subscribe(client, "flaky", {"url": receiver.url("/flaky")})
    events = [ev(n=1), ev(n=2)]
    await publish(client, *events)
    await receiver.wait_for(2)
    await asyncio.sleep(0.15)

    assert len(receiver.received) == 6
    for r in receiver.received:
        assert lower(r.headers)["idempotency-key"] == r.event["id"]
    assert sorted(receiver.ids()) == sorted(e["id"] for e in events)

    # The attempts are recorded: delivery ids in a fresh hub are 1 and 2.
    for delivery_id in (1, 2):
        body = await deadletter(client, delivery_id)
        assert body["state"] == "delivered"
        assert body["attempts"] == 3
        outcomes = [(a["attempt"], a["outcome"], a["status"]) for a in body["history"]]
        assert outcomes == [(1, "retry", 503), (2, "retry", 503), (3, "delivered", 204)]
    assert await metric(client, "flaky", "retry") == 4
    assert await metric(client, "flaky", "delivered") == 2


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_429_retry_after_is_honoured(
    client: httpx.AsyncClient, receiver: Receiver, form: str
) -> None:
    def script(path: str, event: dict[str, Any], seen: int) -> Reply:
        if seen:
            return Reply(204)
        value = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)
        return Reply(429, headers={"Retry-After": value})

    receiver.script = script
    await subscribe(client, "limited", {"url": receiver.url()}, pol=policy(max_delay=10))
    await publish(client, ev())
    await receiver.wait_for(1, timeout=5)
    first, second = receiver.received
    # An HTTP date has a resolution of one second: "now + 2 s" means at least 1 s from now.
    assert 0.95 <= second.at - first.at < 3.0


async def test_retry_after_is_capped_at_max_delay(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = lambda path, event, seen: (
        Reply(503, headers={"Retry-After": "3600"}) if seen == 0 else Reply(204)
    )
    await subscribe(client, "capped", {"url": receiver.url()}, pol=policy(max_delay=0.2))
    await publish(client, ev())
    await receiver.wait_for(1, timeout=3)
    first, second = receiver.received
    assert 0.15 <= second.at - first.at < 1.5


@pytest.mark.parametrize("name", ["Idempotency-Key", "content-type", "Authorization"])
async def test_sink_headers_cannot_override_the_delivery_contract(
    client: httpx.AsyncClient, hub: Hub, name: str
) -> None:
    """README: every attempt carries ``Idempotency-Key: <event id>`` and is structured JSON,
    so a sink header that would replace them is refused when the subscription is created."""
    spec = {
        "name": "overriding",
        "types": ["production.*"],
        "sink": {"url": "http://127.0.0.1:9/", "headers": {name: "static", "X-Ok": "yes"}},
    }
    response = await client.post("/v1/subscriptions", json=spec)
    assert response.status_code == 422, response.text
    assert "set by the hub" in response.text
    assert await hub.store.list_subscriptions() == []


async def test_hanging_sink_times_out_is_retried_then_dead_lettered(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = lambda path, event, seen: Reply(204, delay=1.0)
    pol = policy(max_attempts=3)
    pol["timeout"] = 0.2
    await subscribe(client, "hanging", {"url": receiver.url("/slow")}, pol=pol)
    published = ev()
    await publish(client, published)
    [dead] = await wait_dead(client, 1)
    assert dead["event_id"] == published["id"]
    assert dead["attempts"] == 3
    body = await deadletter(client, dead["id"])
    assert body["state"] == "dead"
    assert body["event"] == published
    history = body["history"]
    assert [a["outcome"] for a in history] == ["retry", "retry", "dead"]
    for a in history:
        assert "0.2" in a["error"], a
        assert a["status"] is None
        assert 150 <= a["duration_ms"] < 900
    assert len(receiver.received) == 3


async def test_sink_down_is_dead_lettered_with_connection_errors(
    client: httpx.AsyncClient,
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/down"
    await subscribe(client, "down", {"url": url}, pol=policy(max_attempts=3))
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    body = await deadletter(client, dead["id"])
    assert len(body["history"]) == 3
    for a in body["history"]:
        assert a["status"] is None
        assert "connect" in a["error"].lower(), a
    assert body["last_error"] == body["history"][-1]["error"]


@pytest.mark.parametrize("status", [400, 404, 422, 302])
async def test_permanent_failures_are_dead_lettered_at_once(
    client: httpx.AsyncClient, receiver: Receiver, status: int
) -> None:
    receiver.script = lambda path, event, seen: (
        Reply(status, headers={"Location": receiver.url("/elsewhere")})
        if path == "/sink"
        else Reply(204)
    )
    await subscribe(client, "strict", {"url": receiver.url("/sink")})
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    await asyncio.sleep(0.15)  # nothing retried meanwhile
    assert [r.path for r in receiver.received] == ["/sink"]  # one attempt; no redirect followed
    body = await deadletter(client, dead["id"])
    assert body["attempts"] == 1
    assert [(a["outcome"], a["status"]) for a in body["history"]] == [("dead", status)]
    assert body["last_status"] == status


async def test_response_excerpt_is_capped(client: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.script = lambda path, event, seen: Reply(500, body="E" * 10_000)
    await subscribe(client, "verbose", {"url": receiver.url()}, pol=policy(max_attempts=1))
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    [attempt] = (await deadletter(client, dead["id"]))["history"]
    assert attempt["status"] == 500
    assert 0 < len(attempt["response"]) <= EXCERPT_LIMIT
    assert set(attempt["response"]) == {"E"}


async def test_max_age_kills_before_max_attempts(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = lambda path, event, seen: Reply(503)
    pol = policy(initial_delay=0.05, max_delay=0.05, max_attempts=1000, max_age=0.3)
    await subscribe(client, "aging", {"url": receiver.url()}, pol=pol)
    await publish(client, ev())
    [dead] = await wait_dead(client, 1, timeout=3)
    assert 2 <= dead["attempts"] <= 10
    assert (await deadletter(client, dead["id"]))["history"][-1]["outcome"] == "dead"


# -- ordering -----------------------------------------------------------------------------------


def _by_subject(receiver: Receiver) -> dict[str, list[int]]:
    order: dict[str, list[int]] = {}
    for r in receiver.accepted:
        order.setdefault(r.event["subject"], []).append(r.event["data"]["seq"])
    return order


async def test_key_ordering_holds_per_subject_while_other_keys_progress(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    released = asyncio.Event()

    def script(path: str, event: dict[str, Any], seen: int) -> Reply:
        subject, seq = event["subject"], event["data"]["seq"]
        if subject == "stuck" and seq == 0 and not released.is_set():
            return Reply(503)  # this key is blocked by retries until released
        if seq % 2 == 0 and seen == 0:
            return Reply(503)  # a first attempt fails for every other event
        return Reply(204)

    receiver.script = script
    pol = policy(max_attempts=1000, ordering="key", concurrency=16)
    await subscribe(client, "ordered", {"url": receiver.url()}, pol=pol)
    subjects = ["A", "B", "C", "stuck"]
    events = [ev(subject=s, seq=i) for i in range(5) for s in subjects]
    await publish(client, *events[:8])
    await publish(client, *events[8:])

    await receiver.wait_for(15)  # every other key completes while "stuck" is retrying
    order = _by_subject(receiver)
    assert "stuck" not in order
    for s in ("A", "B", "C"):
        assert order[s] == list(range(5)), order

    released.set()
    await receiver.wait_for(20)
    assert _by_subject(receiver)["stuck"] == list(range(5))


@pytest.mark.parametrize(
    ("on_dead", "action"), [("block", "replay"), ("block", "discard"), ("skip", None)]
)
async def test_dead_key_blocks_or_skips(
    client: httpx.AsyncClient, receiver: Receiver, on_dead: str, action: str | None
) -> None:
    fixed = asyncio.Event()

    def script(path: str, event: dict[str, Any], seen: int) -> Reply:
        if event["subject"] == "K" and event["data"]["seq"] == 0 and not fixed.is_set():
            return Reply(422, body="bad payload")
        return Reply(204)

    receiver.script = script
    pol = policy(ordering="key", on_dead=on_dead)
    await subscribe(client, "keyed", {"url": receiver.url()}, pol=pol)
    events = [ev(subject=s, seq=i) for i in range(3) for s in ("K", "L")]
    await publish(client, *events)
    [dead] = await wait_dead(client, 1)
    assert dead["event_id"] == events[0]["id"]
    await receiver.wait_for(3)  # L's events are not held by K
    await asyncio.sleep(0.3)
    order = _by_subject(receiver)
    assert order["L"] == [0, 1, 2]

    if on_dead == "skip":
        assert order["K"] == [1, 2]
        return
    assert "K" not in order  # held behind the dead letter
    fixed.set()
    if action == "replay":
        response = await client.post(f"/v1/deadletters/{dead['id']}/replay")
        assert response.status_code == 202, response.text
        await receiver.wait_for(6)
        assert _by_subject(receiver)["K"] == [0, 1, 2]
    else:
        response = await client.post(
            f"/v1/deadletters/{dead['id']}/discard", json={"reason": "obsolete"}
        )
        assert response.status_code == 200, response.text
        await receiver.wait_for(5)
        await asyncio.sleep(0.1)
        assert _by_subject(receiver)["K"] == [1, 2]


# -- dead letters -------------------------------------------------------------------------------


async def test_dead_letters_list_show_replay_discard(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    healed: set[str] = set()
    receiver.script = lambda path, event, seen: Reply(
        204 if event["id"] in healed else 400, body="nope"
    )
    sub = await subscribe(client, "dl", {"url": receiver.url()})
    created = [ev("order.created.v1", n=i) for i in range(2)]
    cancelled = [ev("order.cancelled.v1", n=i) for i in range(2)]
    await publish(client, *created, *cancelled)
    dead = await wait_dead(client, 4)
    by_event = {d["event_id"]: d for d in dead}
    assert set(by_event) == {e["id"] for e in created + cancelled}
    assert len(await dead_letters(client, subscription="dl")) == 4
    assert len(await dead_letters(client, subscription=sub["id"])) == 4
    assert {d["event_id"] for d in await dead_letters(client, type="order.cancelled.*")} == {
        e["id"] for e in cancelled
    }
    shown = await deadletter(client, by_event[created[0]["id"]]["id"])
    assert shown["event"] == created[0]
    assert shown["history"][0]["response"] == "nope"
    assert shown["reason"]

    # Replay one.
    healed.update(e["id"] for e in created + cancelled)
    one = by_event[created[0]["id"]]["id"]
    response = await client.post(f"/v1/deadletters/{one}/replay")
    assert response.status_code == 202
    assert response.json() == {"replayed": 1}
    await receiver.wait_for(1)
    await eventually(lambda: len(receiver.accepted) == 1)
    assert receiver.ids() == [created[0]["id"]]
    # Replaying a delivery that is not dead is a conflict.
    assert (await client.post(f"/v1/deadletters/{one}/replay")).status_code == 409
    assert (
        await client.post(f"/v1/deadletters/{one}/discard", json={"reason": "x"})
    ).status_code == 409

    # Replay by filter.
    response = await client.post("/v1/deadletters/replay", json={"type": "order.cancelled.*"})
    assert response.json() == {"replayed": 2}
    await receiver.wait_for(3)
    assert set(receiver.ids()) == {created[0]["id"]} | {e["id"] for e in cancelled}

    # Discard the last one with a reason: gone from the list, never delivered.
    last = by_event[created[1]["id"]]["id"]
    response = await client.post(f"/v1/deadletters/{last}/discard", json={"reason": "obsolete"})
    assert response.json() == {"discarded": 1}
    assert await dead_letters(client) == []
    gone = await deadletter(client, last)
    assert (gone["state"], gone["reason"]) == ("discarded", "obsolete")
    await asyncio.sleep(0.2)
    assert created[1]["id"] not in receiver.ids()
    assert (await client.post(f"/v1/deadletters/{last}/replay")).status_code == 409


async def test_a_replayed_dead_letter_gets_a_fresh_round_of_attempts(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = lambda path, event, seen: Reply(503, body=f"attempt {seen + 1}")
    await subscribe(client, "rounds", {"url": receiver.url()}, pol=policy(max_attempts=2))
    await publish(client, ev())
    [dead] = await wait_dead(client, 1)
    assert dead["attempts"] == 2
    response = await client.post(f"/v1/deadletters/{dead['id']}/replay")
    assert response.json() == {"replayed": 1}
    await eventually(lambda: len(receiver.received) == 4)
    [dead] = await wait_dead(client, 1)
    body = await deadletter(client, dead["id"])
    assert body["attempts"] == 4
    assert [(a["attempt"], a["outcome"]) for a in body["history"]] == [
        (1, "retry"),
        (2, "dead"),
        (3, "retry"),
        (4, "dead"),
    ]
    assert [a["response"] for a in body["history"]] == [f"attempt {n}" for n in range(1, 5)]
    assert await metric(client, "rounds", "dead") == 2
    assert await metric(client, "rounds", "retry") == 2


async def test_bulk_discard_by_filter(client: httpx.AsyncClient, receiver: Receiver) -> None:
    receiver.script = lambda path, event, seen: Reply(400)
    await subscribe(client, "bulk", {"url": receiver.url()})
    await publish(client, ev("order.created.v1"), ev("order.cancelled.v1"))
    await wait_dead(client, 2)
    response = await client.post(
        "/v1/deadletters/discard", json={"subscription": "bulk", "type": "order.created.*"}
    )
    assert response.status_code == 422  # a reason is required
    response = await client.post(
        "/v1/deadletters/discard",
        json={"subscription": "bulk", "type": "order.created.*", "reason": "cleanup"},
    )
    assert response.json() == {"discarded": 1}
    [left] = await dead_letters(client)
    assert left["event_type"] == "order.cancelled.v1"


# -- replay of the log --------------------------------------------------------------------------


async def test_replay_a_log_range_by_position_and_by_time(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(client, "replayed", {"url": receiver.url()})
    first = [ev("order.created.v1", n=1), ev("order.cancelled.v1", n=2), ev(n=3)]
    positions = await publish(client, *first)
    await asyncio.sleep(0.05)
    boundary = datetime.now(UTC)
    await asyncio.sleep(0.05)
    second = [ev("order.created.v1", n=4), ev("order.cancelled.v1", n=5), ev(n=6)]
    positions += await publish(client, *second)
    events = first + second
    await receiver.wait_for(6)
    await backlog_empty(client, "replayed")  # recorded, not only received: open ones are skipped
    assert len(receiver.accepted) == 6

    # By position: (after, until] = positions 2..4 of the six.
    response = await client.post(
        "/v1/subscriptions/replayed/replay", json={"after": positions[0], "until": positions[3]}
    )
    assert response.status_code == 202, response.text
    assert response.json()["scheduled"] == 3
    await eventually(lambda: len(receiver.accepted) == 9)
    again = receiver.ids()[6:]
    assert again == [e["id"] for e in events[1:4]]  # same ids, in log order

    # By time, with a type filter: only the cancelled event of the second batch.
    response = await client.post(
        "/v1/subscriptions/replayed/replay",
        json={"since": boundary.isoformat(), "type": "order.cancelled.*"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["scheduled"] == 1
    await eventually(lambda: len(receiver.accepted) == 10)
    assert receiver.ids()[-1] == second[1]["id"]
    await asyncio.sleep(0.1)
    assert len(receiver.accepted) == 10
    assert {r.event["id"]: r.event for r in receiver.accepted}[second[1]["id"]] == second[1]


async def test_new_subscription_gets_only_new_events(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    old = [ev(n=i) for i in range(3)]
    await publish(client, *old)
    await subscribe(client, "late", {"url": receiver.url()})
    new = ev(n=99)
    await publish(client, new)
    await receiver.wait_for(1)
    await asyncio.sleep(0.2)
    assert receiver.ids() == [new["id"]]

    response = await client.post("/v1/subscriptions/late/replay", json={"after": 0})
    assert response.json()["scheduled"] == 4
    await receiver.wait_for(4)
    assert set(receiver.ids()) == {e["id"] for e in [*old, new]}


# -- "publish a new event" sinks ----------------------------------------------------------------


async def test_publish_sink_appends_a_derived_event_once(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    await subscribe(
        client,
        "deriver",
        {"publish": {"type": "order.derived.v1", "source": "forgeline/route"}},
        types=("order.created.*",),
    )
    await subscribe(client, "watch", {"url": receiver.url()}, types=("order.derived.*",))
    originals = [ev("order.created.v1", subject="SO/1", n=1), ev("order.created.v1", n=2)]
    await publish(client, *originals)
    await receiver.wait_for(2)
    derived = {r.event["causationid"]: r.event for r in receiver.accepted}
    assert set(derived) == {e["id"] for e in originals}
    for original in originals:
        d = derived[original["id"]]
        assert d["type"] == "order.derived.v1"
        assert d["source"] == "forgeline/route"
        assert d["id"] != original["id"]
        assert d["data"] == original["data"]
        assert d.get("subject") == original.get("subject")
        assert d["correlationid"] == original["id"]

    # Delivering the originals to the publish sink again appends nothing new.
    response = await client.post("/v1/subscriptions/deriver/replay", json={"after": 0})
    assert response.json()["scheduled"] == 2
    await backlog_empty(client, "deriver")
    listed = (await client.get("/v1/events", params={"type": "order.derived.*"})).json()
    assert len(listed["events"]) == 2
    await asyncio.sleep(0.2)
    assert len(receiver.accepted) == 2
