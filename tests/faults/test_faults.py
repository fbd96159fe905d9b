"""The fault scenarios as tests: each runs real processes, injects its fault, and fails unless
the checker finds 0 lost, 0 unexpected and 0 per-key order violations (duplicates are
reported, and allowed). ``make faults`` runs the same scenarios and prints one table.

``make test`` runs the six scenarios of the issue and the harness's self-test (about two and a
half minutes in all); the extra ones (the kills on the NATS log, a kill -9 of nats-server,
two API processes) run with ``FORGELINE_FAULTS=all``, and always in ``make faults``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rich.console import Console

from ..services import require
from .checker import render
from .processes import PG_BIN, PostgresCluster, PrivateNats
from .scenarios import SABOTAGED, SCENARIOS, run_scenario

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(180)]

#: Scenarios only ``FORGELINE_FAULTS=all`` runs, to keep ``make test`` within its budget.
EXTRA = {"worker-kill-nats", "api-kill-nats", "nats-kill", "api-kill-2apis", "api-kill-2apis-nats"}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_scenario(name: str, tmp_path: Path) -> None:
    scenario = SCENARIOS[name]
    if name in EXTRA and os.environ.get("FORGELINE_FAULTS") != "all":
        pytest.skip("an extra scenario: make faults (or FORGELINE_FAULTS=all) runs it")
    require("postgres")
    if scenario.log == "nats" and scenario.private != "nats":
        require("nats")
    if scenario.private == "postgres" and not PostgresCluster.available():
        pytest.fail(f"a private PostgreSQL cluster needs initdb in {PG_BIN}")
    if scenario.private == "nats" and not PrivateNats.available():
        pytest.fail(f"a private NATS server needs {PrivateNats.BINARY}")

    verdict = await run_scenario(scenario, tmp_path)

    console = Console(width=150, record=True, force_terminal=False)
    console.print(render([verdict], title=name))
    table = console.export_text()
    assert verdict.ok, f"{verdict.summary()}\n{table}"
    assert verdict.delivered == verdict.acked + verdict.unacked_delivered


async def test_the_harness_sees_lost_and_reordered_events(tmp_path: Path) -> None:
    """A sink that drops 3% of what it acknowledged, and no ordering while 10% of first
    attempts fail: the same harness and checker must report lost and reordered events."""
    require("postgres")
    verdict = await run_scenario(SABOTAGED, tmp_path)
    assert not verdict.ok
    assert 0.01 * verdict.acked < len(verdict.lost) < 0.08 * verdict.acked, verdict.summary()
    assert verdict.reordered, verdict.summary()
    assert not verdict.unexpected, verdict.summary()
