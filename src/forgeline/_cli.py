"""What the ``forgeline`` command's modules share: consoles, failing with a message, and
the ``--data-dir`` option."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["DataDir", "err", "fail", "out"]

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="FORGELINE_DATA_DIR", help="[default: ./.forgeline]"),
]


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]{escape(message)}[/red]", soft_wrap=True)
    raise typer.Exit(code)
