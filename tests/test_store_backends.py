"""The store contract on SQLite and PostgreSQL, the shared migrations, and what only
PostgreSQL promises: several processes claiming at once, leases taken over, reconnects.

PostgreSQL tests are marked ``postgres``; each works in its own schema of database ``test``
and drops it afterwards. Without a server they skip, unless ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from forgeline import Settings
from forgeline.exceptions import BackendUnavailable, ConfigError
from forgeline.store import Store, migrations, open_store
from forgeline.store import postgres as postgres_store
from forgeline.store.migrations import (
    BASELINE,
    HEAD,
    VERSION_TABLE,
    _alembic_sqlite,
    alembic_config,
)
from forgeline.store.postgres import PostgresStore, parse_url
from forgeline.store.schema import metadata
from forgeline.store.sqlite import SqliteStore
from forgeline.testing import Receiver, running_hub

from .contract.store_contract import LEASE, StoreContract, outcome, routed, spec
from .services import require

SERVER = "postgresql://postgres@127.0.0.1:5432/test"

# The store's tables as Forgeline created them before it recorded schema versions.
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    spec           BLOB NOT NULL,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    start_position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name     TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id               INTEGER PRIMARY KEY,
    sub_id           TEXT NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
    position         INTEGER NOT NULL,
    event_id         TEXT NOT NULL,
    event_source     TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    pkey             TEXT,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    round_start      INTEGER NOT NULL DEFAULT 0,
    round_started_at REAL NOT NULL,
    due_at           REAL NOT NULL,
    lease_owner      TEXT,
    lease_until      REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    last_status      INTEGER,
    last_error       TEXT,
    reason           TEXT,
    UNIQUE (sub_id, position)
);
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (sub_id, position)
    WHERE state IN ('pending', 'retrying', 'inflight');
CREATE INDEX IF NOT EXISTS deliveries_key ON deliveries (sub_id, pkey, position)
    WHERE state IN ('pending', 'retrying', 'inflight', 'dead');
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (sub_id, updated_at)
    WHERE state = 'dead';
CREATE INDEX IF NOT EXISTS deliveries_finished ON deliveries (updated_at)
    WHERE state IN ('delivered', 'discarded');
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    duration_ms REAL NOT NULL,
    outcome     TEXT NOT NULL,
    status      INTEGER,
    error       TEXT,
    response    TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
"""


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require("postgres")
    name = f"fl_store_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def pg_url(schema: str) -> str:
    return f"{SERVER}?schema={schema}&application_name={schema}"


# -- the contract on every backend ----------------------------------------------------------


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'state.db'}"


class TestMemorySqliteStore(StoreContract):
    @pytest.fixture
    def store_url(self) -> str:
        return "sqlite:///:memory:"


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store_url(self, pg_url: str) -> str:
        return pg_url


# -- one schema, one migration history ------------------------------------------------------


def test_head_is_the_newest_migration_script() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD]
    assert script.get_revision(BASELINE) is not None


def _schema_diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


def _sqlite_diff(path: Path) -> list[Any]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return _schema_diff(connection)
    finally:
        engine.dispose()


async def test_sqlite_created_fresh_or_migrated_matches_the_schema(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    async with open_store(f"sqlite:///{fresh}"):
        pass
    migrated = tmp_path / "migrated.db"
    _alembic_sqlite(str(migrated))  # what an upgrade from nothing does
    for path in (fresh, migrated):
        assert _sqlite_diff(path) == []
        conn = sqlite3.connect(path)
        assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]
        conn.close()


