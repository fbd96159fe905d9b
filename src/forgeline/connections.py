"""Open connections to the systems of the config (``systems:``), shared by every stage.

A system that is down when the hub starts must not stop the hub: clients are opened on first
use, under a lock, and a failed open is retried by the next use (the delivery that needed it
is rescheduled as a transient failure). Bad credentials are permanent: they need a person.

Odoo systems get one ``OdooClient`` each; files systems one batching ``FileSink`` each (its
outbox); MQTT systems one publishing ``MqttSink`` each,
shared by every subscription that publishes there (it connects on its first publish and
reconnects after a loss by itself). An MQTT system's *source* is not here: it is a loop
the hub supervises (``sources_mqtt``), with its own session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, TypeVar

from ._lifecycle import AsyncResource
from .exceptions import ForgelineError, NotFound, TransientDeliveryError
from .systems import FilesSystem, MqttSystem, OdooSystem, SystemSpec

if TYPE_CHECKING:
    from .connectors.files import FileSink
    from .connectors.mqtt import MqttSink
    from .connectors.odoo import OdooClient

_Kind = TypeVar("_Kind", OdooSystem, MqttSystem, FilesSystem)

__all__ = ["Connections"]


class Connections(AsyncResource):
    def __init__(
        self, systems: Mapping[str, SystemSpec], *, env: dict[str, str] | None = None
    ) -> None:
        self.systems = dict(systems)
        self._env = env
        self._clients: dict[str, OdooClient] = {}
        self._sinks: dict[str, MqttSink] = {}
        self._outboxes: dict[str, FileSink] = {}
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self.systems}

    async def open(self) -> None:
        """Nothing to do up front: each client opens on first use."""

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        sinks, self._sinks = self._sinks, {}
        outboxes, self._outboxes = self._outboxes, {}
        for outbox in outboxes.values():
            await outbox.aclose()  # the batches waiting are written first
        for client in clients.values():
            await client.aclose()
        for sink in sinks.values():
            await sink.aclose()

    async def forget(self, name: str) -> None:
        """Drop one system's client or sink (its credentials stopped working): the next use
        opens a new one with the secret references resolved again."""
        async with self._locks[name]:
            client = self._clients.pop(name, None)
            sink = self._sinks.pop(name, None)
        if client is not None:
            await client.aclose()
        if sink is not None:
            await sink.aclose()

    def spec(self, name: str) -> SystemSpec:
        try:
            return self.systems[name]
        except KeyError:
            raise NotFound(f"no system named {name!r} in the config") from None

    def _spec_of(self, name: str, kind: type[_Kind]) -> _Kind:
        spec = self.spec(name)
        if not isinstance(spec, kind):
            # The config changed under a stored subscription: as final as a missing system.
            wanted = kind.model_fields["kind"].default
            raise NotFound(f"system {name!r} is an {spec.kind} system, not an {wanted} one")
        return spec

    async def mqtt_sink(self, name: str) -> MqttSink:
        """The publishing connection of one MQTT system, shared by every subscription that
        publishes there; it connects on its first publish (so a broker that is down costs
        the delivery a transient failure, never the hub its start)."""
        sink = self._sinks.get(name)
        if sink is not None:
            return sink
        spec = self._spec_of(name, MqttSystem)
        async with self._locks[name]:
            sink = self._sinks.get(name)
            if sink is None:
                from .connectors.mqtt import MqttSink

                sink = self._sinks[name] = MqttSink(spec.broker(self._env))
            return sink

    async def file_sink(self, name: str) -> FileSink:
        """The outbox writer of one files system, shared by every subscription writing
        there, so their events share batches and one sequence of file names."""
        outbox = self._outboxes.get(name)
        if outbox is not None:
            return outbox
        spec = self._spec_of(name, FilesSystem)
        async with self._locks[name]:
            outbox = self._outboxes.get(name)
            if outbox is None:
                outbox = self._outboxes[name] = spec.sink()
            return outbox

    async def odoo(self, name: str) -> OdooClient:
        """The connected client of one Odoo system, opened (version detected, logged in) now
        if it is not yet."""
        client = self._clients.get(name)
        if client is not None:
            return client
        spec = self._spec_of(name, OdooSystem)
        async with self._locks[name]:
            client = self._clients.get(name)
            if client is not None:
                return client
            from .connectors.odoo import OdooClient

            login, password, api_key = spec.credentials(self._env)
            client = OdooClient(
                spec.url,
                spec.db,
                login=login,
                password=password,
                api_key=api_key,
                protocol=spec.protocol,
                max_concurrency=spec.max_concurrency,
                timeout=spec.timeout,
            )
            try:
                await client.open()
            except ForgelineError:
                await client.aclose()
                raise
            except OSError as exc:  # defensive: the connector should have translated it
                await client.aclose()
                raise TransientDeliveryError(f"cannot reach Odoo {name!r}: {exc}") from exc
            self._clients[name] = client
            return client
