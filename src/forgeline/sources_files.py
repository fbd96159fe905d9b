"""Events in from partners' folders: the file sources at the start of the data path.

Every ``kind: files`` system with ``watch`` rules gets one ``FileSource`` (the connector's:
complete files only, streamed, appended in batches, archived once durable, bad input
quarantined as ``files.quarantined.v1``) publishing into the hub's ``publish``. They run in
the leading process only, like Odoo's pollers: two processes reading one inbox would both
read each file (harmless, the ids are deterministic, but twice the work) and race to
archive it. A stop mid-file leaves the file in the inbox; the next leader reads it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from .envelope import Event
from .log import Appended
from .systems import FilesSystem, SystemSpec

__all__ = ["FileSources"]

Publish = Callable[[Sequence[Event]], Awaitable[Sequence[Appended]]]


class FileSources:
    """The sources of every files system of the config that watches something."""

    def __init__(self, systems: Mapping[str, SystemSpec], publish: Publish) -> None:
        self._systems = {
            name: spec
            for name, spec in systems.items()
            if isinstance(spec, FilesSystem) and spec.watch
        }
        self._publish = publish

    def loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """``(name, run)`` of every source, for the leader to supervise."""
        return [
            (f"file-source:{name}", self._runner(name, spec))
            for name, spec in self._systems.items()
        ]

    def _runner(self, name: str, spec: FilesSystem) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await spec.source(self._publish, name=name).run()

        return run
