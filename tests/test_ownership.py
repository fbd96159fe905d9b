"""Master-data ownership: the rules and their precedence, conflicts quarantined as events, and
the cross-reference on SQLite and PostgreSQL (concurrent binds, the cache the mapping engine
reads, the migration that adds its table to an existing store).

PostgreSQL tests are marked ``postgres``; each works in its own schema of database ``test``
and drops it afterwards. Without a server they skip, unless ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import pickle
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest
import sqlalchemy as sa
from alembic import command

from forgeline import Event, Settings
from forgeline._sqlite import Database
from forgeline.canonical import UnknownEventType
from forgeline.exceptions import ConfigError, Conflict, InvalidInput
from forgeline.mapping import MappingError, load_mapping
from forgeline.ownership import (
    QUARANTINE_TYPE,
    CachedCrossReference,
    Change,
    CrossReferences,
    OwnershipConflict,
    OwnershipRegistry,
    OwnershipRule,
    open_cross_references,
    original,
    quarantine_event,
)
from forgeline.ownership._sqlite import SqliteCrossReferences
from forgeline.store import open_store
from forgeline.store.migrations import HEAD, VERSION_TABLE, alembic_config
from forgeline.testing import running_hub

from .contract.store_contract import spec
from .services import require

SERVER = "postgresql://postgres@127.0.0.1:5432/test"

RULES = [
    {"entity": "product", "owner": "plm"},
    {"entity": "product", "owner": "odoo", "tenant": "acme"},
    {"entity": "product", "owner": "mes", "plant": "berlin"},
    {"entity": "product", "owner": "wms", "tenant": "acme", "plant": "berlin"},
    {"entity": "supplier", "owner": "odoo"},
]


@pytest.fixture
def registry() -> OwnershipRegistry:
    return OwnershipRegistry.from_config(RULES)


def mes_event(**extensions: Any) -> Event:
    return Event.new(
        "engineering.change.released.v1",
        "mes/line-1",
        {"code": "ECO-7"},
        subject="ECO-7",
        **extensions,
    )


# -- the registry --------------------------------------------------------------------------


def test_the_most_specific_rule_wins(registry: OwnershipRegistry) -> None:
    assert registry.owner_of("product") == "plm"
    assert registry.owner_of("product", tenant="globex") == "plm"
    assert registry.owner_of("product", tenant="acme") == "odoo"
    assert registry.owner_of("product", plant="berlin") == "mes"
    # A plant is narrower than a tenant: its rule beats the tenant's.
    assert registry.owner_of("product", tenant="globex", plant="berlin") == "mes"
    assert registry.owner_of("product", tenant="acme", plant="paris") == "odoo"
    assert registry.owner_of("product", tenant="acme", plant="berlin") == "wms"
    assert registry.owner_of("supplier", tenant="acme", plant="berlin") == "odoo"
    rule = registry.rule_for("product", "acme", "berlin")
    assert rule == OwnershipRule(entity="product", owner="wms", tenant="acme", plant="berlin")
    assert registry.as_config()[0] == {"entity": "product", "owner": "plm"}


def test_an_entity_no_rule_names_is_not_governed(registry: OwnershipRegistry) -> None:
    assert registry.owner_of("customer") is None
    registry.check(Change("customer", "anyone"))  # no rule, no conflict
    assert len(OwnershipRegistry.from_config(None)) == 0


def test_rules_are_validated_and_every_problem_has_its_path() -> None:
    with pytest.raises(ConfigError) as info:
        OwnershipRegistry.from_config(
            [
                {"entity": "product", "owner": "plm"},
                {"entity": "prodcut", "owner": "plm"},
                {"entity": "bom"},
                {"entity": "bom", "owner": "plm", "site": "x"},
                {"entity": "bom", "owner": "bad name"},
                {"entity": "product", "owner": "odoo"},
            ]
        )
    paths = {error["path"]: error["message"] for error in info.value.errors}
    assert set(paths) == {
        "ownership[1].entity",
        "ownership[2].owner",
        "ownership[3].site",
        "ownership[4].owner",
        "ownership[5]",
    }
    assert "'prodcut' is not a canonical entity" in paths["ownership[1].entity"]
    assert "ownership[0]" in paths["ownership[5]"]  # the duplicate names the first rule
    assert str(info.value).startswith("ownership[1].entity: ")
    with pytest.raises(ConfigError, match="expected a list"):
        OwnershipRegistry.from_config({"product": "plm"})
    with pytest.raises(ConfigError, match="one owner per entity"):
        OwnershipRegistry([OwnershipRule(entity="bom", owner="a")] * 2)


def test_a_change_from_the_owner_passes_and_from_another_system_is_a_conflict(
    registry: OwnershipRegistry,
) -> None:
    registry.check(Change("product", "odoo", tenant="acme", key="FG-1000"))
    with pytest.raises(OwnershipConflict) as info:
        registry.check(Change("product", "mes", tenant="acme", key="FG-1000"))
    conflict = info.value
    assert (conflict.entity, conflict.owner, conflict.system) == ("product", "odoo", "mes")
    assert conflict.tenant == "acme" and conflict.plant is None
    assert str(conflict) == (
        "mes may not change product 'FG-1000': odoo owns product (tenant acme); "
        "make the change in odoo, or change the ownership rule"
    )
    assert isinstance(conflict, Conflict) and conflict.status == 409
    assert conflict.problem == "ownership-conflict"
    copy = pickle.loads(pickle.dumps(conflict))
    assert (type(copy), copy.detail, copy.owner, copy.system, copy.tenant) == (
        OwnershipConflict,
        conflict.detail,
        "odoo",
        "mes",
        "acme",
    )


def test_a_change_read_from_an_event() -> None:
    event = mes_event(tenant="acme", plant="berlin")
    change = Change.from_event(event, system="mes")
    assert (change.entity, change.system, change.tenant, change.plant, change.key) == (
        "engineering_change",
        "mes",
        "acme",
        "berlin",
        "ECO-7",
    )
    assert change.event is event
    assert Change.from_event(event, system="mes", entity="bom", plant="paris").plant == "paris"
    with pytest.raises(UnknownEventType):
        Change.from_event(Event.new("mes.thing.v1", "mes/x"), system="mes")


def test_a_refused_change_becomes_a_quarantine_event_that_keeps_it() -> None:
    registry = OwnershipRegistry.from_config([{"entity": "engineering_change", "owner": "plm"}])
    refused = mes_event(tenant="acme", correlationid="order-42")
    change = Change.from_event(refused, system="mes")
    with pytest.raises(OwnershipConflict) as info:
        registry.check(change)
    quarantined = quarantine_event(change, info.value)
    assert quarantined.type == QUARANTINE_TYPE == "masterdata.change.quarantined.v1"
    assert quarantined.subject == "ECO-7" and quarantined.tenant == "acme"
    assert quarantined.extensions["causationid"] == refused.id
    assert quarantined.extensions["correlationid"] == "order-42"
    data = quarantined.data
    assert data["reason"] == str(info.value)
    assert (data["entity"], data["owner"], data["system"]) == ("engineering_change", "plm", "mes")
    assert original(quarantined) == refused  # replayable: the change itself, whole
    # Refusing the same event again (a redelivery) gives the same event: the log keeps one.
    assert quarantine_event(change, info.value).id == quarantined.id
    # A change that did not come as an event keeps its data.
    direct = Change("product", "mes", key="FG-1", data={"name": "Widget"})
    with pytest.raises(OwnershipConflict) as info:
        OwnershipRegistry.from_config(RULES).check(direct)
    kept = quarantine_event(direct, info.value)
    assert kept.data["data"] == {"name": "Widget"} and original(kept) is None
    with pytest.raises(ValueError, match="not a quarantine event"):
        original(refused)


async def test_a_quarantined_change_is_stored_and_visible_in_the_api(tmp_path: Path) -> None:
    registry = OwnershipRegistry.from_config([{"entity": "engineering_change", "owner": "plm"}])
    change = Change.from_event(mes_event(), system="mes")
    with pytest.raises(OwnershipConflict) as info:
        registry.check(change)
    quarantined = quarantine_event(change, info.value)
    settings = Settings.load(env={}, data_dir=tmp_path / "hub")
    async with running_hub(settings) as (hub, url):
        await hub.publish([quarantined])
        await hub.publish([quarantine_event(change, info.value)])  # refused again: one event
        headers = {"Authorization": f"Bearer {hub.admin_key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            answer = await client.get(f"/v1/events/{quarantined.id}")
            page = await client.get("/v1/events", params={"type": QUARANTINE_TYPE})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["type"] == QUARANTINE_TYPE
    assert body["data"]["reason"].startswith("mes may not change engineering_change 'ECO-7'")
    assert body["data"]["event"]["id"] == change.event.id  # type: ignore[union-attr]
    assert page.status_code == 200, page.text
    assert [record["event"]["id"] for record in page.json()["events"]] == [quarantined.id]


# -- the cross-reference, on every backend ----------------------------------------------------


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require("postgres")
    name = f"fl_xref_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "memory":
        return "sqlite:///:memory:"
    name: str = request.getfixturevalue("schema")
    return f"{SERVER}?schema={name}"


@pytest.fixture
async def xref(store_url: str) -> AsyncIterator[CrossReferences]:
    async with open_cross_references(store_url) as store:
        yield store


async def test_bind_mints_once_and_resolves_both_ways(xref: CrossReferences) -> None:
    product = await xref.bind("mes", "product", "P-100")
    assert product.startswith("product_") and len(product) == len("product_") + 26
    assert await xref.bind("mes", "product", "P-100") == product  # idempotent
    assert await xref.bind("odoo", "product", "42", product) == product
    assert await xref.bind("odoo", "product", "42", product) == product
    assert await xref.resolve("mes", "product", "P-100") == product
    assert await xref.resolve("odoo", "product", "42") == product
    assert await xref.resolve("odoo", "product", "43") is None
    assert await xref.resolve("mes", "lot", "P-100") is None  # the entity is part of the key
    assert await xref.reverse(product) == {"mes": "P-100", "odoo": "42"}
    assert await xref.reverse("product_nothing") == {}
    other = await xref.bind("mes", "product", "P-200")
    assert other != product


async def test_binding_against_what_is_stored_is_a_conflict(xref: CrossReferences) -> None:
    product = await xref.bind("mes", "product", "P-100")
    with pytest.raises(Conflict, match=r"'P-100' is bound to 'product_.*', not 'FG-1'"):
        await xref.bind("mes", "product", "P-100", "FG-1")
    # One record per system for a canonical object: a second MES id for it is refused.
    with pytest.raises(Conflict, match="mes already has product 'P-100'"):
        await xref.bind("mes", "product", "P-101", product)
    assert await xref.resolve("mes", "product", "P-101") is None
    assert await xref.reverse(product) == {"mes": "P-100"}
    for bad in (("", "product", "x"), ("mes", "product", ""), ("mes", "pro\nduct", "x")):
        with pytest.raises(InvalidInput):
            await xref.bind(*bad)
    with pytest.raises(InvalidInput, match="canonical_id"):
        await xref.bind("mes", "product", "P-9", "x" * 600)


async def test_business_keys_as_canonical_ids_and_reverse_by_entity(xref: CrossReferences) -> None:
    assert await xref.bind("odoo", "product", "42", "FG-1000") == "FG-1000"
    assert await xref.bind("wms", "lot", "L-9", "FG-1000") == "FG-1000"
    with pytest.raises(Conflict, match=r"names records of lot, product"):
        await xref.reverse("FG-1000")
    assert await xref.reverse("FG-1000", entity="lot") == {"wms": "L-9"}
    assert await xref.reverse("FG-1000", entity="product") == {"odoo": "42"}


async def test_lookups_and_scans_cover_many_keys(xref: CrossReferences) -> None:
    ids = {f"P-{n}": await xref.bind("mes", "product", f"P-{n}") for n in range(700)}
    keys = [("mes", "product", external) for external in ids]
    found = await xref.lookup([*keys, ("mes", "product", "missing")])
    assert {row.external_id: row.canonical_id for row in found} == ids
    assert await xref.lookup([]) == []
    page = await xref.scan(0, 500)
    assert len(page) == 500 and [row.seq for row in page] == sorted(row.seq for row in page)
    rest = await xref.scan(page[-1].seq, 500)
    assert len(rest) == 200 and {row.external_id for row in page + rest} == set(ids)


async def test_the_cache_answers_the_mapping_engine_synchronously(store_url: str) -> None:
    async with CachedCrossReference(open_cross_references(store_url)) as cache:
        product = await cache.store.bind("mes", "product", "P-1")  # behind the cache's back
        assert cache.resolve("mes", "product", "P-1") is None
        assert await cache.reload() == 1
        assert cache.resolve("mes", "product", "P-1") == product
        assert await cache.bind("odoo", "product", "7", product) == product
        assert cache.resolve("odoo", "product", "7") == product  # its own bind, at once
        mapping = load_mapping({"fields": {
            "mes": {"path": "data.partNo", "xref": {"system": "mes", "entity": "product"}},
            "odoo": {"path": "data.productId", "xref": {"system": "odoo", "entity": "product"}},
        }})  # fmt: skip
        doc = {"specversion": "1.0", "id": "1", "source": "mes/1", "type": "mes.x.v1"}
        result = mapping({**doc, "data": {"partNo": "P-1", "productId": 7}}, xref=cache)
        assert result == {"mes": product, "odoo": product}
        with pytest.raises(MappingError, match="mes product 'P-2'"):
            mapping({**doc, "data": {"partNo": "P-2", "productId": 7}}, xref=cache)
        assert await cache.reverse(product) == {"mes": "P-1", "odoo": "7"}
        assert len(cache) == 2


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that two openers share (not a private in-memory one)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    name: str = request.getfixturevalue("schema")
    return f"{SERVER}?schema={name}"


async def test_another_process_bindings_reach_the_cache_on_refresh(shared_url: str) -> None:
    url = shared_url
    # ``other``: another process, as far as the cache can tell.
    async with (
        CachedCrossReference(open_cross_references(url)) as cache,
        open_cross_references(url) as other,
    ):
        first = await other.bind("mes", "product", "P-1")
        assert cache.resolve("mes", "product", "P-1") is None
        assert await cache.refresh() == 1
        assert cache.resolve("mes", "product", "P-1") == first
        # A row that a scan passed over (on PostgreSQL an id is taken before its commit)
        # is fetched by key once someone looked for it.
        second = await other.bind("mes", "product", "P-2")
        cache._seq += 10  # pretend the scan saw higher ids first
        assert cache.resolve("mes", "product", "P-2") is None
        await cache.refresh()
        assert cache.resolve("mes", "product", "P-2") == second
        assert await cache.fetch("mes", "product", "P-3") is None
        third = await other.bind("mes", "product", "P-3")
        assert await cache.fetch("mes", "product", "P-3") == third
        assert await cache.reload() == 3


async def test_a_bounded_cache_keeps_the_recently_used(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    async with open_cross_references(url) as writer:
        ids = [await writer.bind("mes", "product", f"P-{n}") for n in range(5)]
    async with CachedCrossReference(open_cross_references(url), maxsize=3, page=2) as cache:
        assert len(cache) == 3  # the newest three
        assert cache.resolve("mes", "product", "P-0") is None
        assert cache.resolve("mes", "product", "P-2") == ids[2]
        await cache.refresh()  # fetches the miss, evicting the least recently used (P-3)
        assert cache.resolve("mes", "product", "P-0") == ids[0]
        assert len(cache) == 3
        assert cache.resolve("mes", "product", "P-3") is None
    with pytest.raises(ValueError, match="maxsize"):
        CachedCrossReference(open_cross_references(url), maxsize=0)


async def test_the_sqlite_cross_reference_can_share_the_store_database(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    async with open_store(f"sqlite:///{path}"):  # creates the file at head
        pass
    database = Database(path, name="store")
    await database.open("")
    try:
        async with SqliteCrossReferences(database=database) as xref:
            canonical = await xref.bind("mes", "product", "P-1")
        # Closing the cross-reference leaves the shared database open for its owner.
        assert await xref.resolve("mes", "product", "P-1") == canonical
    finally:
        await database.aclose()
    with pytest.raises(ValueError, match="one of them"):
        SqliteCrossReferences()


def test_store_urls_pick_the_backend() -> None:
    assert isinstance(open_cross_references("sqlite:///:memory:"), SqliteCrossReferences)
    from forgeline.ownership._postgres import PostgresCrossReferences

    xref = open_cross_references("postgresql://u@db:5433/forge?schema=plant_7")
    assert isinstance(xref, PostgresCrossReferences) and xref.schema == "plant_7"
    with pytest.raises(ConfigError, match="no store backend"):
        open_cross_references("mysql://db/forge")


# -- concurrent binds: one canonical id ------------------------------------------------------


async def _race(url: str) -> None:
    """Two stores (two connections or pools: two processes, as far as the database can tell)
    bind the same 200 external ids at the same moment."""
    a, b = open_cross_references(url), open_cross_references(url)
    await a.open()
    await b.open()
    try:
        externals = [f"P-{n}" for n in range(200)]
        pairs = await asyncio.gather(
            *(
                asyncio.gather(a.bind("mes", "product", x), b.bind("mes", "product", x))
                for x in externals
            )
        )
        assert all(first == second for first, second in pairs)
        assert len({first for first, _ in pairs}) == 200
        rows = await a.scan(0, 1000)
        assert len(rows) == 200
        assert {row.external_id: row.canonical_id for row in rows} == dict(
            zip(externals, (first for first, _ in pairs), strict=True)
        )
    finally:
        await a.aclose()
        await b.aclose()


@pytest.mark.postgres
async def test_concurrent_binds_on_postgres_give_one_canonical_id(schema: str) -> None:
    await _race(f"{SERVER}?schema={schema}")


async def test_concurrent_binds_on_sqlite_give_one_canonical_id(tmp_path: Path) -> None:
    await _race(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.mark.postgres
async def test_postgres_binds_racing_on_two_raw_connections(schema: str) -> None:
    """The race at its worst moment: another session has inserted the key but not committed
    when this bind reads (nothing) and inserts; it waits, then answers the winner's id."""
    url = f"{SERVER}?schema={schema}"
    async with open_cross_references(url) as xref:
        first = await asyncpg.connect(SERVER)
        try:
            await first.execute("BEGIN")
            await first.execute(
                f'INSERT INTO "{schema}".xrefs (system, entity, external_id, canonical_id,'
                " created_at) VALUES ('mes', 'product', 'P-1', 'product_WINNER', 0)"
            )
            # The store's bind waits on the open insert, then finds the winner's row.
            pending = asyncio.create_task(xref.bind("mes", "product", "P-1"))
            await asyncio.sleep(0.3)
            assert not pending.done()
            await first.execute("COMMIT")
            assert await asyncio.wait_for(pending, 10) == "product_WINNER"
        finally:
            await first.close()