async def test_a_state_db_from_before_migrations_opens_with_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript(LEGACY_SCHEMA)
    conn.execute(
        "INSERT INTO subscriptions VALUES ('sub_1', 'erp', ?, 1.0, 1.0, 0)",
        (spec().model_dump_json(),),
    )
    conn.execute(
        "INSERT INTO deliveries (sub_id, position, event_id, event_source, event_type, state,"
        " round_started_at, due_at, created_at, updated_at)"
        " VALUES ('sub_1', 3, 'e', 's', 'order.created.v1', 'dead', 1, 1, 1, 1)"
    )
    conn.commit()
    conn.close()
    async with open_store(f"sqlite:///{path}") as store:
        assert (await store.get_subscription("erp")).spec == spec()
        assert await store.backlog() == {"sub_1": {"dead": 1}}
    # The file is the baseline schema up to two SQLite quirks that change nothing the store
    # does: text primary keys declared without NOT NULL (the store never writes NULL there),
    # and ON DELETE CASCADE written on the column, which SQLite enforces but SQLAlchemy does
    # not read back.
    quirks = {("modify_nullable", "subscriptions", "id"), ("modify_nullable", "cursors", "name")}
    quirks |= {("modify_nullable", "deliveries", "id")}  # INTEGER PRIMARY KEY: the rowid
    for difference in _sqlite_diff(path):
        if isinstance(difference, list):
            [(kind, _, table, column, *_)] = difference
            assert (kind, table, column) in quirks
        else:
            assert difference[0] in ("remove_fk", "add_fk")
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]
    for table in ("deliveries", "attempts"):
        [fk] = conn.execute(f"PRAGMA foreign_key_list({table})").fetchall()
        assert fk[6] == "CASCADE"  # on_delete
    conn.close()


