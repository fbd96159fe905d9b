"""The store contract: what the router, the dispatcher and the dead-letter API rely on.

Every backend runs this suite unchanged: a backend's test module subclasses ``StoreContract``
and supplies a ``store_url`` fixture (or overrides ``store``). Tests pass ``now`` explicitly
wherever the contract takes it, so leases and due times are checked without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal

import pytest

from forgeline.exceptions import Conflict, NotFound
from forgeline.route.subscription import SubscriptionSpec
from forgeline.store import (
    Claim,
    ClaimRequest,
    DeadLetterFilter,
    Outcome,
    Routed,
    Store,
    Subscription,
    open_store,
)
from forgeline.store.base import Attempt

EVERYTHING = DeadLetterFilter()
LEASE = 30.0


def spec(
    name: str = "erp",
    *,
    ordering: Literal["none", "key"] = "none",
    on_dead: Literal["skip", "block"] = "skip",
    **extra: Any,
) -> SubscriptionSpec:
    return SubscriptionSpec.model_validate(
        {
            "name": name,
            "types": ["order.*"],
            "sink": {"url": "http://127.0.0.1:9/hook", "headers": {"X-Plant": "P1"}},
            "policy": {"ordering": ordering, "on_dead": on_dead, "timeout": 5},
            **extra,
        }
    )


def routed(
    position: int,
    *subs: Subscription,
    key: str | None = None,
    type: str = "order.created.v1",
    at: float | None = None,
) -> Routed:
    return Routed(
        position,
        time.time() if at is None else at,
        f"evt-{position}",
        "test/store",
        type,
        key,
        [sub.id for sub in subs],
    )


def outcome(
    claim: Claim,
    owner: str,
    verdict: Literal["delivered", "retry", "dead"] = "delivered",
    *,
    next_due: float | None = None,
    status: int | None = 204,
    error: str | None = None,
) -> Outcome:
    attempt = Attempt(claim.attempt, time.time(), 1.5, verdict, status, error, "body")
    return Outcome(claim, owner, attempt, next_due=next_due)


def positions(claims: Sequence[Claim]) -> list[int]:
    return [claim.position for claim in claims]


class StoreContract:
    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[Store]:
        async with open_store(store_url) as store:
            yield store

    @pytest.fixture
    async def sub(self, store: Store) -> Subscription:
        return await store.create_subscription(spec(), 0)

    async def route(self, store: Store, *records: Routed) -> float:
        """Record ``records`` up to the last one's position; answer a time they are due by."""
        await store.record_routes(records, records[-1].position if records else 0)
        return time.time() + 0.001

    async def dead_letter(self, store: Store, sub: Subscription, position: int) -> int:
        """Route one event and let its first attempt fail for good; answer the delivery id."""
        now = await self.route(store, routed(position, sub))
        [claim] = await store.claim(sub, "w", 1, LEASE, now)
        await store.record_outcomes([outcome(claim, "w", "dead", status=400, error="bad")], now)
        return claim.delivery_id

    # -- subscriptions ---------------------------------------------------------------------

    async def test_subscription_round_trips_by_id_and_name(self, store: Store) -> None:
        created = await store.create_subscription(spec(), 7)
        assert created.id.startswith("sub_")
        assert created.start_position == 7
        for key in (created.id, "erp"):
            got = await store.get_subscription(key)
            assert got.id == created.id
            assert got.spec == spec()
            assert got.start_position == 7
            assert got.created_at == pytest.approx(created.created_at)

    async def test_subscriptions_are_listed_in_creation_order(self, store: Store) -> None:
        names = ["b", "a", "c"]
        for name in names:
            await store.create_subscription(spec(name), 0)
        assert [s.spec.name for s in await store.list_subscriptions()] == names

    async def test_a_taken_name_conflicts_on_create_and_update(self, store: Store) -> None:
        await store.create_subscription(spec("a"), 0)
        other = await store.create_subscription(spec("b"), 0)
        with pytest.raises(Conflict):
            await store.create_subscription(spec("a"), 0)
        with pytest.raises(Conflict):
            await store.update_subscription(other.id, spec("a"))
        assert (await store.get_subscription(other.id)).spec.name == "b"

    async def test_update_keeps_id_and_start(self, store: Store, sub: Subscription) -> None:
        changed = spec("erp2", ordering="key", enabled=False)
        updated = await store.update_subscription(sub.id, changed)
        assert (updated.id, updated.spec, updated.start_position) == (sub.id, changed, 0)
        assert updated.updated_at >= sub.updated_at
        assert (await store.get_subscription("erp2")).spec == changed

    async def test_unknown_subscriptions_are_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.get_subscription("nope")
        with pytest.raises(NotFound):
            await store.update_subscription("nope", spec())
        with pytest.raises(NotFound):
            await store.delete_subscription("nope")

    async def test_delete_drops_the_deliveries(self, store: Store, sub: Subscription) -> None:
        keep = await store.create_subscription(spec("keep"), 0)
        now = await self.route(store, routed(1, sub, keep), routed(2, sub))
        [claim] = await store.claim(sub, "w", 1, LEASE, now)
        await store.record_outcomes([outcome(claim, "w", "retry", next_due=now)], now)
        await store.delete_subscription(sub.id)
        assert [s.id for s in await store.list_subscriptions()] == [keep.id]
        with pytest.raises(NotFound):
            await store.get_delivery(claim.delivery_id)
        assert await store.backlog() == {keep.id: {"pending": 1}}

    # -- routing ---------------------------------------------------------------------------

    async def test_routing_cursor_starts_at_zero_and_never_moves_back(
        self, store: Store, sub: Subscription
    ) -> None:
        assert await store.routed_up_to() == 0
        assert await store.record_routes([routed(3, sub)], 5) == 1
        assert await store.routed_up_to() == 5
        assert await store.record_routes([], 9) == 0  # nothing matched, still routed
        assert await store.routed_up_to() == 9
        await store.record_routes([], 4)
        assert await store.routed_up_to() == 9

    async def test_rerouting_a_range_creates_nothing_twice(
        self, store: Store, sub: Subscription
    ) -> None:
        other = await store.create_subscription(spec("other"), 0)
        batch = [routed(1, sub, other), routed(2, sub), routed(3, other)]
        assert await store.record_routes(batch, 3) == 4
        assert await store.record_routes(batch, 3) == 0
        assert await store.record_routes([*batch, routed(4, sub)], 4) == 1
        assert await store.backlog() == {sub.id: {"pending": 3}, other.id: {"pending": 2}}

    async def test_a_routed_delivery_carries_the_event(
        self, store: Store, sub: Subscription
    ) -> None:
        await self.route(store, routed(1, sub, key="MO/1", type="order.shipped.v1"))
        [delivery] = await store.list_deliveries("pending", EVERYTHING, 10)
        assert (delivery.subscription_id, delivery.position) == (sub.id, 1)
        assert (delivery.event_id, delivery.event_source) == ("evt-1", "test/store")
        assert (delivery.event_type, delivery.partitionkey) == ("order.shipped.v1", "MO/1")
        assert (delivery.state, delivery.attempts, delivery.history) == ("pending", 0, [])

    async def test_a_delivery_routed_late_was_created_with_its_event_and_is_due_now(
        self, store: Store, sub: Subscription
    ) -> None:
        """Its age counts from the event's arrival in the log (the retry schedule's max_age
        and the API's created_at); it is due when routed, whatever the log's clock said."""
        logged = time.time() - 3600.0
        before = time.time()
        await self.route(store, routed(1, sub, at=logged))
        [delivery] = await store.list_deliveries("pending", EVERYTHING, 10)
        assert delivery.created_at == logged
        assert before <= delivery.due_at <= time.time()
        [[claim]] = await store.settle("w", time.time(), claims=[ClaimRequest(sub, 5, 30.0)])
        assert claim.round_started_at == logged

    # -- claims ----------------------------------------------------------------------------

    async def test_claims_are_oldest_first_and_limited(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, *(routed(p, sub) for p in range(1, 8)))
        first = await store.claim(sub, "w", 3, LEASE, now)
        assert positions(first) == [1, 2, 3]
        assert [(c.attempt, c.round_attempt, c.subscription_id) for c in first] == [
            (1, 1, sub.id)
        ] * 3
        assert positions(await store.claim(sub, "w", 10, LEASE, now)) == [4, 5, 6, 7]
        assert await store.claim(sub, "w", 10, LEASE, now) == []
        assert (await store.backlog())[sub.id] == {"inflight": 7}

    async def test_a_claim_is_leased_until_it_runs_out(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [first] = await store.claim(sub, "a", 5, LEASE, now)
        assert await store.claim(sub, "b", 5, LEASE, now + LEASE - 1) == []
        # The lease ran out (its worker died): another owner takes the delivery over.
        [again] = await store.claim(sub, "b", 5, LEASE, now + LEASE + 1)
        assert again.delivery_id == first.delivery_id
        assert (again.attempt, again.round_attempt) == (2, 2)
        assert again.round_started_at == first.round_started_at

    async def test_a_claim_only_takes_its_own_subscription(
        self, store: Store, sub: Subscription
    ) -> None:
        other = await store.create_subscription(spec("other"), 0)
        now = await self.route(store, routed(1, other), routed(2, sub))
        assert positions(await store.claim(sub, "w", 5, LEASE, now)) == [2]

    async def test_work_is_claimed_only_when_due(self, store: Store, sub: Subscription) -> None:
        now = await self.route(store, routed(1, sub))
        assert await store.claim(sub, "w", 5, LEASE, now - 60) == []  # routed after that
        [claim] = await store.claim(sub, "w", 5, LEASE, now)
        await store.record_outcomes([outcome(claim, "w", "retry", next_due=now + 100)], now)
        assert await store.claim(sub, "w", 5, LEASE, now + 99) == []
        [retry] = await store.claim(sub, "w", 5, LEASE, now + 100)
        assert (retry.delivery_id, retry.attempt, retry.round_attempt) == (
            claim.delivery_id,
            2,
            2,
        )

    async def test_concurrent_claims_never_take_a_delivery_twice(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, *(routed(p, sub) for p in range(1, 201)))
        batches = await asyncio.gather(
            *(store.claim(sub, f"w{i}", 7, LEASE, now) for i in range(40))
        )
        ids = [claim.delivery_id for batch in batches for claim in batch]
        assert len(ids) == len(set(ids)) == 200

    async def test_next_due_is_the_earliest_retry_or_lease_end(
        self, store: Store, sub: Subscription
    ) -> None:
        assert await store.next_due() is None
        now = await self.route(store, routed(1, sub), routed(2, sub))
        [a, b] = await store.claim(sub, "w", 5, 50.0, now)
        await store.record_outcomes([outcome(a, "w", "retry", next_due=now + 80)], now)
        assert await store.next_due() == pytest.approx(now + 50)  # b's lease
        await store.record_outcomes([outcome(b, "w")], now)
        assert await store.next_due() == pytest.approx(now + 80)

    async def test_expire_leases_makes_inflight_work_claimable_now(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub), routed(2, sub))
        await store.claim(sub, "old", 5, 3600.0, now)
        assert await store.claim(sub, "new", 5, LEASE, now) == []
        assert await store.expire_leases() == 2
        claims = await store.claim(sub, "new", 5, LEASE, now)
        assert positions(claims) == [1, 2]
        assert {c.attempt for c in claims} == {2}

    async def test_a_released_claim_is_claimable_at_once_its_attempt_not_counted(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub), routed(2, sub))
        [a, b] = await store.claim(sub, "w", 5, LEASE, now)
        await store.release([a], "w", now)
        await store.release([b], "someone else", now)  # not theirs: left alone
        [again] = await store.claim(sub, "w2", 5, LEASE, now)
        assert (again.position, again.attempt, again.round_attempt) == (1, 1, 1)
        delivery = await store.get_delivery(again.delivery_id)
        assert delivery.state == "inflight" and delivery.attempts == 1
        assert await store.claim(sub, "w2", 5, LEASE, now) == []  # b is still w's

    async def test_a_released_retry_is_still_retrying(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [first] = await store.claim(sub, "w", 5, LEASE, now)
        await store.record_outcomes([outcome(first, "w", "retry", next_due=now)], now)
        [second] = await store.claim(sub, "w", 5, LEASE, now)
        await store.release([second], "w", now)
        delivery = await store.get_delivery(second.delivery_id)
        assert (delivery.state, delivery.attempts) == ("retrying", 1)

    async def test_an_old_claim_settles_nothing_once_its_owner_claimed_again(
        self, store: Store, sub: Subscription
    ) -> None:
        """The lease ran out and the same owner claimed the delivery again: the old claim's
        release and outcome speak for an attempt that no longer holds it."""
        now = await self.route(store, routed(1, sub), routed(2, sub))
        old = await store.claim(sub, "w", 5, 10.0, now)
        fresh = await store.claim(sub, "w", 5, LEASE, now + 11)
        assert [c.attempt for c in fresh] == [2, 2]
        await store.release([old[0]], "w", now + 11)
        await store.record_outcomes([outcome(old[1], "w", "dead", status=400)], now + 11)
        for claim in fresh:
            delivery = await store.get_delivery(claim.delivery_id)
            assert (delivery.state, delivery.attempts) == ("inflight", 2)
        await store.record_outcomes([outcome(c, "w") for c in fresh], now + 12)
        assert {(await store.get_delivery(c.delivery_id)).state for c in fresh} == {"delivered"}

    async def test_a_round_records_then_releases_then_claims(self, store: Store) -> None:
        """``settle``: the outcome recorded in a round frees its key for the same round's
        claim, and a released claim is claimed again in it."""
        sub = await store.create_subscription(spec(ordering="key"), 0)
        now = await self.route(
            store, routed(1, sub, key="A"), routed(2, sub, key="A"), routed(3, sub)
        )
        [a1, loose] = await store.claim(sub, "w", 10, LEASE, now)
        assert (a1.position, loose.position) == (1, 3)
        request = ClaimRequest(sub, 10, LEASE)
        [claimed] = await store.settle(
            "w", now, outcomes=[outcome(a1, "w")], released=[loose], claims=[request]
        )
        assert positions(claimed) == [2, 3]
        assert [c.attempt for c in claimed] == [1, 1]
        assert (await store.get_delivery(a1.delivery_id)).state == "delivered"
        assert await store.settle("w", now) == []

    # -- per-key ordering ------------------------------------------------------------------

    async def test_a_keys_later_delivery_waits_for_the_earlier(self, store: Store) -> None:
        sub = await store.create_subscription(spec(ordering="key"), 0)
        now = await self.route(
            store,
            routed(1, sub, key="A"),
            routed(2, sub, key="A"),
            routed(3, sub, key="B"),
            routed(4, sub),  # keyless: never ordered
            routed(5, sub),
            routed(6, sub, key="B"),
        )
        first = await store.claim(sub, "w", 10, LEASE, now)
        assert positions(first) == [1, 3, 4, 5]
        assert await store.claim(sub, "w", 10, LEASE, now) == []
        by_position = {c.position: c for c in first}
        await store.record_outcomes([outcome(by_position[1], "w")], now)
        assert positions(await store.claim(sub, "w", 10, LEASE, now)) == [2]
        # A retry keeps the key blocked until it is delivered.
        retry = outcome(by_position[3], "w", "retry", next_due=now + 10)
        await store.record_outcomes([retry], now)
        assert await store.claim(sub, "w", 10, LEASE, now) == []
        [again] = await store.claim(sub, "w", 10, LEASE, now + 10)
        assert again.position == 3
        await store.record_outcomes([outcome(again, "w")], now + 10)
        assert positions(await store.claim(sub, "w", 10, LEASE, now + 10)) == [6]

    async def test_keys_are_not_ordered_without_key_ordering(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, *(routed(p, sub, key="A") for p in range(1, 4)))
        assert positions(await store.claim(sub, "w", 10, LEASE, now)) == [1, 2, 3]

    async def test_keys_are_ordered_per_subscription(self, store: Store) -> None:
        a = await store.create_subscription(spec("a", ordering="key"), 0)
        b = await store.create_subscription(spec("b", ordering="key"), 0)
        now = await self.route(store, routed(1, a, key="K"), routed(2, b, key="K"))
        assert positions(await store.claim(a, "w", 10, LEASE, now)) == [1]
        assert positions(await store.claim(b, "w", 10, LEASE, now)) == [2]

    async def test_an_expired_lease_still_holds_its_key(self, store: Store) -> None:
        sub = await store.create_subscription(spec(ordering="key"), 0)
        now = await self.route(store, routed(1, sub, key="A"), routed(2, sub, key="A"))
        await store.claim(sub, "dead-worker", 10, LEASE, now)
        later = now + LEASE + 1
        assert positions(await store.claim(sub, "heir", 10, LEASE, later)) == [1]

    @pytest.mark.parametrize("on_dead", ["skip", "block"])
    async def test_a_dead_letter_skips_or_blocks_its_key(
        self, store: Store, on_dead: Literal["skip", "block"]
    ) -> None:
        sub = await store.create_subscription(spec(ordering="key", on_dead=on_dead), 0)
        now = await self.route(store, routed(1, sub, key="A"), routed(2, sub, key="A"))
        [first] = await store.claim(sub, "w", 10, LEASE, now)
        await store.record_outcomes([outcome(first, "w", "dead", status=422)], now)
        later = await store.claim(sub, "w", 10, LEASE, now)
        if on_dead == "skip":
            assert positions(later) == [2]
            return
        assert later == []
        # Replayed, the dead letter goes first again; discarded, it releases the key.
        assert await store.replay_dead(EVERYTHING, now) == 1
        [replayed] = await store.claim(sub, "w", 10, LEASE, now)
        assert replayed.position == 1
        await store.record_outcomes([outcome(replayed, "w", "dead", status=422)], now)
        assert await store.discard_dead(EVERYTHING, "obsolete", now) == 1
        assert positions(await store.claim(sub, "w", 10, LEASE, now)) == [2]

    # -- outcomes --------------------------------------------------------------------------

    async def test_a_first_try_success_is_delivered_without_history(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [claim] = await store.claim(sub, "w", 1, LEASE, now)
        await store.record_outcomes([outcome(claim, "w", status=201)], now + 1)
        delivery = await store.get_delivery(claim.delivery_id)
        assert (delivery.state, delivery.attempts, delivery.last_status) == ("delivered", 1, 201)
        assert delivery.history == []
        assert delivery.updated_at == pytest.approx(now + 1)
        assert await store.backlog() == {}
        assert await store.next_due() is None

    async def test_retries_then_success_keep_every_attempt(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [first] = await store.claim(sub, "w", 1, LEASE, now)
        failed = outcome(first, "w", "retry", next_due=now + 5, status=503, error="busy")
        await store.record_outcomes([failed], now)
        waiting = await store.get_delivery(first.delivery_id)
        assert (waiting.state, waiting.due_at, waiting.last_status) == ("retrying", now + 5, 503)
        assert waiting.last_error == "busy"
        assert (await store.backlog())[sub.id] == {"retrying": 1}
        [second] = await store.claim(sub, "w", 1, LEASE, now + 5)
        await store.record_outcomes([outcome(second, "w", status=200)], now + 6)
        done = await store.get_delivery(first.delivery_id)
        assert (done.state, done.attempts, done.last_status) == ("delivered", 2, 200)
        assert [(a.attempt, a.outcome, a.status, a.error) for a in done.history] == [
            (1, "retry", 503, "busy"),
            (2, "delivered", 200, None),
        ]
        assert done.history[0].duration_ms == 1.5
        assert done.history[0].response == "body"

    async def test_a_dead_outcome_makes_a_dead_letter_with_its_reason(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [claim] = await store.claim(sub, "w", 1, LEASE, now)
        verdict = outcome(claim, "w", "dead", status=400, error="unknown product")
        await store.record_outcomes([verdict], now)
        [dead] = await store.list_deliveries("dead", EVERYTHING, 10)
        assert (dead.id, dead.reason, dead.last_status) == (
            claim.delivery_id,
            "unknown product",
            400,
        )
        assert [a.outcome for a in (await store.get_delivery(dead.id)).history] == ["dead"]
        assert (await store.backlog())[sub.id] == {"dead": 1}
        assert await store.claim(sub, "w", 1, LEASE, now + 3600) == []

    async def test_outcomes_are_recorded_in_batches(self, store: Store, sub: Subscription) -> None:
        now = await self.route(store, *(routed(p, sub) for p in range(1, 5)))
        claims = await store.claim(sub, "w", 10, LEASE, now)
        verdicts: list[Literal["delivered", "retry", "dead"]] = [
            "delivered",
            "retry",
            "dead",
            "delivered",
        ]
        await store.record_outcomes(
            [
                outcome(c, "w", v, next_due=now + 9 if v == "retry" else None)
                for c, v in zip(claims, verdicts, strict=True)
            ],
            now,
        )
        states = [(await store.get_delivery(c.delivery_id)).state for c in claims]
        assert states == ["delivered", "retrying", "dead", "delivered"]
        await store.record_outcomes([], now)

    async def test_an_outcome_after_a_takeover_is_dropped(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [stale] = await store.claim(sub, "slow", 1, LEASE, now)
        [taken] = await store.claim(sub, "heir", 1, LEASE, now + LEASE + 1)
        await store.record_outcomes([outcome(stale, "slow", "dead", error="late")], now)
        delivery = await store.get_delivery(stale.delivery_id)
        assert (delivery.state, delivery.history) == ("inflight", [])
        await store.record_outcomes([outcome(taken, "heir")], now + LEASE + 2)
        assert (await store.get_delivery(stale.delivery_id)).state == "delivered"

    async def test_a_late_outcome_with_no_takeover_still_counts(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub))
        [claim] = await store.claim(sub, "slow", 1, 1.0, now)
        await store.record_outcomes([outcome(claim, "slow")], now + 60)
        assert (await store.get_delivery(claim.delivery_id)).state == "delivered"

    # -- dead letters and replay -----------------------------------------------------------

    async def test_unknown_delivery_is_not_found(self, store: Store) -> None:
        with pytest.raises(NotFound):
            await store.get_delivery(424242)

    async def test_dead_letters_are_filtered_and_paged(self, store: Store) -> None:
        a = await store.create_subscription(spec("a"), 0)
        b = await store.create_subscription(spec("b"), 0)
        types = {1: "order.created.v1", 2: "order_x.v1", 3: "order.created.v1", 4: "orderxx.v1"}
        now = await self.route(
            store,
            routed(1, a, type=types[1]),
            routed(2, a, type=types[2]),
            routed(3, b, type=types[3]),
            routed(4, a, type=types[4]),
        )
        ids: dict[int, int] = {}
        for sub, dead_at in ((a, now), (b, now + 10)):
            for claim in await store.claim(sub, "w", 10, LEASE, now):
                verdict = outcome(claim, "w", "dead", error="no")
                await store.record_outcomes([verdict], dead_at)
                ids[claim.position] = claim.delivery_id

        async def listed(where: DeadLetterFilter, limit: int = 10, after: int = 0) -> list[int]:
            found = await store.list_deliveries("dead", where, limit, after)
            by_id = {v: k for k, v in ids.items()}
            return [by_id[d.id] for d in found]

        assert await listed(EVERYTHING) == sorted(ids, key=ids.__getitem__)
        assert sorted(await listed(DeadLetterFilter(subscription_id=a.id))) == [1, 2, 4]
        assert sorted(await listed(DeadLetterFilter(type_pattern="order.*"))) == [1, 3]
        # '_' is a character like any other, not a wildcard.
        assert await listed(DeadLetterFilter(type_pattern="order_*")) == [2]
        assert await listed(DeadLetterFilter(type_pattern="order*.v1")) == await listed(EVERYTHING)
        assert await listed(DeadLetterFilter(since=now + 5)) == [3]
        assert sorted(await listed(DeadLetterFilter(until=now + 5))) == [1, 2, 4]
        assert sorted(await listed(DeadLetterFilter(ids=[ids[2], ids[3]]))) == [2, 3]
        assert await listed(DeadLetterFilter(ids=[])) == []
        everything = await listed(EVERYTHING)
        first_page = await listed(EVERYTHING, limit=2)
        assert first_page == everything[:2]
        assert await listed(EVERYTHING, after=ids[first_page[-1]]) == everything[2:]
        assert await store.list_deliveries("pending", EVERYTHING, 10) == []

    async def test_replay_gives_a_dead_letter_a_fresh_round(
        self, store: Store, sub: Subscription
    ) -> None:
        dead = await self.dead_letter(store, sub, 1)
        other = await self.dead_letter(store, sub, 2)
        replay_at = time.time() + 100
        assert await store.replay_dead(DeadLetterFilter(ids=[dead]), replay_at) == 1
        replayed = await store.get_delivery(dead)
        assert (replayed.state, replayed.reason, replayed.due_at) == ("pending", None, replay_at)
        [claim] = await store.claim(sub, "w", 10, LEASE, replay_at)
        assert (claim.delivery_id, claim.attempt, claim.round_attempt) == (dead, 2, 1)
        assert claim.round_started_at == replay_at
        assert (await store.get_delivery(other)).state == "dead"
        assert await store.replay_dead(DeadLetterFilter(ids=[dead]), replay_at) == 0

    async def test_discard_records_the_reason(self, store: Store, sub: Subscription) -> None:
        dead = await self.dead_letter(store, sub, 1)
        kept = await self.dead_letter(store, sub, 2)
        now = time.time()
        assert await store.discard_dead(DeadLetterFilter(ids=[dead]), "duplicate order", now) == 1
        discarded = await store.get_delivery(dead)
        assert (discarded.state, discarded.reason) == ("discarded", "duplicate order")
        assert [d.id for d in await store.list_deliveries("dead", EVERYTHING, 10)] == [kept]
        assert [d.id for d in await store.list_deliveries("discarded", EVERYTHING, 10)] == [dead]
        assert await store.discard_dead(DeadLetterFilter(ids=[dead]), "again", now) == 0

    async def test_schedule_replay_redelivers_finished_and_missing_records(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, routed(1, sub), routed(2, sub), routed(3, sub))
        claims = await store.claim(sub, "w", 2, LEASE, now)
        await store.record_outcomes(
            [outcome(claims[0], "w"), outcome(claims[1], "w", "dead", error="x")], now
        )
        # 1 delivered, 2 dead, 3 still pending (left alone), 4 never routed to it.
        later = now + 50
        records = [routed(p, key="K") for p in (1, 2, 3, 4)]
        assert await store.schedule_replay(sub.id, records, later) == 3
        states = {d.position: d for d in await store.list_deliveries("pending", EVERYTHING, 10)}
        assert sorted(states) == [1, 2, 3, 4]
        assert states[1].due_at == later and states[4].due_at == later
        assert states[3].due_at < later
        assert states[4].partitionkey == "K"
        again = await store.claim(sub, "w", 10, LEASE, later)
        rounds = {c.position: (c.attempt, c.round_attempt) for c in again}
        assert rounds == {1: (2, 1), 2: (2, 1), 3: (1, 1), 4: (1, 1)}
        assert {c.round_started_at for c in again if c.position != 3} == {later}
        with pytest.raises(NotFound):
            await store.schedule_replay("sub_missing", records, later)

    # -- housekeeping ----------------------------------------------------------------------

    async def test_backlog_counts_open_and_dead_per_subscription(self, store: Store) -> None:
        a = await store.create_subscription(spec("a"), 0)
        b = await store.create_subscription(spec("b"), 0)
        assert await store.backlog() == {}
        now = await self.route(store, *(routed(p, a) for p in range(1, 6)), routed(6, b))
        c1, c2, c3, _ = await store.claim(a, "w", 4, LEASE, now)
        await store.record_outcomes(
            [
                outcome(c1, "w"),
                outcome(c2, "w", "retry", next_due=now + 60),
                outcome(c3, "w", "dead"),
            ],
            now,
        )
        assert await store.backlog() == {
            a.id: {"pending": 1, "inflight": 1, "retrying": 1, "dead": 1},
            b.id: {"pending": 1},
        }

    async def test_oldest_needed_position_ignores_finished_deliveries(
        self, store: Store, sub: Subscription
    ) -> None:
        assert await store.oldest_needed_position() is None
        now = await self.route(store, routed(4, sub), routed(5, sub), routed(9, sub))
        c4, c5 = await store.claim(sub, "w", 2, LEASE, now)
        assert await store.oldest_needed_position() == 4
        await store.record_outcomes([outcome(c4, "w"), outcome(c5, "w", "dead")], now)
        assert await store.oldest_needed_position() == 5  # a dead letter can be replayed
        await store.discard_dead(EVERYTHING, "gone", now)
        assert await store.oldest_needed_position() == 9

    async def test_purge_forgets_only_old_finished_deliveries(
        self, store: Store, sub: Subscription
    ) -> None:
        now = await self.route(store, *(routed(p, sub) for p in range(1, 6)))
        c1, c2, c3, c4 = await store.claim(sub, "w", 4, LEASE, now)
        await store.record_outcomes(
            [outcome(c1, "w"), outcome(c2, "w", "dead"), outcome(c3, "w", "dead")], now
        )
        await store.discard_dead(DeadLetterFilter(ids=[c3.delivery_id]), "no", now)
        await store.record_outcomes([outcome(c4, "w", status=200)], now + 100)
        assert await store.purge_finished(now + 50) == 2  # 1 delivered, 3 discarded
        for gone in (c1, c3):
            with pytest.raises(NotFound):
                await store.get_delivery(gone.delivery_id)
        assert (await store.get_delivery(c4.delivery_id)).state == "delivered"
        assert await store.backlog() == {sub.id: {"pending": 1, "dead": 1}}
        assert await store.purge_finished(now + 50) == 0
