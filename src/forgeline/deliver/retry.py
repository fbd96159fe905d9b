"""When to try again, and when to give up: the retry schedule of a delivery policy."""

from __future__ import annotations

import random

from ..route.subscription import RetryPolicy

__all__ = ["backoff", "next_attempt_at"]


def backoff(policy: RetryPolicy, failures: int, rng: random.Random | None = None) -> float:
    """Delay after the ``failures``-th failed attempt of a round: capped exponential, jittered
    downwards so that a burst of failures does not come back as a burst of retries."""
    base = min(policy.max_delay, policy.initial_delay * policy.multiplier ** (failures - 1))
    draw = (rng or random).random()
    return base * (1.0 - policy.jitter * draw)


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
    if failures >= policy.max_attempts:
        return None
    delay = backoff(policy, failures)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    due = now + delay
    if due - round_started_at > policy.max_age:
        return None
    return due
