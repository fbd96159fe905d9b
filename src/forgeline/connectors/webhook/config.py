"""The config shape of a webhook system (``systems: <name>: {kind: webhook, …}``), validated
on load: a plant system or a partner that POSTs JSON to ``/hooks/<name>``.

This is the model ``forgeline.systems`` puts in its union. Everything a config can get wrong
(no scheme or two, a type that is not versioned, a path that is not a dotted path, a network
with host bits set, an unauthenticated hook open to every address) is refused here, with the
path, before the hub starts. Secrets stay references (``env:NAME``, ``file:/path``) until a
request is verified, so ``forgeline check`` never needs them.

``verify`` holds exactly one scheme, each under its own key: ``standard`` (Standard Webhooks,
the signature covering the message id and a timestamp), ``hmac`` (a signature of the body in
a header of the sender's choosing), ``token`` (a secret in the URL) or ``none``. A new scheme
is one more optional key and one more verifier in ``intake``; no config already written
changes shape.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Annotated, Any, Literal, TypeAlias
from urllib.parse import quote

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ...envelope import SPECVERSION, Event
from ...exceptions import InvalidEvent
from ...webhooks.signing import DEFAULT_TOLERANCE, InvalidWebhookKey, check_verification_key

__all__ = ["HmacScheme", "StandardScheme", "WebhookSystem", "WebhookVerify"]

Network: TypeAlias = IPv4Network | IPv6Network


def _shaped(pattern: str, words: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {words}")
        return value

    return AfterValidator(check)


# Dotted and versioned, in the envelope's alphabet: ``mes.message.v1``, ``wms.putaway.v2``.
EventType: TypeAlias = Annotated[
    str,
    Field(max_length=255),
    _shaped(
        r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)*\.v[0-9]+",
        "a dotted, versioned event type such as mes.message.v1",
    ),
]
# ``msgId``, ``data.id``, ``lines.0.sku``: keys joined by dots, no empty key, no spaces.
BodyPath: TypeAlias = Annotated[
    str, _shaped(r"[^.\s]+(\.[^.\s]+)*", "a dotted path into the body such as data.id")
]
# An HTTP field name (RFC 9110 token).
HeaderName: TypeAlias = Annotated[
    str, _shaped(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", "an HTTP header name such as X-MES-Signature")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_or_many(value: Any) -> Any:
    # One reference, or several while a secret rotates: the old one keeps working until every
    # sender has the new one, and then the operator drops it.
    return (value,) if isinstance(value, str) else value


def _none_empty(references: tuple[str, ...]) -> tuple[str, ...]:
    if not all(references):
        raise ValueError("a secret reference is never empty")
    return references


#: ``env:NAME``, ``file:/path`` (or the secret itself, for tries), or a list of them.
SecretReferences: TypeAlias = Annotated[
    tuple[str, ...],
    BeforeValidator(_one_or_many),
    AfterValidator(_none_empty),
    Field(min_length=1),
]


class HmacScheme(_Strict):
    """The sender signs the raw body: ``<header>: <prefix><HMAC-SHA256(secret, body)>``, the
    digest in hex (GitHub's and the simulated WMS/QMS's ``X-…-Signature: sha256=…``) or in
    base64 (``encoding: base64``, with ``prefix: ""`` as Shopify sends it)."""

    secret: SecretReferences = Field(
        description="a secret reference (env:/file:), or a list while rotating"
    )
    header: HeaderName = Field(description="X-MES-Signature")
    prefix: str = Field(default="sha256=", description="text before the digest")
    encoding: Literal["hex", "base64"] = "hex"


class StandardScheme(_Strict):
    """Standard Webhooks (https://www.standardwebhooks.com): the sender signs
    ``{webhook-id}.{webhook-timestamp}.{body}`` and sends ``webhook-signature: v1,… v1a,…``.

    ``secret`` lists what verifies: ``whsec_`` secrets (``v1``, HMAC-SHA256) and ``whpk_``
    public keys (``v1a``, Ed25519), as values or ``env:``/``file:`` references, several while
    the sender rotates; a message passes when any of its signatures matches any of them.
    The signed ``webhook-id`` is the event id (a resend is one event) and a
    ``webhook-timestamp`` more than ``tolerance`` seconds from now is refused, so a captured
    request cannot be replayed later under the same or a new id::

        verify:
          standard: {secret: [env:PARTNER_WHSEC, "whpk_…"], tolerance: 300}
    """

    secret: SecretReferences = Field(
        description="whsec_ secrets and whpk_ public keys (or env:/file: references to them)"
    )
    # Beyond an hour, a captured request stays replayable for long; clocks that far apart
    # need fixing, not a wider window.
    tolerance: float = Field(
        default=DEFAULT_TOLERANCE, gt=0, le=3600, description="seconds either side of now"
    )

    @field_validator("secret")
    @classmethod
    def _keys(cls, references: tuple[str, ...]) -> tuple[str, ...]:
        for reference in references:
            if reference.startswith(("env:", "file:")):
                continue  # read, and checked, when a request comes
            try:
                check_verification_key(reference)
            except InvalidWebhookKey as exc:
                raise ValueError(exc.detail) from None  # never the value: it is a secret
        return references


class WebhookVerify(_Strict):
    """How a request proves it comes from the system: exactly one of ``standard`` (Standard
    Webhooks signatures: prefer it), ``hmac``, ``token`` (the secret is the last segment of
    ``POST /hooks/<name>/<token>``) or ``none: true``."""

    standard: StandardScheme | None = None
    hmac: HmacScheme | None = None
    token: SecretReferences | None = Field(
        default=None, description="a secret reference (env:/file:), or a list while rotating"
    )
    none: Literal[True] | None = Field(
        default=None, description="no proof at all: allow_from is then required"
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> WebhookVerify:
        # Every field is a scheme: a new one (``standard``) is a new field, and this holds.
        schemes = list(type(self).model_fields)
        chosen = [name for name in schemes if getattr(self, name) is not None]
        if len(chosen) != 1:
            found = f" (found {' and '.join(chosen)})" if chosen else ""
            raise ValueError(
                f"exactly one scheme: {', '.join(schemes[:-1])} or {schemes[-1]}{found}"
            )
        return self

    @property
    def scheme(self) -> Literal["standard", "hmac", "token", "none"]:
        if self.standard is not None:
            return "standard"
        if self.hmac is not None:
            return "hmac"
        if self.token is not None:
            return "token"
        return "none"


class WebhookSystem(_Strict):
    """A system that sends its events to ``POST /hooks/<name>`` (``/hooks/<name>/<token>``
    with the token scheme); each request's JSON object becomes one event, unchanged as its
    ``data``::

        mes:
          kind: webhook
          type: mes.message.v1        # the event type of what arrives
          id: msgId                   # body path of the sender's message id (the dedup key)
          subject: woNumber           # body path of the business key
          time: ts                    # body path of an RFC 3339 time (else: time of receipt)
          source: mes://plant-1       # default webhook://<name>
          verify:
            hmac: {secret: env:MES_SECRET, header: X-MES-Signature, prefix: "sha256="}
          allow_from: [10.0.0.0/8]    # optional: the client addresses allowed

    With ``verify: {standard: …}`` the event id is the signed ``webhook-id`` header, and
    ``id`` is refused (two ids for one message). Otherwise, without ``id``, the event id is
    the ``webhook-id`` header when sent, else ``sha256:`` and the hex digest of the raw body,
    so a resend of the same bytes is one event. With the hmac scheme that header is not
    covered by the signature: someone replaying a captured request under a new
    ``webhook-id`` gets a second event in. Name an ``id`` in the body whenever the sender has
    one, or use ``standard``.

    ``verify: {none: true}`` is allowed only with ``allow_from``: that the hub listens on
    loopback today says nothing about tomorrow (a reverse proxy on the same host makes every
    caller local), so an open hook carries its own restriction. Open to all is spelled out:
    ``allow_from: [0.0.0.0/0, "::/0"]``. The address checked is the client as the server
    reports it: behind a proxy the server trusts (uvicorn: ``forwarded_allow_ips``, loopback
    by default) that is the ``X-Forwarded-For`` client.
    """

    kind: Literal["webhook"] = "webhook"
    type: EventType = Field(description="dotted, versioned: mes.message.v1")
    id: BodyPath | None = Field(default=None, description="body path of the event id")
    subject: BodyPath | None = Field(default=None, description="body path of the business key")
    time: BodyPath | None = Field(default=None, description="body path of an RFC 3339 time")
    source: str | None = Field(default=None, description="default webhook://<system name>")
    verify: WebhookVerify
    # Validated even when absent: verify.none makes it required.
    allow_from: tuple[Network, ...] | None = Field(
        default=None,
        min_length=1,
        validate_default=True,
        description="client networks (CIDR) allowed to post",
    )

    @field_validator("verify")
    @classmethod
    def _one_id(cls, verify: WebhookVerify, info: ValidationInfo) -> WebhookVerify:
        if verify.standard is not None and info.data.get("id") is not None:
            raise ValueError("with standard, the event id is the signed webhook-id header: drop id")
        return verify

    @field_validator("allow_from", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value  # pydantic says what it expected
        networks: list[Network] = []
        for item in value:
            try:
                networks.append(ip_network(str(item), strict=True))
            except ValueError as exc:
                # ip_network's own words ("has host bits set"): 10.1.2.3/8 is a typo for
                # 10.0.0.0/8 or for 10.1.2.3/32, and which one is not ours to guess.
                raise ValueError(f"{item!r} is not a network: {exc}") from None
        return tuple(networks)

    @field_validator("allow_from")
    @classmethod
    def _open_hooks_are_fenced(
        cls, networks: tuple[Network, ...] | None, info: ValidationInfo
    ) -> tuple[Network, ...] | None:
        verify = info.data.get("verify")  # absent when verify itself was refused
        if networks is None and verify is not None and verify.none:
            raise ValueError(
                "required with verify.none: an unauthenticated hook names the addresses that "
                'may post ([0.0.0.0/0, "::/0"] for everyone, deliberately)'
            )
        return networks

    @field_validator("source")
    @classmethod
    def _source(cls, source: str | None) -> str | None:
        if source is not None:
            _check_envelope(source=source)
        return source

    def event_source(self, name: str) -> str:
        """The ``source`` of this system's events (``name`` is its key under ``systems:``)."""
        return self.source or f"webhook://{quote(name, safe='-._~')}"

    def allows(self, address: str | None) -> bool:
        """Whether a client at ``address`` may post (always, without ``allow_from``)."""
        if self.allow_from is None:
            return True
        try:
            client = ip_address(address or "")
        except ValueError:
            return False  # not an IP peer (a unix socket, a test client): not on the list
        if isinstance(client, IPv6Address) and client.ipv4_mapped is not None:
            client = client.ipv4_mapped  # a dual-stack socket's ::ffff:10.0.0.5 is 10.0.0.5
        return any(client in network for network in self.allow_from)


def _check_envelope(*, source: str) -> None:
    """Refuse what the envelope would refuse on every request, now, with the envelope's words."""
    try:
        Event.from_dict({"specversion": SPECVERSION, "id": "x", "source": source, "type": "a.v1"})
    except InvalidEvent as exc:
        raise ValueError(re.sub(r"^source: ", "", exc.detail)) from None
