"""The config shape of a files system (``systems: <name>: {kind: files, …}``) and of a file
target in a subscription's sink (``sink: {file: {…}}``), validated on load.

These are the models ``forgeline.systems`` and ``forgeline.route.subscription`` put in their
unions. Everything a config can get wrong (a glob without a format, a template naming an
unknown placeholder, a CSV outbox without columns, a name without ``{seq}``) is refused
here, with the path, before the hub starts.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...exceptions import ConfigError
from .rules import FileRule
from .sink import OutboxTarget

if TYPE_CHECKING:
    from .sink import FileSink
    from .source import FileSource, Publish

__all__ = ["FileOutbox", "FileWatch", "FilesBatch", "FilesSystem", "OutboxBatch"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileWatch(_Strict):
    """Files in the inbox matching ``glob`` and the events their records become."""

    glob: str = Field(min_length=1, description="file names: asn-*.csv")
    type: str = Field(min_length=3, description="the event type: asn.received.v1")
    format: Literal["csv", "json", "jsonl"] | None = Field(
        default=None, description="from the extension when not given"
    )
    source: str = Field(default="files://{system}/{file}", description="template")
    subject: str | None = Field(default=None, description="template: {data.asn_number}")
    id_column: str | None = Field(default=None, description="the partner's row id")
    time_column: str | None = Field(default=None, description="RFC 3339 time of the fact")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"
    on_error: Literal["rows", "file"] = "rows"

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, encoding: str) -> str:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValueError(f"{encoding!r} is not an encoding Python knows") from None
        return encoding

    @model_validator(mode="after")
    def _compiles(self) -> FileWatch:
        self.rule()
        return self

    def rule(self) -> FileRule:
        try:
            return FileRule(
                self.glob,
                self.type,
                self.source,
                self.subject,
                self.id_column,
                self.time_column,
                self.format,
                self.delimiter,
                self.encoding,
                self.on_error,
            )
        except ConfigError as exc:
            raise ValueError(exc.detail) from None


class FilesBatch(_Strict):
    max_events: int = Field(default=1000, ge=1, le=100_000)


class OutboxBatch(_Strict):
    max_events: int = Field(default=1000, ge=1, le=1_000_000)
    max_delay_ms: float = Field(default=1000.0, ge=0, le=600_000)


class FilesSystem(_Strict):
    """A partner's folder: drops read from ``inbox`` (``watch``), files written to
    ``outbox`` (a sink's ``file: {system: <name>, …}``)::

        acme-drop:
          kind: files
          path: /srv/partners/acme        # inbox/ archive/ quarantine/ outbox/ under it
          stable_ms: 2000                 # 0 when the partner always writes .part + rename
          watch:
            - glob: "asn-*.csv"
              type: asn.received.v1
              subject: "{data.asn_number}"
              id_column: line_id
              on_error: rows              # or file: all or nothing
    """

    kind: Literal["files"] = "files"
    path: str = Field(min_length=1, description="the partner's folder")
    inbox: str = "inbox"
    archive: str = "archive"
    quarantine: str = "quarantine"
    outbox: str = "outbox"
    poll_ms: float = Field(default=1000.0, ge=10, le=3_600_000)
    stable_ms: float = Field(default=2000.0, ge=0, le=3_600_000)
    partial_suffixes: list[str] = Field(
        default_factory=lambda: [".part", ".tmp", ".partial", ".filepart", ".crdownload"]
    )
    batch: FilesBatch = Field(default_factory=FilesBatch)
    outbox_batch: OutboxBatch = Field(default_factory=OutboxBatch)
    watch: list[FileWatch] = Field(default_factory=list)

    def folder(self, which: Literal["inbox", "archive", "quarantine", "outbox"]) -> Path:
        """``inbox``, ``archive``… as a path (relative ones under ``path``)."""
        return Path(self.path) / str(getattr(self, which))

    def source(self, publish: Publish, *, name: str) -> FileSource:
        """The source of this system's ``watch`` list (not yet opened)."""
        from .source import FileSource, Folders

        if not self.watch:
            raise ConfigError(f"the files system {name!r} watches nothing")
        return FileSource(
            Folders(self.folder("inbox"), self.folder("archive"), self.folder("quarantine")),
            [watch.rule() for watch in self.watch],
            publish,
            system=name,
            poll_interval=self.poll_ms / 1000,
            stable=self.stable_ms / 1000,
            max_batch=self.batch.max_events,
            partial_suffixes=[suffix.lower() for suffix in self.partial_suffixes],
        )

    def sink(self) -> FileSink:
        from .sink import FileSink

        return FileSink(
            self.folder("outbox"),
            max_events=self.outbox_batch.max_events,
            max_delay=self.outbox_batch.max_delay_ms / 1000,
        )


class FileOutbox(_Strict):
    """A subscription's sink that writes files into a files system's outbox:
    ``sink: {file: {system: acme-drop, name: "{type}-{date}-{seq}.jsonl"}}``."""

    system: str = Field(min_length=1, description="a name under systems: in the config")
    name: str = Field(default="{type}-{date}-{seq}.jsonl", description="file name template")
    format: Literal["jsonl", "csv"] | None = None
    payload: Literal["event", "data"] = "event"
    # A tuple: the model is hashable, so the deliver stage can cache its compiled target.
    columns: tuple[str, ...] = Field(default=(), description="CSV: paths, e.g. data.qty")
    delimiter: str = Field(default=",", min_length=1, max_length=1)

    @model_validator(mode="after")
    def _compiles(self) -> FileOutbox:
        self.target()
        return self

    def target(self) -> OutboxTarget:
        try:
            return OutboxTarget(self.name, self.format, self.payload, self.columns, self.delimiter)
        except ConfigError as exc:
            raise ValueError(exc.detail) from None
