"""Forgeline's MQTT connector (MQTT 5 by default, 3.1.1 supported; aiomqtt over paho-mqtt).

* :class:`MqttSource` - topic filters in, events out: QoS 1, persistent session, shared
  subscriptions, batched appends, PUBACK only once durable (``source``; the design and
  why it keeps Mosquitto from dropping a burst are in its docstring);
* :class:`Ingest`, ``QUARANTINE_TYPE`` - messages to events, malformed ones quarantined,
  and the event-id rule that makes QoS 1 redelivery a no-op (``ingest``);
* :class:`TopicRule` - a filter, its event type and its ``source``/``subject`` templates;
* :class:`MqttSink`, :class:`MqttTarget` - events out to a templated topic, PUBACK awaited;
* :class:`BrokerOptions` - where the broker is and how the session is held (``client``);
* :class:`MqttSystem`, :class:`MqttPublishTarget` - the config shapes (``config``);
* the error classes of ``errors``.

The config shapes, topic rules and ingest mapping are plain Python and load without the
driver (so ``forgeline check`` works without the ``mqtt`` extra); the names that connect
(``MqttSource``, ``MqttSink``, ``BrokerConnection``…) import aiomqtt on first use and say
``pip install forgeline[mqtt]`` when it is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .config import MqttBatch, MqttPublishTarget, MqttSubscription, MqttSystem
from .errors import (
    MqttAuthError,
    MqttPermanentError,
    MqttRejected,
    MqttTimeout,
    MqttTransientError,
    MqttUnavailable,
)
from .ingest import QUARANTINE_TYPE, BatchResult, Ingest, Publish
from .options import BrokerOptions, Delivery
from .topics import MqttTarget, Template, TopicFilter, TopicRule, shared

if TYPE_CHECKING:
    from .client import BrokerConnection
    from .sink import MqttSink
    from .source import Backoff, MqttSource, SourceStats

#: Names whose modules import aiomqtt: loaded on first use.
_DRIVER = {
    "BrokerConnection": "client",
    "MqttSink": "sink",
    "Backoff": "source",
    "MqttSource": "source",
    "SourceStats": "source",
}


def __getattr__(name: str) -> Any:
    module = _DRIVER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        loaded = importlib.import_module(f".{module}", __name__)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in ("aiomqtt", "paho"):
            raise
        from ...exceptions import ConfigError

        raise ConfigError("the MQTT connector needs: pip install forgeline[mqtt]") from exc
    return getattr(loaded, name)


__all__ = [
    "QUARANTINE_TYPE",
    "Backoff",
    "BatchResult",
    "BrokerConnection",
    "BrokerOptions",
    "Delivery",
    "Ingest",
    "MqttAuthError",
    "MqttBatch",
    "MqttPermanentError",
    "MqttPublishTarget",
    "MqttRejected",
    "MqttSink",
    "MqttSource",
    "MqttSubscription",
    "MqttSystem",
    "MqttTarget",
    "MqttTimeout",
    "MqttTransientError",
    "MqttUnavailable",
    "Publish",
    "SourceStats",
    "Template",
    "TopicFilter",
    "TopicRule",
    "shared",
]
