"""Open connections to the systems of the config (``systems:``), shared by every stage.

A system that is down when the hub starts must not stop the hub: clients are opened on first
use, under a lock, and a failed open is retried by the next use (the delivery that needed it
is rescheduled as a transient failure). Bad credentials are permanent: they need a person.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._lifecycle import AsyncResource
from .exceptions import ForgelineError, NotFound, TransientDeliveryError
from .systems import SystemSpec

if TYPE_CHECKING:
    from .connectors.odoo import OdooClient

__all__ = ["Connections"]


class Connections(AsyncResource):
    def __init__(
        self, systems: Mapping[str, SystemSpec], *, env: dict[str, str] | None = None
    ) -> None:
        self.systems = dict(systems)
        self._env = env
        self._clients: dict[str, OdooClient] = {}
        self._locks: dict[str, asyncio.Lock] = {name: asyncio.Lock() for name in self.systems}

    async def open(self) -> None:
        """Nothing to do up front: each client opens on first use."""

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            await client.aclose()

    async def forget(self, name: str) -> None:
        """Drop one system's client (its credentials stopped working): the next use opens a
        new one with the secret references resolved again."""
        async with self._locks[name]:
            client = self._clients.pop(name, None)
        if client is not None:
            await client.aclose()

    def spec(self, name: str) -> SystemSpec:
        try:
            return self.systems[name]
        except KeyError:
            raise NotFound(f"no system named {name!r} in the config") from None

    async def odoo(self, name: str) -> OdooClient:
        """The connected client of one Odoo system, opened (version detected, logged in) now
        if it is not yet."""
        client = self._clients.get(name)
        if client is not None:
            return client
        spec = self.spec(name)
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
