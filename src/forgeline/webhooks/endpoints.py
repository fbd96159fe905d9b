"""Outbound webhook endpoints: what the API and the CLI manage, and what the hub wires in.

An endpoint is a subscription with a ``WebhookSink`` (its filter, map, policy, deliveries,
dead letters and replays are the delivery engine's, unchanged) plus the endpoint's row and
secrets (``endpoint_store``). ``Webhooks`` is the hub's part: it creates an endpoint (the
subscription, the row and the first secret in one transaction), changes it, rotates its
secret, turns it on again, sends a test event, and owns the ``WebhookSender`` the dispatcher
delivers through.

Defaults an endpoint gets (Svix's, which users compare us with): attempts immediately, then
after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h (8 in all, then the delivery is dead),
each delay jittered down by up to 10%; a ``Retry-After`` is honoured up to the longest delay;
15 s per attempt; rotation keeps the old secret signing for 24 h. Secrets are made here, sealed
at once (``secretbox``, bound to the endpoint and the secret's id), shown once - a ``v1``
``whsec_`` secret in the answer that made it, a ``v1a`` endpoint's ``whpk_`` public key
whenever asked; its ``whsk_`` private key never leaves the hub.

A URL is checked by the egress policy when it is given (its syntax, and every address its
host resolves to now) and again at every connection (``deliver/webhooks.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError
from ulid import ULID
from yarl import URL

from .._lifecycle import AsyncResource
from ..deliver.webhooks import (
    DEFAULT_DISABLE_AFTER,
    Changed,
    Publish,
    SealingKeys,
    TestOutcome,
    WebhookSender,
)
from ..exceptions import Conflict, InvalidSubscription, NotFound
from ..route.subscription import (
    DeliveryPolicy,
    RetryPolicy,
    SubscriptionSpec,
    WebhookSink,
    WebhookTarget,
)
from ..security.secretbox import SecretBox, load_secretbox
from ..store import Delivery, Subscription
from .egress import EgressPolicy, EgressRefused
from .endpoint_store import (
    Endpoint,
    EndpointSecret,
    EndpointStore,
    SigningKind,
    open_endpoint_store,
    secret_context,
)
from .signing import new_keypair, new_symmetric_secret

__all__ = [
    "DEFAULT_ROTATION_OVERLAP",
    "DEFAULT_SCHEDULE",
    "DEFAULT_TIMEOUT",
    "MAX_ROTATION_OVERLAP",
    "TEST_TIMEOUT",
    "Draft",
    "Webhooks",
    "endpoint_policy",
]

#: Delays before the 2nd … 8th attempt (the first is immediate): Svix's schedule.
DEFAULT_SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
DEFAULT_TIMEOUT = 15.0
#: Seconds the old secret keeps signing after a rotation, unless the caller says otherwise.
DEFAULT_ROTATION_OVERLAP = 86_400.0
MAX_ROTATION_OVERLAP = 30 * 86_400.0
#: Seconds a test send waits for the receiver at most.
TEST_TIMEOUT = 15.0
_JITTER = 0.1
_MAX_AGE_SLACK = 86_400.0

# API field names of the subscription's fields, for the problem's paths.
_FIELD = {"map": "transform", "policy.rate_limit": "rate_limit", "policy.ordering": "ordering"}


class _LazyBox:
    """The master key, loaded at first use: a scale-out deployment without one still starts
    (its endpoints fail with the configuration error, which says what to set)."""

    def __init__(self, load: Callable[[], SecretBox]) -> None:
        self._load = load
        self._box: SecretBox | None = None

    def _get(self) -> SecretBox:
        if self._box is None:
            self._box = self._load()
        return self._box

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        return self._get().seal(plaintext, context=context)

    def open(self, token: str, *, context: bytes) -> bytes:
        return self._get().open(token, context=context)


@dataclass(frozen=True, slots=True)
class Draft:
    """An endpoint as a caller describes it (the API's body, after its own checks)."""

    url: str
    types: list[str]
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    filter: str | None = None
    transform: dict[str, Any] | None = None
    enabled: bool = True
    rate_limit: float | None = None
    ordering: Literal["none", "key"] = "none"
    schedule: list[float] | None = None
    timeout: float | None = None

    @classmethod
    def of(cls, endpoint: Endpoint) -> Draft:
        spec = endpoint.subscription.spec
        policy = spec.policy
        return cls(
            url=endpoint.url,
            types=list(spec.types),
            description=endpoint.description,
            metadata=dict(endpoint.metadata),
            filter=spec.filter,
            transform=spec.map if isinstance(spec.map, dict) else None,
            enabled=spec.enabled,
            rate_limit=policy.rate_limit,
            ordering=policy.ordering,
            schedule=list(policy.retry.schedule) if policy.retry.schedule is not None else None,
            timeout=policy.timeout,
        )


def endpoint_policy(
    *,
    schedule: Sequence[float] | None = None,
    timeout: float | None = None,
    ordering: Literal["none", "key"] = "none",
    rate_limit: float | None = None,
) -> DeliveryPolicy:
    """An endpoint's delivery policy: its schedule (default ``DEFAULT_SCHEDULE``) decides the
    attempts; ``max_age`` leaves the whole schedule room, and ``max_delay`` (which, with a
    schedule, caps only a ``Retry-After``) is its longest delay."""
    delays = list(DEFAULT_SCHEDULE if schedule is None else schedule)
    return DeliveryPolicy(
        retry=RetryPolicy(
            schedule=delays,
            jitter=_JITTER,
            max_attempts=min(1000, len(delays) + 1),
            max_delay=max(delays, default=0.0),
            max_age=sum(delays) + _MAX_AGE_SLACK,
        ),
        timeout=timeout or DEFAULT_TIMEOUT,
        ordering=ordering,
        rate_limit=rate_limit,
    )


class Webhooks(AsyncResource):
    """The hub's webhook endpoints. ``head`` answers the log's head (a new endpoint gets the
    events published after it); ``changed`` makes the hub re-read its subscriptions."""

    def __init__(
        self,
        store: EndpointStore,
        box: SealingKeys,
        egress: EgressPolicy,
        *,
        head: Callable[[], Awaitable[int]],
        publish: Publish,
        changed: Changed,
        disable_after: float = DEFAULT_DISABLE_AFTER,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.egress = egress
        self.clock = clock
        self._box = box
        self._head = head
        self._changed = changed
        self.sender = WebhookSender(
            store,
            box,
            egress,
            publish=publish,
            changed=changed,
            disable_after=disable_after,
            clock=clock,
        )

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        *,
        head: Callable[[], Awaitable[int]],
        publish: Publish,
        changed: Changed,
        env: Mapping[str, str] | None = None,
    ) -> Webhooks:
        """The hub's: in the store at ``settings.store``; the master key as ``load_secretbox``
        finds it (the dev key only on an embedded hub); egress allowed to the networks in
        ``FORGELINE_EGRESS_ALLOW`` and the optional settings ``egress_allow`` (CIDRs) and
        ``egress_https_only``; ``webhook_disable_after`` seconds (default five days)."""
        box = _LazyBox(
            lambda: load_secretbox(
                data_dir=settings.data_dir, env=env, allow_dev_key=settings.embedded
            )
        )
        egress = EgressPolicy.from_settings(
            settings.egress_allow,
            env=env,
            https_only=settings.egress_https_only,
        )
        return cls(
            open_endpoint_store(settings.store),
            box,
            egress,
            head=head,
            publish=publish,
            changed=changed,
            disable_after=settings.webhook_disable_after,
        )

    async def open(self) -> None:
        await self.store.open()
        await self.sender.open()

    async def aclose(self) -> None:
        await self.sender.aclose()
        await self.store.aclose()

    # -- reading -----------------------------------------------------------------------------

    async def get(self, id: str, *, tenant: str | None) -> Endpoint:
        """Endpoint ``id``; ``NotFound`` when missing or (``tenant`` given) another tenant's,
        alike, so ids cannot be probed."""
        found = await self.store.get(id) if isinstance(id, str) and len(id) <= 64 else None
        if found is None or (tenant is not None and found.tenant != tenant):
            raise NotFound(f"no webhook endpoint {id!r}")
        return found

    async def page(self, *, tenant: str | None, after: str, limit: int) -> list[Endpoint]:
        return await self.store.page(tenant, after, limit)

    async def messages(
        self, id: str, *, tenant: str | None, before: int, limit: int, state: str | None
    ) -> list[Delivery]:
        endpoint = await self.get(id, tenant=tenant)
        return await self.store.messages(
            endpoint.subscription.id, before=before, limit=limit, state=state
        )

    # -- changing ----------------------------------------------------------------------------

    async def create(
        self, draft: Draft, *, tenant: str | None, signing: SigningKind = "v1"
    ) -> tuple[Endpoint, str]:
        """A new endpoint and what to show once: its ``whsec_`` secret (``v1``) or its
        ``whpk_`` public key (``v1a``)."""
        await self.check_url(draft.url)
        now = self.clock()
        endpoint_id = f"ep_{ULID()}"
        spec = _spec(endpoint_id, draft, tenant)
        subscription = Subscription(f"sub_{ULID()}", spec, now, now, await self._head())
        secret, shown = self._new_secret(endpoint_id, signing, now)
        endpoint = Endpoint(
            id=endpoint_id,
            tenant=tenant,
            subscription=subscription,
            url=draft.url,
            description=draft.description,
            metadata=dict(draft.metadata),
            created_at=now,
            updated_at=now,
            disabled_at=None if draft.enabled else now,
            disabled_reason=None if draft.enabled else "created disabled",
            secrets=(secret,),
        )
        await self.store.create(endpoint, secret, subscription)
        await self._changed()
        return endpoint, shown

    async def update(self, id: str, changes: Mapping[str, Any], *, tenant: str | None) -> Endpoint:
        """Change the fields in ``changes`` (``Draft``'s names; None resets an optional one
        to its default). ``enabled`` false disables it now; true turns it on again."""
        current = await self.get(id, tenant=tenant)
        draft = dataclasses.replace(Draft.of(current), **changes)
        if "url" in changes:
            await self.check_url(draft.url)
        enabled = changes.get("enabled")
        saved = await self.store.save(
            current.id,
            url=draft.url,
            description=draft.description,
            metadata=dict(draft.metadata),
            spec=_spec(current.id, draft, current.tenant),
            enabled=enabled,
            reason="disabled through the API" if enabled is False else None,
            now=self.clock(),
        )
        if saved is None:
            raise NotFound(f"no webhook endpoint {id!r}")
        self.sender.forget(current.id)
        await self._changed()
        return saved

    async def enable(self, id: str, *, tenant: str | None) -> Endpoint:
        """Turn a disabled endpoint on again; its failing streak starts afresh."""
        current = await self.get(id, tenant=tenant)
        changed = await self.store.set_enabled(current.id, True, None, self.clock())
        self.sender.forget(current.id)
        if changed is None:
            return current  # enabled already
        await self._changed()
        return changed

    async def rotate(
        self,
        id: str,
        *,
        tenant: str | None,
        overlap: float = DEFAULT_ROTATION_OVERLAP,
        signing: SigningKind | None = None,
    ) -> tuple[Endpoint, str]:
        """A new secret (of ``signing``'s kind, default the newest one's), signing from now;
        the ones before keep signing for ``overlap`` seconds, then stop. Answers what to
        show once, as ``create`` does."""
        if not 0 <= overlap <= MAX_ROTATION_OVERLAP:
            raise InvalidSubscription(
                f"overlap_seconds must be 0-{MAX_ROTATION_OVERLAP:g}",
                errors=[{"path": "overlap_seconds", "message": "out of range"}],
            )
        current = await self.get(id, tenant=tenant)
        now = self.clock()
        kind = signing or (current.secrets[-1].kind if current.secrets else "v1")
        secret, shown = self._new_secret(current.id, kind, now)
        if not await self.store.rotate(current.id, secret, now + overlap):
            raise NotFound(f"no webhook endpoint {id!r}")
        self.sender.forget(current.id)
        return await self.get(current.id, tenant=None), shown

    async def test(self, id: str, *, tenant: str | None) -> TestOutcome:
        """One test event, waited for up to the endpoint's timeout (at most ``TEST_TIMEOUT``:
        someone is waiting for the answer)."""
        endpoint = await self.get(id, tenant=tenant)
        timeout = min(endpoint.subscription.spec.policy.timeout, TEST_TIMEOUT)
        return await self.sender.test(endpoint.id, timeout)

    def public_keys(self, endpoint: Endpoint) -> list[EndpointSecret]:
        """The ``v1a`` keys that sign now, oldest first; ``Conflict`` for a ``v1`` endpoint
        (an HMAC secret has no public half)."""
        keys = [s for s in endpoint.signing(self.clock()) if s.public_key is not None]
        if not keys:
            raise Conflict(
                f"webhook endpoint {endpoint.id} signs with v1 (HMAC): it has no public key; "
                "rotate with signing v1a for one"
            )
        return keys

    # -- rules -------------------------------------------------------------------------------

    async def check_url(self, url: str) -> None:
        """Refuse a URL the egress policy refuses now: its syntax, and every address its host
        resolves to (``EgressRefused``, 422, naming the rule)."""
        try:
            self.egress.check_url(url)
            parsed = URL(url)
            await self.egress.check_host((parsed.raw_host or "").strip("[]"), parsed.port or 0)
        except EgressRefused as exc:
            errors = _at_url(exc.detail, exc.rule)
            raise EgressRefused(exc.detail, rule=exc.rule, errors=errors) from None
        except OSError:  # socket.gaierror: no address now
            raise EgressRefused(
                "the URL's host does not resolve",
                rule="resolved",
                errors=_at_url("the host does not resolve", "resolved"),
            ) from None

    def _new_secret(
        self, endpoint_id: str, kind: SigningKind, now: float
    ) -> tuple[EndpointSecret, str]:
        secret_id = f"whk_{ULID()}"
        context = secret_context(endpoint_id, secret_id)
        if kind == "v1a":
            private, public = new_keypair()
            sealed = self._box.seal(private.encode(), context=context)
            return EndpointSecret(secret_id, endpoint_id, "v1a", sealed, public, now), public
        text = new_symmetric_secret()
        sealed = self._box.seal(text.encode(), context=context)
        return EndpointSecret(secret_id, endpoint_id, "v1", sealed, None, now), text


def _spec(endpoint_id: str, draft: Draft, tenant: str | None) -> SubscriptionSpec:
    """The endpoint's subscription; a draft that does not make one is refused (422) with
    each problem at the API field it came from."""
    try:
        return SubscriptionSpec(
            name=f"webhook-{endpoint_id}",
            types=draft.types,
            filter=draft.filter,
            map=draft.transform,
            enabled=draft.enabled,
            tenant=tenant,
            sink=WebhookSink(webhook=WebhookTarget(endpoint=endpoint_id)),
            policy=endpoint_policy(
                schedule=draft.schedule,
                timeout=draft.timeout,
                ordering=draft.ordering,
                rate_limit=draft.rate_limit,
            ),
        )
    except ValidationError as exc:
        errors = [
            {"path": _api_path(error["loc"]), "message": error["msg"]} for error in exc.errors()
        ]
        summary = "; ".join(f"{e['path']}: {e['message']}" for e in errors)
        raise InvalidSubscription(f"the endpoint is not valid: {summary}", errors=errors) from None


def _api_path(loc: tuple[int | str, ...]) -> str:
    dotted = ".".join(str(part) for part in loc if not isinstance(part, int))
    if dotted.startswith("policy.retry."):
        dotted = dotted.removeprefix("policy.retry.")
    dotted = _FIELD.get(dotted, dotted.removeprefix("policy."))
    indexes = "".join(f"[{part}]" for part in loc if isinstance(part, int))
    return dotted + indexes


def _at_url(message: str, rule: str) -> list[dict[str, str]]:
    """The problem's one finding: at ``url``, the rule by its name (``scheme``, ``address``,
    ``resolved``… as ``EgressRefused.rule``) and in words."""
    return [{"path": "url", "message": message, "rule": rule}]
