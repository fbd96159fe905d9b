"""The files connector: drops in an inbox become events, then are archived or quarantined;
events become files in an outbox that appear whole. Real folders (tmp_path), the in-memory
log, no mocks of the file system."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import resource
import threading
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from forgeline.connectors.files import (
    QUARANTINE_TYPE,
    FileOutbox,
    FileRule,
    FileSink,
    FileSource,
    FilesSystem,
    Folders,
    OutboxTarget,
)
from forgeline.connectors.files import source as source_module
from forgeline.envelope import Event
from forgeline.exceptions import BackendError
from forgeline.log import Appended, EventLog, open_log


@pytest.fixture
async def log() -> AsyncIterator[EventLog]:
    async with open_log("memory://") as opened:
        yield opened


def folders(root: Path) -> Folders:
    found = Folders(root / "inbox", root / "archive", root / "quarantine")
    found.prepare()
    return found


def asn_rule(**options: object) -> FileRule:
    return FileRule(
        "asn-*.csv",
        "asn.received.v1",
        subject="{data.asn}",
        **options,  # type: ignore[arg-type]
    )


async def all_events(log: EventLog) -> list[Event]:
    return [record.event for record in await log.read(0, 1_000_000)]


def drop(folder: Path, name: str, text: str) -> Path:
    """Write as a careful partner does: a .part file, then the rename."""
    part = folder / f"{name}.part"
    part.write_text(text, encoding="utf-8")
    os.rename(part, folder / name)
    return folder / name


CSV = "asn,sku,qty\nASN-1,A-100,5\nASN-2,B-200,7\n"


# -- drops become events ------------------------------------------------------------------------


async def test_csv_drop_becomes_events_and_is_archived(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    drop(where.inbox, "asn-1.csv", CSV)
    source = FileSource(where, [asn_rule()], log.append, system="acme", stable=0)
    [outcome] = await source.poll()
    assert (outcome.status, outcome.rows, outcome.appended, outcome.rejected) == (
        "archived",
        2,
        2,
        0,
    )
    events = await all_events(log)
    assert [e.data for e in events] == [
        {"asn": "ASN-1", "sku": "A-100", "qty": "5"},
        {"asn": "ASN-2", "sku": "B-200", "qty": "7"},
    ]
    assert [e.subject for e in events] == ["ASN-1", "ASN-2"]
    assert {e.source for e in events} == {"files://acme/asn-1.csv"}
    assert [e.extensions["filerow"] for e in events] == [1, 2]
    assert os.listdir(where.inbox) == []
    assert os.listdir(where.archive) == ["asn-1.csv"]
    assert os.listdir(where.quarantine) == []


async def test_json_array_object_and_lines(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    rules = [FileRule("*.json", "order.received.v1"), FileRule("*.jsonl", "order.received.v1")]
    drop(where.inbox, "a.json", '[\n {"n": 1},\n {"n": 2, "x": [1, 2]} ,{"n":3}\n]\n')
    drop(where.inbox, "b.json", '{"n": 4}')
    drop(where.inbox, "c.jsonl", '{"n": 5}\n\n{"n": 6}\n')
    source = FileSource(where, rules, log.append, stable=0)
    outcomes = await source.poll()
    assert [o.appended for o in outcomes] == [3, 1, 2]
    assert [e.data["n"] for e in await all_events(log)] == [1, 2, 3, 4, 5, 6]
    assert sorted(os.listdir(where.archive)) == ["a.json", "b.json", "c.jsonl"]


async def test_large_json_array_streams_across_chunks(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    # Elements straddle the reader's 1 MiB chunks, numbers included (a cut "12" may be "123").
    items = [{"n": n, "pad": "x" * (n % 700)} for n in range(6000)]
    text = "[" + ",\n".join(json.dumps(item) for item in items) + ", 123456789]"
    drop(where.inbox, "big.json", text)
    source = FileSource(where, [FileRule("*.json", "a.b.v1")], log.append, stable=0)
    [outcome] = await source.poll()
    assert (outcome.appended, outcome.rejected) == (6000, 1)  # the bare number is no object
    assert [e.data["n"] for e in await all_events(log) if e.type == "a.b.v1"] == list(range(6000))


# -- completeness -------------------------------------------------------------------------------


async def test_part_files_wait_for_their_rename(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    part = where.inbox / "asn-1.csv.part"
    part.write_text(CSV)
    (where.inbox / ".hidden-asn-2.csv").write_text(CSV)
    source = FileSource(where, [asn_rule()], log.append, stable=0)
    assert await source.poll() == []
    os.rename(part, where.inbox / "asn-1.csv")
    assert [o.name for o in await source.poll()] == ["asn-1.csv"]


async def test_file_written_in_place_waits_until_stable(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    path = where.inbox / "asn-1.csv"
    path.write_text("asn,sku,qty\nASN-1,A-100,5\n")
    source = FileSource(where, [asn_rule()], log.append, stable=0.3)
    assert await source.poll() == []  # first sight starts the clock
    await asyncio.sleep(0.2)
    with path.open("a") as handle:
        handle.write("ASN-2,B-200,7\n")  # still growing: the clock starts again
    await asyncio.sleep(0.15)
    assert await source.poll() == []
    await asyncio.sleep(0.35)
    [outcome] = await source.poll()
    assert outcome.appended == 2


# -- archive and quarantine ---------------------------------------------------------------------


async def test_archive_name_clash_gets_a_timestamp(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    source = FileSource(where, [asn_rule()], log.append, stable=0)
    drop(where.inbox, "asn-1.csv", CSV)
    await source.poll()
    drop(where.inbox, "asn-1.csv", CSV.replace("5", "6"))
    await source.poll()
    names = sorted(os.listdir(where.archive), key=len)
    assert len(names) == 2
    assert names[0] == "asn-1.csv"
    assert names[1].startswith("asn-1-20") and names[1].endswith("Z.csv")
    assert len(await all_events(log)) == 4  # other content, other ids


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        ("asn-1.csv", b"", "no header row"),
        ("asn-1.csv", b"asn,sku,asn\nA,B,C\n", "twice"),
        ("asn-1.csv", b"asn,sku\n\xff\xfeA,B\n", "not utf-8-sig text: byte 8"),
        ("asn-1.csv", b'asn,sku\nA,"B\n', "unexpected end of data"),
    ],
)
async def test_unreadable_file_is_quarantined_and_the_rest_flows(
    tmp_path: Path, log: EventLog, name: str, body: bytes, reason: str
) -> None:
    where = folders(tmp_path)
    (where.inbox / name).write_bytes(body)
    drop(where.inbox, "asn-2.csv", CSV)
    source = FileSource(where, [asn_rule()], log.append, system="acme", stable=0)
    bad, good = await source.poll()
    assert bad.status == "quarantined" and reason in (bad.reason or "")
    assert good.status == "archived" and good.appended == 2
    assert sorted(os.listdir(where.quarantine)) == [name, f"{name}.reason.json"]
    verdict = json.loads((where.quarantine / f"{name}.reason.json").read_text())
    assert verdict["status"] == "quarantined" and reason in verdict["reason"]
    [held] = [e for e in await all_events(log) if e.type == QUARANTINE_TYPE]
    assert held.subject == name and held.source == "files://acme"
    assert held.data["file"] == name and held.data["row"] is None
    assert reason in held.data["reason"]


async def test_bad_rows_are_quarantined_and_good_rows_go_in(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    text = "asn,sku,qty\nASN-1,A-100,5\nASN-2,B-200\n,C-300,1\nASN-4,D-400,2\n"
    drop(where.inbox, "asn-1.csv", text)
    source = FileSource(where, [asn_rule()], log.append, system="acme", stable=0)
    [outcome] = await source.poll()
    assert (outcome.rows, outcome.appended, outcome.rejected) == (4, 3, 1)
    assert os.listdir(where.archive) == ["asn-1.csv"]
    rejected = where.quarantine / "asn-1.csv.rejected.csv"
    with rejected.open(newline="") as handle:
        assert list(csv.reader(handle)) == [["asn", "sku", "qty"], ["ASN-2", "B-200"]]
    verdict = json.loads((where.quarantine / "asn-1.csv.reason.json").read_text())
    assert verdict["status"] == "rejected-rows"
    assert verdict["errors"] == [{"row": 2, "line": 3, "reason": "2 fields where the header has 3"}]
    assert (verdict["rows"], verdict["appended"], verdict["rejected"]) == (4, 3, 1)
    assert verdict["archived_as"] == "asn-1.csv"
    [held] = [e for e in await all_events(log) if e.type == QUARANTINE_TYPE]
    assert (held.data["file"], held.data["row"], held.data["line"]) == ("asn-1.csv", 2, 3)
    assert held.data["record"] == ["ASN-2", "B-200"]
    # The empty subject of row 3 is still an event; a missing template field is not:
    needs = FileRule("o-*.jsonl", "order.received.v1", subject="{data.order}")
    drop(where.inbox, "o-1.jsonl", '{"order": "SO1"}\n{"other": 1}\n[1]\nnot json\n')
    [outcome] = await FileSource(where, [needs], log.append, stable=0).poll()
    assert (outcome.appended, outcome.rejected) == (1, 3)
    lines = (where.quarantine / "o-1.jsonl.rejected.jsonl").read_text().splitlines()
    assert lines == ['{"other": 1}', "[1]", "not json"]
    reasons = json.loads((where.quarantine / "o-1.jsonl.reason.json").read_text())["errors"]
    assert "has no 'order'" in reasons[0]["reason"]
    assert reasons[1]["reason"] == "a JSON array, not an object"
    assert reasons[2]["reason"].startswith("not JSON")


async def test_whole_file_mode_appends_nothing_when_a_row_is_bad(
    tmp_path: Path, log: EventLog
) -> None:
    where = folders(tmp_path)
    drop(where.inbox, "asn-1.csv", "asn,sku,qty\nASN-1,A-100,5\nASN-2,B-200\n")
    source = FileSource(where, [asn_rule(on_error="file")], log.append, stable=0)
    [outcome] = await source.poll()
    assert outcome.status == "quarantined" and outcome.appended == 0
    events = await all_events(log)
    assert [e.type for e in events] == [QUARANTINE_TYPE]
    verdict = json.loads((where.quarantine / "asn-1.csv.reason.json").read_text())
    assert verdict["errors"][0]["row"] == 2
    assert "asn-1.csv" in os.listdir(where.quarantine)


# -- crashes ------------------------------------------------------------------------------------


async def test_crash_between_append_and_archive_reprocesses_without_duplicates(
    tmp_path: Path, log: EventLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    where = folders(tmp_path)
    rows = "".join(f"ASN-{n},S-{n},{n}\n" for n in range(250)) + "ASN-X,too,many,fields\n"
    drop(where.inbox, "asn-1.csv", "asn,sku,qty\n" + rows)

    def crash(*args: object, **kwargs: object) -> Path:
        raise KeyboardInterrupt("power cut after the appends, before the archive rename")

    monkeypatch.setattr(source_module, "move", crash)
    first = FileSource(where, [asn_rule()], log.append, stable=0, max_batch=100)
    with pytest.raises(KeyboardInterrupt):
        await first.poll()
    assert os.listdir(where.inbox) == ["asn-1.csv"]  # never lost
    stored = len(await all_events(log))
    assert stored == 251  # 250 rows and one quarantined row, all durable
    monkeypatch.undo()

    restarted = FileSource(where, [asn_rule()], log.append, stable=0, max_batch=100)
    [outcome] = await restarted.poll()
    assert (outcome.appended, outcome.duplicates, outcome.rejected) == (0, 250, 1)
    assert len(await all_events(log)) == stored  # nothing twice
    assert os.listdir(where.archive) == ["asn-1.csv"]
    # The interrupted pass's sidecars were replaced, not doubled.
    assert sorted(os.listdir(where.quarantine)) == [
        "asn-1.csv.reason.json",
        "asn-1.csv.rejected.csv",
    ]


async def test_log_failure_mid_file_leaves_it_in_the_inbox(tmp_path: Path, log: EventLog) -> None:
    where = folders(tmp_path)
    drop(where.inbox, "asn-1.csv", "asn,sku,qty\n" + "".join(f"A{n},S,1\n" for n in range(300)))
    calls = 0

    async def flaky(events: Sequence[Event]) -> Sequence[Appended]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise BackendError("the log went away")
        return await log.append(events)

    source = FileSource(where, [asn_rule()], flaky, stable=0, max_batch=100)
    with pytest.raises(BackendError):
        await source.poll()
    assert os.listdir(where.inbox) == ["asn-1.csv"]
    assert not list(where.quarantine.iterdir())  # the temp rejects file is gone too
    [outcome] = await source.poll()
    assert (outcome.appended, outcome.duplicates) == (200, 100)
    assert len(await all_events(log)) == 300


async def test_system_config_runs_the_loop(tmp_path: Path, log: EventLog) -> None:
    spec = FilesSystem.model_validate(
        {
            "kind": "files",
            "path": str(tmp_path),
            "poll_ms": 20,
            "stable_ms": 0,
            "watch": [{"glob": "asn-*.csv", "type": "asn.received.v1"}],
        }
    )
    async with spec.source(log.append, name="acme") as source:
        drop(tmp_path / "inbox", "asn-1.csv", CSV)
        for _ in range(200):
            if source.stats.archived:
                break
            await asyncio.sleep(0.01)
    assert source.stats.archived == 1 and source.stats.appended == 2


def test_config_errors_are_refused_on_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="say format"):
        FilesSystem.model_validate(
            {"path": str(tmp_path), "watch": [{"glob": "drop-*", "type": "a.b.v1"}]}
        )
    with pytest.raises(ValidationError, match="unknown placeholder"):
        FilesSystem.model_validate(
            {"path": "/x", "watch": [{"glob": "*.csv", "type": "a.b.v1", "subject": "{nope}"}]}
        )
    with pytest.raises(ValidationError, match="not an encoding"):
        FilesSystem.model_validate(
            {"path": "/x", "watch": [{"glob": "*.csv", "type": "a.b.v1", "encoding": "klingon"}]}
        )
    with pytest.raises(ValidationError, match="needs columns"):
        FileOutbox.model_validate({"system": "acme", "name": "{date}-{seq}.csv"})
    with pytest.raises(ValidationError, match="seq"):
        FileOutbox.model_validate({"system": "acme", "name": "{type}.jsonl"})
    assert FileOutbox.model_validate({"system": "acme"}).target().file_format == "jsonl"


# -- the sink -----------------------------------------------------------------------------------


def _event(n: int, type: str = "lot.released.v1") -> Event:
    return Event.new(type, "forgeline://test", {"n": n, "lot": f"L{n}"}, subject=f"L{n}")


async def test_sink_files_appear_whole_and_hold_exactly_the_events(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    sink = FileSink(outbox, max_events=2500, max_delay=0.05)
    target = OutboxTarget("{type}-{date}-{seq}.jsonl")
    seen: dict[str, int] = {}
    partial: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        # A partner polling the outbox as fast as it can: every visible file must be whole.
        while not stop.is_set():
            for name in os.listdir(outbox) if outbox.exists() else []:
                if name.startswith(".") or name in seen:
                    continue
                body = (outbox / name).read_bytes()
                lines = body.splitlines()
                if not body.endswith(b"\n") or len(lines) not in (2500, 500):
                    partial.append(name)
                seen[name] = len(lines)

    thread = threading.Thread(target=reader)
    thread.start()
    events = [_event(n) for n in range(10_000)] + [_event(n, "lot.held.v1") for n in range(500)]
    try:
        async with sink:
            paths = await asyncio.gather(*(sink.write(event, target) for event in events))
    finally:
        stop.set()
        thread.join()
    assert partial == []
    names = sorted(os.listdir(outbox))
    visible = [name for name in names if not name.startswith(".")]
    assert len(visible) == 5 and names[0] == ".forgeline-seq"
    assert visible[0].startswith("lot.held.v1-") and visible[0].endswith("-000005.jsonl")
    written = [
        orjson.loads(line) for name in visible for line in (outbox / name).read_bytes().splitlines()
    ]
    assert sorted(e["id"] for e in written) == sorted(e.id for e in events)
    assert {p.name for p in paths} == set(visible)
    # A restart continues the sequence instead of reusing names.
    async with FileSink(outbox, max_delay=0.01) as again:
        path = await again.write(_event(1), target)
    assert path.name.endswith("-000006.jsonl")


async def test_sink_csv_of_data_columns(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    target = FileOutbox.model_validate(
        {"system": "acme", "name": "lots-{seq}.csv", "payload": "data", "columns": ["lot", "n"]}
    ).target()
    async with FileSink(outbox, max_events=3, max_delay=5) as sink:
        await asyncio.gather(*(sink.write(_event(n), target) for n in range(3)))
    with (outbox / "lots-000001.csv").open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows == [["lot", "n"], ["L0", "0"], ["L1", "1"], ["L2", "2"]]


# -- large files --------------------------------------------------------------------------------


async def test_100k_row_csv_streams(tmp_path: Path) -> None:
    where = folders(tmp_path)
    path = where.inbox / "asn-big.csv"
    with path.open("w") as handle:
        handle.write("asn,sku,qty,note\n")
        for n in range(100_000):
            handle.write(f"ASN-{n},SKU-{n % 977},{n % 50},some free text for row {n}\n")
    ids: set[str] = set()
    batches: list[int] = []

    async def count(events: Sequence[Event]) -> list[Appended]:
        # Keeps only the ids: what stays in memory is the source's own working set.
        batches.append(len(events))
        ids.update(event.id for event in events)
        return [Appended(len(ids), False) for _ in events]

    size_mb = path.stat().st_size >> 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    source = FileSource(where, [asn_rule()], count, stable=0, max_batch=1000)
    [outcome] = await source.poll()
    elapsed = time.perf_counter() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"100k rows ({size_mb} MiB) in {elapsed:.1f}s, peak RSS +{grown_mb:.0f} MB")
    assert (outcome.rows, outcome.appended) == (100_000, 100_000)
    assert len(ids) == 100_000 and max(batches) == 1000
