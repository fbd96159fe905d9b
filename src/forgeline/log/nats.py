"""The event log on NATS JetStream (``nats://host:port?stream=NAME&partitions=N``), for scale-out.

One stream per log, file storage, subjects ``<stream>.<partition>`` where the partition is a
stable hash of the event's ``partitionkey`` modulo N: consumers that need per-key order take
one partition each instead of serialising the whole stream. A position is the stream sequence.

Acknowledged means the PubAck came back. JetStream sends it before the message is fsynced
(the server flushes every two minutes by default), so an acknowledged event survives a
process crash of the server but not a power loss unless nats-server runs with
``sync_interval: always`` (DESIGN.md §6); that setting is what "2xx means durable" relies on.

Deduplication on ``(source, id)`` has two layers. Every publish carries ``Nats-Msg-Id`` =
``source + " " + id`` (a source never contains a space), so the server itself answers
concurrent or retried publishes within the stream's duplicate window with the first copy's
sequence. The window is a bounded in-memory map, so beyond it a KV bucket
``<stream>_dedup`` maps a hash of ``(id, source)`` to the position: looked up before
publishing, written after the PubAck (and rewritten when the server reports a duplicate, so a
retry inside the window repairs an entry a crash left unwritten). The cost is one lookup and
one extra stored message per event, and one KV subject per event ever appended (trimmed
events' entries stay, and are ignored once they point below the stream's first sequence).
The gap it leaves: an append that crashed between its PubAck and its index write, retried
only after the window, is stored twice.

``read`` fetches sequences by direct get (``allow_direct``), pipelined: on 2.9 that measured
faster than creating an ordered consumer per page. ``position_at`` asks the server where a
consumer starting at a time would begin (``opt_start_time``). ``stream`` wakes on a
headers-only ordered consumer, so appends by other processes are seen at once; ``trim``
purges up to a sequence. nats-py errors become ``BackendUnavailable`` (no connection, no
JetStream, timeouts) or ``BackendError`` here.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import zlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.js import api

from ..envelope import Event
from ..exceptions import (
    BackendError,
    BackendUnavailable,
    ConfigError,
    ForgelineError,
    PayloadTooLarge,
)
from .base import Appended, EventLog, Record

__all__ = ["NatsLog"]

T = TypeVar("T")

logger = logging.getLogger("forgeline.log.nats")

_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")
_PARAMS = frozenset({"stream", "partitions", "duplicate_window"})
_POLL_SUBSCRIBED = 5.0
_POLL_DEAF = 0.5
_TIMEOUT = 5.0


def partition_of(key: str | None, partitions: int, fallback: str) -> int:
    """A stable partition for an ordering key (``fallback``, the event id, spreads keyless
    events); crc32 because Python's ``hash`` of a string changes from process to process."""
    return zlib.crc32((key if key is not None else fallback).encode()) % partitions


def _token(value: str) -> str:
    # 128 bits of SHA-256, base64url: a valid subject token whatever the id or source holds.
    digest = hashlib.sha256(value.encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(parts.password, "***", 1)))


def _translate(exc: BaseException, doing: str) -> ForgelineError:
    if isinstance(exc, nats.errors.MaxPayloadError):
        return PayloadTooLarge(f"an event is larger than the NATS server accepts: {exc}")
    if isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.NoRespondersError
        | nats.errors.TimeoutError
        | nats.js.errors.ServiceUnavailableError
        | nats.js.errors.NoStreamResponseError
        | TimeoutError
        | OSError,
    ):
        return BackendUnavailable(f"NATS JetStream unreachable while {doing}: {exc!r}")
    return BackendError(f"NATS JetStream failed while {doing}: {exc!r}")


_NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


