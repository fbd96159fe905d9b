"""Optional: sample the hub with py-spy during the relay (``python -m bench --profile``).

py-spy is not a dependency: ``.venv/bin/pip install py-spy`` first. The folded stacks go to
``bench/results/hub-profile.folded``; ``top`` summarizes them by self and inclusive samples.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampling(pid: int, out: Path, rate: int = 100) -> Iterator[None]:
    exe = py_spy()
    if exe is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    out.parent.mkdir(exist_ok=True)
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--gil",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def top(folded: Path, n: int = 10) -> dict[str, list[tuple[str, float]]]:
    """The ``n`` frames with most self samples, and the ``n`` Forgeline frames with most
    inclusive samples, as % of the samples (taken only while a thread holds the GIL)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        # py-spy puts the thread name first; idle threads still count towards the total.
        total += count
        own[frames[-1]] += count
        for frame in set(frames[1:]):
            if "forgeline/" in frame:
                inclusive[frame] += count
    if not total:
        return {"self": [], "inclusive": []}
    return {
        "self": [(f, 100 * c / total) for f, c in own.most_common(n)],
        "inclusive": [(f, 100 * c / total) for f, c in inclusive.most_common(n)],
    }


if __name__ == "__main__":  # python -m bench.profile FILE
    for kind, items in top(Path(sys.argv[1]), 25).items():
        print(f"-- {kind}")
        for frame, share in items:
            print(f"{share:5.1f}%  {frame}")
