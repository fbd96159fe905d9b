"""Mappings as the deliver stage uses them: compiled once, recompiled when their file
changes.

A flow or a REST body names a mapping by file path or holds it inline; every delivery asks for
it again, so compiling must be a dict lookup after the first time. A file is keyed by its
path, modification time and size: editing the file on the hub's host takes effect at the next
delivery, without a restart (and a broken edit fails those deliveries with the file's problem,
which the retry schedule then rides out until the file is fixed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson

from .loader import CompiledMapping, load_mapping, read_mapping

__all__ = ["compiled_mapping"]

_KEPT = 256
_compiled: dict[Any, CompiledMapping] = {}


def compiled_mapping(source: Mapping[str, Any] | str) -> CompiledMapping:
    """The mapping ``source`` names (a file path) or holds (an inline document), compiled.

    Raises ``ConfigError`` (``MappingSpecError``) when it cannot be read or does not compile.
    """
    key: Any
    if isinstance(source, str):
        try:
            stat = os.stat(source)
        except OSError:
            key = None  # read_mapping says what is wrong with the path
        else:
            key = (source, stat.st_mtime_ns, stat.st_size)
    else:
        key = orjson.dumps(source, option=orjson.OPT_SORT_KEYS)
    found = _compiled.get(key) if key is not None else None
    if found is None:
        found = read_mapping(source) if isinstance(source, str) else load_mapping(source)
        if key is not None:
            if len(_compiled) >= _KEPT:
                _compiled.clear()
            _compiled[key] = found
    return found
