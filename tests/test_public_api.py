"""The curated public surface: what ``forgeline`` exports is exactly what we document."""

from __future__ import annotations

import forgeline
from forgeline import exceptions

DOCUMENTED = {
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
}


def test_exports_are_the_documented_names() -> None:
    assert set(forgeline.__all__) == DOCUMENTED
    for name in forgeline.__all__:
        assert getattr(forgeline, name) is not None


def test_every_error_derives_from_forgeline_error_and_survives_pickling() -> None:
    import pickle

    for name in exceptions.__all__:
        cls = getattr(exceptions, name)
        assert issubclass(cls, exceptions.ForgelineError)
        error = pickle.loads(pickle.dumps(cls("boom")))
        assert type(error) is cls and error.detail == "boom"
    retry = pickle.loads(pickle.dumps(exceptions.TransientDeliveryError("x", retry_after=3.0)))
    assert retry.retry_after == 3.0
