"""The store contract: subscriptions and the state of every (subscription, event) delivery.

A delivery moves through ``pending → inflight → delivered``, or ``inflight → retrying →
inflight …``, or ends ``dead`` (then ``pending`` again on replay, or ``discarded``). Work is
claimed with a lease: a worker that dies mid-delivery leaves an ``inflight`` row whose lease
runs out, and the next claim takes it again. So a crash re-delivers; it never forgets.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from .._lifecycle import AsyncResource
from ..route.subscription import SubscriptionSpec

__all__ = [
    "Attempt",
    "Claim",
    "ClaimRequest",
    "DeadLetterFilter",
    "Delivery",
    "DeliveryState",
    "Outcome",
    "Routed",
    "Store",
    "Subscription",
]

DeliveryState = Literal["pending", "inflight", "retrying", "delivered", "dead", "discarded"]


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    spec: SubscriptionSpec
    created_at: float
    updated_at: float
    #: Events at positions after this one are routed to it; earlier ones only by replay.
    start_position: int


@dataclass(frozen=True, slots=True)
class Routed:
    """One log record routed to the subscriptions that matched it."""

    position: int
    recorded_at: float
    event_id: str
    event_source: str
    event_type: str
    partitionkey: str | None
    subscription_ids: Sequence[str]


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery leased to one worker until ``lease_until``."""

    delivery_id: int
    subscription_id: str
    position: int
    attempt: int  # 1 for the first try
    round_attempt: int  # attempts since created or last replayed: what max_attempts limits
    round_started_at: float  # when the event was logged, or replayed: what max_age measures


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What one round asks of a subscription: up to ``limit`` deliveries, leased ``lease`` s."""

    subscription: Subscription
    limit: int
    lease: float


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    started_at: float
    duration_ms: float
    outcome: Literal["delivered", "retry", "dead"]
    status: int | None = None
    error: str | None = None
    response: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a worker learned from one attempt, to be recorded in one go with others."""

    claim: Claim
    owner: str
    attempt: Attempt
    next_due: float | None = None  # for outcome "retry"


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    subscription_id: str
    position: int
    event_id: str
    event_source: str
    event_type: str
    partitionkey: str | None
    state: DeliveryState
    attempts: int
    due_at: float
    created_at: float
    updated_at: float
    last_status: int | None
    last_error: str | None
    reason: str | None
    history: list[Attempt] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    subscription_id: str | None = None
    type_pattern: str | None = None
    since: float | None = None  # dead since (epoch s)
    until: float | None = None
    ids: Sequence[int] | None = None
    # Only these subscriptions' (a tenant's): an empty list matches nothing.
    subscription_ids: Sequence[str] | None = None


