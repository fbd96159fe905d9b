"""Units of measure between Odoo's names and the canonical model's codes.

The canonical model speaks the plant's unit codes (``EA``, ``KG``: ``canonical._base``); Odoo
names its units (``Units``, ``kg``) in ``uom.uom``. This table holds Odoo's standard units; a
unit it does not know travels under its Odoo name, so nothing is lost or guessed.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["ODOO_UNITS", "odoo_unit", "unit_code"]

#: Odoo's standard ``uom.uom`` names -> canonical codes (UN/ECE Rec. 20 where it has one).
ODOO_UNITS = MappingProxyType(
    {
        "Units": "EA",
        "Dozens": "DZN",
        "kg": "KG",
        "g": "G",
        "t": "TNE",
        "lb": "LB",
        "oz": "OZ",
        "L": "L",
        "m": "M",
        "cm": "CM",
        "mm": "MM",
        "km": "KM",
        "m²": "M2",
        "m³": "M3",
        "Hours": "H",
        "Days": "D",
    }
)
_CODES = MappingProxyType({code: name for name, code in ODOO_UNITS.items()})


def unit_code(odoo_name: str) -> str:
    """The canonical code of an Odoo unit name (the name itself when it has no code)."""
    return ODOO_UNITS.get(odoo_name, odoo_name)


def odoo_unit(code: str) -> str:
    """The Odoo unit name of a canonical code (the code itself when it names no known unit:
    it may be an Odoo name already)."""
    return _CODES.get(code, code)
