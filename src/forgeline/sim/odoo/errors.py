"""Odoo's exception classes, as the simulated ORM raises them and the protocols report them.

    OdooError                 base; ``.message`` is what reaches the client
    ├── UserError             odoo.exceptions.UserError
    │   ├── ValidationError   odoo.exceptions.ValidationError
    │   ├── MissingError      odoo.exceptions.MissingError
    │   └── RedirectWarning   odoo.exceptions.RedirectWarning
    ├── AccessError           odoo.exceptions.AccessError
    ├── AccessDenied          odoo.exceptions.AccessDenied ("Access Denied")
    └── LockError             a serialization/lock failure (JSON-2 answers 409)

Any other exception escaping a method is an internal server error, as in Odoo.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AccessError",
    "LockError",
    "MissingError",
    "OdooError",
    "RedirectWarning",
    "UserError",
    "ValidationError",
]


class OdooError(Exception):
    """Base of the errors Odoo reports to clients by name and message."""

    # Tracebacks (the ``debug`` text clients receive) read "odoo.exceptions.UserError: ...".
    __module__ = "odoo.exceptions"

    odoo_name = "odoo.exceptions.UserError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UserError(OdooError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.UserError"


class ValidationError(UserError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.ValidationError"


class MissingError(UserError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.MissingError"


class RedirectWarning(UserError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.RedirectWarning"


class AccessError(OdooError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.AccessError"


class AccessDenied(OdooError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.AccessDenied"

    def __init__(self, message: str = "Access Denied") -> None:
        super().__init__(message)


class LockError(OdooError):
    __module__ = "odoo.exceptions"
    odoo_name = "odoo.exceptions.LockError"
