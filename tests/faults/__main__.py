"""``python -m tests.faults [SCENARIO …]`` (``make faults``): run the fault scenarios against
real processes and print the checker's table; exit 1 if any scenario lost, invented or
reordered an event (or could not run).

Scenarios (default: all): the issue's six — worker-kill, api-kill, nats-restart,
postgres-restart, worker-pause, sink-503 — and worker-kill-nats, api-kill-nats, nats-kill,
api-kill-2apis, api-kill-2apis-nats. ``--rate`` and ``--repeat`` push harder. ``--keep``
keeps each run's directory (process logs, the sink's journal); ``--self-test`` first runs a
sabotaged system (a sink that loses 3% of what it acknowledged, no ordering) that the checker
must fail.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from rich.console import Console

from .checker import Verdict, render
from .processes import PG_BIN, PrivateNats
from .scenarios import SABOTAGED, SCENARIOS, run_scenario


def versions() -> str:
    nats = PrivateNats.BINARY if PrivateNats.available() else "nats-server"
    found = []
    for argv in ([nats, "--version"], [str(PG_BIN / "postgres"), "--version"]):
        try:
            found.append(subprocess.run(argv, capture_output=True, text=True).stdout.strip())
        except OSError:
            found.append(f"{argv[0]}: not found")
    return " · ".join(found)


async def main(
    names: list[str], keep: bool, rate: float | None, repeat: int, self_test: bool
) -> int:
    console = Console(width=max(Console().width, 150))
    console.print(f"[bold]Fault scenarios[/bold] · {versions()}")
    root = Path(tempfile.mkdtemp(prefix="forgeline-faults-"))
    verdicts: list[Verdict] = []
    failed = False
    if self_test:
        console.print(f"→ {SABOTAGED.name} (must fail) …")
        verdict = await run_scenario(SABOTAGED, root / SABOTAGED.name)
        console.print(verdict.summary(), highlight=False)
        verdict.scenario += " (must fail)"
        verdicts.append(verdict)
        if verdict.ok or not (verdict.lost and verdict.reordered):
            console.print("[red]the checker missed the sabotage[/red]")
            failed = True
    for index, name in enumerate(name for name in names for _ in range(repeat)):
        console.print(f"→ {name} …")
        scenario = SCENARIOS[name]
        if rate is not None:
            scenario = dataclasses.replace(scenario, rate=rate)
        try:
            verdict = await run_scenario(scenario, root / f"{index:02d}-{name}")
        except Exception:
            console.print(f"[red]{name} could not run[/red]\n{traceback.format_exc()}")
            failed = True
            continue
        verdicts.append(verdict)
        failed |= not verdict.ok
        console.print(verdict.summary(), highlight=False)
    console.print(render(verdicts))
    if keep:
        console.print(f"run directories kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--keep", action="store_true", help="keep the run directories")
    parser.add_argument("--rate", type=float, help="events per second (default: 200)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario")
    parser.add_argument("--self-test", action="store_true", help="run the sabotaged system first")
    args = parser.parse_args()
    names = args.scenarios or list(SCENARIOS)
    sys.exit(asyncio.run(main(names, args.keep, args.rate, args.repeat, args.self_test)))
