"""``forgeline demo --smoke`` end to end: the scenario passes its own checks, and the events it
published are in the data directory's log."""

from __future__ import annotations

import io
import time
from collections import Counter
from pathlib import Path

from rich.console import Console

from forgeline.demo import SMOKE, plant_schedule, run_demo
from forgeline.log import open_log


async def test_smoke_demo_passes_and_leaves_its_events_in_the_log(tmp_path: Path) -> None:
    output = io.StringIO()
    console = Console(file=output, width=120, force_terminal=False)
    started = time.monotonic()

    ok = await run_demo(smoke=True, data_dir=tmp_path, console=console)

    elapsed = time.monotonic() - started
    text = output.getvalue()
    assert ok, text
    assert elapsed < SMOKE.timeout
    assert "all" in text and "checks passed" in text
    assert "FAILED" not in text

    schedule = plant_schedule(SMOKE.mos)
    published = [event for item in schedule if not item.duplicate for event in item.events]
    assert any(item.duplicate for item in schedule)

    db = tmp_path / "events.db"
    assert db.is_file()
    async with open_log(f"sqlite:///{db}") as log:
        records = await log.read(0, 10_000)
    # The run's events have ids of their own (fresh ULIDs): compare shapes, not ids.
    assert len(records) == len(published)
    assert len({(r.event.source, r.event.id) for r in records}) == len(records)
    assert Counter(r.event.type for r in records) == Counter(e["type"] for e in published)
    subjects = {r.event.subject for r in records if r.event.type.startswith("production.")}
    assert subjects == {f"MO/{42 + n:05d}" for n in range(SMOKE.mos)}


async def test_a_kept_data_dir_can_run_the_demo_again(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    assert await run_demo(smoke=True, data_dir=tmp_path, console=console)
    assert await run_demo(smoke=True, data_dir=tmp_path, console=console)
    schedule = plant_schedule(SMOKE.mos)
    per_run = sum(len(item.events) for item in schedule if not item.duplicate)
    async with open_log(f"sqlite:///{tmp_path / 'events.db'}") as log:
        assert await log.head() == 2 * per_run
