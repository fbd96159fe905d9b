"""Routing cost per event with 200 flows configured, against the raw limit in the same run.

A plant config of 200 flows (``route.flow.expand_flows``): 150 listen to one event type each
(``mes.line017.production.v1``…), 40 to a type pattern (``quality.site03.*``) with a ``when``
expression over the data, 10 to a source glob. Each event of a realistic stream (most
types matched by one flow, a fifth matched by none) goes through the router's
``SubscriptionTable.route`` — what the router runs for every record — and the time per event
is the figure.

The raw limit is the least work that can answer the same question: a dict from exact type to
the flows that take it, plus a loop over the pattern flows with their predicates inlined as
Python (no matcher objects, no expression sandbox). Both must select the same subscriptions
for every event (checked before timing). Ratio = raw time / router time (1.0 = as fast as
the hand-indexed loop).

    .venv/bin/python -m bench.flows [--events 20000] [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import time
from pathlib import Path
from typing import Any

from forgeline.envelope import Event
from forgeline.log import Record
from forgeline.route.flow import expand_flows
from forgeline.route.router import SubscriptionTable
from forgeline.route.subscription import Matcher
from forgeline.store import Subscription

RESULTS = Path(__file__).resolve().parent / "results" / "flows.json"


def flows() -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for line in range(150):
        items.append(
            {
                "name": f"line{line:03d}",
                "on": f"mes.line{line:03d}.production.v1",
                "to": {"publish": {"type": "production.completed.v1"}},
            }
        )
    for site in range(40):
        items.append(
            {
                "name": f"quality{site:02d}",
                "on": f"quality.site{site:02d}.*",
                "when": 'data.result == "REJECTED" and data.qty > 10',
                "to": {"publish": {"type": "quality.hold.placed.v1"}},
            }
        )
    for partner in range(10):
        items.append(
            {
                "name": f"partner{partner}",
                "on": {"types": ["asn.notice.*"], "source": f"files://partner{partner}/*"},
                "to": {"publish": {"type": "asn.received.v1"}},
            }
        )
    return items


def stream(count: int, seed: int = 7) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for position in range(1, count + 1):
        roll = rng.random()
        if roll < 0.6:
            event = Event(f"e{position}", "mes://plant", f"mes.line{rng.randrange(150):03d}"
                          ".production.v1", data={"qty": rng.randrange(50)})  # fmt: skip
        elif roll < 0.75:
            data = {"result": rng.choice(["ACCEPTED", "REJECTED"]), "qty": rng.randrange(30)}
            site = f"quality.site{rng.randrange(40):02d}.inspection.v1"
            event = Event(f"e{position}", "qms://lab", site, data=data)
        elif roll < 0.8:
            event = Event(f"e{position}", f"files://partner{rng.randrange(12)}/a.csv",
                          "asn.notice.v1", data={})  # fmt: skip
        else:
            event = Event(f"e{position}", "odoo://erp", "odoo.record.changed.v1", data={})
        records.append(Record(position, float(position), event))
    return records


def _table(specs: list[Any]) -> SubscriptionTable:
    table = SubscriptionTable(store=None)  # type: ignore[arg-type]
    table.by_id = {
        spec.name: (Subscription(spec.name, spec, 0.0, 0.0, 0), Matcher(spec)) for spec in specs
    }
    return table


def _glob(text: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in text.split("*")))


def _rejected_lot(data: Any) -> bool:
    return bool(data.get("result") == "REJECTED" and data.get("qty", 0) > 10)


def _raw(specs: list[Any]) -> Any:
    """The hand-indexed router: exact types in a dict, the patterned flows in a loop with their
    ``when`` written as Python."""
    exact: dict[str, list[str]] = {}
    patterned: list[tuple[str, re.Pattern[str], re.Pattern[str] | None, Any]] = []
    for spec in specs:
        (pattern,) = spec.types
        if "*" not in pattern and spec.source is None and spec.filter is None:
            exact.setdefault(pattern, []).append(spec.name)
        else:
            source = _glob(spec.source) if spec.source else None
            check = _rejected_lot if spec.filter else None
            patterned.append((spec.name, _glob(pattern), source, check))

    def route(record: Record) -> list[str]:
        event = record.event
        found = list(exact.get(event.type, ()))
        for name, types, source, check in patterned:
            if (
                types.fullmatch(event.type)
                and (source is None or source.fullmatch(event.source))
                and (check is None or check(event.data))
            ):
                found.append(name)
        return found

    return route


def _time(route: Any, records: list[Record], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        for record in records:
            route(record)
        best = min(best, time.perf_counter() - started)
    return best / len(records)


def run(events: int = 20_000, runs: int = 5) -> dict[str, Any]:
    specs = expand_flows(flows())
    records = stream(events)
    table, raw = _table(specs), _raw(specs)
    for record in records:  # the same answer before any timing
        routed = table.route(record)
        assert sorted(routed.subscription_ids if routed else []) == sorted(raw(record)), record
    router = _time(table.route, records, runs)
    limit = _time(raw, records, runs)
    matched = sum(1 for r in records if table.route(r) is not None) / len(records)
    return {
        "flows": len(specs),
        "events": events,
        "router_us_per_event": round(router * 1e6, 2),
        "raw_us_per_event": round(limit * 1e6, 2),
        "ratio": round(limit / router, 3),
        "events_matched": round(matched, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.events, args.runs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
