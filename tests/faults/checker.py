"""The checker, in the style of Jepsen's queue checker: a history in, a verdict out.

The history has two sides. The load generator records every event it tried to publish and,
for those the API answered 2xx, the time and the log position of the acknowledgement. The
sink records every delivery attempt in arrival order. From those:

- **lost**: acknowledged, and never delivered (a 2xx from the sink) once the system settled.
  An event whose POST failed or timed out is *unacknowledged*: it may or may not be in the
  log, and is never counted lost.
- **unexpected**: delivered, but never published — an id the load generator never sent, or a
  copy whose subject, sequence number, source or ``Idempotency-Key`` differs from what was
  published under that id.
- **duplicated**: delivered more than once (same id). At-least-once allows it: reported, not
  a failure.
- **reordered**: per partition key, the *first* successful deliveries in the sink's arrival
  order must follow the log order of the key's events. Only first deliveries count: with
  at-least-once, a redelivery of an earlier event after a later one is a duplicate, not a
  reorder. The log order of a key is its publisher's sequence: the load generator publishes a
  key's next events only after the previous ones were acknowledged (a batch holds them in
  sequence order), so each acknowledged event was durable before its successor was sent
  and must sit at a lower position. That assumption is itself checked against the positions
  the API answered (**append-order** violations), so a log that numbered a key's events out
  of order is caught too, not silently taken as the reference.

A reorder is counted once per delivery that arrives after a later-sequenced event of its key
had already been delivered (an inversion against the running maximum).
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

__all__ = ["Delivery", "Published", "Verdict", "check", "render"]


@dataclass(frozen=True, slots=True)
class Published:
    """One event the load generator tried to publish; ``acked_at`` is None until a 2xx."""

    id: str
    source: str
    key: str
    seq: int
    sent_at: float
    acked_at: float | None = None
    position: int | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One attempt as the sink saw it, ``n`` its arrival order."""

    n: int
    at: float
    id: str
    idempotency_key: str | None
    key: str | None
    source: str | None
    seq: int | None
    attempt: int
    status: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> Delivery:
        return cls(
            line["n"],
            line["t"],
            line["id"],
            line.get("idem"),
            line.get("subject"),
            line.get("source"),
            line.get("seq"),
            line["attempt"],
            line["status"],
        )


