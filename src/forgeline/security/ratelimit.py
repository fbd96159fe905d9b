"""Rate limits per principal and per route: the GCRA algorithm, in process or in Redis.

The API asks one question per request — may this caller make this call now? — and answers
429 with ``Retry-After`` when not. The answer comes from GCRA (the generic cell rate
algorithm): each bucket keeps one number, its theoretical arrival time (TAT), so a check is
O(1) in time and memory, bursts are allowed up to ``burst`` and the sustained rate is exactly
``rate``. ``MemoryLimiter`` keeps the TATs in this process (the embedded hub);
``RedisLimiter`` keeps them in Redis, so any number of API processes share one budget.

Both compute in integer microseconds, so they agree to the microsecond and one contract test
suite runs unchanged against both. ``RateRules`` turns (principal, route) into the bucket and
its limit; ``limit_headers`` turns a decision into the IETF RateLimit fields
(draft-ietf-httpapi-ratelimit-headers-11) and ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

from ..exceptions import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "Bucket",
    "Decision",
    "Limit",
    "MemoryLimiter",
    "OnOutage",
    "RateLimiter",
    "RateRule",
    "RateRules",
    "RedisLimiter",
    "limit_headers",
    "open_limiter",
]

log = logging.getLogger(__name__)

US = 1_000_000  # microseconds per second: the unit of every TAT, here and in the Lua script

# A policy name appears in the RateLimit fields and in bucket keys: keep it a plain token.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ROUTE = re.compile(r"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) /\S*")

#: What a ``RedisLimiter`` does while Redis cannot be reached. ``local``: each API process
#: enforces the limits alone, in memory (the plant keeps working; a caller gets at most one
#: budget per process). ``closed``: every limited request gets a 503.
OnOutage = Literal["local", "closed"]


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests per second sustained, up to ``burst`` at once from a rested bucket.

    ``name`` identifies the policy to clients (the RateLimit fields) and separates its buckets
    from other policies' buckets of the same caller.
    """

    rate: float
    burst: int
    name: str = "default"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and 0 < self.rate <= US):
            raise ConfigError(f"rate limit {self.name!r}: rate must be in (0, {US}] per second")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ConfigError(f"rate limit {self.name!r}: burst must be an integer >= 1")
        if not _NAME.fullmatch(self.name):
            raise ConfigError(
                f"rate limit name {self.name!r}: use letters, digits, '.', '_' or '-' (max 64)"
            )

    @property
    def interval_us(self) -> int:
        """Microseconds between two requests at the sustained rate (the GCRA emission
        interval); rounded to a whole microsecond so both backends compute alike."""
        return max(1, round(US / self.rate))


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request. Times are in seconds from now.

    ``retry_after``: when this request would have been allowed (0 when it was).
    ``reset_after``: when the bucket is full again (``remaining`` back to ``burst``).
    """

    allowed: bool
    remaining: int
    retry_after: float
    reset_after: float


def _gcra(tat: int | None, now: int, interval: int, burst: int) -> tuple[Decision, int | None]:
    """One GCRA step in integer microseconds: the decision and the bucket's new TAT (None when
    refused: a refused request costs nothing). The Lua script below is this, line for line."""
    tat = now if tat is None or tat < now else tat
    new_tat = tat + interval
    allow_at = new_tat - interval * burst
    if now < allow_at:
        return Decision(False, 0, (allow_at - now) / US, (tat - now) / US), None
    remaining = (now - allow_at) // interval
    return Decision(True, remaining, 0.0, (new_tat - now) / US), new_tat


class RateLimiter(ABC):
    """Where buckets live. One required method; ``async with`` closes what the backend holds."""

    @abstractmethod
    async def hit(self, key: str, limit: Limit) -> Decision:
        """Count one request against ``key``'s bucket under ``limit`` and decide it."""

    async def aclose(self) -> None:
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class MemoryLimiter(RateLimiter):
    """Buckets in this process: the embedded hub's limiter, and Redis's stand-in in an outage.

    Memory stays bounded by the buckets in use, not by the callers ever seen: a bucket whose
    TAT has passed is full, which is exactly the state of a bucket that does not exist, so
    idle buckets are dropped as calls go by at no cost in accuracy. Past ``max_keys`` busy
    buckets (a flood of distinct client addresses), the least recently used is dropped
    anyway: that caller gets a fresh burst, the price of a hard memory cap.
    """

    SWEEP_FLOOR = 1024  # below this many buckets, a full sweep is not worth its time

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if max_keys < 1:
            raise ConfigError("a rate limiter needs room for at least one key")
        self._clock = clock
        self._max_keys = max_keys
        self._tats: OrderedDict[str, int] = OrderedDict()  # least recently used first
        self._sweep_at = self.SWEEP_FLOOR

    def __len__(self) -> int:
        return len(self._tats)

    async def hit(self, key: str, limit: Limit) -> Decision:
        return self.hit_now(key, limit)

    def hit_now(self, key: str, limit: Limit) -> Decision:
        """``hit`` without the event loop: nothing here waits."""
        now = round(self._clock() * US)
        tats = self._tats
        old = tats.pop(key, None)
        decision, new_tat = _gcra(old, now, limit.interval_us, limit.burst)
        if new_tat is not None:
            tats[key] = new_tat
        elif old is not None:
            tats[key] = old  # refused: still busy, so most recently used
        for _ in range(2):  # the least recently used, if it is full again
            oldest = next(iter(tats.items()))
            if oldest[1] > now:
                break
            del tats[oldest[0]]
        if len(tats) > self._sweep_at:
            # A long-busy bucket at the front (a strict limit) can hide idle ones behind it:
            # sweep them all once the table doubled since the last sweep, O(1) amortized.
            for idle in [k for k, tat in tats.items() if tat <= now]:
                del tats[idle]
            self._sweep_at = max(self.SWEEP_FLOOR, 2 * len(tats))
        if len(tats) > self._max_keys:
            tats.popitem(last=False)
        return decision


