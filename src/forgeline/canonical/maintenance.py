"""Maintenance: equipment and the alerts it raises (condition monitoring, breakdowns)."""

from __future__ import annotations

from pydantic import ConfigDict

from ._base import CanonicalModel, Code, Timestamp
from .status import MaintenanceSeverity

__all__ = ["Equipment", "MaintenanceAlert"]


class Equipment(CanonicalModel):
    """A machine or tool that can be maintained (Odoo ``maintenance.equipment``)."""

    code: Code
    """The equipment's canonical code."""
    name: str
    """Its name."""
    work_center: Code | None = None
    """The work center it belongs to."""
    serial_number: str | None = None
    """The manufacturer's serial number."""
    manufacturer: str | None = None
    """Who built it."""


class MaintenanceAlert(CanonicalModel):
    """Equipment needs attention: a threshold crossed, a fault code, a breakdown."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "equipment": "PRESS-04",
                    "severity": "warning",
                    "code": "VIB-HIGH",
                    "message": "spindle vibration above 7.1 mm/s for 10 minutes",
                    "work_center": "WC-ASSY-01",
                    "measurement": 7.4,
                    "threshold": 7.1,
                    "unit": "mm/s",
                    "raised_at": "2026-11-27T09:41:00Z",
                }
            ]
        }
    )

    equipment: Code
    """The equipment's canonical code."""
    severity: MaintenanceSeverity
    """How urgent it is."""
    code: str
    """The alert or fault code, in the source's codes."""
    message: str
    """What happened, for a person."""
    raised_at: Timestamp
    """When the condition was detected."""
    work_center: Code | None = None
    """The work center the equipment belongs to."""
    measurement: float | None = None
    """The measured value that crossed the threshold, in ``unit``."""
    threshold: float | None = None
    """The limit it crossed, in ``unit``."""
    unit: str | None = None
    """The unit of ``measurement`` and ``threshold`` (``mm/s``, ``°C``, ``bar``)."""
    stops_production: bool = False
    """Whether the equipment is down."""