class NatsLog(EventLog):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(query) - _PARAMS
        if parts.scheme != "nats" or not parts.hostname or unknown:
            raise ConfigError(
                f"not a NATS log URL: {redacted(url)!r}"
                + (f" (unknown parameters {sorted(unknown)})" if unknown else "")
                + "; use nats://host:port?stream=NAME&partitions=N&duplicate_window=SECONDS"
            )
        self.stream_name = query.get("stream", "FORGELINE")
        if not _NAME.fullmatch(self.stream_name):
            raise ConfigError(f"stream {self.stream_name!r}: use letters, digits, '-' or '_'")
        try:
            self.partitions = int(query.get("partitions", "16"))
            self.duplicate_window = float(query.get("duplicate_window", "120"))
        except ValueError as exc:
            raise ConfigError(f"partitions and duplicate_window must be numbers: {exc}") from exc
        if not 1 <= self.partitions <= 1024 or self.duplicate_window <= 0:
            raise ConfigError("partitions must be 1-1024 and duplicate_window > 0 seconds")
        self._server = urlunsplit(parts._replace(query=""))
        self.bucket = f"{self.stream_name}_dedup"
        self._nc: Any = None
        self._js: Any = None
        self._watch: Any = None
        self._resubscribing: asyncio.Task[None] | None = None
        self.poll_interval = _POLL_DEAF
        self._connected = asyncio.Event()
        self._connected.set()
        # Set (and replaced) when the connection drops: requests in flight then are lost.
        self._lost = asyncio.Event()

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        if self._nc is not None:
            return
        try:
            # A finite number of attempts so an absent server fails open() …
            nc = await nats.connect(
                self._server,
                name=f"forgeline-log-{self.stream_name}",
                connect_timeout=3,
                reconnect_time_wait=0.5,
                max_reconnect_attempts=1,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise BackendUnavailable(
                f"cannot connect to NATS at {redacted(self._server)}: {exc!r}"
            ) from exc
        # … and endless reconnects once it is up: requests fail with a timeout meanwhile.
        nc.options["max_reconnect_attempts"] = -1
        self._nc, self._js = nc, nc.jetstream(timeout=_TIMEOUT)
        try:
            await self._ensure_stream()
            await self._ensure_bucket()
            await self._subscribe()
        except BaseException:
            await nc.close()
            self._nc = None
            raise

    async def aclose(self) -> None:
        if self._nc is None:
            return
        if self._resubscribing is not None:
            self._resubscribing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._resubscribing
        nc, self._nc = self._nc, None
        await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS connection error: %r", exc)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        # The wake-up consumer may not survive (a restarted server forgets ephemeral
        # consumers): poll at the quick pace until a new one is in place.
        self.poll_interval = _POLL_DEAF
        lost, self._lost = self._lost, asyncio.Event()
        lost.set()

    async def _on_reconnected(self) -> None:
        self._connected.set()
        # nats-py reconnects the connection, not a consumer the server has dropped: make a
        # new wake-up subscription (kept referenced: a bare task may be collected).
        self._resubscribing = asyncio.create_task(self._resubscribe())
        # Appends made while we were away woke no one here.
        self.notify()

    async def _resubscribe(self) -> None:
        old, self._watch = self._watch, None
        if old is not None:
            with contextlib.suppress(Exception):  # its server side may be gone already
                await old.unsubscribe()
        await self._subscribe()
        self.notify()

    def _describe(self) -> str:
        # 2.9 has no stream metadata; the description records what a reopening log checks.
        return f"forgeline event log; partitions={self.partitions}"

    async def _ensure_stream(self) -> None:
        try:
            info = await self._js.stream_info(self.stream_name)
        except nats.js.errors.NotFoundError:
            info = None
        except _NATS_ERRORS as exc:
            raise _translate(exc, "looking up the stream") from exc
        if info is None:
            config = api.StreamConfig(
                name=self.stream_name,
                description=self._describe(),
                subjects=[f"{self.stream_name}.*"],
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                duplicate_window=self.duplicate_window,
                allow_direct=True,
            )
            try:
                info = await self._js.add_stream(config)
            except _NATS_ERRORS as exc:
                raise _translate(exc, f"creating stream {self.stream_name}") from exc
        config = info.config
        if config.description != self._describe() or config.subjects != [f"{self.stream_name}.*"]:
            raise ConfigError(
                f"stream {self.stream_name} exists with {config.description!r} and subjects "
                f"{config.subjects}; this URL asks for {self._describe()!r} — changing the "
                "partition count would move keys between partitions"
            )

    async def _ensure_bucket(self) -> None:
        # Laid out as a KV bucket (stream KV_<bucket>, subjects $KV.<bucket>.>, one message per
        # key) so operators can inspect it with `nats kv`; written with plain publishes.
        name = f"KV_{self.bucket}"
        try:
            await self._js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        except _NATS_ERRORS as exc:
            raise _translate(exc, f"looking up the dedup bucket {self.bucket}") from exc
        config = api.StreamConfig(
            name=name,
            description=f"(source, id) -> position for stream {self.stream_name}",
            subjects=[f"$KV.{self.bucket}.>"],
            storage=api.StorageType.FILE,
            max_msgs_per_subject=1,
            discard=api.DiscardPolicy.NEW,
            allow_rollup_hdrs=True,
            deny_delete=True,
            allow_direct=True,
        )
        try:
            await self._js.add_stream(config)
        except _NATS_ERRORS as exc:
            raise _translate(exc, f"creating the dedup bucket {self.bucket}") from exc

    async def _subscribe(self) -> None:
        async def wake(_: Any) -> None:
            self.notify()

        try:
            self._watch = await self._js.subscribe(
                f"{self.stream_name}.*",
                stream=self.stream_name,
                cb=wake,
                ordered_consumer=True,
                headers_only=True,
                deliver_policy=api.DeliverPolicy.NEW,
            )
        except _NATS_ERRORS as exc:  # polling still works, only slower
            logger.warning("no wake-up subscription on %s, polling: %r", self.stream_name, exc)
            return
        self.poll_interval = _POLL_SUBSCRIBED

    async def _call(self, doing: str, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work``; if the connection drops meanwhile, run it again once reconnected.

        A request written to a connection that then dies is simply lost (core NATS is
        at-most-once), and would otherwise surface only as a timeout. Every operation here
        may run twice: reads trivially, appends because they deduplicate on (source, id).
        """
        for attempt in (1, 2):
            if self._nc is None:
                raise BackendUnavailable("the NATS log is not open")
            lost = asyncio.ensure_future(self._lost.wait())
            task = asyncio.ensure_future(work())
            try:
                await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                lost.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *_NATS_ERRORS):
                    await task
                if attempt == 1:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(_TIMEOUT):
                            await self._connected.wait()
                    continue
                raise BackendUnavailable(f"NATS connection lost while {doing}")
            try:
                return task.result()
            except _NATS_ERRORS as exc:
                raise _translate(exc, doing) from exc
        raise AssertionError("unreachable")

    # -- appends -----------------------------------------------------------------------------

    def subject_for(self, event: Event) -> str:
        return f"{self.stream_name}.{partition_of(event.partitionkey, self.partitions, event.id)}"

    def _key(self, source: str, id: str) -> str:
        # id first, so every source's entry for one id sits under one prefix (see ``find``).
        return f"$KV.{self.bucket}.{_token(id)}.{_token(source)}"

    async def _indexed(self, keys: Sequence[str]) -> list[int | None]:
        async def one(key: str) -> int | None:
            try:
                msg = await self._js.get_msg(f"KV_{self.bucket}", subject=key, direct=True)
            except nats.js.errors.NotFoundError:
                return None
            return int(msg.data) if msg.data else None

        return list(await asyncio.gather(*(one(key) for key in keys)))

    async def _append(self, events: Sequence[Event]) -> list[Appended]:
        return await self._call("appending", lambda: self._publish(events))

    async def _publish(self, events: Sequence[Event]) -> list[Appended]:
        first: dict[tuple[str, str], int] = {}  # (source, id) -> index of its first copy
        for index, event in enumerate(events):
            first.setdefault((event.source, event.id), index)
        unique = list(first)
        bodies = {pair: events[first[pair]].to_json() for pair in unique}
        # Refuse the whole batch up front: failing halfway would leave part of it stored.
        limit = self._nc.max_payload - 512  # room for the headers
        if any(len(body) > limit for body in bodies.values()):
            raise PayloadTooLarge(f"an event is larger than the NATS server accepts ({limit} B)")
        indexed = await self._indexed([self._key(*pair) for pair in unique])
        floor = None
        if any(position is not None for position in indexed):
            floor = (await self._js.stream_info(self.stream_name)).state.first_seq
        known: dict[tuple[str, str], tuple[int, bool]] = {}
        pending: list[tuple[tuple[str, str], asyncio.Future[api.PubAck]]] = []
        for pair, position in zip(unique, indexed, strict=True):
            if position is not None and floor is not None and position >= floor:
                known[pair] = (position, True)
                continue
            event = events[first[pair]]
            # Awaited one by one: each call only queues the message, in input order, so the
            # server assigns this batch's sequences in that order too.
            future = await self._js.publish_async(
                self.subject_for(event),
                bodies[pair],
                headers={"Nats-Msg-Id": f"{event.source} {event.id}"},
            )
            pending.append((pair, future))
        acks = await asyncio.gather(*(future for _, future in pending), return_exceptions=True)
        puts = []
        failure: BaseException | None = None
        for (pair, _), ack in zip(pending, acks, strict=True):
            if isinstance(ack, BaseException):
                failure = failure or ack
                continue
            known[pair] = (ack.seq, bool(ack.duplicate))
            puts.append(await self._js.publish_async(self._key(*pair), str(ack.seq).encode()))
        # The index is written for whatever was stored, even if a sibling failed.
        await asyncio.gather(*puts)
        if failure is not None:
            raise failure
        answers: list[Appended] = []
        for index, event in enumerate(events):
            pair = (event.source, event.id)
            position, duplicate = known[pair]
            answers.append(Appended(position, duplicate or first[pair] != index))
        return answers

    # -- reads -------------------------------------------------------------------------------

    async def _load(self, seqs: Sequence[int]) -> list[Record]:
        async def one(seq: int) -> Record | None:
            try:
                msg = await self._js.get_msg(self.stream_name, seq=seq, direct=True)
            except nats.js.errors.NotFoundError:  # trimmed, or deleted one by one
                return None
            return Record(seq, msg.time.timestamp(), Event.from_stored(orjson.loads(msg.data)))

        found = await asyncio.gather(*(one(seq) for seq in seqs))
        return [record for record in found if record is not None]

    async def _state(self) -> Any:
        return (await self._js.stream_info(self.stream_name)).state

    async def read(self, after: int = 0, limit: int = 500) -> list[Record]:
        async def work() -> list[Record]:
            state = await self._state()
            start = max(after + 1, state.first_seq)
            end = min(state.last_seq, start + limit - 1)
            return await self._load(range(start, end + 1))

        return await self._call("reading", work)

    async def get(self, source: str, id: str) -> Record | None:
        async def work() -> Record | None:
            [position] = await self._indexed([self._key(source, id)])
            if position is None:
                return None
            records = await self._load([position])
            if records and (records[0].event.source, records[0].event.id) == (source, id):
                return records[0]
            return None

        return await self._call("reading", work)

    async def find(self, id: str) -> list[Record]:
        async def work() -> list[Record]:
            # Walk the index entries under this id's prefix, one per source (usually one).
            wildcard = f"$KV.{self.bucket}.{_token(id)}.*"
            positions: list[int] = []
            seq = 1
            while True:
                try:
                    msg = await self._js.get_msg(
                        f"KV_{self.bucket}", seq=seq, subject=wildcard, next=True, direct=True
                    )
                except nats.js.errors.NotFoundError:
                    break
                if msg.data:
                    positions.append(int(msg.data))
                seq = msg.seq + 1
            records = await self._load(sorted(set(positions)))
            return [record for record in records if record.event.id == id]

        return await self._call("reading", work)

    async def get_many(self, positions: Sequence[int]) -> list[Record]:
        wanted = sorted({p for p in positions if p > 0})
        return await self._call("reading", lambda: self._load(wanted))

    async def head(self) -> int:
        async def work() -> int:
            return int((await self._state()).last_seq)

        return await self._call("reading", work)

    async def position_at(self, time: float) -> int:
        async def work() -> int:
            # The server places a consumer starting at ``time`` on the first message at or
            # after it; the consumer's "delivered" stream sequence is the one before that.
            info = await self._js.add_consumer(
                self.stream_name,
                deliver_policy=api.DeliverPolicy.BY_START_TIME,
                opt_start_time=datetime.fromtimestamp(max(time, 0.0), UTC),
                ack_policy=api.AckPolicy.NONE,
                inactive_threshold=30.0,
                mem_storage=True,
            )
            with contextlib.suppress(*_NATS_ERRORS):
                await self._js.delete_consumer(self.stream_name, info.name)
            return int(info.delivered.stream_seq)

        return await self._call("locating a time", work)

    async def trim(self, before: float, *, keep_from: int | None = None) -> int:
        bound = await self.position_at(before)
        if keep_from is not None:
            bound = min(bound, keep_from - 1)

        async def work() -> int:
            if bound < (await self._state()).first_seq:
                return 0
            # The manager's purge answers only true/false; the count is in the raw reply.
            reply = await self._nc.request(
                f"$JS.API.STREAM.PURGE.{self.stream_name}",
                orjson.dumps({"seq": bound + 1}),
                timeout=_TIMEOUT,
            )
            body = orjson.loads(reply.data)
            if "error" in body:
                raise BackendError(f"purging {self.stream_name} failed: {body['error']}")
            return int(body.get("purged", 0))

        return await self._call("trimming", work)
