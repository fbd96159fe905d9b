"""MQTT's failures, classified once, where they enter Forgeline.

aiomqtt raises ``MqttError`` (and ``MqttCodeError`` carrying a CONNACK or reason code) for
everything; MQTT 5 brokers also answer a publish with a PUBACK reason code. Both are turned
into one class of this tree here, so the source's reconnect loop and the dispatcher's retry
schedule decide by class alone:

    DeliveryError
    ├── MqttPermanentError          PermanentDeliveryError: dead-letter, never retried
    │   ├── MqttAuthError           bad user name or password, not authorised (also Unauthorized)
    │   └── MqttRejected            the broker refused this publish (topic name invalid,
    │                               packet too large, payload format invalid, not authorised)
    └── MqttTransientError          TransientDeliveryError: retried on the schedule
        ├── MqttUnavailable         cannot connect, connection lost (also BackendUnavailable)
        └── MqttTimeout             no CONNACK or PUBACK in time; the broker may still have it
"""

from __future__ import annotations

from typing import Any

from ...exceptions import (
    BackendUnavailable,
    PermanentDeliveryError,
    TransientDeliveryError,
    Unauthorized,
)

__all__ = [
    "MqttAuthError",
    "MqttPermanentError",
    "MqttRejected",
    "MqttTimeout",
    "MqttTransientError",
    "MqttUnavailable",
    "classify_connect_error",
    "classify_puback",
]

# CONNACK return codes (3.1.1) and reason codes (5) that a person must fix: credentials, ACLs,
# a banned or malformed client id. 3.1.1: 2 identifier rejected, 4 bad credentials, 5 not
# authorised; 5: 0x85 client id invalid, 0x86 bad credentials, 0x87 not authorised, 0x8A banned,
# 0x8C bad authentication method.
_PERMANENT_CONNACK = frozenset({2, 4, 5, 0x85, 0x86, 0x87, 0x8A, 0x8C})
_CONNACK_NAMES = {
    2: "client identifier rejected",
    4: "bad user name or password",
    5: "not authorised",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x8A: "banned",
    0x8C: "bad authentication method",
}
# PUBACK reason codes worth another try: 0x97 quota exceeded (a rate limit), 0x80 unspecified
# and 0x83 implementation-specific (Mosquitto's answer when a plugin failed).
_TRANSIENT_PUBACK = frozenset({0x80, 0x83, 0x97})


class MqttPermanentError(PermanentDeliveryError):
    """The broker refused the request itself; the same request will be refused again."""


class MqttAuthError(MqttPermanentError, Unauthorized):
    """The broker refused the connection: credentials, ACL or client id (a person fixes it)."""


class MqttRejected(MqttPermanentError):
    """A PUBACK with a failure reason code (MQTT 5)."""


class MqttTransientError(TransientDeliveryError):
    """Worth another try later: the broker was unreachable, slow or briefly overloaded."""


class MqttUnavailable(MqttTransientError, BackendUnavailable):
    """The broker cannot be reached, or the connection was lost."""


class MqttTimeout(MqttTransientError):
    """No answer in time. A publish may still have reached the broker (QoS 1 allows a copy)."""


def _code(exc: BaseException) -> int | None:
    rc: Any = getattr(exc, "rc", None)
    if rc is None:
        return None
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


def classify_connect_error(exc: BaseException, where: str) -> MqttTransientError | MqttAuthError:
    """An aiomqtt error raised while connecting or subscribing, as a Forgeline error."""
    from aiomqtt.exceptions import MqttConnectError  # here: the tree itself needs no driver

    code = _code(exc)
    text = str(exc) or type(exc).__name__
    if isinstance(exc, MqttConnectError) and code in _PERMANENT_CONNACK:
        # aiomqtt words 3.1.1 CONNACK codes as paho's socket errors ("not connected"): name
        # them ourselves, it is what the person fixing the config reads.
        why = _CONNACK_NAMES.get(code, text)
        return MqttAuthError(f"{where}: the broker refused the connection: {why} (code {code})")
    if "timed out" in text:
        return MqttTimeout(f"{where}: {text}")
    return MqttUnavailable(f"{where}: {text}")


def classify_puback(code: int, topic: str) -> MqttRejected | MqttTransientError | None:
    """``None`` for a success (below 0x80, including 0x10 "no matching subscribers")."""
    if code < 0x80:
        return None
    detail = f"the broker refused the publish to {topic!r} (reason code 0x{code:02X})"
    if code in _TRANSIENT_PUBACK:
        return MqttTransientError(detail)
    return MqttRejected(detail)