@dataclass
class Verdict:
    scenario: str
    published: int = 0  # events sent at least once
    acked: int = 0
    unacked: int = 0
    unacked_delivered: int = 0
    attempts: int = 0  # every POST the sink saw
    refused: int = 0  # attempts the sink answered with a failure (its injected 503s)
    delivered: int = 0  # distinct events delivered
    lost: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    duplicated: int = 0  # events delivered more than once
    extra_copies: int = 0  # deliveries beyond the first, over all events
    reordered: list[str] = field(default_factory=list)
    append_order: list[str] = field(default_factory=list)
    latency_p50: float | None = None  # ack → first delivery, seconds
    latency_p99: float | None = None
    latency_max: float | None = None
    settle_seconds: float | None = None  # from the fault healed (or the load end) to settled
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.unexpected or self.reordered or self.append_order)

    def summary(self) -> str:
        def sample(items: list[str]) -> str:
            return ", ".join(items[:5]) + (" …" if len(items) > 5 else "")

        lines = [
            f"{self.scenario}: acked {self.acked}, delivered {self.delivered}, "
            f"lost {len(self.lost)}, unexpected {len(self.unexpected)}, "
            f"reordered {len(self.reordered)}, append-order {len(self.append_order)}, "
            f"duplicated {self.duplicated}"
        ]
        for name in ("lost", "unexpected", "reordered", "append_order"):
            items: list[str] = getattr(self, name)
            if items:
                lines.append(f"  {name}: {sample(items)}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def check(scenario: str, published: Iterable[Published], deliveries: Iterable[Delivery]) -> Verdict:
    events = {event.id: event for event in published}
    attempts = sorted(deliveries, key=lambda d: d.n)
    verdict = Verdict(scenario, published=len(events), attempts=len(attempts))
    verdict.acked = sum(event.acked_at is not None for event in events.values())
    verdict.unacked = verdict.published - verdict.acked

    first: dict[str, Delivery] = {}
    copies: dict[str, int] = defaultdict(int)
    for d in attempts:
        if not d.ok:
            verdict.refused += 1
            continue
        sent = events.get(d.id)
        if sent is None:
            verdict.unexpected.append(f"{d.id} (never published)")
            continue
        mismatch = [
            name
            for name, got, want in (
                ("subject", d.key, sent.key),
                ("seq", d.seq, sent.seq),
                ("source", d.source, sent.source),
                ("Idempotency-Key", d.idempotency_key, sent.id),
            )
            if got != want
        ]
        if mismatch:
            verdict.unexpected.append(f"{d.id} (delivered with another {', '.join(mismatch)})")
            continue
        copies[d.id] += 1
        first.setdefault(d.id, d)

    verdict.delivered = len(first)
    verdict.duplicated = sum(1 for count in copies.values() if count > 1)
    verdict.extra_copies = sum(count - 1 for count in copies.values())
    verdict.lost = sorted(
        event.id
        for event in events.values()
        if event.acked_at is not None and event.id not in first
    )
    verdict.unacked_delivered = sum(
        1 for event in events.values() if event.acked_at is None and event.id in first
    )

    # Per key, first deliveries in arrival order against the publisher's sequence.
    highest: dict[str, Published] = {}
    for d in sorted(first.values(), key=lambda d: d.n):
        sent = events[d.id]
        before = highest.get(sent.key)
        if before is not None and sent.seq < before.seq:
            verdict.reordered.append(
                f"{sent.key}: seq {sent.seq} first delivered after seq {before.seq}"
            )
        if before is None or sent.seq > before.seq:
            highest[sent.key] = sent

    # The reference order itself: acknowledged positions must grow with the sequence.
    by_key: dict[str, list[Published]] = defaultdict(list)
    for event in events.values():
        if event.position is not None:
            by_key[event.key].append(event)
    for key, acked in by_key.items():
        acked.sort(key=lambda e: e.seq)
        for earlier, later in itertools.pairwise(acked):
            assert earlier.position is not None and later.position is not None
            if later.position <= earlier.position:
                verdict.append_order.append(
                    f"{key}: seq {later.seq} at position {later.position} <= "
                    f"seq {earlier.seq} at {earlier.position}"
                )

    latencies = sorted(
        max(0.0, first[event.id].at - event.acked_at)
        for event in events.values()
        if event.acked_at is not None and event.id in first
    )
    verdict.latency_p50 = _percentile(latencies, 50)
    verdict.latency_p99 = _percentile(latencies, 99)
    verdict.latency_max = latencies[-1] if latencies else None
    return verdict


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(verdicts: Sequence[Verdict], title: str = "Fault scenarios") -> Table:
    """One row per scenario; the failure columns are red when not zero."""
    table = Table(
        title=title,
        caption="unacked (of them delivered) · sink attempts (refused with 503) · duplicated "
        "events (extra copies) · latency from ack to first delivery",
    )
    for name, justify, width in (
        ("scenario", "left", 22),
        ("acked", "right", 5),
        ("unacked", "right", 7),
        ("attempts", "right", 10),
        ("delivered", "right", 9),
        ("lost", "right", 4),
        ("unexp.", "right", 6),
        ("reord.", "right", 6),
        ("dup", "right", 7),
        ("p50/p99/max s", "right", 16),
        ("settle s", "right", 8),
        ("verdict", "left", 7),
    ):
        table.add_column(name, justify=justify, min_width=width)  # type: ignore[arg-type]

    def bad(count: int) -> str:
        return f"[red]{count}[/red]" if count else "0"

    for v in verdicts:
        table.add_row(
            v.scenario,
            str(v.acked),
            f"{v.unacked} ({v.unacked_delivered})",
            f"{v.attempts} ({v.refused})",
            str(v.delivered),
            bad(len(v.lost)),
            bad(len(v.unexpected)),
            bad(len(v.reordered) + len(v.append_order)),
            f"{v.duplicated} ({v.extra_copies})",
            f"{_seconds(v.latency_p50)}/{_seconds(v.latency_p99)}/{_seconds(v.latency_max)}",
            _seconds(v.settle_seconds),
            "[green]ok[/green]" if v.ok else "[red]FAIL[/red]",
        )
    return table
