"""Forgeline's Odoo connector (Odoo 16-19 over JSON-2, JSON-RPC or XML-RPC).

* :class:`OdooClient` - version detection, login, pooled and capped calls, classified errors
  and safe retries (``client``; the retry-safety rule is in its docstring);
* ``upsert``, ``call_action`` - idempotent effects for the deliver stage (``records``);
* ``iter_search_read``, ``import_records``, ``create_many``, ``write_chunked`` - batches;
* :class:`WriteDatePoller` - changes in, by ``write_date`` (``poller``);
* ``record_to_event``, ``from_webhook_payload`` - Odoo records as events (``events``);
* the error classes of ``errors`` (all ``DeliveryError`` subclasses).
"""

from .client import READ_METHODS, OdooClient, OdooRetry, write_is_idempotent
from .errors import (
    OdooAccessError,
    OdooAuthError,
    OdooBusinessError,
    OdooConflict,
    OdooError,
    OdooPermanentError,
    OdooProtocolError,
    OdooRateLimited,
    OdooServerError,
    OdooSessionExpired,
    OdooTimeout,
    OdooTransientError,
    OdooUnavailable,
)
from .events import (
    COMMON_FIELDS,
    EVENT_FIELDS,
    WebhookChange,
    event_id,
    event_type,
    from_webhook_payload,
    odoo_source,
    record_to_event,
    values_digest,
)
from .poller import JsonFileState, MemoryState, WatermarkState, WriteDatePoller
from .records import (
    Binder,
    ImportProgress,
    ImportResult,
    call_action,
    create_many,
    external_id,
    import_records,
    iter_search_read,
    resolve,
    upsert,
    write_chunked,
)

__all__ = [
    "COMMON_FIELDS",
    "EVENT_FIELDS",
    "READ_METHODS",
    "Binder",
    "ImportProgress",
    "ImportResult",
    "JsonFileState",
    "MemoryState",
    "OdooAccessError",
    "OdooAuthError",
    "OdooBusinessError",
    "OdooClient",
    "OdooConflict",
    "OdooError",
    "OdooPermanentError",
    "OdooProtocolError",
    "OdooRateLimited",
    "OdooRetry",
    "OdooServerError",
    "OdooSessionExpired",
    "OdooTimeout",
    "OdooTransientError",
    "OdooUnavailable",
    "WatermarkState",
    "WebhookChange",
    "WriteDatePoller",
    "call_action",
    "create_many",
    "event_id",
    "event_type",
    "external_id",
    "from_webhook_payload",
    "import_records",
    "iter_search_read",
    "odoo_source",
    "record_to_event",
    "resolve",
    "upsert",
    "values_digest",
    "write_chunked",
    "write_is_idempotent",
]