# KEYS[1]: the bucket. ARGV: interval (µs), burst, now (µs; empty: the Redis server's clock,
# which every API process shares, unlike their own clocks). Mirrors ``_gcra``.
_GCRA_LUA = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000))
return {1, math.floor((now - allow_at) / interval), 0, new_tat - now}
"""
_GCRA_SHA = hashlib.sha1(_GCRA_LUA.encode(), usedforsecurity=False).hexdigest()


class RedisLimiter(RateLimiter):
    """Buckets in Redis (one Lua script per check, so a check is atomic and one round trip):
    API processes share each caller's budget. A bucket's key expires when it would be full.

    When Redis cannot be reached, ``on_outage`` decides (see ``OnOutage``). The default is
    ``local``: a rate limit protects the hub from overload and abuse, it does not authenticate
    anyone, and refusing every MES and Odoo call because a cache is down would turn a Redis
    outage into a plant outage — while limiting per process still bounds any one caller (to
    one budget per API process). ``closed`` suits a hub exposed to partners where a lost
    limit matters more than availability. An outage is logged once when it starts and once
    when it ends; in between, Redis is probed again every ``probe_every`` seconds rather than
    on every request, so an outage costs no connect timeouts on the request path.

    ``clock`` (seconds) replaces the Redis server's clock: for tests only, since processes'
    clocks disagree and the shared clock is what makes a shared budget exact.
    """

    def __init__(
        self,
        url: str,
        *,
        on_outage: OnOutage = "local",
        prefix: str = "forgeline:ratelimit:",
        timeout: float = 0.5,
        probe_every: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if on_outage not in ("local", "closed"):
            raise ConfigError(f"rate limit on_outage {on_outage!r} is not one of local, closed")
        try:
            from redis import exceptions as errors
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
        except ImportError as exc:  # pragma: no cover - redis is a declared extra
            raise ConfigError(
                "a redis:// rate limiter needs the redis package: pip install 'forgeline[redis]'"
            ) from exc
        self.on_outage: OnOutage = on_outage
        self._prefix = prefix
        self._clock = clock
        self._probe_every = probe_every
        self._where = _redacted(url)
        # One quick retry for a dropped connection, no backoff: the request is waiting, and an
        # outage is handled below instead of by retrying for seconds per request.
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        # A failover in progress (a read-only replica, a master down) is an outage too.
        self._outage_errors: tuple[type[Exception], ...] = (
            errors.ConnectionError,
            errors.TimeoutError,
            errors.ReadOnlyError,
            errors.MasterDownError,
            OSError,
        )
        self._refusal: type[Exception] = errors.RedisError
        self._no_script: type[Exception] = errors.NoScriptError
        self._local = MemoryLimiter()
        self._down_since: float | None = None
        self._next_probe = 0.0

    @property
    def degraded(self) -> bool:
        """Redis is unreachable and ``on_outage`` is in force (for ``/readyz``)."""
        return self._down_since is not None

    async def hit(self, key: str, limit: Limit) -> Decision:
        if self._down_since is not None:
            now = time.monotonic()
            if now < self._next_probe:
                return await self._outage(key, limit)
            # This request probes; the ones arriving while it waits do not pile up behind it.
            self._next_probe = now + self._probe_every
        args: list[Any] = [limit.interval_us, limit.burst, ""]
        if self._clock is not None:
            args[2] = round(self._clock() * US)
        try:
            reply = await self._run(self._prefix + key, args)
        except self._outage_errors as exc:
            self._went_down(exc)
            return await self._outage(key, limit)
        except self._refusal as exc:
            # Not an outage: Redis answered and refused (ACLs, a foreign value at our key).
            # The driver's message goes to the log only; problem bodies never carry it.
            log.error("rate limiter: Redis at %s refused the check: %s", self._where, exc)
            raise BackendError("the rate limiter's Redis refused the request") from exc
        if self._down_since is not None:
            log.warning(
                "rate limiter: Redis at %s is back after %.1f s; shared limits apply again",
                self._where,
                time.monotonic() - self._down_since,
            )
            self._down_since = None
        allowed, remaining, retry_us, reset_us = (int(v) for v in reply)
        return Decision(bool(allowed), remaining, retry_us / US, reset_us / US)

    async def _run(self, key: str, args: list[Any]) -> list[Any]:
        try:
            reply = await self._redis.evalsha(_GCRA_SHA, 1, key, *args)
        except self._no_script:
            # A restarted or flushed Redis forgot the script: EVAL sends it and caches it.
            reply = await self._redis.eval(_GCRA_LUA, 1, key, *args)
        return list(reply)

    def _went_down(self, exc: Exception) -> None:
        now = time.monotonic()
        self._next_probe = now + self._probe_every
        if self._down_since is None:
            self._down_since = now
            if self.on_outage == "local":
                level, action = logging.WARNING, "each API process limits alone until it is back"
            else:
                level, action = logging.ERROR, "limited requests get 503 until it is back"
            log.log(
                level, "rate limiter: Redis at %s is unreachable (%s); %s", self._where, exc, action
            )

    async def _outage(self, key: str, limit: Limit) -> Decision:
        if self.on_outage == "closed":
            raise BackendUnavailable("rate limiting is unavailable: its Redis cannot be reached")
        return await self._local.hit(key, limit)

    async def aclose(self) -> None:
        await self._redis.aclose()


def _redacted(url: str) -> str:
    """The URL without its password or query (``?password=`` works too): it goes to logs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=""))


