"""The log contract on every embedded backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from forgeline import open_log
from forgeline.exceptions import ConfigError

from .log_contract import LogContract, make


class TestMemoryLog(LogContract):
    @pytest.fixture
    def log_url(self) -> str:
        return "memory://"


class TestSqliteLog(LogContract):
    @pytest.fixture
    def log_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'events.db'}"


async def test_sqlite_log_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    events = make(10)
    async with open_log(url) as log:
        await log.append(events)
    async with open_log(url) as log:
        assert [r.event for r in await log.read(0)] == events
        again = await log.append(events[:1])
        assert again[0].duplicate


async def test_sqlite_log_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    import sqlite3

    from forgeline.log.sqlite import SqliteLog

    log = SqliteLog(f"sqlite:///{tmp_path / 'events.db'}")
    async with log:
        await log.append(make(1))
        writer = log._db._writer
        assert writer is not None
        # synchronous is per connection: 2 is FULL on the connection that commits appends.
        assert writer.execute("PRAGMA synchronous").fetchone()[0] == 2
        conn = sqlite3.connect(tmp_path / "events.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no event log backend for 'kafka://'") as caught:
        open_log("kafka://admin:s3cret@broker")
    assert "s3cret" not in str(caught.value)  # a URL may carry a password
