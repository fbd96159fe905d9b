"""Forgeline's inbound webhooks: plant systems and partners POST JSON, the hub logs events.

* :class:`WebhookSystem`, :class:`WebhookVerify`, :class:`StandardScheme`,
  :class:`HmacScheme` - the config shape
  (``systems: <name>: {kind: webhook, …}``), refused on load when it could not work
  (``config``; its docstring has the YAML and why ``none`` needs ``allow_from``);
* :class:`WebhookIntake` - verify a request (Standard Webhooks v1/v1a, an HMAC of the body,
  a URL token, or an address allowlist), build its event, append it, count it (``intake``;
  its docstring has the order of the checks and why every refusal looks the same);
* :func:`build_event`, :class:`Inbound`, :class:`Accepted`, :class:`WebhookCounters`.

The HTTP routes are ``POST /hooks/<name>`` and ``POST /hooks/<name>/<token>``
(``forgeline.api.hooks``). Standard library and what the hub already has: nothing to install.
"""

from __future__ import annotations

from .config import HmacScheme, StandardScheme, WebhookSystem, WebhookVerify
from .intake import (
    NO_SUCH_HOOK,
    Accepted,
    HookUnavailable,
    Inbound,
    Publish,
    WebhookCounters,
    WebhookIntake,
    build_event,
)

__all__ = [
    "NO_SUCH_HOOK",
    "Accepted",
    "HmacScheme",
    "HookUnavailable",
    "Inbound",
    "Publish",
    "StandardScheme",
    "WebhookCounters",
    "WebhookIntake",
    "WebhookSystem",
    "WebhookVerify",
    "build_event",
]
