"""Events in from the shop floor: the MQTT sources at the start of the data path.

Every ``kind: mqtt`` system with ``subscribe`` rules gets one ``MqttSource`` (the connector's:
QoS 1, a persistent session, PUBACK only once the batch is in the log, malformed payloads
quarantined as ``mqtt.quarantined.v1``) publishing into the hub's ``publish``. The hub runs
each as a supervised task in every worker process, not only in the leader: with a shared
subscription ``group`` the broker spreads the messages over the workers, each with its own
session, and a leader-only source would leave the others' share queued for nobody. (Odoo's
pollers are the opposite: two would double the load on Odoo, so they follow the lead.)

Stopping is graceful: the batch being appended finishes and is acknowledged, what was
received but not yet appended stays unacknowledged in the broker's session, and the next
start receives it again (the log recognises anything it already holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .envelope import Event
from .exceptions import ConfigError
from .log import Appended
from .systems import MqttSystem, SystemSpec

if TYPE_CHECKING:
    from .connectors.mqtt import MqttSource

__all__ = ["MqttSources", "SourceHealth"]

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Event]], Awaitable[Sequence[Appended]]]
#: Seconds between attempts to build a source whose settings cannot be used (a secret
#: reference not set yet, the driver missing): a person has to act, so no tight loop.
_RETRY_UNUSABLE = 30.0


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """What ``/readyz`` says about one MQTT source."""

    system: str
    connected: bool
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"system": self.system, "connected": self.connected}
        if self.error is not None:
            shown["error"] = self.error
        return shown


class MqttSources:
    """The sources of every MQTT system of the config that subscribes to something."""

    def __init__(
        self,
        systems: Mapping[str, SystemSpec],
        publish: Publish,
        *,
        env: dict[str, str] | None = None,
        worker: str | None = None,
    ) -> None:
        self._systems = {
            name: spec
            for name, spec in systems.items()
            if isinstance(spec, MqttSystem) and spec.subscribe
        }
        self._publish = publish
        self._env = env
        self._worker = worker
        self.sources: dict[str, MqttSource] = {}
        self._unusable: dict[str, str] = {}
        self._built = asyncio.Event()

    def loops(self) -> list[tuple[str, Callable[[], Awaitable[None]]]]:
        """``(name, run)`` of every source, for the hub to supervise; cancelling ``run``
        stops its source gracefully."""
        return [
            (f"mqtt-source:{name}", self._runner(name, spec))
            for name, spec in self._systems.items()
        ]

    def _runner(self, name: str, spec: MqttSystem) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            source = await self._build(name, spec)
            await source.open()  # returns at once: a broker that is down is retried inside
            try:
                await asyncio.Event().wait()  # until the hub stops: the source runs its loop
            finally:
                # Cancelled by the hub's stop: the current batch is appended and acknowledged,
                # the rest stays in the broker's session; then a clean DISCONNECT.
                await source.aclose()
                self.sources.pop(name, None)

        return run

    async def _build(self, name: str, spec: MqttSystem) -> MqttSource:
        while True:
            try:
                source = spec.source(self._publish, self._env, worker=self._worker)
            except ConfigError as exc:
                self._unusable[name] = exc.detail
                log.error(
                    "MQTT system %s cannot subscribe: %s; trying again in %gs",
                    name,
                    exc.detail,
                    _RETRY_UNUSABLE,
                )
                await asyncio.sleep(_RETRY_UNUSABLE)
                continue
            self._unusable.pop(name, None)
            self.sources[name] = source
            self._built.set()
            return source

    async def ready(self, timeout: float | None = None) -> None:
        """Until every source is connected and subscribed (``TimeoutError`` otherwise)."""
        async with asyncio.timeout(timeout):
            while len(self.sources) < len(self._systems):
                self._built.clear()
                await self._built.wait()
            for source in list(self.sources.values()):
                await source.ready()

    def health(self) -> list[SourceHealth]:
        """One entry per source this process runs (none in an API process)."""
        found: list[SourceHealth] = []
        for name in self._systems:
            source = self.sources.get(name)
            if source is None:
                found.append(SourceHealth(name, False, self._unusable.get(name, "starting")))
                continue
            error = None
            if not source.connected:
                error = source.last_error.detail if source.last_error else "connecting"
            found.append(SourceHealth(name, source.connected, error))
        return found
