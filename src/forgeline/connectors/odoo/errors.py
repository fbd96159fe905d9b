"""Odoo's failures, classified once, where they enter Forgeline.

Every protocol reports errors its own way (ODOO.md): XML-RPC with fault codes 1-4, JSON-RPC
with ``error.data.name`` in an HTTP 200 answer, JSON-2 with an HTTP status and a body naming
the exception. The parsers in ``transports`` turn each of them into one class of this tree,
so the client's retry loop and the hub's dispatcher decide by class alone:

    DeliveryError
    ├── OdooError                        (mixin root: every Odoo failure; carries Odoo's name)
    ├── OdooPermanentError               PermanentDeliveryError: dead-letter, never retried
    │   ├── OdooAuthError                bad credentials, AccessDenied (also Unauthorized)
    │   ├── OdooAccessError              AccessError: the user lacks the right
    │   ├── OdooBusinessError            UserError, ValidationError, MissingError, RedirectWarning
    │   └── OdooServerError              Odoo answered with an internal error (a bug, a bad call)
    └── OdooTransientError               TransientDeliveryError: retried, then rescheduled
        ├── OdooUnavailable              cannot connect, 502/503/504 (also BackendUnavailable)
        ├── OdooTimeout                  no answer in time
        ├── OdooConflict                 LockError, serialization failure, JSON-2 409
        ├── OdooRateLimited              429 (``retry_after`` from the header)
        ├── OdooProtocolError            a body that is not JSON / XML-RPC (with an excerpt)
        └── OdooSessionExpired           code 100: log in again, then retry once

``rolled_back`` says Odoo certainly did not commit the call (it never reached Odoo, or Odoo
reported a rollback): the client may then retry even a call that is not idempotent.
"""

from __future__ import annotations

from ...exceptions import (
    BackendUnavailable,
    DeliveryError,
    PermanentDeliveryError,
    TransientDeliveryError,
    Unauthorized,
)

__all__ = [
    "OdooAccessError",
    "OdooAuthError",
    "OdooBusinessError",
    "OdooConflict",
    "OdooError",
    "OdooPermanentError",
    "OdooProtocolError",
    "OdooRateLimited",
    "OdooServerError",
    "OdooSessionExpired",
    "OdooTimeout",
    "OdooTransientError",
    "OdooUnavailable",
]


class OdooError(DeliveryError):
    """A failed Odoo call. ``odoo_name`` is Odoo's exception (``odoo.exceptions.UserError``)
    when Odoo named one, ``odoo_message`` its message as a user would read it."""

    #: Whether Odoo certainly did not commit anything (safe to retry any call).
    rolled_back: bool = False

    def __init__(
        self,
        detail: str,
        *,
        http_status: int | None = None,
        response_excerpt: str | None = None,
        retry_after: float | None = None,
        odoo_name: str | None = None,
        odoo_message: str | None = None,
        rolled_back: bool | None = None,
    ) -> None:
        super().__init__(
            detail,
            http_status=http_status,
            response_excerpt=response_excerpt,
            retry_after=retry_after,
        )
        self.odoo_name = odoo_name
        self.odoo_message = odoo_message if odoo_message is not None else detail
        if rolled_back is not None:
            self.rolled_back = rolled_back

    def __reduce__(self) -> tuple[object, ...]:
        # Dead letters are pickled by some stores: keep Odoo's name and message with them.
        return (
            _rebuild_odoo,
            (
                type(self),
                self.detail,
                self.http_status,
                self.response_excerpt,
                self.retry_after,
                self.odoo_name,
                self.odoo_message,
                self.rolled_back,
            ),
        )


def _rebuild_odoo(
    cls: type[OdooError],
    detail: str,
    http_status: int | None,
    excerpt: str | None,
    retry_after: float | None,
    odoo_name: str | None,
    odoo_message: str | None,
    rolled_back: bool,
) -> OdooError:
    return cls(
        detail,
        http_status=http_status,
        response_excerpt=excerpt,
        retry_after=retry_after,
        odoo_name=odoo_name,
        odoo_message=odoo_message,
        rolled_back=rolled_back,
    )


class OdooPermanentError(OdooError, PermanentDeliveryError):
    """Odoo refused the call itself; the same call will be refused again."""


class OdooAuthError(OdooPermanentError, Unauthorized):
    """Bad credentials or ``AccessDenied``: a person must fix the configuration."""


class OdooAccessError(OdooPermanentError):
    """``AccessError``: the user may not do this (access rights or record rules)."""


class OdooBusinessError(OdooPermanentError):
    """``UserError`` and its kin: Odoo's business rules refused the call (the message says
    why, e.g. "You cannot validate a transfer if no quantities are reserved")."""


class OdooServerError(OdooPermanentError):
    """Odoo answered with an internal error (``TypeError``, ``KeyError``...): a bug or a
    call with the wrong arguments. Retrying the same call fails the same way."""


class OdooTransientError(OdooError, TransientDeliveryError):
    """Worth another try later: Odoo was unreachable, slow, busy or briefly broken."""


class OdooUnavailable(OdooTransientError, BackendUnavailable):
    """Odoo cannot be reached, or a proxy in front of it says it is down (502/503/504)."""


class OdooTimeout(OdooTransientError):
    """No answer within the client's timeout; Odoo may still finish (and commit) the call."""


class OdooConflict(OdooTransientError):
    """A lock or serialization conflict: Odoo rolled the transaction back."""

    rolled_back = True


class OdooRateLimited(OdooTransientError):
    """HTTP 429: refused before it ran; ``retry_after`` says when to come back."""

    rolled_back = True


class OdooProtocolError(OdooTransientError):
    """The answer is not what the protocol promises (HTML from a proxy, a cut body...)."""


class OdooSessionExpired(OdooTransientError):
    """Odoo's code 100: the session is gone before the call ran; log in again."""

    rolled_back = True
