"""Business partners: suppliers and customers (Odoo ``res.partner``, split by role)."""

from __future__ import annotations

from pydantic import Field

from ._base import CanonicalModel, Code, Currency

__all__ = ["Address", "Customer", "Supplier"]


class Address(CanonicalModel):
    street: str | None = None
    """Street and number."""
    city: str | None = None
    """City."""
    postal_code: str | None = None
    """Postal code."""
    country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    """ISO 3166-1 alpha-2 country code."""


class _Party(CanonicalModel):
    code: Code
    """The canonical partner code."""
    name: str
    """The partner's legal or trading name."""
    vat: str | None = None
    """The tax identification number."""
    email: str | None = None
    """The main contact address."""
    address: Address | None = None
    """The main postal address."""
    currency: Currency | None = None
    """The currency the partner trades in."""


class Supplier(_Party):
    """Someone the plant buys from."""

    lead_time_days: int | None = Field(default=None, ge=0)
    """The usual delivery lead time, in days."""


class Customer(_Party):
    """Someone the plant sells to."""

    payment_terms_days: int | None = Field(default=None, ge=0)
    """Days from invoice to payment due."""
