"""When to try again, and when to give up: the retry schedule of a delivery policy, and the
pacing of a subscription's attempts (``policy.rate_limit``)."""

from __future__ import annotations

import math
import random

from ..route.subscription import RetryPolicy

__all__ = ["Pacer", "attempts_allowed", "backoff", "next_attempt_at"]


def backoff(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Delay after the ``failures``-th failed attempt of a round: the schedule's entry, or
    capped exponential; jittered downwards so that a burst of failures does not come back as
    a burst of retries."""
    if policy.schedule is not None:
        base = policy.schedule[min(failures, len(policy.schedule)) - 1] if policy.schedule else 0.0
    else:
        base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (failures - 1))
    draw = (rng or random).random()
    return base * (1.0 - policy.jitter * draw)


def attempts_allowed(policy: RetryPolicy) -> int:
    """Attempts in one round: ``max_attempts``, and with a schedule one more than its delays."""
    if policy.schedule is not None:
        return min(policy.max_attempts, len(policy.schedule) + 1)
    return policy.max_attempts


def next_attempt_at(
    policy: RetryPolicy,
    *,
    failures: int,
    round_started_at: float,
    now: float,
    retry_after: float | None = None,
) -> float | None:
    """The time of the next attempt, or ``None`` when the policy says the delivery is dead.

    A sink's ``Retry-After`` is honoured (never retried sooner), capped at ``max_delay`` so a
    hostile header cannot park a delivery for a year.
    """
    if failures >= attempts_allowed(policy):
        return None
    delay = backoff(policy, failures)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    due = now + delay
    if due - round_started_at > policy.max_age:
        return None
    return due


class Pacer:
    """Token buckets, one per subscription with a ``rate_limit``: how many attempts the
    dispatcher may start now. A bucket holds a tenth of a second's worth (at least one), so
    attempts are spaced evenly instead of going out a second's worth at a time, and the
    dispatcher wakes at most ten times a second for a paced subscription."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        # subscription id -> (tokens, when counted)
        self._buckets: dict[str, tuple[float, float]] = {}

    @staticmethod
    def _capacity(rate: float) -> float:
        return max(1.0, rate / 10.0)

    def _tokens(self, key: str, rate: float, now: float) -> float:
        capacity = self._capacity(rate)
        tokens, at = self._buckets.get(key, (capacity, now))
        return min(capacity, tokens + (now - at) * rate)

    def room(self, key: str, rate: float | None, now: float) -> int:
        """Attempts that may start now (a large number when ``rate`` is None)."""
        if rate is None:
            return 1 << 30
        return math.floor(self._tokens(key, rate, now))

    def take(self, key: str, rate: float | None, count: int, now: float) -> None:
        if rate is None or count <= 0:
            return
        self._buckets[key] = (self._tokens(key, rate, now) - count, now)

    def next_free(self, key: str, rate: float | None, now: float) -> float | None:
        """When the next attempt may start, if not now; None when it may (or no limit)."""
        if rate is None:
            return None
        missing = 1.0 - self._tokens(key, rate, now)
        return None if missing <= 0 else now + missing / rate
