"""The mapping stage's two errors: a mapping that cannot be used, and data that does not fit it.

Both sit in Forgeline's tree (``forgeline.exceptions``)::

    ConfigError
    └── MappingSpecError          a mapping rejected when loaded; ``errors`` lists every problem
                                  with its path in the mapping (``fields.status.lookup``)
    InvalidInput
    └── MappingError         422  one source document did not fit: names the target field, the
                                  source path and the reason (an unknown status word, a missing
                                  cross-reference, a missing required value...)

A flow quarantines or dead-letters the event with ``str(exc)``, which a person can act on.
"""

from __future__ import annotations

from ..exceptions import ConfigError, InvalidInput

__all__ = ["MappingError", "MappingSpecError"]


class MappingSpecError(ConfigError):
    """A mapping was rejected when loaded. ``errors``: ``[{"path", "message"}]``, all of them."""

    problem = "invalid-mapping"
    title = "Invalid mapping"

    @classmethod
    def from_errors(cls, name: str, errors: list[dict[str, str]]) -> MappingSpecError:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return cls(f"mapping {name!r}: {first['path']}: {first['message']}{more}", errors=errors)


class MappingError(InvalidInput):
    """A source document did not fit the mapping: which target ``field``, read from which
    source ``path`` (a dotted path, an expression or a function name), and why."""

    status = 422
    problem = "mapping-failed"
    title = "Mapping failed"

    def __init__(self, *, field: str, path: str, reason: str) -> None:
        super().__init__(
            f"field {field!r} (from {path}): {reason}",
            errors=[{"path": path, "field": field, "message": reason}],
        )
        self.field, self.path, self.reason = field, path, reason

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.field, self.path, self.reason))

    def within(self, field: str, path: str, index: int) -> MappingError:
        """The same error seen from the parent mapping: element ``index`` of a line-item list
        (``lines[2].product`` from ``data.components[2].partNo``)."""
        inner = self.path
        if inner == "data" or inner.startswith(("data.", "data[")):
            inner = f"{path}[{index}]{inner[4:]}"  # inside line items, ``data`` is the element
        return type(self)(field=f"{field}[{index}].{self.field}", path=inner, reason=self.reason)


def _rebuild(cls: type[MappingError], field: str, path: str, reason: str) -> MappingError:
    return cls(field=field, path=path, reason=reason)
