"""Forgeline: the governed integration layer between Odoo and the shop floor.

The public surface is what ``__all__`` lists; everything else is internal and may change.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Settings
from .envelope import Event
from .exceptions import (
    BackendError,
    ConfigError,
    Conflict,
    DeliveryError,
    ForgelineError,
    InvalidEvent,
    InvalidInput,
    InvalidSubscription,
    NotFound,
    PermanentDeliveryError,
    TransientDeliveryError,
    Unauthorized,
)
from .hub import Hub
from .log import EventLog, open_log
from .route.subscription import DeliveryPolicy, HttpSink, PublishSink, RetryPolicy, SubscriptionSpec

__all__ = [
    "BackendError",
    "ConfigError",
    "Conflict",
    "DeliveryError",
    "DeliveryPolicy",
    "Event",
    "EventLog",
    "ForgelineError",
    "HttpSink",
    "Hub",
    "InvalidEvent",
    "InvalidInput",
    "InvalidSubscription",
    "NotFound",
    "PermanentDeliveryError",
    "PublishSink",
    "RetryPolicy",
    "Settings",
    "SubscriptionSpec",
    "TransientDeliveryError",
    "Unauthorized",
    "__version__",
    "open_log",
]
