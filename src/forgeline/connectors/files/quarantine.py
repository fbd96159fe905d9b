"""What the file source leaves for a person when input is bad: events and sidecar files.

For every bad record, and for a file that cannot be read at all, the log gets a
``files.quarantined.v1`` event (file, row, line, reason, the record) — visible, replayable,
routable to whoever fixes partner data. Beside it, in ``quarantine/``:

* ``<name>.reason.json`` — the verdict on the file: its content hash, the counts, every
  reason (the first 1,000), and where the original went;
* ``<name>.rejected.csv`` / ``.jsonl`` — the bad records alone, with the CSV header, ready
  to be corrected and dropped again;
* for a file quarantined whole, the file itself as ``<name>``.

Sidecars of a file read twice (a crash before archiving) carry the same content hash and are
overwritten; a different file of the same name gets a timestamped name instead.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

import orjson

from ...envelope import SPECVERSION, Event, now_rfc3339
from ..mqtt.topics import uri_escape
from .durable import fsync_dir, temp_path, write_atomic
from .formats import Format, Item, header_of
from .rules import QUARANTINE_TYPE, FileRule, event_id

__all__ = ["Rejects", "Verdict", "quarantine_event", "write_verdict"]

_MAX_REASONS = 1000
_MAX_RECORD = 64 * 1024


@dataclass(slots=True)
class Verdict:
    """The content of ``<name>.reason.json``, built while the file is read."""

    system: str
    file: str
    rule: str
    content: str = ""
    reason: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    omitted: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    rejected_file: str | None = None
    archived_as: str | None = None
    _base: str | None = None

    def error(self, item: Item, reason: str) -> None:
        if len(self.errors) < _MAX_REASONS:
            self.errors.append({"row": item.row, "line": item.line, "reason": reason})
        else:
            self.omitted += 1

    def counts(self, rows: int, appended: int, duplicates: int, rejected: int) -> None:
        self.totals = {
            "rows": rows,
            "appended": appended,
            "duplicates": duplicates,
            "rejected": rejected,
        }

    def base(self, folder: Path) -> str:
        """The name the sidecars share: the file's, unless another file's verdict has it."""
        if self._base is None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            stem, dot, suffix = self.file.partition(".")
            candidates = [self.file] + [
                f"{stem}-{stamp}{f'-{n}' if n else ''}{dot}{suffix}" for n in range(1000)
            ]
            self._base = next(c for c in candidates if self._ours_or_free(folder, c))
        return self._base

    def _ours_or_free(self, folder: Path, name: str) -> bool:
        reason = folder / f"{name}.reason.json"
        try:
            previous = json.loads(reason.read_bytes())
        except FileNotFoundError:
            return not (folder / name).exists()
        except (OSError, ValueError):
            return False
        return isinstance(previous, dict) and previous.get("content") == self.content

    def as_dict(self, status: str) -> dict[str, Any]:
        return {
            "system": self.system,
            "file": self.file,
            "rule": self.rule,
            "content": self.content,
            "status": status,
            "reason": self.reason,
            **self.totals,
            "errors": self.errors,
            "errors_omitted": self.omitted,
            "rejected_file": self.rejected_file,
            "archived_as": self.archived_as,
            "at": now_rfc3339(),
        }


def write_verdict(folder: Path, base: str, verdict: Verdict, status: str) -> Path:
    body = orjson.dumps(verdict.as_dict(status), option=orjson.OPT_INDENT_2)

    def write(handle: BinaryIO) -> None:
        handle.write(body)

    return write_atomic(folder, f"{base}.reason.json", write)


def quarantine_event(verdict: Verdict, rule: FileRule, reason: str, item: Item | None) -> Event:
    record: Any = None
    if item is not None:
        record = item.data if item.data is not None else item.raw
        if isinstance(record, str) and len(record) > _MAX_RECORD:
            record = record[:_MAX_RECORD]
    data = {
        "file": verdict.file,
        "system": verdict.system,
        "rule": rule.glob,
        "type": rule.type,
        "content": verdict.content,
        "row": item.row if item is not None else None,
        "line": item.line if item is not None else None,
        "reason": reason,
        "record": record,
    }
    if item is None and verdict.errors:
        data["errors"] = verdict.errors[:100]  # on_error: file names the bad rows here
    where = f"quarantine:{item.row}" if item is not None else "quarantine:file"
    return Event.from_stored(
        {
            "specversion": SPECVERSION,
            "id": event_id(verdict.file, verdict.content, where),
            "source": f"files://{uri_escape(verdict.system)}",
            "type": QUARANTINE_TYPE,
            "subject": verdict.file[:1024],
            "time": now_rfc3339(),
            "datacontenttype": "application/json",
            "data": data,
        }
    )


class Rejects:
    """The bad records of one file, written as they are found into a hidden temp file in
    ``quarantine/`` and published under ``<base>.rejected.<ext>`` once the file is done."""

    def __init__(self, folder: Path, path: Path, format: Format, rule: FileRule) -> None:
        self.folder = folder
        self.path = path
        self.format = format
        self.rule = rule
        self.extension = "csv" if format == "csv" else "jsonl"
        self._temp: Path | None = None
        self._handle: IO[str] | None = None
        self._csv: Any = None

    def add(self, item: Item, reason: str) -> None:
        if self._handle is None:
            self._temp = temp_path(self.folder, f"{self.path.name}.rejected")
            self._handle = self._temp.open("x", encoding="utf-8", newline="")
            if self.format == "csv":
                self._csv = csv.writer(self._handle, delimiter=self.rule.delimiter)
                header = header_of(
                    self.path, encoding=self.rule.encoding, delimiter=self.rule.delimiter
                )
                self._csv.writerow(header)
        if self._csv is not None and isinstance(item.raw, list):
            self._csv.writerow(item.raw)
        else:
            self._handle.write(_one_line(str(item.raw)) + "\n")

    def publish(self, base: str) -> str:
        """fsync and rename into place (replacing an interrupted pass's copy); the name."""
        name = f"{base}.rejected.{self.extension}"
        handle, temp = self._handle, self._temp
        assert handle is not None
        assert temp is not None
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self._handle = None
        os.replace(temp, self.folder / name)
        fsync_dir(self.folder)
        return name

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._temp is not None:
            self._temp.unlink(missing_ok=True)
            self._temp = None


def _one_line(raw: str) -> str:
    if "\n" not in raw and "\r" not in raw:
        return raw
    try:
        return orjson.dumps(orjson.loads(raw)).decode()
    except orjson.JSONDecodeError:
        buffer = io.StringIO()
        buffer.write(raw.replace("\r", " ").replace("\n", " "))
        return buffer.getvalue()
