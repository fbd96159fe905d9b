"""The checker itself, on made-up histories: it must catch each kind of violation, and must
not call at-least-once redelivery a reorder."""

from __future__ import annotations

import pytest

from .checker import Delivery, Published, check

pytestmark = pytest.mark.faults


def published(key: str, seq: int, *, acked: bool = True, position: int | None = None) -> Published:
    event_id = f"{key}-{seq}"
    if acked and position is None:
        position = seq + 1
    return Published(
        event_id, "faults/load", key, seq, 0.0, 1.0 if acked else None, position if acked else None
    )


def delivered(n: int, event: Published, *, status: int = 204, **changes: object) -> Delivery:
    fields: dict[str, object] = {
        "n": n,
        "at": 1.0 + n / 100,
        "id": event.id,
        "idempotency_key": event.id,
        "key": event.key,
        "source": event.source,
        "seq": event.seq,
        "attempt": 1,
        "status": status,
    }
    fields.update(changes)
    return Delivery(**fields)  # type: ignore[arg-type]


A0, A1, A2 = (published("A", seq) for seq in range(3))
B0 = published("B", 0, position=10)


def test_a_clean_history_passes() -> None:
    verdict = check("clean", [A0, A1, A2, B0], [delivered(1, A0), delivered(2, B0),
                                                delivered(3, A1), delivered(4, A2)])  # fmt: skip
    assert verdict.ok
    assert (verdict.acked, verdict.delivered, verdict.duplicated) == (4, 4, 0)


def test_an_acknowledged_event_never_delivered_is_lost() -> None:
    verdict = check("lost", [A0, A1], [delivered(1, A0)])
    assert verdict.lost == [A1.id]
    assert not verdict.ok


def test_a_failed_attempt_is_not_a_delivery() -> None:
    verdict = check("refused", [A0], [delivered(1, A0, status=503)])
    assert verdict.lost == [A0.id]
    assert verdict.refused == 1


def test_an_unacknowledged_event_is_never_lost() -> None:
    pending = published("A", 3, acked=False)
    verdict = check("unacked", [A0, pending], [delivered(1, A0)])
    assert verdict.ok
    assert (verdict.unacked, verdict.unacked_delivered) == (1, 0)


def test_an_event_never_published_or_altered_is_unexpected() -> None:
    stranger = published("Z", 0)
    verdict = check(
        "unexpected",
        [A0, A1],
        [delivered(1, stranger), delivered(2, A0), delivered(3, A1, seq=7)],
    )
    assert len(verdict.unexpected) == 2
    assert verdict.lost == [A1.id]  # its only copy was not the event published


def test_a_wrong_idempotency_key_is_unexpected() -> None:
    verdict = check("idem", [A0], [delivered(1, A0, idempotency_key="other")])
    assert verdict.unexpected and not verdict.ok


def test_duplicates_are_counted_and_allowed() -> None:
    verdict = check("dup", [A0, A1], [delivered(1, A0), delivered(2, A0), delivered(3, A1)])
    assert verdict.ok
    assert (verdict.duplicated, verdict.extra_copies) == (1, 1)


def test_a_redelivery_of_an_earlier_event_after_a_later_one_is_a_duplicate() -> None:
    history = [delivered(1, A0), delivered(2, A1), delivered(3, A0), delivered(4, A2)]
    verdict = check("redelivery", [A0, A1, A2], history)
    assert verdict.ok
    assert verdict.duplicated == 1


def test_first_deliveries_out_of_sequence_are_reordered() -> None:
    verdict = check("reorder", [A0, A1, A2], [delivered(1, A0), delivered(2, A2),
                                              delivered(3, A1)])  # fmt: skip
    assert verdict.reordered == ["A: seq 1 first delivered after seq 2"]
    assert not verdict.ok


def test_a_retried_first_attempt_delivered_late_is_reordered() -> None:
    # A1 failed, A2 went ahead, A1's retry succeeded: per-key ordering was broken.
    history = [delivered(1, A0), delivered(2, A1, status=503), delivered(3, A2),
               delivered(4, A1, attempt=2)]  # fmt: skip
    verdict = check("overtaken", [A0, A1, A2], history)
    assert len(verdict.reordered) == 1


def test_other_keys_may_interleave() -> None:
    history = [delivered(1, A0), delivered(2, B0), delivered(3, A1)]
    assert check("interleave", [A0, A1, B0], history).ok


def test_positions_out_of_sequence_are_an_append_order_violation() -> None:
    early, late = published("A", 0, position=5), published("A", 1, position=4)
    verdict = check("append", [early, late], [delivered(1, early), delivered(2, late)])
    assert verdict.append_order and not verdict.ok
