"""Prometheus metrics of one hub, in a registry of its own (no global singletons: tests and
embedders run several hubs in one process).

Counters are bumped on the hot path; gauges that describe stored state (backlog, dead
letters) are read from the store when ``/metrics`` is scraped, so they are never stale.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

# Delivery latency is measured from the moment the log accepted the event.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_in = Counter(
            "forgeline_events_ingested",
            "Events accepted by the API, by whether they were new or duplicates.",
            ["outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "forgeline_deliveries",
            "Delivery attempts by subscription and outcome (delivered, retry, dead).",
            ["subscription", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "forgeline_delivery_latency_seconds",
            "From the log accepting an event to its successful delivery.",
            ["subscription"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.backlog = Gauge(
            "forgeline_backlog",
            "Deliveries not yet done, by subscription and state (pending, retrying, inflight).",
            ["subscription", "state"],
            registry=self.registry,
        )
        self.dead_letters = Gauge(
            "forgeline_dead_letters",
            "Dead letters waiting for replay or discard, by subscription.",
            ["subscription"],
            registry=self.registry,
        )
        self.unrouted = Gauge(
            "forgeline_unrouted_events",
            "Events in the log not yet matched against subscriptions.",
            registry=self.registry,
        )

        self._delivered: dict[str, tuple[Counter, Histogram]] = {}

    def ingested(self, new: int, duplicates: int) -> None:
        if new:
            self.events_in.labels("stored").inc(new)
        if duplicates:
            self.events_in.labels("duplicate").inc(duplicates)

    def delivered(self, subscription: str, seconds: float) -> None:
        # Label lookups cost more than the increment; cache the children per subscription.
        children = self._delivered.get(subscription)
        if children is None:
            children = (
                self.deliveries.labels(subscription, "delivered"),
                self.latency.labels(subscription),
            )
            self._delivered[subscription] = children
        children[0].inc()
        children[1].observe(seconds)

    def failed(self, subscription: str, verdict: str) -> None:
        self.deliveries.labels(subscription, verdict).inc()

    def set_backlog(self, names: dict[str, str], counts: dict[str, dict[str, int]]) -> None:
        """Refresh the state gauges; ``names`` maps subscription ids to names."""
        self.backlog.clear()
        self.dead_letters.clear()
        for sub_id, name in names.items():
            states = counts.get(sub_id, {})
            for state in ("pending", "retrying", "inflight"):
                self.backlog.labels(name, state).set(states.get(state, 0))
            self.dead_letters.labels(name).set(states.get("dead", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
