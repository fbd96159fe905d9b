"""What every canonical model shares: strict validation, the unit conventions, the errors.

Conventions, so that a mapping author never guesses: quantities are decimal numbers in the unit
named by the neighbouring ``uom`` field (the plant's unit codes: ``EA``, ``KG``, ``M``, ``L``…);
times are RFC 3339 with an offset (UTC preferred); money is a number in the major unit of the
ISO 4217 ``currency`` beside it; durations are minutes. References to other entities are their
canonical business keys (``MO/00042``, ``FG-1000``), as the cross-reference resolves them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from ..exceptions import ConfigError, InvalidInput, NotFound

__all__ = [
    "CanonicalModel",
    "Code",
    "Currency",
    "InvalidPayload",
    "NoStatusTable",
    "Quantity",
    "Timestamp",
    "UnknownEventType",
    "UnknownStatus",
    "Uom",
]


class CanonicalModel(BaseModel):
    """Base of every canonical entity and event payload.

    Strict (no ``"5"`` silently becoming ``5``), closed (an unknown field is an error, not a
    silent drop: a mapping that writes a misspelt field must fail where it is tested) and
    immutable (a validated event payload cannot drift while it is routed).
    """

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, use_attribute_docstrings=True
    )


Code = Annotated[str, Field(min_length=1, max_length=128)]
"""A business key: a product code, an order number, a lot number."""
Quantity = Annotated[float, Field(ge=0)]
"""A non-negative amount, in the unit of the neighbouring ``uom`` field."""
Uom = Annotated[str, Field(min_length=1, max_length=16, examples=["EA", "KG"])]
"""A unit of measure code (``EA``, ``KG``, ``M``, ``L``, ``PAL``, ``BOX``)."""
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["EUR"])]
"""An ISO 4217 currency code."""
Timestamp = AwareDatetime
"""An RFC 3339 timestamp with an offset."""


class UnknownStatus(InvalidInput):
    """A system sent a status word its table does not know: a mapping cannot guess."""

    status = 422
    problem = "unknown-status"
    title = "Unknown status word"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        word: str = "",
        system: str = "",
        entity: str = "",
        version: int | None = None,
    ) -> None:
        super().__init__(detail, errors=errors)
        self.word, self.system, self.entity, self.version = word, system, entity, version

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the named parts across pickling (quarantine records may cross processes).
        return (_rebuild_unknown, (self.detail, self.word, self.system, self.entity, self.version))


def _rebuild_unknown(
    detail: str, word: str, system: str, entity: str, version: int | None
) -> UnknownStatus:
    return UnknownStatus(detail, word=word, system=system, entity=entity, version=version)


class NoStatusTable(ConfigError):
    """No table for this system, entity and version: the configuration names the wrong one."""

    problem = "no-status-table"
    title = "No status table"


class UnknownEventType(NotFound):
    """The event type is not in the catalog."""

    problem = "unknown-event-type"
    title = "Unknown event type"


class InvalidPayload(InvalidInput):
    """An event's ``data`` does not match its catalog schema; ``errors`` holds every path."""

    status = 422
    problem = "invalid-payload"
    title = "Event data does not match its schema"
