"""Rate limits: one GCRA contract run against the in-process and the Redis limiter, then what
only Redis does (a budget shared by API processes, outages), the rule table and the headers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from forgeline.exceptions import BackendUnavailable, ConfigError
from forgeline.security.ratelimit import (
    Decision,
    Limit,
    MemoryLimiter,
    RateLimiter,
    RateRule,
    RateRules,
    RedisLimiter,
    limit_headers,
    open_limiter,
)
from tests.services import require

REDIS_URL = "redis://127.0.0.1:6379/0"
LOGGER = "forgeline.security.ratelimit"


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    name = f"forgeline-test:{uuid.uuid4().hex}:"
    yield name
    with contextlib.suppress(OSError, RedisConnectionError):
        async with Redis.from_url(REDIS_URL) as redis:
            keys = [key async for key in redis.scan_iter(match=f"{name}*")]
            if keys:
                await redis.delete(*keys)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(params=["memory", "redis"])
async def limiter(
    request: pytest.FixtureRequest, clock: FakeClock, prefix: str
) -> AsyncIterator[RateLimiter]:
    if request.param == "memory":
        yield MemoryLimiter(clock=clock)
        return
    require("redis")
    async with RedisLimiter(REDIS_URL, clock=clock, prefix=prefix) as redis_limiter:
        yield redis_limiter


# --- the contract: both limiters decide alike, to the microsecond ------------------------


async def test_a_burst_is_allowed_then_refused_with_the_exact_wait(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limit = Limit(rate=2, burst=3)  # one every 0.5 s, three at once
    decisions = [await limiter.hit("mes-line-1", limit) for _ in range(3)]
    assert [(d.allowed, d.remaining) for d in decisions] == [(True, 2), (True, 1), (True, 0)]
    assert decisions[-1].reset_after == pytest.approx(1.5)

    refused = await limiter.hit("mes-line-1", limit)
    assert refused == Decision(allowed=False, remaining=0, retry_after=0.5, reset_after=1.5)

    clock.advance(0.499)
    assert not (await limiter.hit("mes-line-1", limit)).allowed
    clock.advance(0.001)
    assert (await limiter.hit("mes-line-1", limit)).allowed


async def test_refused_requests_cost_nothing(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = Limit(rate=1, burst=1)
    assert (await limiter.hit("partner-acme", limit)).allowed
    for _ in range(20):  # a client hammering while refused does not push its wait further
        assert (await limiter.hit("partner-acme", limit)).retry_after == pytest.approx(1.0)
    clock.advance(1.0)
    assert (await limiter.hit("partner-acme", limit)).allowed


async def test_the_sustained_rate_is_exactly_the_rate(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    limit = Limit(rate=10, burst=5)
    start = clock.now
    allowed = 0
    for step in range(1001):  # 100 attempts a second for 10 s
        clock.now = start + step / 100
        allowed += (await limiter.hit("plant-app", limit)).allowed
    assert allowed == 5 + 10 * 10  # the burst, then exactly 10 a second


async def test_keys_have_independent_budgets(limiter: RateLimiter) -> None:
    limit = Limit(rate=1, burst=2)
    for _ in range(2):
        assert (await limiter.hit("svc-mes", limit)).allowed
    assert not (await limiter.hit("svc-mes", limit)).allowed
    fresh = await limiter.hit("svc-wms", limit)
    assert fresh.allowed and fresh.remaining == 1


async def test_a_rested_bucket_is_full_again(limiter: RateLimiter, clock: FakeClock) -> None:
    limit = Limit(rate=4, burst=8)
    for _ in range(8):
        await limiter.hit("svc-qms", limit)
    clock.advance(2.0)  # burst / rate
    rested = await limiter.hit("svc-qms", limit)
    assert (rested.allowed, rested.remaining) == (True, 7)


# --- in process: bounded memory -------------------------------------------------------------


async def test_memory_follows_the_callers_in_use_not_the_callers_seen(
    clock: FakeClock,
) -> None:
    limiter = MemoryLimiter(clock=clock)
    limit = Limit(rate=1, burst=1)  # each caller's bucket is busy for 1 s
    for n in range(10_000):  # 100 new callers a second for 100 s
        assert (await limiter.hit(f"10.1.{n // 256}.{n % 256}", limit)).allowed
        clock.advance(0.01)
        assert len(limiter) <= 101


async def test_a_long_busy_bucket_does_not_pin_idle_ones(clock: FakeClock) -> None:
    limiter = MemoryLimiter(clock=clock)
    strict = Limit(rate=0.0001, burst=1, name="strict")  # busy for 10,000 s after one request
    assert (await limiter.hit("token-guesser", strict)).allowed
    for n in range(10_000):
        await limiter.hit(f"10.1.{n // 256}.{n % 256}", Limit(rate=1, burst=1))
        clock.advance(0.01)
        assert len(limiter) <= MemoryLimiter.SWEEP_FLOOR + 1
    still_busy = await limiter.hit("token-guesser", strict)  # eviction changed no decision
    assert not still_busy.allowed
    assert still_busy.retry_after == pytest.approx(10_000 - 100)


async def test_memory_is_capped_by_evicting_the_least_recently_used(clock: FakeClock) -> None:
    limiter = MemoryLimiter(clock=clock, max_keys=3)
    limit = Limit(rate=0.001, burst=1)  # busy for 1,000 s
    for key in ("a", "b", "c", "d"):
        assert (await limiter.hit(key, limit)).allowed
    assert len(limiter) == 3
    assert not (await limiter.hit("b", limit)).allowed  # kept, and now the most recent
    assert not (await limiter.hit("d", limit)).allowed
    # The cap's price: the forgotten bucket starts full again.
    assert (await limiter.hit("a", limit)).allowed
    assert (await limiter.hit("c", limit)).allowed  # the least recently used when "a" came


# --- Redis: one budget for every API process -----------------------------------------------


async def test_two_api_processes_share_one_budget(prefix: str) -> None:
    require("redis")
    limit = Limit(rate=0.001, burst=5)  # 5 now, then one every 1,000 s: no refill in the test
    async with (
        RedisLimiter(REDIS_URL, prefix=prefix) as api_1,
        RedisLimiter(REDIS_URL, prefix=prefix) as api_2,
    ):
        first = [await api_1.hit("partner-acme", limit) for _ in range(3)]
        second = [await api_2.hit("partner-acme", limit) for _ in range(2)]
        assert [d.remaining for d in first + second] == [4, 3, 2, 1, 0]
        for api in (api_1, api_2):
            refused = await api.hit("partner-acme", limit)
            assert not refused.allowed
            assert 999 < refused.retry_after <= 1000


async def test_buckets_expire_in_redis_when_they_are_full_again(
    prefix: str, clock: FakeClock
) -> None:
    require("redis")
    async with (
        RedisLimiter(REDIS_URL, clock=clock, prefix=prefix) as limiter,
        Redis.from_url(REDIS_URL) as redis,
    ):
        for _ in range(3):
            await limiter.hit("svc-mes", Limit(rate=1, burst=5))
        ttl = await redis.pttl(f"{prefix}svc-mes")
        assert 2_900 < ttl <= 3_000


async def test_a_forgotten_script_is_sent_again(prefix: str, clock: FakeClock) -> None:
    require("redis")
    limit = Limit(rate=1, burst=2)
    async with (
        RedisLimiter(REDIS_URL, clock=clock, prefix=prefix) as limiter,
        Redis.from_url(REDIS_URL) as redis,
    ):
        assert (await limiter.hit("svc-mes", limit)).remaining == 1
        await redis.script_flush()  # what a Redis restart does to cached scripts
        assert (await limiter.hit("svc-mes", limit)).remaining == 0
        assert not (await limiter.hit("svc-mes", limit)).allowed


# --- Redis down: the configured mode, logged once -----------------------------------------


@pytest.mark.parametrize("secret_at", ["user info", "query"])
async def test_redis_down_limits_in_process_by_default_and_logs_once(
    caplog: pytest.LogCaptureFixture, secret_at: str
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    port = _free_port()
    url = (
        f"redis://:hunter2@127.0.0.1:{port}/0"
        if secret_at == "user info"
        else f"redis://127.0.0.1:{port}/0?password=hunter2"
    )
    async with RedisLimiter(url, probe_every=0) as limiter:
        limit = Limit(rate=0.001, burst=3)
        decisions = [await limiter.hit("partner-acme", limit) for _ in range(10)]
        assert [d.allowed for d in decisions] == [True] * 3 + [False] * 7
        assert limiter.degraded
    outage_logs = [r for r in caplog.records if r.name == LOGGER]
    assert len(outage_logs) == 1
    assert "unreachable" in outage_logs[0].getMessage()
    assert "hunter2" not in outage_logs[0].getMessage()


async def test_redis_down_fails_closed_when_configured() -> None:
    async with RedisLimiter(f"redis://127.0.0.1:{_free_port()}/0", on_outage="closed") as limiter:
        with pytest.raises(BackendUnavailable) as refused:
            await limiter.hit("partner-acme", Limit(rate=100, burst=100))
        assert refused.value.status == 503
        # The problem body carries the detail: no driver message, no address.
        assert "127.0.0.1" not in refused.value.detail
        assert "Error" not in refused.value.detail


class RedisProxy:
    """A TCP relay in front of the real Redis that the test can cut and restore."""

    def __init__(self) -> None:
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    require("redis")
    caplog.set_level(logging.INFO, logger=LOGGER)
    proxy = RedisProxy()
    await proxy.start()
    limit = Limit(rate=0.001, burst=100)
    async with RedisLimiter(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, probe_every=0
    ) as limiter:
        assert (await limiter.hit("svc-mes", limit)).remaining == 99  # shared, in Redis
        await proxy.cut()
        for _ in range(5):
            assert (await limiter.hit("svc-mes", limit)).allowed  # the local budget
        assert limiter.degraded
        await proxy.start()
        back = await limiter.hit("svc-mes", limit)
        assert back.remaining == 98  # the shared budget again, where it was left
        assert not limiter.degraded
        await proxy.cut()
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2
    assert "unreachable" in messages[0]
    assert "is back" in messages[1]


# --- choosing a limiter ---------------------------------------------------------------------


async def test_open_limiter_picks_the_backend_by_url() -> None:
    assert isinstance(open_limiter(None), MemoryLimiter)
    assert isinstance(open_limiter("memory://"), MemoryLimiter)
    async with open_limiter(REDIS_URL, on_outage="closed") as redis_limiter:
        assert isinstance(redis_limiter, RedisLimiter)
        assert redis_limiter.on_outage == "closed"
    with pytest.raises(ConfigError) as bad:
        open_limiter("memcached://admin:s3cret@cache:11211")
    assert "s3cret" not in bad.value.detail
    with pytest.raises(ConfigError):
        RedisLimiter(REDIS_URL, on_outage="open")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rate", "burst", "name"),
    [
        (0, 1, "default"),
        (-1, 1, "default"),
        (float("nan"), 1, "default"),
        (float("inf"), 1, "default"),
        (1, 0, "default"),
        (1, True, "default"),
        (1, 2.5, "default"),
        (1, 1, ""),
        (1, 1, 'quote"d'),
        (1, 1, "a:b"),
    ],
)
def test_a_limit_that_cannot_work_is_refused(rate: float, burst: int, name: str) -> None:
    with pytest.raises(ConfigError):
        Limit(rate=rate, burst=burst, name=name)


# --- the rule table -------------------------------------------------------------------------

DEFAULT = Limit(rate=50, burst=100)
TOKEN = Limit(rate=0.2, burst=5, name="token")
PARTNER = Limit(rate=5, burst=10, name="partner")
MES = Limit(rate=500, burst=1000, name="mes")
PUBLISH = Limit(rate=100, burst=200, name="publish")
PARTNER_PUBLISH = Limit(rate=1, burst=5, name="partner-publish")


@pytest.fixture
def rules() -> RateRules:
    return RateRules(
        DEFAULT,
        [
            RateRule(TOKEN, route="POST /oauth/token", by="client"),
            RateRule(PARTNER, kind="partner"),
            RateRule(MES, principal="svc-mes"),
            RateRule(PUBLISH, route="POST /v1/events"),
            RateRule(PARTNER_PUBLISH, route="POST /v1/events", kind="partner"),
        ],
    )


@pytest.mark.parametrize(
    ("method", "route", "principal", "kind", "limit", "key"),
    [
        # Before authentication: the token endpoint, by address whoever claims to call.
        ("POST", "/oauth/token", None, None, TOKEN, "token:c:10.0.0.7"),
        ("post", "/oauth/token", "svc-mes", "service", TOKEN, "token:c:10.0.0.7"),
        # Unauthenticated elsewhere: the default, by address.
        ("GET", "/v1/events", None, None, DEFAULT, "default:c:10.0.0.7"),
        # A principal's own rule beats its kind's; both beat the default.
        ("GET", "/v1/events", "svc-mes", "service", MES, "mes:p:svc-mes"),
        ("GET", "/v1/events", "acme", "partner", PARTNER, "partner:p:acme"),
        ("GET", "/v1/events", "op-1", "user", DEFAULT, "default:p:op-1"),
        # A route rule beats principal rules; a route-and-kind rule beats the route rule.
        ("POST", "/v1/events", "svc-mes", "service", PUBLISH, "publish:p:svc-mes"),
        ("POST", "/v1/events", "acme", "partner", PARTNER_PUBLISH, "partner-publish:p:acme"),
        # Route templates, not paths: one bucket per route whatever the id.
        ("GET", "/v1/events/{event_id}", "acme", "partner", PARTNER, "partner:p:acme"),
    ],
)
def test_the_most_specific_rule_decides(
    rules: RateRules,
    method: str,
    route: str,
    principal: str | None,
    kind: str | None,
    limit: Limit,
    key: str,
) -> None:
    bucket = rules.resolve(method, route, client="10.0.0.7", principal=principal, kind=kind)
    assert (bucket.limit, bucket.key) == (limit, key)


def test_each_partner_has_its_own_bucket_under_a_kind_rule(rules: RateRules) -> None:
    acme = rules.resolve("GET", "/v1/events", client="1.1.1.1", principal="acme", kind="partner")
    globex = rules.resolve(
        "GET", "/v1/events", client="1.1.1.1", principal="globex", kind="partner"
    )
    assert acme.limit == globex.limit and acme.key != globex.key


@pytest.mark.parametrize(
    "table",
    [
        [
            RateRule(Limit(1, 1, name="a"), kind="partner"),
            RateRule(Limit(2, 2, name="a"), kind="x"),
        ],
        [RateRule(Limit(1, 1, name="default"), kind="partner")],
        [
            RateRule(Limit(1, 1, name="a"), kind="partner"),
            RateRule(Limit(2, 2, name="b"), kind="partner"),
        ],
    ],
    ids=["a name used twice", "the default's name", "two rules for the same callers"],
)
def test_an_ambiguous_table_is_refused(table: list[RateRule]) -> None:
    with pytest.raises(ConfigError):
        RateRules(DEFAULT, table)


@pytest.mark.parametrize(
    "rule",
    [
        {"route": "/oauth/token"},  # no method
        {"route": "FETCH /v1/events"},
        {"principal": "acme", "kind": "partner"},
        {"route": "POST /oauth/token", "kind": "partner", "by": "client"},
        {},  # that is the default's job
        {"kind": "partner", "by": "tenant"},
    ],
)
def test_a_rule_that_cannot_apply_is_refused(rule: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        RateRule(Limit(1, 1, name="r"), **rule)  # type: ignore[arg-type]


# --- headers --------------------------------------------------------------------------------


def test_headers_of_an_allowed_request() -> None:
    limit = Limit(rate=2, burst=10, name="partner")
    headers = limit_headers(Decision(True, 7, 0.0, 1.2), limit)
    assert headers == {
        "RateLimit-Policy": '"partner";q=10;w=5',
        "RateLimit": '"partner";r=7;t=2',
    }


def test_headers_of_a_refused_request_say_when_to_come_back() -> None:
    limit = Limit(rate=0.2, burst=5, name="token")
    headers = limit_headers(Decision(False, 0, 4.2, 25.0), limit)
    assert headers["Retry-After"] == "5"  # rounded up: waiting that long always suffices
    assert headers["RateLimit"] == '"token";r=0;t=5'  # not later than Retry-After
    assert headers["RateLimit-Policy"] == '"token";q=5;w=25'
    sub_second = limit_headers(Decision(False, 0, 0.001, 0.5), Limit(rate=1000, burst=1))
    assert sub_second["Retry-After"] == "1"  # delay-seconds are whole and a 0 invites a spin
    # A window under a second is advertised as one second of the real rate, not of the burst.
    assert sub_second["RateLimit-Policy"] == '"default";q=1000;w=1'
