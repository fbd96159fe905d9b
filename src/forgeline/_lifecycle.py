"""The async lifecycle every backend and the hub share: ``open``/``aclose`` and ``async with``."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class AsyncResource:
    async def open(self) -> None:
        """Connect and prepare. Idempotent."""

    async def aclose(self) -> None:
        """Release connections; work in progress finishes first."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