def next_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The migrations plus one more revision (an index), as the next Forgeline would ship."""
    after = HEAD
    revision = f"{int(after) + 1:04d}"
    scripts = tmp_path / "migrations"
    shutil.copytree(Path(migrations.__file__).parent, scripts)
    (scripts / "versions" / f"r{revision}_extra_index.py").write_text(
        f'''"""Revision ID: {revision}"""
from alembic import op

revision = "{revision}"
down_revision = "{after}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("deliveries_by_event", "deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_index("deliveries_by_event", "deliveries")
'''
    )
    monkeypatch.setattr(migrations, "_HERE", scripts)
    monkeypatch.setattr(migrations, "HEAD", revision)
    monkeypatch.setattr(postgres_store, "HEAD", revision)
    return revision


async def test_a_store_at_an_older_revision_is_upgraded_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with open_store(url) as store:  # made by this Forgeline, at HEAD
        await store.create_subscription(spec(), 0)
    revision = next_revision(tmp_path, monkeypatch)
    async with open_store(url) as store:
        assert [s.spec.name for s in await store.list_subscriptions()] == ["erp"]
    conn = sqlite3.connect(tmp_path / "state.db")
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(revision,)]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(deliveries)")}
    assert "deliveries_by_event" in indexes
    conn.close()


async def test_a_store_from_a_newer_forgeline_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with open_store(url):
        pass
    conn = sqlite3.connect(tmp_path / "state.db")
    conn.execute(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match=r"'9999'.*newer Forgeline"):
        async with open_store(url):
            pass


async def test_reopening_a_current_sqlite_store_loads_no_migration_tool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with open_store(url):
        pass
    code = (
        "import asyncio, sys\n"
        "from forgeline.store import open_store\n"
        "async def main():\n"
        f"    async with open_store({url!r}) as store:\n"
        "        await store.list_subscriptions()\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in ('alembic', 'sqlalchemy') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert result.stdout.strip() == "[]"


def test_store_urls_pick_the_backend() -> None:
    assert isinstance(open_store("sqlite:///:memory:"), SqliteStore)
    for scheme in ("postgresql", "postgres"):
        store = open_store(f"{scheme}://u@db.example:5433/forge?schema=plant_7&sslmode=prefer")
        assert isinstance(store, PostgresStore)
        assert store.schema == "plant_7"
    with pytest.raises(ConfigError, match="no store backend"):
        open_store("mysql://db/forge")


def test_postgres_urls_are_checked() -> None:
    dsn, schema, pool = parse_url("postgresql://u@h:1/db?schema=s1&pool_size=3&sslmode=disable")
    assert (dsn, schema, pool) == ("postgresql://u@h:1/db?sslmode=disable", "s1", 3)
    assert parse_url("postgresql://u@h/db")[1:] == ("forgeline", 10)
    for bad in (
        "postgresql://u@h/db?schema=Robert;DROP",
        "postgresql://u@h/db?pool_size=0",
        "postgresql://u@h/db?pool_size=many",
        "postgresql:///db",
    ):
        with pytest.raises(ConfigError):
            parse_url(bad)


async def test_an_unreachable_server_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="cannot connect"):
        async with open_store("postgresql://postgres@127.0.0.1:1/test?schema=x"):
            pass


# -- PostgreSQL: migrations ------------------------------------------------------------------


@pytest.mark.postgres
async def test_postgres_schema_matches_and_records_its_version(pg_url: str, schema: str) -> None:
    async with open_store(pg_url):
        pass
    conn = await asyncpg.connect(SERVER)
    try:
        version = await conn.fetch(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')
        assert [row[0] for row in version] == [HEAD]
    finally:
        await conn.close()

    from sqlalchemy.ext.asyncio import create_async_engine

    async def connect() -> Any:
        return await asyncpg.connect(SERVER, server_settings={"search_path": schema})

    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=connect, poolclass=sa.pool.NullPool
    )
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_schema_diff) == []
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_postgres_schema_at_an_older_revision_is_upgraded(
    pg_url: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(pg_url) as store:
        await store.create_subscription(spec(), 0)
    revision = next_revision(tmp_path, monkeypatch)
    async with open_store(pg_url) as store:
        assert [s.spec.name for s in await store.list_subscriptions()] == ["erp"]
    conn = await asyncpg.connect(SERVER)
    try:
        version = await conn.fetchval(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')
        index = await conn.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema,
            "deliveries_by_event",
        )
    finally:
        await conn.close()
    assert (version, index) == (revision, 1)


@pytest.mark.postgres
async def test_processes_starting_together_migrate_once(pg_url: str) -> None:
    stores = [open_store(pg_url) for _ in range(4)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        await stores[0].create_subscription(spec(), 0)
        for store in stores:
            assert [s.spec.name for s in await store.list_subscriptions()] == ["erp"]
    finally:
        await asyncio.gather(*(store.aclose() for store in stores))


@pytest.mark.postgres
async def test_a_postgres_schema_from_a_newer_forgeline_is_refused(
    pg_url: str, schema: str
) -> None:
    async with open_store(pg_url):
        pass
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f"UPDATE \"{schema}\".{VERSION_TABLE} SET version_num = '9999'")
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match=r"'9999'.*newer Forgeline"):
        async with open_store(pg_url):
            pass


# -- PostgreSQL: many processes ---------------------------------------------------------------


@pytest.mark.postgres
async def test_two_processes_never_claim_the_same_delivery(pg_url: str) -> None:
    # Two stores are two pools: as far as PostgreSQL can tell, two worker processes.
    async with open_store(pg_url) as a, open_store(pg_url) as b:
        sub = await a.create_subscription(spec(), 0)
        await a.record_routes([routed(p, sub) for p in range(1, 1001)], 1000)
        claimed: dict[str, list[int]] = defaultdict(list)

        async def worker(store: Store, owner: str) -> None:
            while claims := await store.claim(sub, owner, 16, LEASE, time.time()):
                claimed[owner[0]].extend(c.delivery_id for c in claims)
                await store.record_outcomes([outcome(c, owner) for c in claims], time.time())

        await asyncio.gather(
            *(worker(store, f"{name}{i}") for name, store in (("a", a), ("b", b)) for i in range(4))
        )
        every = claimed["a"] + claimed["b"]
        assert len(every) == len(set(every)) == 1000
        assert claimed["a"] and claimed["b"]
        assert await b.backlog() == {}


@pytest.mark.postgres
async def test_key_order_holds_across_processes(pg_url: str) -> None:
    async with open_store(pg_url) as a, open_store(pg_url) as b:
        sub = await a.create_subscription(spec(ordering="key"), 0)
        keys = [f"MO/{k}" for k in range(12)]
        records = [routed(p, sub, key=keys[p % len(keys)]) for p in range(1, 361)]
        await a.record_routes(records, 360)
        key_of = {r.position: r.partitionkey for r in records}
        delivered: dict[str | None, list[int]] = defaultdict(list)
        in_flight: set[str | None] = set()
        overlaps: list[int] = []

        async def worker(store: Store, owner: str) -> None:
            idle = 0
            while idle < 5:
                claims = await store.claim(sub, owner, 4, LEASE, time.time())
                if not claims:
                    idle += 1
                    await asyncio.sleep(0.005)
                    continue
                idle = 0
                for claim in claims:
                    key = key_of[claim.position]
                    if key in in_flight:
                        overlaps.append(claim.position)
                    in_flight.add(key)
                await asyncio.sleep(random.uniform(0, 0.003))  # the sink at work
                for claim in claims:
                    delivered[key_of[claim.position]].append(claim.position)
                    in_flight.discard(key_of[claim.position])
                await store.record_outcomes([outcome(c, owner) for c in claims], time.time())

        await asyncio.gather(
            *(worker(store, f"{name}{i}") for name, store in (("a", a), ("b", b)) for i in range(3))
        )
        assert overlaps == []
        assert sum(map(len, delivered.values())) == 360
        for key, got in delivered.items():
            assert got == sorted(got), key
        assert await a.backlog() == {}


@pytest.mark.postgres
async def test_a_stalled_workers_lease_is_taken_over(pg_url: str) -> None:
    async with open_store(pg_url) as a, open_store(pg_url) as b:
        sub = await a.create_subscription(spec(ordering="key"), 0)
        await a.record_routes([routed(1, sub, key="K"), routed(2, sub, key="K")], 2)
        [stalled] = await a.claim(sub, "a", 10, 0.3, time.time())
        assert await b.claim(sub, "b", 10, LEASE, time.time()) == []
        await asyncio.sleep(0.35)  # a stops renewing: no outcome within its lease
        [taken] = await b.claim(sub, "b", 10, LEASE, time.time())
        assert (taken.delivery_id, taken.attempt) == (stalled.delivery_id, 2)
        await a.record_outcomes([outcome(stalled, "a", "dead")], time.time())  # too late
        assert (await b.get_delivery(taken.delivery_id)).state == "inflight"
        await b.record_outcomes([outcome(taken, "b")], time.time())
        delivery = await a.get_delivery(taken.delivery_id)
        assert (delivery.state, [h.attempt for h in delivery.history]) == ("delivered", [2])
        [after] = await a.claim(sub, "a", 10, LEASE, time.time())
        assert after.position == 2


@pytest.mark.postgres
async def test_lost_connections_are_unavailable_then_replaced(pg_url: str, schema: str) -> None:
    async with open_store(pg_url) as store:
        await store.create_subscription(spec(), 0)
        admin = await asyncpg.connect(SERVER)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1",
                schema,
            )
        finally:
            await admin.close()
        assert killed >= 1
        failures = 0
        for _ in range(20):
            try:
                subs = await store.list_subscriptions()
            except BackendUnavailable:
                failures += 1
                continue
            assert [s.spec.name for s in subs] == ["erp"]
            break
        else:
            pytest.fail("the store never reconnected")
        assert failures <= 10  # at most one per pooled connection


@pytest.mark.postgres
async def test_a_hub_delivers_with_its_store_on_postgres(pg_url: str, tmp_path: Path) -> None:
    settings = Settings.load(env={"FORGELINE_STORE_URL": pg_url}, data_dir=tmp_path / "hub")
    async with Receiver() as receiver, running_hub(settings) as (hub, url):
        assert isinstance(hub.store, PostgresStore)
        headers = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            body = {"name": "erp", "types": ["order.*"], "sink": {"url": receiver.url("/erp")}}
            assert (await client.post("/v1/subscriptions", json=body)).status_code == 201
            events = [
                {
                    "specversion": "1.0",
                    "id": f"e{i}",
                    "source": "test/pg",
                    "type": "order.created.v1",
                    "subject": f"SO/{i % 3}",
                }
                for i in range(20)
            ]
            assert (await client.post("/v1/events", json=events)).status_code == 201
            await receiver.wait_for(20, path="/erp")
            assert sorted(receiver.ids("/erp")) == sorted(e["id"] for e in events)


@pytest.mark.postgres
async def test_one_process_leads_and_a_lost_leader_is_replaced(pg_url: str) -> None:
    async with open_store(pg_url) as first, open_store(pg_url) as second:
        assert await first.try_lead("router")
        assert await first.try_lead("router")  # asking again while leading is harmless
        assert not await second.try_lead("router")
        assert await second.try_lead("retention")  # roles are independent
        assert await first.still_leading("router")
        # The leader's session dies (a crash, a network cut): it knows, and the role is free.
        pid = first._leader.get_server_pid()  # type: ignore[attr-defined]
        admin = await asyncpg.connect(SERVER)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        assert not await first.still_leading("router")
        assert await second.try_lead("router")
        assert not await first.try_lead("router")  # back in line behind the new leader


async def test_the_embedded_store_always_leads(tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path / 'state.db'}") as store:
        assert await store.try_lead("router") and await store.still_leading("router")
