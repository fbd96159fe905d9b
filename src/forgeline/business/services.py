"""The business APIs' state in one hub process: their settings, the ERP and the availability
cache. ``api/business.py`` makes one per app (``install_business``) and its routes use it."""

from __future__ import annotations

from dataclasses import dataclass

from ..hub import Hub
from .availability import AvailabilityCache
from .erp import Erp

__all__ = ["BusinessServices", "BusinessSettings"]


@dataclass(frozen=True, slots=True)
class BusinessSettings:
    """How the business APIs treat Odoo (seconds). ``availability_ttl``: an availability
    answer is reused this long; ``availability_deadline``: how long a request waits on Odoo
    before it is answered from the last known value; ``availability_max_stale``: the oldest
    value still worth serving; ``erp_retry_after``: after Odoo failed, requests answer from
    what is known without asking it again for this long."""

    availability_ttl: float = 5.0
    availability_deadline: float = 2.0
    availability_max_stale: float = 3600.0
    erp_retry_after: float = 5.0
    site_ttl: float = 60.0
    max_cached: int = 10_000

    def __post_init__(self) -> None:
        for name in ("availability_ttl", "availability_deadline", "erp_retry_after", "site_ttl"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.availability_max_stale < 0 or self.max_cached < 1:
            raise ValueError("availability_max_stale must be >= 0 and max_cached >= 1")


class BusinessServices:
    def __init__(self, hub: Hub, settings: BusinessSettings | None = None) -> None:
        self.hub = hub
        self.settings = settings or BusinessSettings()
        self.erp = Erp(hub.connections, hub.settings.erp)
        self.availability = AvailabilityCache(
            self.erp,
            ttl=self.settings.availability_ttl,
            deadline=self.settings.availability_deadline,
            max_stale=self.settings.availability_max_stale,
            retry_after=self.settings.erp_retry_after,
            site_ttl=self.settings.site_ttl,
            max_entries=self.settings.max_cached,
        )

    async def aclose(self) -> None:
        """Cancel the Odoo reads still running for the cache (the hub closes the clients)."""
        await self.availability.aclose()