def open_limiter(url: str | None, *, on_outage: OnOutage = "local") -> RateLimiter:
    """The limiter a setting names: in this process when ``url`` is empty or ``memory://``,
    in Redis for ``redis://``, ``rediss://`` or ``unix://``."""
    if not url or url == "memory://":
        return MemoryLimiter()
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        return RedisLimiter(url, on_outage=on_outage)
    raise ConfigError(
        f"rate limiter {_redacted(url)!r}: use redis://, rediss://, unix:// or leave it unset "
        "(in process)"
    )


def limit_headers(decision: Decision, limit: Limit) -> dict[str, str]:
    """The RateLimit and RateLimit-Policy fields (draft-ietf-httpapi-ratelimit-headers-11),
    and Retry-After when the request was refused.

    A GCRA bucket of ``burst`` refilled at ``rate`` is advertised as a quota of ``burst``
    over the window it takes to refill, in whole seconds as the draft requires; when that is
    under a second (a fast rate, a small burst), as what one second admits, so that no client
    slows down below the real rate. ``r`` says how many may go now. ``t`` is when a refused
    request may be retried, else when the bucket is full again; both round up, so a client
    that waits that long is never refused for having waited too little.
    """
    window = max(1, math.ceil(limit.burst / limit.rate))
    quota = max(limit.burst, math.floor(limit.rate * window))
    wait = decision.reset_after if decision.allowed else decision.retry_after
    headers = {
        "RateLimit-Policy": f'"{limit.name}";q={quota};w={window}',
        "RateLimit": f'"{limit.name}";r={decision.remaining};t={math.ceil(wait)}',
    }
    if not decision.allowed:
        headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after)))
    return headers


