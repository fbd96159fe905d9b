"""Inbound webhooks into events: the ingest stage for plant systems and partners that POST
JSON to ``/hooks/<name>``. No HTTP framework in here (``api/hooks.py`` is the route), so the
rules are the same wherever a request comes from.

A request goes through, in this order:

1. **the hook**: the name is a ``kind: webhook`` system, the client's address is allowed, and
   the request proves itself by the system's scheme (Standard Webhooks signatures over the
   id, timestamp and body, an HMAC of the raw body, or the token in the URL). Every failure
   here gets the same ``NotFound("no such hook")``, so a caller cannot tell an unknown name
   from a wrong secret, a stale timestamp or a refused address; secrets are compared with
   ``hmac.compare_digest``, every candidate of a rotation, without stopping at a match.
   This comes first so that a stranger's bytes are never parsed and a stranger learns
   nothing, not even which media type a hook takes. A Standard Webhooks request's signed
   ``webhook-id`` becomes its event id;
2. **the body**: JSON (``application/json`` or ``…+json``, else 415), an object, with a value
   at the ``id`` path when one is configured and an RFC 3339 time at the ``time`` path when
   present (else 400 naming the path);
3. **the log**: one event appended; the answer waits until it is durable. ``(source, id)`` is
   the log's dedup key, so a resend is one event and answers ``duplicate``.

A secret reference that cannot be read (a variable not set, a file missing), or that reads
as something else than a ``whsec_``/``whpk_`` key for ``standard``, is the hub's fault, not
the caller's: the answer is 503, which senders retry, so nothing is lost while an operator
fixes it (a 404 would make some senders drop the message for good). Only callers that passed
the address check get it.

Every request is counted in ``forgeline_webhook_requests{system, outcome, reason}`` on the
hub's registry: outcome ``accepted``, ``duplicate``, ``rejected`` (4xx, with the reason) or
``failed`` (5xx). ``system`` is empty for names that are not webhook systems: a label taken
from the URL would let anyone grow the registry without bound.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from weakref import WeakKeyDictionary

import orjson
from prometheus_client import CollectorRegistry, Counter

from ...envelope import SPECVERSION, Event, now_rfc3339
from ...exceptions import (
    BackendError,
    ConfigError,
    InvalidEvent,
    InvalidInput,
    NotFound,
    UnsupportedMediaType,
)
from ...log import Appended
from ...webhooks.signing import InvalidWebhookKey, WebhookVerificationError, verify
from .config import HmacScheme, WebhookSystem

__all__ = [
    "NO_SUCH_HOOK",
    "Accepted",
    "HookUnavailable",
    "Inbound",
    "Publish",
    "WebhookCounters",
    "WebhookIntake",
    "build_event",
]

log = logging.getLogger(__name__)

#: The one answer to every request that is not a verified request to a webhook system.
NO_SUCH_HOOK = "no such hook"

Publish = Callable[[Sequence[Event]], Awaitable[Sequence[Appended]]]
Outcome = Literal["accepted", "duplicate", "rejected", "failed"]

_MISSING = object()


class HookUnavailable(BackendError):
    """The hook cannot verify requests now (its secret reference cannot be read). Retrying
    later works once an operator fixes it; the caller is told nothing more."""

    problem = "hook-unavailable"
    title = "Webhook unavailable"


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request at a hook. ``headers`` answers lower-case names (a case-insensitive
    mapping such as Starlette's does too); ``client`` is the peer's address as the server
    reports it; ``token`` is the URL's last segment on ``/hooks/<name>/<token>``."""

    body: bytes
    headers: Mapping[str, str]
    client: str | None = None
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """The event a request became, and where the log has it."""

    event: Event
    position: int
    duplicate: bool


class WebhookCounters:
    """The intake's counters, on one registry (``WebhookCounters.of(hub.metrics.registry)``:
    one set per registry, however many apps serve the hub)."""

    _by_registry: ClassVar[WeakKeyDictionary[CollectorRegistry, WebhookCounters]] = (
        WeakKeyDictionary()
    )

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "forgeline_webhook_requests",
            "Requests at /hooks/<system> by outcome (accepted, duplicate, rejected, failed) "
            "and the reason of a refusal.",
            ["system", "outcome", "reason"],
            registry=registry,
        )

    @classmethod
    def of(cls, registry: CollectorRegistry) -> WebhookCounters:
        counters = cls._by_registry.get(registry)
        if counters is None:
            counters = cls._by_registry[registry] = cls(registry)
        return counters

    def count(self, system: str, outcome: Outcome, reason: str = "") -> None:
        self.requests.labels(system, outcome, reason).inc()