class Store(AsyncResource, ABC):
    """Relational state beside the log. Backends: SQLite (default); PostgreSQL at scale."""

    # -- subscriptions ---------------------------------------------------------------------

    @abstractmethod
    async def create_subscription(
        self, spec: SubscriptionSpec, start_position: int
    ) -> Subscription:
        """Raises ``Conflict`` when the name is taken."""

    @abstractmethod
    async def update_subscription(self, id: str, spec: SubscriptionSpec) -> Subscription: ...

    @abstractmethod
    async def delete_subscription(self, id: str) -> None:
        """Drops its deliveries too; raises ``NotFound``."""

    @abstractmethod
    async def get_subscription(self, id_or_name: str) -> Subscription:
        """Raises ``NotFound``."""

    @abstractmethod
    async def list_subscriptions(self) -> list[Subscription]: ...

    # -- routing ---------------------------------------------------------------------------

    @abstractmethod
    async def routed_up_to(self) -> int:
        """The log position up to which every event has been routed."""

    @abstractmethod
    async def record_routes(self, routed: Sequence[Routed], up_to: int) -> int:
        """Create the pending deliveries and advance the routing cursor, atomically.
        Answers how many deliveries were created (re-routing the same range creates none)."""

    # -- delivery --------------------------------------------------------------------------

    @abstractmethod
    async def claim(
        self, subscription: Subscription, owner: str, limit: int, lease: float, now: float
    ) -> list[Claim]:
        """Lease up to ``limit`` due deliveries, oldest first, honouring per-key ordering."""

    @abstractmethod
    async def record_outcomes(self, outcomes: Sequence[Outcome], now: float) -> None:
        """Apply attempts; an outcome whose claim no longer holds the delivery (its lease ran
        out and it was claimed again, by another owner or by the same one) is dropped."""

    @abstractmethod
    async def release(self, claims: Sequence[Claim], owner: str, now: float) -> None:
        """Hand back claims never attempted: claimable again at once, their attempt not
        counted. A claim that no longer holds its delivery (claimed again since) is left
        alone."""

    async def settle(
        self,
        owner: str,
        now: float,
        *,
        outcomes: Sequence[Outcome] = (),
        released: Sequence[Claim] = (),
        claims: Sequence[ClaimRequest] = (),
    ) -> list[list[Claim]]:
        """One round of a dispatcher: record ``outcomes``, hand back ``released``, then
        claim - in this order, so a key an outcome frees can be claimed in the same round.
        Answers the claims per request. A backend may do it all in one transaction (SQLite:
        one commit instead of two); here they are separate statements."""
        if outcomes:
            await self.record_outcomes(outcomes, now)
        if released:
            await self.release(released, owner, now)
        batches = await asyncio.gather(
            *(self.claim(r.subscription, owner, r.limit, r.lease, now) for r in claims)
        )
        return list(batches)

    @abstractmethod
    async def expire_leases(self) -> int:
        """Make every lease claimable now. Only for a hub that knows it is the sole worker
        (the embedded default holds a lock on its data directory), after a crash."""

    # -- leadership -------------------------------------------------------------------------

    async def try_lead(self, role: str) -> bool:
        """Become the one process doing ``role`` (routing, polling sources, retention) among
        all that share this store; False when another holds it. A crashed holder's role is
        free again at once. The embedded store has one process: it always leads."""
        return True

    async def still_leading(self, role: str) -> bool:
        """Whether the role taken with :meth:`try_lead` is still held (False once the hold
        was lost, e.g. its connection dropped: stop the role's work, then try again)."""
        return True

    @abstractmethod
    async def next_due(self) -> float | None:
        """When the earliest waiting retry falls due."""

    # -- dead letters and replay -----------------------------------------------------------

    @abstractmethod
    async def list_deliveries(
        self, state: DeliveryState, where: DeadLetterFilter, limit: int, after_id: int = 0
    ) -> list[Delivery]: ...

    @abstractmethod
    async def get_delivery(self, id: int) -> Delivery:
        """With its attempt history; raises ``NotFound``."""

    @abstractmethod
    async def deliveries_of_event(self, position: int) -> list[Delivery]:
        """The deliveries of the log record at ``position``, one per subscription it went to,
        by id (no attempt history): what ``GET /v1/transactions/{id}`` reports. Looked up
        through the ``(sub_id, position)`` unique index, one probe per subscription."""

    @abstractmethod
    async def replay_dead(self, where: DeadLetterFilter, now: float) -> int:
        """Dead letters matching ``where`` become pending with a fresh attempt budget."""

    @abstractmethod
    async def discard_dead(self, where: DeadLetterFilter, reason: str, now: float) -> int: ...

    @abstractmethod
    async def schedule_replay(
        self, subscription_id: str, routed: Sequence[Routed], now: float
    ) -> int:
        """(Re)deliver these log records to one subscription, whatever their earlier state
        (deliveries already open are left alone)."""

    # -- housekeeping ----------------------------------------------------------------------

    @abstractmethod
    async def backlog(self) -> dict[str, dict[str, int]]:
        """Per subscription id: count of deliveries per open state and ``dead``."""

    @abstractmethod
    async def oldest_needed_position(self) -> int | None:
        """The lowest log position an open or dead delivery still points at."""

    @abstractmethod
    async def purge_finished(self, before: float) -> int:
        """Forget delivered and discarded deliveries last touched before ``before``."""
