"""Forgeline's files connector: CSV and JSON drops for batch and EDI-style partners.

* :class:`FileSource` - a partner's inbox folder in, events out: complete files only
  (``.part`` renamed, or a stable size), streamed, appended in batches, then archived; bad
  files and bad records quarantined with a reason and a ``files.quarantined.v1`` event
  (``source``; its docstring has the completeness rule and the crash argument);
* :class:`FileRule`, ``QUARANTINE_TYPE`` - which files, which events, the id rule (``rules``);
* :func:`records`, :func:`fingerprint` - the streaming readers (``formats``);
* :class:`FileSink`, :class:`OutboxTarget` - events out as files in an outbox, each
  batch written to a temp name, fsynced and renamed (``sink``);
* :class:`FilesSystem`, :class:`FileWatch`, :class:`FileOutbox` - the config shapes.

Standard library only: nothing to install.
"""

from __future__ import annotations

from .config import FileOutbox, FilesBatch, FilesSystem, FileWatch, OutboxBatch
from .formats import Item, Unreadable, fingerprint, records
from .rules import QUARANTINE_TYPE, FileRule, RowError, event_id
from .sink import FileSink, OutboxTarget
from .source import FileOutcome, FileSource, Folders, SourceStats

__all__ = [
    "QUARANTINE_TYPE",
    "FileOutbox",
    "FileOutcome",
    "FileRule",
    "FileSink",
    "FileSource",
    "FileWatch",
    "FilesBatch",
    "FilesSystem",
    "Folders",
    "Item",
    "OutboxBatch",
    "OutboxTarget",
    "RowError",
    "SourceStats",
    "Unreadable",
    "event_id",
    "fingerprint",
    "records",
]