class WebhookIntake:
    """The hooks of every ``kind: webhook`` system in ``systems``, appending with ``publish``.

    ``env`` replaces ``os.environ`` for ``env:`` references (tests)."""

    def __init__(
        self,
        systems: Mapping[str, object],
        publish: Publish,
        *,
        counters: WebhookCounters | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._hooks = {
            name: spec for name, spec in systems.items() if isinstance(spec, WebhookSystem)
        }
        self._publish = publish
        self._counters = counters or WebhookCounters(CollectorRegistry())
        self._env = dict(env) if env is not None else None

    def refused(self, name: str, reason: str) -> None:
        """Count a request refused before it reached :meth:`take` (its body too large)."""
        self._counters.count(name if name in self._hooks else "", "rejected", reason)

    async def take(self, name: str, inbound: Inbound) -> Accepted:
        """Verify ``inbound``, append its event and answer once it is durable.

        :class:`NotFound` for anything but a verified request to a webhook system,
        :class:`HookUnavailable` (503) when its secret cannot be read,
        :class:`UnsupportedMediaType` / :class:`InvalidInput` for a body that cannot be one
        event, :class:`BackendError` when the log fails."""
        spec = self._hooks.get(name)
        label = name if spec is not None else ""
        refusal, proven_id = (
            ("unknown_system", None) if spec is None else self._refusal(name, spec, inbound)
        )
        if refusal is not None:
            # One digest of the body on every refusal: the time of the answer should not tell
            # an unknown name or a fenced address from a signed hook's wrong signature.
            hmac.new(b"", inbound.body, hashlib.sha256).digest()
            self._counters.count(label, "rejected", refusal)
            if spec is not None:  # a configured system: worth a line to whoever debugs a sender
                log.info("webhook %r refused a request from %s: %s", name, inbound.client, refusal)
            raise NotFound(NO_SUCH_HOOK)
        assert spec is not None
        try:
            event = build_event(name, spec, inbound, event_id=proven_id)
        except InvalidInput as exc:
            self._counters.count(label, "rejected", _reason(exc))
            raise
        try:
            (appended,) = await self._publish([event])
        except BackendError:
            self._counters.count(label, "failed", "backend")
            raise
        self._counters.count(label, "duplicate" if appended.duplicate else "accepted")
        return Accepted(event, appended.position, appended.duplicate)

    def _refusal(
        self, name: str, spec: WebhookSystem, inbound: Inbound
    ) -> tuple[str | None, str | None]:
        """Why ``inbound`` is not a request from the system (None: it is), and the event id
        the request proved, if its scheme signs one."""
        if not spec.allows(inbound.client):
            return "address", None
        scheme = spec.verify.scheme
        if scheme == "none":
            return (None if inbound.token is None else "token"), None
        if scheme == "token":
            assert spec.verify.token is not None
            if inbound.token is None:
                return "token", None
            tokens = self._secrets(name, spec.verify.token)
            return (None if _any_equal(inbound.token.encode(), tokens) else "token"), None
        if inbound.token is not None:
            return "token", None  # a token URL at a signed hook: not how this system calls
        if scheme == "standard":
            return self._standard_refusal(name, spec, inbound)
        assert spec.verify.hmac is not None
        scheme_hmac = spec.verify.hmac
        sent = _signature(scheme_hmac, inbound.headers)
        if sent is None:
            return "signature", None
        secrets = self._secrets(name, scheme_hmac.secret)
        expected = [_sign(scheme_hmac, secret, inbound.body) for secret in secrets]
        return (None if _any_equal(sent, expected) else "signature"), None

    def _standard_refusal(
        self, name: str, spec: WebhookSystem, inbound: Inbound
    ) -> tuple[str | None, str | None]:
        standard = spec.verify.standard
        assert standard is not None
        keys = self._resolved(name, standard.secret)
        try:
            proven = verify(inbound.headers, inbound.body, keys, tolerance=standard.tolerance)
        except WebhookVerificationError as exc:
            # A stale timestamp counted apart: it is the one a sender's operator can fix
            # (a clock, a queue that held messages) without touching a secret.
            return ("timestamp" if exc.reason == "timestamp" else "signature"), None
        except InvalidWebhookKey as exc:
            raise self._unavailable(name, exc.detail) from None
        return None, proven

    def _secrets(self, name: str, references: Sequence[str]) -> list[bytes]:
        return [value.encode() for value in self._resolved(name, references)]

    def _resolved(self, name: str, references: Sequence[str]) -> list[str]:
        from ...systems import resolve_secret  # forgeline.systems imports this package

        try:
            return [resolve_secret(ref, env=self._env) for ref in references]
        except ConfigError as exc:
            raise self._unavailable(name, exc.detail) from None

    def _unavailable(self, name: str, why: str) -> HookUnavailable:
        # The reference or what is wrong with its value, never the value: the operator
        # learns what to fix.
        log.error("webhook %r cannot verify requests: %s", name, why)
        self._counters.count(name, "failed", "secret_unavailable")
        return HookUnavailable("the hook cannot take requests now; try again later")


def build_event(
    name: str,
    spec: WebhookSystem,
    inbound: Inbound,
    *,
    received: str | None = None,
    event_id: str | None = None,
) -> Event:
    """The event of a verified request: its JSON object as ``data``, the id, subject and time
    read at the configured paths. ``received`` (RFC 3339, default now) is the time of an
    event whose body states none; ``event_id`` is the id the request's signature proved (a
    Standard Webhooks ``webhook-id``), which wins over every other."""
    media = inbound.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise UnsupportedMediaType("send the body as application/json")
    try:
        payload = orjson.loads(inbound.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"the body must be a JSON object, not {_json_kind(payload)}",
            errors=[{"path": "$", "message": "expected an object"}],
        )
    errors: list[dict[str, str]] = []
    # Where each attribute came from, so the envelope's complaints name the sender's field.
    origin: dict[str, str] = {}
    attributes: dict[str, Any] = {
        "specversion": SPECVERSION,
        "source": spec.event_source(name),
        "type": spec.type,
        "time": received or now_rfc3339(),
        "datacontenttype": "application/json",
        "data": payload,
    }
    if event_id is not None:
        origin["id"] = "webhook-id (header)"
        attributes["id"] = event_id
    elif spec.id is not None:
        origin["id"] = spec.id
        attributes["id"] = _key(payload, spec.id, "the event id", errors)
    elif sent_id := inbound.headers.get("webhook-id", "").strip():
        origin["id"] = "webhook-id (header)"
        attributes["id"] = sent_id
    else:
        # A resend of the same bytes is then one event; two equal messages, one too.
        attributes["id"] = "sha256:" + hashlib.sha256(inbound.body).hexdigest()
    if spec.subject is not None:
        origin["subject"] = spec.subject
        attributes["subject"] = _key(payload, spec.subject, "the subject", errors)
    if spec.time is not None:
        stated = _lookup(payload, spec.time)
        if stated is not _MISSING:  # not every message says when: the time of receipt then
            origin["time"] = spec.time
            attributes["time"] = stated
    try:
        event = Event.from_dict(attributes)
    except InvalidEvent as exc:
        errors += [
            {**error, "path": origin.get(error["path"], error["path"])} for error in exc.errors
        ]
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidEvent(f"{first['path']}: {first['message']}{more}", errors=errors)
    return event


def _lookup(document: dict[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` (digits index lists), or ``_MISSING`` (null too)."""
    value: Any = document
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
        if value is None:
            return _MISSING
    return value


def _key(payload: dict[str, Any], path: str, what: str, errors: list[dict[str, str]]) -> str:
    """A key at ``path`` as text: a non-empty string or an integer, else an error listed."""
    value = _lookup(payload, path)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    problem = "missing" if value is _MISSING else _json_kind(value)
    errors.append(
        {"path": path, "message": f"{problem}: {what} is a non-empty string or an integer"}
    )
    return "-"  # a placeholder, so the envelope still reports its own findings


def _signature(scheme: HmacScheme, headers: Mapping[str, str]) -> bytes | None:
    sent = headers.get(scheme.header.lower())
    if sent is None or sent[: len(scheme.prefix)].lower() != scheme.prefix.lower():
        return None
    digest = sent[len(scheme.prefix) :].strip()
    return (digest.lower() if scheme.encoding == "hex" else digest).encode()


def _sign(scheme: HmacScheme, secret: bytes, body: bytes) -> bytes:
    mac = hmac.new(secret, body, hashlib.sha256).digest()
    return mac.hex().encode() if scheme.encoding == "hex" else base64.b64encode(mac)


def _any_equal(given: bytes, candidates: Sequence[bytes]) -> bool:
    # Every candidate is compared, in constant time each: how long the check takes says
    # nothing about which secret of a rotation matched, or how much of one.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(given, candidate)
    return matched


def _reason(exc: InvalidInput) -> str:
    if isinstance(exc, UnsupportedMediaType):
        return "media_type"
    if isinstance(exc, InvalidEvent):
        return "invalid_event"
    return "malformed"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return "a literal"
    return "a number"
