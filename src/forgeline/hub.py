"""The hub: one log, one store, the router and the dispatcher, wired and supervised.

The API and the CLI drive a ``Hub``; nothing else holds the pieces together. On the embedded
default the hub takes an exclusive lock on its data directory, so it knows it is the only
worker and can hand interrupted deliveries out again at once after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from ._lifecycle import AsyncResource
from .config import Settings, unknown_system
from .connections import Connections
from .deliver.dispatcher import Dispatcher
from .deliver.sinks import HttpSender
from .deliver.transform import Transform
from .envelope import Event
from .exceptions import BackendError, ConfigError, Conflict, ForgelineError, InvalidSubscription
from .log import Appended, EventLog, open_log
from .metrics import Metrics
from .origins import Origins
from .ownership.cache import CachedCrossReference
from .ownership.registry import OwnershipRegistry
from .ownership.xref import open_cross_references
from .route.router import Router, SubscriptionTable, routed_to
from .route.subscription import Matcher, SubscriptionSpec
from .security.access import Caller
from .security.authority import Authority
from .security.ratelimit import open_limiter
from .security.store import SecurityStore, open_security_store
from .sources import OdooSources
from .sources_files import FileSources
from .sources_mqtt import MqttSources
from .store import DeadLetterFilter, Store, Subscription, open_store
from .systems import set_unsealer
from .webhooks.endpoints import Webhooks

__all__ = ["SINK_SECRET", "Hub"]

#: The context sink credentials given over the API are sealed under (``api/subscriptions``).
SINK_SECRET = b"subscription-sink-secret"

log = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin.key"
_RETENTION_EVERY = 60.0
_REFRESH_EVERY = 2.0
_LEAD_ROLE = "router"
_LEAD_EVERY = 2.0
#: Seconds the routing cursor may stand still, with events waiting, before a follower routes.
_STALL = 6.0


def read_admin_key(data_dir: Path) -> str | None:
    try:
        return (data_dir / ADMIN_KEY_FILE).read_text().strip()
    except FileNotFoundError:
        return None


def ensure_admin_key(data_dir: Path) -> str:
    """The admin API key of this data directory, created (mode 0600) on first start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = "flk_" + secrets.token_urlsafe(32)
    try:
        fd = os.open(data_dir / ADMIN_KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = read_admin_key(data_dir)
        if not existing:
            raise ForgelineError(f"{data_dir / ADMIN_KEY_FILE} is empty") from None
        return existing
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class Hub(AsyncResource):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.log: EventLog = open_log(settings.log)
        self.store: Store = open_store(settings.store)
        self.subscriptions = SubscriptionTable(self.store)
        self.sender = HttpSender()
        self.connections = Connections(settings.systems)
        self.sources = OdooSources(self.connections, self.publish, settings.data_dir / "odoo")
        self.mqtt = MqttSources(settings.systems, self.publish)
        self.files = FileSources(settings.systems, self.publish)
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # The cross-reference lives in the store's database; mappings read it from memory.
        self.xref = CachedCrossReference(open_cross_references(settings.store))
        # Principals, credentials, signing keys, idempotency records and the audit log.
        self.security: SecurityStore = open_security_store(settings.store)
        self.limiter = open_limiter(settings.ratelimit_url, on_outage=settings.ratelimit_on_outage)
        self.ownership = OwnershipRegistry(settings.ownership)
        self.transform = Transform(
            ownership=self.ownership,
            origins=Origins(settings.systems),
            xref=self.xref,
            publish=self.publish,
        )
        # Outbound webhook endpoints: subscriptions with signing secrets and endpoint state.
        self.webhooks = Webhooks.from_settings(
            settings, head=self.log.head, publish=self.publish, changed=self._changed
        )
        # A tenant's url and rest sinks are the tenant's choice, as webhook URLs are: they
        # go through the egress policy at every connection, not only when they were given.
        self.tenant_sender = HttpSender(connector=self.webhooks.egress.connector)
        self.dispatcher = Dispatcher(
            self.log,
            self.store,
            self.subscriptions,
            self.sender,
            self.metrics,
            owner=owner,
            connections=self.connections,
            transform=self.transform,
            xref=self.xref,
            tenant_sender=self.tenant_sender,
            webhooks=self.webhooks.sender,
        )
        self.router = Router(
            self.log,
            self.store,
            self.subscriptions,
            self.dispatcher.routed,
            # Other processes create subscriptions: re-read them before routing each batch.
            shared=not settings.embedded,
        )
        self.authority: Authority | None = None  # API keys and access tokens; made at start
        self.admin_key = ""
        self._lock: IO[str] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.leading = False  # this process routes, polls and trims (see _lead)
        self._helping = False  # routing while the leader seems stalled (see _route_if_stalled)
        self._stall_mark = -1
        self._stall_since = 0.0

    async def open(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.stop()

    async def start(self) -> None:
        data_dir = self.settings.data_dir
        self.admin_key = ensure_admin_key(data_dir)
        if self.settings.embedded:
            self._lock = _lock_data_dir(data_dir)
        try:
            await self._start()
        except BaseException:
            await self.stop()  # release the lock and whatever was opened
            raise

    async def _start(self) -> None:
        await self.log.open()
        await self.store.open()
        await self.webhooks.open()
        await self.sender.open()
        await self.tenant_sender.open()
        await self.security.open()
        # After the data-dir lock: it may create the dev master key file there.
        self.authority = Authority.from_settings(self.settings, self.security)
        await self.authority.start()
        set_unsealer(self._unseal)
        if self.settings.role != "api":
            await self.xref.open()
        if self.settings.embedded:
            # The only worker: anything in flight was interrupted by our own stop or crash.
            # Shared backends wait for each lease to run out instead (another worker may be
            # delivering it right now).
            interrupted = await self.store.expire_leases()
            if interrupted:
                log.warning(
                    "%d deliveries were interrupted by a stop; sending them again", interrupted
                )
        for spec in self.settings.subscriptions:
            await self._apply_configured(spec)
        await self.subscriptions.refresh()
        self._started = True
        if self.settings.role == "api":
            return  # workers route, deliver and poll
        self._tasks = [
            self._supervise("dispatcher", self.dispatcher.run),
            self._supervise("lead", self._lead),
            self._supervise("cross-reference", self.xref.run),
            # In every worker, not only the leader: see ``sources_mqtt``.
            *(self._supervise(name, run) for name, run in self.mqtt.loops()),
        ]
        if not self.settings.embedded:
            self._tasks.append(self._supervise("subscriptions", self._refresh_loop))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._started = False
        await self.sources.aclose()
        await self.xref.aclose()
        await self.security.aclose()
        await self.limiter.aclose()
        await self.sender.aclose()
        await self.tenant_sender.aclose()
        await self.webhooks.aclose()
        await self.connections.aclose()
        await self.store.aclose()
        await self.log.aclose()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    @property
    def running(self) -> bool:
        return self._started and not any(task.done() for task in self._tasks)

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` adds beside its status: the MQTT sources this process runs.

        A disconnected source leaves the hub *ready*: the hub still takes events over HTTP
        and delivers what the log holds, and the broker keeps the source's messages in its
        persistent session until it reconnects. A 503 would have an orchestrator take the
        process out of service or restart it, which stops all of that and mends nothing on
        the broker's side; the detail (and the log's warnings) say what to look at."""
        if self.settings.role == "api":
            return {}
        health = self.mqtt.health()
        if not health:
            return {}
        return {
            "sources": [entry.as_dict() for entry in health],
            "degraded": any(not entry.connected for entry in health),
        }

    def _supervise(self, name: str, run: Callable[[], object]) -> asyncio.Task[None]:
        async def guarded() -> None:
            while True:
                try:
                    await run()  # type: ignore[misc]
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug must not silently stop delivery: log, then restart
                    log.exception("%s crashed; restarting in 1s", name)
                    await asyncio.sleep(1.0)

        return asyncio.create_task(guarded(), name=name)

    def _unseal(self, sealed: str) -> str:
        """A sink credential given over the API, opened with this hub's master keys."""
        if self.authority is None:
            raise ConfigError("the hub's master key is not loaded")
        return self.authority.box.open(sealed, context=SINK_SECRET).decode()

    async def identify(self, credential: str) -> Caller | None:
        """The caller a credential (an API key or an access token) stands for, if any."""
        return None if self.authority is None else await self.authority.identify(credential)

    # -- events ----------------------------------------------------------------------------

    async def publish(self, events: Sequence[Event]) -> list[Appended]:
        answers = await self.log.append(events)
        duplicates = sum(answer.duplicate for answer in answers)
        self.metrics.ingested(len(answers) - duplicates, duplicates)
        return answers

    # -- subscriptions ---------------------------------------------------------------------

    def _check_systems(self, spec: SubscriptionSpec) -> None:
        problem = unknown_system(spec, self.settings.systems)
        if problem:
            raise InvalidSubscription(problem)

    async def create_subscription(self, spec: SubscriptionSpec) -> Subscription:
        self._check_systems(spec)
        sub = await self.store.create_subscription(spec, await self.log.head())
        await self._changed()
        return sub

    async def update_subscription(self, id: str, spec: SubscriptionSpec) -> Subscription:
        self._check_systems(spec)
        sub = await self.store.update_subscription(id, spec)
        await self._changed()
        return sub

    async def delete_subscription(self, id: str) -> None:
        await self.store.delete_subscription(id)
        await self._changed()

    async def _changed(self) -> None:
        await self.subscriptions.refresh()
        self.dispatcher.wake()

    async def _apply_configured(self, spec: SubscriptionSpec) -> None:
        """Subscriptions in the config file are created, or updated to match, by name."""
        self._check_systems(spec)
        try:
            await self.store.create_subscription(spec, await self.log.head())
        except Conflict:
            existing = await self.store.get_subscription(spec.name)
            if existing.spec != spec:
                await self.store.update_subscription(existing.id, spec)

    # -- dead letters and replay -----------------------------------------------------------

    async def replay_dead(self, where: DeadLetterFilter) -> int:
        count = await self.store.replay_dead(where, time.time())
        self.dispatcher.wake()
        return count

    async def discard_dead(self, where: DeadLetterFilter, reason: str) -> int:
        count = await self.store.discard_dead(where, reason, time.time())
        self.dispatcher.wake()  # a discarded dead letter may unblock its key
        return count

    async def replay_range(
        self,
        subscription_id: str,
        *,
        after: int = 0,
        until: int | None = None,
        match: Callable[[Event], bool] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> int:
        """Deliver the log records in ``(after, until]`` that ``match`` to one subscription
        again, in chunks, whatever they had already been through."""
        sub = await self.store.get_subscription(subscription_id)
        until = until if until is not None else await self.log.head()
        matcher = Matcher(sub.spec)
        scheduled = 0
        cursor = after
        while cursor < until:
            records, next_cursor = await self.log.query(cursor, 1000, match=match, until=until)
            routed = [
                routed_to(record, [sub.id]) for record in records if matcher.matches(record.event)
            ]
            if routed:
                scheduled += await self.store.schedule_replay(sub.id, routed, time.time())
            if progress is not None:
                progress(next_cursor)
            if next_cursor == cursor:
                break  # the log ends before ``until``
            cursor = next_cursor
        self.dispatcher.wake()
        return scheduled

    # -- housekeeping ----------------------------------------------------------------------

    async def refresh_gauges(self) -> None:
        names = {sub.id: sub.spec.name for sub in await self.store.list_subscriptions()}
        self.metrics.set_backlog(names, await self.store.backlog())
        # An API process routes nothing: the workers' cursor is in the store.
        routed = self.router.position if self.leading else await self.store.routed_up_to()
        self.metrics.unrouted.set(max(0, await self.log.head() - routed))

    async def enforce_retention(self) -> tuple[int, int]:
        """Forget finished deliveries and trim the log, never past what is still needed."""
        cutoff = time.time() - self.settings.retention_seconds
        purged = await self.store.purge_finished(cutoff)
        needed = await self.store.oldest_needed_position()
        keep_from = self.router.position + 1
        if needed is not None:
            keep_from = min(keep_from, needed)
        trimmed = await self.log.trim(cutoff, keep_from=keep_from)
        return purged, trimmed

    async def _lead(self) -> None:
        """Routing, the sources' pollers and retention: one process of a deployment does
        them (the leader, by the store's lock; every worker delivers). Two routers would be
        safe, only wasteful; two pollers would double the load on Odoo."""
        while True:
            try:
                leading = await self.store.try_lead(_LEAD_ROLE)
            except BackendError as exc:
                log.warning("cannot take the lead now: %s", exc)
                leading = False
            if not leading:
                try:
                    await self._route_if_stalled()
                except BackendError as exc:
                    log.warning("checking the leader's progress failed: %s", exc)
                await asyncio.sleep(_LEAD_EVERY)
                continue
            work = [
                self._supervise("router", self.router.run),
                self._supervise("retention", self._retention_loop),
                *(self._supervise(name, run) for name, run in self.sources.loops()),
                # Leader only: see ``sources_files``.
                *(self._supervise(name, run) for name, run in self.files.loops()),
            ]
            self.leading = True
            try:
                while True:
                    await asyncio.sleep(_LEAD_EVERY)
                    if not await self.store.still_leading(_LEAD_ROLE):
                        break
                log.warning("lost the lead (its store session ended); routing moves on")
            finally:
                self.leading = False
                for task in work:
                    task.cancel()
                for task in work:
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _route_if_stalled(self) -> None:
        """A leader that hangs (SIGSTOP, a stuck host) keeps its session, so its lock: the
        log would wait for it. When the routing cursor has not moved for ``_STALL`` seconds
        while the log is ahead, route here too - two routers are safe (deliveries are unique
        per subscription and position), only wasteful - until the cursor moves by itself."""
        routed, head = await self.store.routed_up_to(), await self.log.head()
        now = time.monotonic()
        if routed != self._stall_mark:  # the leader moved it: all is well
            self._stall_mark, self._stall_since, self._helping = routed, now, False
            return
        if routed >= head:  # nothing waiting: not a stall (if helping, keep helping)
            self._stall_since = now
            return
        if not self._helping and now - self._stall_since < _STALL:
            return
        if not self._helping:
            log.warning(
                "the routing cursor has not moved for %.0fs with %d events waiting; "
                "routing here until the leader does",
                now - self._stall_since,
                head - routed,
            )
            self._helping = True
        self.router.position = routed
        while await self.router.step() >= self.router.batch:
            pass  # a full batch: more may be waiting
        self._stall_mark = self.router.position

    async def _refresh_loop(self) -> None:
        """API processes change subscriptions (and replay dead letters) in the shared store:
        a worker whose router is idle still picks the changes up."""
        while True:
            await asyncio.sleep(_REFRESH_EVERY)
            try:
                await self.subscriptions.refresh()
            except BackendError as exc:  # the store is away: the next turn tries again
                log.warning("refreshing subscriptions failed: %s", exc)
                continue
            self.dispatcher.wake()

    async def _retention_loop(self) -> None:
        while True:
            await asyncio.sleep(_RETENTION_EVERY)
            await self.enforce_retention()


def _lock_data_dir(data_dir: Path) -> IO[str]:
    handle = (data_dir / "hub.lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ForgelineError(
            f"another hub is running on {data_dir}; one process owns an embedded data directory"
        ) from None
    return handle
