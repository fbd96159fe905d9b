"""Which dropped files become which events, and how one record becomes one event.

A :class:`FileRule` matches file names by glob and names the events of their records::

    FileRule("asn-*.csv", "asn.received.v1", source="partner://acme/{file}",
             subject="{data.asn_number}", id_column="line_id")

Templates use ``{file}`` (the file's name), ``{system}`` (the files system's name) and
``{data.<column>}`` (a field of the record), checked when the rule is built.

**Event ids.** ``(source, id)`` is the log's dedup key and a file may be processed twice (a
crash between its appends and its archiving, a restart): every id is deterministic. With
``id_column`` the partner's own row id is the event id; otherwise it is a digest of (file
name, content hash, row number), so the same file read again yields the same ids and stores
nothing twice, while a corrected file (other content) is a new drop with new ids.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from ...envelope import SPECVERSION, Event, now_rfc3339
from ...exceptions import ConfigError, InvalidEvent
from ..mqtt.topics import MissingField, Template, lookup, uri_escape
from .formats import Format, Item

__all__ = ["QUARANTINE_TYPE", "FileRule", "RowError", "event_id"]

QUARANTINE_TYPE = "files.quarantined.v1"

_DATA_PATH = re.compile(r"data(?:\.[^.{}\s]+)+")
_FORMATS: dict[str, Format] = {
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class RowError(ValueError):
    """A record that cannot become an event; its message is the reason a person reads."""


def event_id(name: str, content: str, row: int | str) -> str:
    hasher = hashlib.blake2b(digest_size=16)
    for part in (name.encode(), content.encode(), str(row).encode()):
        hasher.update(b"%d:" % len(part) + part)
    return "file-" + hasher.hexdigest()


def _allowed(name: str) -> bool:
    return name in ("file", "system") or _DATA_PATH.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class FileRule:
    """Files whose name matches ``glob`` are read as ``format`` (from the extension when not
    given: .csv, .json, .jsonl/.ndjson) and each record becomes an event of ``type``.

    ``on_error``: ``rows`` (default) appends the good records and quarantines the bad ones
    in a rejected-rows file; ``file`` quarantines the whole file, appending nothing, when any
    record is bad.
    """

    glob: str
    type: str
    source: str = "files://{system}/{file}"
    subject: str | None = None
    id_column: str | None = None
    time_column: str | None = None
    format: Format | None = None
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    on_error: Literal["rows", "file"] = "rows"
    source_template: Template = field(init=False, repr=False, compare=False)
    subject_template: Template | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        what = f"file rule {self.glob!r}:"
        if not self.glob or "/" in self.glob:
            raise ConfigError(f"{what} a glob matches file names in the inbox, without '/'")
        if self.format is None and self._inferred() is None:
            raise ConfigError(f"{what} say format: csv, json or jsonl (the glob has no extension)")
        if len(self.delimiter) != 1:
            raise ConfigError(f"{what} the delimiter is one character")
        object.__setattr__(
            self, "source_template", Template.compile(self.source, _allowed, what=f"{what} source")
        )
        subject = (
            Template.compile(self.subject, _allowed, what=f"{what} subject")
            if self.subject is not None
            else None
        )
        object.__setattr__(self, "subject_template", subject)

    def _inferred(self) -> Format | None:
        for suffix, format in _FORMATS.items():
            if self.glob.lower().endswith(suffix):
                return format
        return None

    def format_of(self, name: str) -> Format:
        if self.format is not None:
            return self.format
        for suffix, format in _FORMATS.items():
            if name.lower().endswith(suffix):
                return format
        return self._inferred() or "jsonl"

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.glob)

    def event(self, item: Item, *, system: str, file: str, content: str) -> Event:
        """The event for a good record; ``RowError`` with the reason otherwise."""
        data = item.data
        if data is None:
            raise RowError(item.error or "not a record")

        def resolve(name: str) -> Any:
            if name == "file":
                return file
            if name == "system":
                return system
            return lookup(data, name.split(".")[1:])

        try:
            body: dict[str, Any] = {
                "specversion": SPECVERSION,
                "id": event_id(file, content, item.row),
                "source": self.source_template.render(resolve, uri_escape),
                "type": self.type,
                "time": now_rfc3339(),
                "datacontenttype": "application/json",
                "data": data,
                "filename": file,
                "filerow": item.row,
            }
            if self.subject_template is not None:
                body["subject"] = self.subject_template.render(resolve)
            if self.id_column is not None:
                body["id"] = _text(lookup(data, [self.id_column]), self.id_column)
            if self.time_column is not None and data.get(self.time_column) not in (None, ""):
                body["time"] = data[self.time_column]
            return Event.from_dict(body)
        except MissingField as exc:
            raise RowError(f"the record has no {exc.args[0]!r} (the rule needs it)") from None
        except InvalidEvent as exc:
            raise RowError(f"not a valid event: {exc.detail}") from None


def _text(value: Any, name: str) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise MissingField(f"{name} (a non-empty string or an integer)")