# -- the migration from 0001 -------------------------------------------------------------------


def _upgrade_to(connection: sa.Connection, target: str, schema: str | None) -> None:
    if schema is not None:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, target)


async def test_a_sqlite_store_at_0001_gains_the_table_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        _upgrade_to(connection, "0001", None)
    engine.dispose()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO subscriptions VALUES ('sub_1', 'erp', ?, 1.0, 1.0, 0)",
        (spec().model_dump_json(),),
    )
    conn.commit()
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [("0001",)]
    conn.close()
    url = f"sqlite:///{path}"
    async with open_cross_references(url) as xref:  # the first to open migrates
        canonical = await xref.bind("mes", "product", "P-1")
    async with open_store(url) as store:
        assert [s.spec.name for s in await store.list_subscriptions()] == ["erp"]
    async with open_cross_references(url) as xref:
        assert await xref.resolve("mes", "product", "P-1") == canonical
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]
    conn.close()


@pytest.mark.postgres
async def test_a_postgres_store_at_0001_gains_the_table_and_keeps_its_data(schema: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def connect() -> Any:
        return await asyncpg.connect(SERVER)

    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=connect, poolclass=sa.pool.NullPool
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001", schema)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(
            f"INSERT INTO \"{schema}\".subscriptions VALUES ('sub_1', 'erp', $1, 1, 1, 0)",
            spec().model_dump_json(),
        )
        assert await conn.fetchval(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}') == (
            "0001"
        )
    finally:
        await conn.close()
    url = f"{SERVER}?schema={schema}"
    async with open_store(url) as store:  # the store migrates as well as the xref would
        assert [s.spec.name for s in await store.list_subscriptions()] == ["erp"]
    async with open_cross_references(url) as xref:
        canonical = await xref.bind("mes", "product", "P-1")
        assert await xref.reverse(canonical) == {"mes": "P-1"}
    conn = await asyncpg.connect(SERVER)
    try:
        version = await conn.fetchval(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')
    finally:
        await conn.close()
    assert version == HEAD
