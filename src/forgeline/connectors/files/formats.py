"""Reading a dropped file as a stream of records: the parsing half of the file source.

Nothing here touches the log. A file is read twice, both times as a stream in bounded memory:

1. :func:`fingerprint` hashes the bytes (the content hash in every derived event id) and, for
   text formats, decodes them with the configured encoding, so a file in the wrong encoding
   is refused whole *before* a single row is appended;
2. :func:`records` parses it and yields one :class:`Item` per record, good or bad. A bad
   record (a CSV row with the wrong number of fields, a JSON line that is not an object) is
   an item with an ``error``; only a file whose structure breaks (an unterminated quote, a
   JSON array that stops making sense) raises :class:`Unreadable`, saying after which record.

Formats: CSV with a header row (one record per row, a dict of column -> text); JSON lines
(one object per line); JSON (an array of objects, streamed element by element, or a single
object, which is one record and is read whole up to ``max_document`` bytes).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson

__all__ = ["Format", "Item", "Unreadable", "fingerprint", "records"]

Format = Literal["csv", "json", "jsonl"]

_CHUNK = 1 << 20
_WHITESPACE = " \t\r\n"


class Unreadable(Exception):
    """The file as a whole cannot be read on: wrong encoding, broken structure."""

    def __init__(self, reason: str, *, after: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        #: How many records were read (and yielded) before the failure.
        self.after = after


@dataclass(frozen=True, slots=True)
class Item:
    """One record: ``row`` counts records from 1 (a CSV's header is not one), ``line`` is
    where it starts in the file. ``raw`` is what a rejected-rows file repeats: the CSV
    fields, or the JSON text."""

    row: int
    line: int
    data: dict[str, Any] | None
    raw: list[str] | str
    error: str | None = None


def fingerprint(path: Path, encoding: str | None) -> str:
    """The blake2b digest of the file's bytes; ``Unreadable`` if they do not decode."""
    hasher = hashlib.blake2b(digest_size=16)
    decoder = codecs.getincrementaldecoder(encoding)("strict") if encoding else None
    offset = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            if decoder is not None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise Unreadable(
                        f"not {encoding} text: byte {offset + exc.start} cannot be decoded"
                    ) from None
            offset += len(chunk)
        if decoder is not None:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise Unreadable(f"not {encoding} text: it ends inside a character") from None
    return hasher.hexdigest()


def records(
    path: Path,
    format: Format,
    *,
    encoding: str = "utf-8-sig",
    delimiter: str = ",",
    max_document: int = 64 << 20,
) -> Generator[Item, None, None]:
    """The file's records, in order (see the module docstring)."""
    with path.open("r", encoding=encoding, newline="" if format == "csv" else None) as text:
        try:
            if format == "csv":
                yield from _csv(text, delimiter)
            elif format == "jsonl":
                yield from _jsonl(text)
            else:
                yield from _json(text, max_document)
        except UnicodeDecodeError as exc:  # the file changed since its fingerprint
            raise Unreadable(f"not {encoding} text: {exc.reason}") from None


def header_of(path: Path, *, encoding: str, delimiter: str) -> list[str]:
    """A CSV file's header row (for the rejected-rows file, which repeats it)."""
    with path.open("r", encoding=encoding, newline="") as text:
        return next(csv.reader(text, delimiter=delimiter), [])


def _csv(text: TextIO, delimiter: str) -> Iterator[Item]:
    reader = csv.reader(text, delimiter=delimiter, strict=True)
    row = 0
    try:
        header = next(reader, None)
        if not header or not any(header):
            raise Unreadable("no header row: a CSV drop starts with its column names")
        names = [name.strip() for name in header]
        if "" in names:
            raise Unreadable(f"column {names.index('') + 1} of the header has no name")
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise Unreadable(f"the header names {', '.join(map(repr, twice))} twice")
        line = reader.line_num + 1
        for fields in reader:
            start, line = line, reader.line_num + 1
            if not fields:
                continue  # a blank line separates nothing in CSV
            row += 1
            if len(fields) != len(names):
                error = f"{len(fields)} fields where the header has {len(names)}"
                yield Item(row, start, None, fields, error)
            else:
                yield Item(row, start, dict(zip(names, fields, strict=True)), fields)
    except csv.Error as exc:
        raise Unreadable(f"line {reader.line_num}: {exc}", after=row) from None


def _jsonl(text: TextIO) -> Iterator[Item]:
    row = 0
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        row += 1
        raw = line.rstrip("\r\n")
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield Item(row, number, None, raw, f"not JSON: {exc}")
            continue
        yield _object(row, number, value, raw)


def _object(row: int, line: int, value: Any, raw: str) -> Item:
    if isinstance(value, dict):
        return Item(row, line, value, raw)
    return Item(row, line, None, raw, f"a JSON {_kind(value)}, not an object")


def _json(text: TextIO, max_document: int) -> Iterator[Item]:
    buffer = text.read(_CHUNK)
    start = len(buffer) - len(buffer.lstrip(_WHITESPACE))
    if start == len(buffer):
        raise Unreadable("empty: no JSON value")
    if buffer[start] == "[":
        yield from _array(text, buffer, start + 1)
        return
    # One object is one record, read whole: larger drops belong in an array or JSON lines.
    while len(buffer) <= max_document and (more := text.read(_CHUNK)):
        buffer += more
    if len(buffer) > max_document:
        raise Unreadable(
            f"a single JSON value over {max_document} characters: send an array or JSON lines"
        )
    try:
        value = orjson.loads(buffer)
    except orjson.JSONDecodeError as exc:
        raise Unreadable(f"not JSON: {exc}") from None
    yield _object(1, buffer.count("\n", 0, start) + 1, value, buffer.strip())


def _array(text: TextIO, buffer: str, pos: int, max_element: int = 64 << 20) -> Iterator[Item]:
    """The elements of a top-level array, decoded one at a time from a sliding buffer."""
    decoder = json.JSONDecoder()
    eof = False
    row = 0
    line = 1 + buffer.count("\n", 0, pos)
    counted = pos  # the newlines before here are in ``line``
    expect_value = True
    first = True

    def skip(at: int) -> int:
        while at < len(buffer) and buffer[at] in _WHITESPACE:
            at += 1
        return at

    while True:
        pos = skip(pos)
        if pos >= len(buffer) and not eof:
            # Keep only what is not consumed yet: memory stays one element plus a chunk.
            line += buffer.count("\n", counted, pos)
            buffer, pos, counted = buffer[pos:], 0, 0
            more = text.read(_CHUNK)
            eof = not more
            buffer += more
            continue
        if pos >= len(buffer):
            raise Unreadable("the JSON array is not closed", after=row)
        char = buffer[pos]
        if char == "]" and (first or not expect_value):
            if text.read(_CHUNK).strip(_WHITESPACE) or buffer[pos + 1 :].strip(_WHITESPACE):
                raise Unreadable("text after the closing ']' of the array", after=row)
            return
        if not expect_value:
            if char != ",":
                raise Unreadable(f"expected ',' or ']' after element {row}", after=row)
            pos += 1
            expect_value = True
            continue
        try:
            value, end = decoder.raw_decode(buffer, pos)
            partial = end == len(buffer) and not eof  # a number may go on in the next chunk
        except json.JSONDecodeError as exc:
            if eof or len(buffer) - pos > max_element:
                raise Unreadable(f"element {row + 1}: {exc.msg}", after=row) from None
            partial = True
        if partial:
            line += buffer.count("\n", counted, pos)
            buffer, pos, counted = buffer[pos:], 0, 0
            more = text.read(_CHUNK)
            eof = not more
            buffer += more
            continue
        line += buffer.count("\n", counted, pos)
        counted = pos
        row += 1
        yield _object(row, line, value, buffer[pos:end])
        pos, expect_value, first = end, False, False


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool) or value is None:
        return "literal"
    return "number"
