"""Serve a hub as its own process: ``python -m bench.hub_server DATA_DIR PORT``.

Started directly with uvicorn (uvloop, httptools) rather than through the CLI, so the bench
depends on nothing but ``create_app`` and ``Settings``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from forgeline.api.app import create_app
from forgeline.config import Settings


def main() -> None:
    data_dir, port = Path(sys.argv[1]), int(sys.argv[2])
    settings = Settings.load(env={}, data_dir=data_dir, port=port)
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