@dataclass(frozen=True, slots=True)
class Bucket:
    """Whose budget a request spends: the bucket ``key`` and the ``limit`` it runs under."""

    key: str
    limit: Limit


@dataclass(frozen=True, slots=True)
class RateRule:
    """A limit for a route (``"POST /oauth/token"``: a method and the route's template), for a
    principal (by ``principal`` id or by ``kind``), or for both.

    Each caller has its own bucket under a rule: keyed by principal id, or by client address
    when ``by="client"`` — for routes reached before authentication, where the only identity
    is the address (the token endpoint, so that guessing secrets is slow).
    """

    limit: Limit
    route: str | None = None
    principal: str | None = None
    kind: str | None = None
    by: Literal["principal", "client"] = "principal"

    def __post_init__(self) -> None:
        where = f"rate rule {self.limit.name!r}"
        if self.route is not None and not _ROUTE.fullmatch(self.route):
            raise ConfigError(f"{where}: route {self.route!r} must be 'METHOD /template'")
        if self.principal is not None and self.kind is not None:
            raise ConfigError(f"{where}: give a principal or a kind, not both")
        if self.by not in ("principal", "client"):
            raise ConfigError(f"{where}: by must be principal or client")
        if self.by == "client" and (self.principal is not None or self.kind is not None):
            raise ConfigError(f"{where}: a by-client rule applies before authentication")
        if self.route is None and self.principal is None and self.kind is None:
            raise ConfigError(f"{where}: name a route, a principal or a kind (else: the default)")


class RateRules:
    """Which bucket a request spends from. The most specific rule decides, in this order:
    route and principal id, route and kind, route alone, principal id, kind, the default.

    One rule, one bucket per request: a route rule replaces the principal's budget for that
    route rather than adding to it, so a stricter token endpoint and a busier publish route
    are both one lookup. Requests without a principal (before or without authentication) are
    keyed by client address.
    """

    def __init__(self, default: Limit, rules: Iterable[RateRule] = ()) -> None:
        self.default = default
        self._rules: dict[tuple[str | None, str | None, str | None], RateRule] = {}
        names = {default.name}
        for rule in rules:
            if rule.limit.name in names:
                raise ConfigError(f"rate rule name {rule.limit.name!r} is used twice")
            names.add(rule.limit.name)
            scope = (rule.route, rule.principal, rule.kind)
            if scope in self._rules:
                raise ConfigError(
                    f"rate rules {self._rules[scope].limit.name!r} and {rule.limit.name!r} "
                    "apply to the same callers and route"
                )
            self._rules[scope] = rule

    def resolve(
        self,
        method: str,
        route: str,
        *,
        client: str,
        principal: str | None = None,
        kind: str | None = None,
    ) -> Bucket:
        """The bucket for ``method`` on the route template ``route`` (``/v1/events/{id}``,
        not the path: one bucket per route, whatever the ids) by this caller."""
        target = f"{method.upper()} {route}"
        get = self._rules.get
        rule = None
        if principal is not None:
            rule = get((target, principal, None))
        if rule is None and kind is not None:
            rule = get((target, None, kind))
        if rule is None:
            rule = get((target, None, None))
        if rule is None and principal is not None:
            rule = get((None, principal, None))
        if rule is None and kind is not None:
            rule = get((None, None, kind))
        limit = rule.limit if rule is not None else self.default
        if principal is None or (rule is not None and rule.by == "client"):
            return Bucket(f"{limit.name}:c:{client}", limit)
        return Bucket(f"{limit.name}:p:{principal}", limit)
