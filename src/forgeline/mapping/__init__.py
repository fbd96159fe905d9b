"""Mappings: the transform stage between a source's shape and the canonical model.

A mapping is a declarative document (YAML or JSON; the form is in ``spec.py``): target
fields from source paths, status-table lookups, cross-reference lookups, unit conversion,
defaults, computed expressions in the house expression language, constants, line items,
and a registered Python function for the rare hard case. It is checked when loaded (every
problem reported with its path, :class:`MappingSpecError`) and compiled once into a Python
function; at run time a document that does not fit raises :class:`MappingError` naming the
target field, the source path and the reason, never a bare ``KeyError``.

Choice of engine, by measurement (``python -m bench.mapping``: a 20-field MES production
message -> canonical mapping with 2 status-table and 3 cross-reference lookups, 2 unit
conversions, an expression, a default and a constant; CPython 3.11, x86-64 container, five
runs, best of 5 x 50,000 calls each):

    hand-written Python function     384,000-404,000 maps/s   1.00x
    generated source (shipped)       286,000-303,000 maps/s   0.72-0.76x
    closure tree over the same spec  145,000-158,000 maps/s   0.37-0.39x
    JSONata (jsonata-python 0.7.1)     3,600-3,900 maps/s     0.009-0.010x

So a mapping compiles to generated Python source (``compiler.py``): twice the closure tree's
rate and about three quarters of the hand-written function's, with the same checks. JSONata
is a hundred times slower here, and would have needed Python functions for the
cross-reference and units anyway, while an unknown word or a missing cross-reference
reads as an absent field instead of an error naming it.
"""

from __future__ import annotations

from .errors import MappingError, MappingSpecError
from .functions import mapping_function, registered_functions
from .loader import CompiledMapping, load_mapping, map_test, read_mapping
from .xref import UNITS, CrossReference, InMemoryCrossReference

__all__ = [
    "UNITS",
    "CompiledMapping",
    "CrossReference",
    "InMemoryCrossReference",
    "MappingError",
    "MappingSpecError",
    "load_mapping",
    "map_test",
    "mapping_function",
    "read_mapping",
    "registered_functions",
]
