"""Quality: inspections of lots and the holds that block them."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from ._base import CanonicalModel, Code, Quantity, Timestamp
from .status import HoldStatus, QualityResult

__all__ = ["QualityHold", "QualityInspection"]


class QualityInspection(CanonicalModel):
    """An inspection of a lot by a sampling plan (the QMS inspection, Odoo ``quality.check``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "number": "QI-000007",
                    "lot": "L-FG-1000-0042",
                    "product": "FG-1000",
                    "plan": "AQL-1.0",
                    "result": "accepted",
                    "lot_quantity": 118.0,
                    "sample_size": 20,
                    "defects_found": 0,
                    "inspector": "QA-ANNA",
                    "source_ref": "WH/MO/00042",
                    "decided_at": "2026-11-27T14:25:00Z",
                }
            ]
        }
    )

    number: Code
    """The inspection's business key (the QMS ``inspectionId``)."""
    lot: Code
    """The lot number inspected."""
    product: Code
    """The product code of the lot."""
    result: QualityResult
    """``pending`` until decided, then the decision."""
    plan: str | None = None
    """The sampling plan (``AQL-1.0``, ``FULL``, ``SKIP``…)."""
    lot_quantity: Quantity | None = None
    """The lot size, in the product's unit."""
    sample_size: int | None = Field(default=None, ge=0)
    """Units inspected."""
    defects_found: int | None = Field(default=None, ge=0)
    """Defective units found in the sample."""
    inspector: str | None = None
    """Who decided."""
    remarks: str | None = None
    """The inspector's remarks (a deviation for a conditional)."""
    source_ref: str | None = None
    """What asked for the inspection (a production order, a receipt)."""
    decided_at: Timestamp | None = None
    """When it was decided."""


class QualityHold(CanonicalModel):
    """A block on a lot: nobody may use or ship it until the hold is released."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "H-L-FG-1000-0043-1",
                    "lot": "L-FG-1000-0043",
                    "product": "FG-1000",
                    "status": "active",
                    "reason": "REJECTED by QI-000008",
                    "placed_by": "QMS",
                    "placed_at": "2026-11-27T15:02:00Z",
                    "inspection": "QI-000008",
                }
            ]
        }
    )

    id: Code
    """The hold's id in the quality system."""
    lot: Code
    """The lot number held."""
    status: HoldStatus
    """Active until released."""
    reason: str = Field(min_length=1)
    """Why the lot is held, for a person."""
    placed_at: Timestamp
    """When the hold was placed."""
    product: Code | None = None
    """The product code of the lot."""
    placed_by: str | None = None
    """Who or what placed it (a person, ``QMS``)."""
    inspection: Code | None = None
    """The inspection whose result placed it, if one did."""
    released_at: Timestamp | None = None
    """When the hold was released."""
    released_by: str | None = None
    """Who released it."""
