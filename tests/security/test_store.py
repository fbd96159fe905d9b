"""The security store on SQLite and PostgreSQL: principals, credentials, signing keys,
Idempotency-Keys and the hash-chained audit log, as the API's auth, token endpoint, business
APIs and ``forgeline audit verify`` rely on them; and the migration that adds their tables.

One contract (``SecurityStoreContract``) runs unchanged on both backends. "Two processes" are
two store objects on one database (two SQLite connections, two PostgreSQL pools). PostgreSQL
tests work in their own schema of database ``test`` and drop it afterwards; without a server
they skip, unless ``CI`` is set. Tampering is done the way an intruder would: raw SQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from alembic import command

from forgeline.exceptions import BackendError, ConfigError, Conflict, InvalidInput, NotFound
from forgeline.ownership import open_cross_references
from forgeline.security.audit import GENESIS, AuditEntry
from forgeline.security.store import (
    CLAIM_LEASE,
    IDEMPOTENCY_TTL,
    TOUCH_INTERVAL,
    Credential,
    Principal,
    SecurityStore,
    open_security_store,
    refusal,
)
from forgeline.store.migrations import HEAD, VERSION_TABLE, alembic_config

from ..services import require

SERVER = "postgresql://postgres@127.0.0.1:5432/test"
HASH = "sha256:" + "ab" * 32
JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}

Raw = Callable[[str], Awaitable[None]]


def entry(tenant: str = "acme", action: str = "principal.create", **detail: Any) -> AuditEntry:
    return AuditEntry(tenant, "pr_admin", action, "success", target="pr_x", detail=detail)


class SecurityStoreContract:
    """A backend's test class supplies ``store_url`` and ``raw`` (SQL run behind the store's
    back, table names unqualified)."""

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[SecurityStore]:
        async with open_security_store(store_url) as store:
            yield store

    @pytest.fixture
    async def other(self, store_url: str, store: SecurityStore) -> AsyncIterator[SecurityStore]:
        """Another process on the same database (opened after ``store`` migrated it)."""
        async with open_security_store(store_url) as other:
            yield other

    async def principal(
        self, store: SecurityStore, name: str = "mes", tenant: str = "acme"
    ) -> Principal:
        return await store.create_principal(
            tenant, "prod", "plant", name, ["events:publish", "inventory:read"]
        )

    # -- principals ------------------------------------------------------------------------

    async def test_a_principal_is_created_and_read_back(self, store: SecurityStore) -> None:
        made = await store.create_principal("acme", "prod", "partner", "acme-supplier", ["b", "a"])
        assert made.id.startswith("pr_") and len(made.id) == 29
        assert made.scopes == ("a", "b") and not made.disabled
        assert await store.get_principal(made.id) == made
        assert await store.get_principal(made.id, tenant="acme") == made
        assert made.public()["scopes"] == ["a", "b"]

    async def test_another_tenants_principal_is_not_found(self, store: SecurityStore) -> None:
        made = await self.principal(store)
        with pytest.raises(NotFound):
            await store.get_principal(made.id, tenant="globex")
        with pytest.raises(NotFound):
            await store.get_principal("pr_01JD0000000000000000000000")
        with pytest.raises(NotFound):
            await store.update_principal(made.id, tenant="globex", disabled=True)
        assert not (await store.get_principal(made.id)).disabled

    async def test_names_are_unique_per_tenant(self, store: SecurityStore) -> None:
        await self.principal(store, "mes")
        with pytest.raises(Conflict, match="already has a principal 'mes'"):
            await store.create_principal("acme", "dev", "user", "mes")
        await self.principal(store, "mes", tenant="globex")  # another tenant may
        assert len((await store.list_principals("acme")).items) == 1

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("environment", "staging"),
            ("kind", "robot"),
            ("name", ""),
            ("name", "a\nb"),
            ("tenant", "x" * 129),
            ("scopes", "events:publish"),
            ("scopes", ["has space"]),
            ("scopes", ['quote"']),
            ("scopes", [7]),
        ],
    )
    async def test_bad_principals_are_refused_and_nothing_is_stored(
        self, store: SecurityStore, field: str, value: Any
    ) -> None:
        good: dict[str, Any] = {
            "tenant": "acme",
            "environment": "prod",
            "kind": "service",
            "name": "erp",
            "scopes": ["a"],
        }
        with pytest.raises(InvalidInput) as info:
            await store.create_principal(**{**good, field: value})
        assert info.value.errors[0]["path"].startswith(field)
        assert (await store.list_principals("acme")).items == []

    async def test_lists_page_by_keyset_and_never_mix_tenants(self, store: SecurityStore) -> None:
        made = [
            await store.create_principal("acme", "prod", kind, f"p{n}")
            for n, kind in enumerate(["user", "plant", "user", "partner", "user"])
        ]
        await self.principal(store, "theirs", tenant="globex")
        seen: list[Principal] = []
        cursor = None
        for _ in range(5):
            page = await store.list_principals("acme", cursor=cursor, limit=2)
            seen += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(made, key=lambda p: p.id)
        users = await store.list_principals("acme", kind="user", limit=3)
        in_order = sorted(made, key=lambda p: p.id)
        assert [p.name for p in users.items] == [p.name for p in in_order if p.kind == "user"]
        assert users.next_cursor is None  # exactly 3: no empty page to fetch
        assert (await store.list_principals("initech")).items == []
        for bad in ({"limit": 0}, {"limit": 1001}, {"kind": "robot"}, {"cursor": ""}):
            with pytest.raises(InvalidInput):
                await store.list_principals("acme", **bad)

    async def test_scopes_and_disabling_are_updated(self, store: SecurityStore) -> None:
        made = await self.principal(store)
        changed = await store.update_principal(made.id, tenant="acme", scopes=["audit:read"])
        assert changed.scopes == ("audit:read",) and changed.updated_at >= made.updated_at
        off = await store.update_principal(made.id, tenant=None, disabled=True)
        again = await store.update_principal(made.id, tenant="acme", disabled=True)
        assert off.disabled and again.disabled_at == off.disabled_at  # the first time stays
        on = await store.update_principal(made.id, tenant="acme", disabled=False)
        assert not on.disabled and on.scopes == ("audit:read",)
        assert await store.get_principal(made.id) == on
        with pytest.raises(InvalidInput):
            await store.update_principal(made.id, tenant="acme", scopes=["bad scope"])
        assert (await store.get_principal(made.id)).scopes == ("audit:read",)

    # -- credentials -----------------------------------------------------------------------

    async def test_a_credential_is_found_by_prefix_with_its_principal(
        self, store: SecurityStore
    ) -> None:
        owner = await self.principal(store)
        added = await store.add_credential(
            owner.id, "api_key", "flk_prod_aaaaaaaaaaaa", HASH, expires_at=None, tenant="acme"
        )
        assert added.id.startswith("cr_")
        found = await store.credential_by_prefix("flk_prod_aaaaaaaaaaaa")
        assert found == (added, owner)
        assert found is not None and found[0].secret_hash == HASH  # the auth path compares it
        assert refusal(*found) is None
        for unknown in ("flk_prod_bbbbbbbbbbbb", "", "x" * 10_000):
            assert await store.credential_by_prefix(unknown) is None

    async def test_hashes_never_reach_what_is_shown(self, store: SecurityStore) -> None:
        owner = await self.principal(store)
        await store.add_credential(
            owner.id, "client_secret", "client-1", HASH, expires_at=None, tenant=None
        )
        [listed] = await store.list_credentials(owner.id, tenant="acme")
        assert HASH not in repr(listed) and HASH not in str(listed.public())
        assert set(listed.public()) == {
            "id",
            "principal_id",
            "kind",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "state",
        }

    async def test_credentials_stay_inside_their_tenant(self, store: SecurityStore) -> None:
        ours = await self.principal(store)
        with pytest.raises(NotFound):
            await store.add_credential(
                ours.id, "api_key", "p1", HASH, expires_at=None, tenant="globex"
            )
        added = await store.add_credential(
            ours.id, "api_key", "p1", HASH, expires_at=None, tenant="acme"
        )
        with pytest.raises(NotFound):
            await store.list_credentials(ours.id, tenant="globex")
        with pytest.raises(NotFound):
            await store.revoke_credential(added.id, tenant="globex")
        with pytest.raises(NotFound):
            await store.rotate_credential(
                added.id,
                tenant="globex",
                prefix="p2",
                secret_hash=HASH,
                expires_at=None,
                overlap_until=time.time(),
            )
        found = await store.credential_by_prefix("p1")
        assert found is not None and found[0].state() == "active"
        assert await store.credential_by_prefix("p2") is None

    async def test_bad_credentials_are_refused(self, store: SecurityStore) -> None:
        owner = await self.principal(store)
        await store.add_credential(owner.id, "api_key", "p1", HASH, expires_at=None, tenant=None)
        with pytest.raises(Conflict, match="prefix 'p1'"):
            await store.add_credential(
                owner.id, "api_key", "p1", HASH, expires_at=None, tenant=None
            )
        with pytest.raises(NotFound):
            await store.add_credential(
                "pr_nobody", "api_key", "p2", HASH, expires_at=None, tenant=None
            )
        for kind, prefix, expires in (
            ("password", "p3", None),
            ("api_key", "", None),
            ("api_key", "p3", float("nan")),
        ):
            with pytest.raises(InvalidInput):
                await store.add_credential(
                    owner.id, kind, prefix, HASH, expires_at=expires, tenant=None
                )
        assert len(await store.list_credentials(owner.id, tenant=None)) == 1

    async def test_revoked_and_expired_credentials_are_found_with_their_state(
        self, store: SecurityStore
    ) -> None:
        owner = await self.principal(store)
        now = time.time()
        old = await store.add_credential(
            owner.id, "api_key", "expired", HASH, expires_at=now - 1, tenant=None
        )
        live = await store.add_credential(
            owner.id, "api_key", "revoked", HASH, expires_at=now + 3600, tenant=None
        )
        first = await store.revoke_credential(live.id, tenant="acme")
        again = await store.revoke_credential(live.id, tenant=None)
        assert again.revoked_at == first.revoked_at is not None
        found = await store.credential_by_prefix("expired")
        assert found is not None and found[0] == old
        assert found[0].state() == "expired" and refusal(*found) == "credential expired"
        found = await store.credential_by_prefix("revoked")
        assert found is not None and found[0].state() == "revoked"
        assert refusal(*found) == "credential revoked"
        assert found[0].public()["state"] == "revoked"

    async def test_a_disabled_principals_credentials_are_refused(
        self, store: SecurityStore
    ) -> None:
        owner = await self.principal(store)
        await store.add_credential(owner.id, "api_key", "p1", HASH, expires_at=None, tenant=None)
        await store.update_principal(owner.id, tenant=None, disabled=True)
        found = await store.credential_by_prefix("p1")
        assert found is not None and refusal(*found) == "principal disabled"

    async def test_rotation_keeps_the_old_credential_until_the_overlap_ends(
        self, store: SecurityStore
    ) -> None:
        owner = await self.principal(store)
        now = time.time()
        old = await store.add_credential(
            owner.id, "api_key", "old", HASH, expires_at=None, tenant=None
        )
        new = await store.rotate_credential(
            old.id,
            tenant="acme",
            prefix="new",
            secret_hash="sha256:" + "cd" * 32,
            expires_at=now + 86400,
            overlap_until=now + 600,
        )
        assert (new.principal_id, new.kind) == (owner.id, "api_key")
        assert await store.credential_by_prefix("new") == (new, owner)
        before = await store.credential_by_prefix("old")
        assert before is not None and before[0].expires_at == now + 600
        assert before[0].state(now) == "active" and before[0].state(now + 601) == "expired"
        # Rotating again never pushes an expiry back.
        await store.rotate_credential(
            old.id,
            tenant=None,
            prefix="newer",
            secret_hash=HASH,
            expires_at=None,
            overlap_until=now + 9999,
        )
        after = await store.credential_by_prefix("old")
        assert after is not None and after[0].expires_at == now + 600

    async def test_a_failed_rotation_changes_nothing(self, store: SecurityStore) -> None:
        owner = await self.principal(store)
        old = await store.add_credential(
            owner.id, "api_key", "old", HASH, expires_at=None, tenant=None
        )
        await store.add_credential(owner.id, "api_key", "taken", HASH, expires_at=None, tenant=None)
        with pytest.raises(Conflict):
            await store.rotate_credential(
                old.id,
                tenant=None,
                prefix="taken",
                secret_hash=HASH,
                expires_at=None,
                overlap_until=time.time(),
            )
        assert await store.credential_by_prefix("old") == (old, owner)  # expiry untouched
        await store.revoke_credential(old.id, tenant=None)
        with pytest.raises(Conflict, match="revoked"):
            await store.rotate_credential(
                old.id,
                tenant=None,
                prefix="fresh",
                secret_hash=HASH,
                expires_at=None,
                overlap_until=time.time(),
            )
        assert await store.credential_by_prefix("fresh") is None

    async def test_last_use_is_written_at_most_once_per_interval(
        self, store: SecurityStore, other: SecurityStore
    ) -> None:
        owner = await self.principal(store)
        added = await store.add_credential(
            owner.id, "api_key", "p1", HASH, expires_at=None, tenant=None
        )
        now = time.time()
        assert await store.touch_credential(added, now=now)
        # A stale copy in two processes at once: the database's condition lets one write.
        assert not await other.touch_credential(added, now=now + 1)
        found = await store.credential_by_prefix("p1")
        assert found is not None and found[0].last_used_at == now
        assert not await store.touch_credential(found[0], now=now + TOUCH_INTERVAL - 1)
        assert await store.touch_credential(found[0], now=now + TOUCH_INTERVAL + 1)

    # -- signing keys ----------------------------------------------------------------------

    async def test_signing_keys_are_listed_while_active_or_in_overlap(
        self, store: SecurityStore
    ) -> None:
        first = await store.add_signing_key("k1", "EdDSA", "v1.m1.sealed-1", JWK, 1000.0)
        await store.add_signing_key("k2", "ES256", "v1.m1.sealed-2", {**JWK, "kty": "EC"}, 2000.0)
        assert "sealed-1" not in repr(first) and "sealed_private" not in first.public()
        retired = await store.retire_signing_key("k1", 3000.0)
        assert (await store.retire_signing_key("k1", 5000.0)).retired_at == retired.retired_at
        assert [k.kid for k in await store.active_signing_keys(2999.0)] == ["k1", "k2"]
        assert [k.kid for k in await store.active_signing_keys(3000.0)] == ["k2"]
        [k1, _] = await store.active_signing_keys(0.0)
        assert (k1.public_jwk, k1.sealed_private, k1.alg) == (JWK, "v1.m1.sealed-1", "EdDSA")
        with pytest.raises(Conflict):
            await store.add_signing_key("k2", "EdDSA", "x", JWK, 1.0)
        with pytest.raises(NotFound):
            await store.retire_signing_key("k9", 1.0)

    async def test_a_private_key_is_never_stored_as_the_public_jwk(
        self, store: SecurityStore
    ) -> None:
        with pytest.raises(InvalidInput, match="private members d"):
            await store.add_signing_key("k1", "EdDSA", "sealed", {**JWK, "d": "secret"}, 1.0)
        with pytest.raises(InvalidInput):
            await store.add_signing_key("k1", "EdDSA", "", JWK, 1.0)
        assert await store.active_signing_keys(0.0) == []

    # -- idempotency -----------------------------------------------------------------------

    async def test_the_first_answer_is_replayed_for_the_same_key_and_body(
        self, store: SecurityStore
    ) -> None:
        args = ("acme", "pr_1", "key-1", "digest-a")
        assert await store.remember_request(*args) is None
        running = await store.remember_request(*args)
        assert running is not None and running.in_progress
        await store.complete_request(*args, 201, b'{"id": "PR/0001"}')
        replay = await store.remember_request(*args)
        assert replay is not None and not replay.in_progress and replay.same_request("digest-a")
        assert (replay.status, replay.body) == (201, b'{"id": "PR/0001"}')
        with pytest.raises(Conflict, match="in progress"):
            await store.complete_request(*args, 500, b"")
        other_body = await store.remember_request("acme", "pr_1", "key-1", "digest-b")
        assert other_body is not None and not other_body.same_request("digest-b")
        assert (await store.remember_request(*args)) == replay  # nothing was overwritten

    async def test_keys_belong_to_one_tenant_and_principal(self, store: SecurityStore) -> None:
        assert await store.remember_request("acme", "pr_1", "key-1", "d") is None
        assert await store.remember_request("acme", "pr_2", "key-1", "d") is None
        assert await store.remember_request("globex", "pr_1", "key-1", "d") is None

    async def test_two_concurrent_requests_with_one_key_run_once(
        self, store: SecurityStore, other: SecurityStore
    ) -> None:
        for n in range(20):
            answers = await asyncio.gather(
                store.remember_request("acme", "pr_1", f"key-{n}", "d"),
                other.remember_request("acme", "pr_1", f"key-{n}", "d"),
                store.remember_request("acme", "pr_1", f"key-{n}", "d"),
            )
            assert sum(answer is None for answer in answers) == 1
            assert all(answer is None or answer.in_progress for answer in answers)

    async def test_an_abandoned_claim_frees_its_key_after_the_lease(
        self, store: SecurityStore
    ) -> None:
        """A request that died between its claim and its answer (kill -9) does not lock its
        key for a day: after ``CLAIM_LEASE`` the next request runs; an answered key stays."""
        now = time.time()
        assert await store.remember_request("acme", "pr_1", "dead", "d", now=now) is None
        soon = await store.remember_request("acme", "pr_1", "dead", "d", now=now + 60)
        assert soon is not None and soon.in_progress
        later = now + CLAIM_LEASE + 1
        assert await store.remember_request("acme", "pr_1", "dead", "d", now=later) is None
        await store.complete_request("acme", "pr_1", "dead", "d", 201, b"{}", now=later)
        kept = await store.remember_request(
            "acme", "pr_1", "dead", "d", now=later + CLAIM_LEASE * 2
        )
        assert kept is not None and kept.status == 201

    async def test_a_released_or_expired_key_is_free_again(self, store: SecurityStore) -> None:
        now = time.time()
        assert await store.remember_request("acme", "pr_1", "k", "d", now=now) is None
        assert not await store.release_request("acme", "pr_1", "k", "other-digest")
        assert await store.release_request("acme", "pr_1", "k", "d")
        assert await store.remember_request("acme", "pr_1", "k", "d", now=now) is None
        await store.complete_request("acme", "pr_1", "k", "d", 200, b"{}")
        assert not await store.release_request("acme", "pr_1", "k", "d")  # answered: kept
        later = now + IDEMPOTENCY_TTL + 1
        assert await store.remember_request("acme", "pr_1", "k", "d2", now=later) is None
        running = await store.remember_request("acme", "pr_1", "k", "d2", now=later)
        assert running is not None and running.in_progress and running.digest == "d2"
        assert await store.remember_request("acme", "pr_1", "old", "d", now=now) is None
        assert await store.purge_requests(now=later) == 1  # "old"; "k" is fresh again
        assert await store.remember_request("acme", "pr_1", "old", "d", now=later) is None

    async def test_bad_idempotency_input_is_refused(self, store: SecurityStore) -> None:
        for args in (("acme", "pr_1", "", "d"), ("acme", "pr_1", "k" * 256, "d")):
            with pytest.raises(InvalidInput):
                await store.remember_request(*args)
        assert await store.remember_request("acme", "pr_1", "k", "d") is None
        for status, body in ((99, b""), (True, b""), (200, "text")):
            with pytest.raises(InvalidInput):
                await store.complete_request("acme", "pr_1", "k", "d", status, body)  # type: ignore[arg-type]
        running = await store.remember_request("acme", "pr_1", "k", "d")
        assert running is not None and running.in_progress

    # -- the audit chain -------------------------------------------------------------------

    async def test_entries_chain_and_verify(self, store: SecurityStore) -> None:
        assert (await store.verify_audit()).ok and await store.audit_head() is None
        records = [await store.append_audit(entry(n=n)) for n in range(1, 31)]
        assert [r.seq for r in records] == list(range(1, 31))
        assert await store.audit_head() == (30, records[-1].hash)
        assert records[0].hash != GENESIS and records[0].detail == {"n": 1}
        counts: list[int] = []
        result = await store.verify_audit(page_size=7, progress=counts.append)
        assert (result.ok, result.checked, result.first_bad_seq) == (True, 30, None)
        assert counts == [7, 14, 21, 28, 30]

    async def test_the_log_is_queried_per_tenant(self, store: SecurityStore) -> None:
        start = time.time()
        for n in range(6):
            await store.append_audit(entry("acme", "key.revoke" if n % 2 else "key.create", n=n))
            await store.append_audit(entry("globex", n=n))
        pages, cursor = [], None
        while True:
            page = await store.query_audit("acme", cursor=cursor, limit=4)
            pages.append(page.items)
            if (cursor := page.next_cursor) is None:
                break
        assert [len(items) for items in pages] == [4, 2]
        rows = [row for items in pages for row in items]
        assert {row.tenant for row in rows} == {"acme"}
        assert [row.detail["n"] for row in rows] == list(range(6))
        revokes = await store.query_audit("acme", action="key.revoke")
        assert [row.detail["n"] for row in revokes.items] == [1, 3, 5]
        assert (await store.query_audit("acme", since=time.time() + 60)).items == []
        assert len((await store.query_audit("acme", since=start)).items) == 6
        assert rows[0].as_dict()["hash"] == rows[0].hash
        for bad in ({"cursor": "-1"}, {"cursor": "x"}, {"limit": 0}, {"since": float("inf")}):
            with pytest.raises(InvalidInput):
                await store.query_audit("acme", **bad)

    @pytest.mark.parametrize(
        "bad",
        [
            AuditEntry("acme", "pr_1", "x", "maybe"),  # type: ignore[arg-type]
            AuditEntry("acme", "pr_1", "", "success"),
            AuditEntry("acme\n", "pr_1", "x", "success"),
            AuditEntry("acme", "pr_1", "x", "success", detail={"v": float("nan")}),
            AuditEntry("acme", "pr_1", "x", "success", detail={"v": object()}),
            AuditEntry("acme", "pr_1", "x", "success", detail={"v": "\ud800"}),
            AuditEntry("acme", "pr_1", "x", "success", detail={"v": "x" * 17_000}),
            AuditEntry("acme", "pr_1", "x", "success", detail=["not", "an", "object"]),  # type: ignore[arg-type]
        ],
    )
    async def test_bad_entries_are_refused_and_the_chain_is_untouched(
        self, store: SecurityStore, bad: AuditEntry
    ) -> None:
        await store.append_audit(entry())
        with pytest.raises(InvalidInput):
            await store.append_audit(bad)
        head = await store.audit_head()
        assert head is not None and head[0] == 1
        assert (await store.verify_audit()).ok

    async def test_an_edited_entry_is_named(self, store: SecurityStore, raw: Raw) -> None:
        for n in range(10):
            await store.append_audit(entry(n=n))
        await raw("UPDATE audit_log SET detail = '{\"n\":99}' WHERE seq = 4")
        result = await store.verify_audit(page_size=3)
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 4, 3)
        assert "entry 4" in (result.reason or "") and "edited" in (result.reason or "")

    async def test_an_entry_edited_into_broken_json_is_named(
        self, store: SecurityStore, raw: Raw
    ) -> None:
        for n in range(3):
            await store.append_audit(entry(n=n))
        await raw("UPDATE audit_log SET detail = '{broken' WHERE seq = 2")
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq) == (False, 2)

    async def test_an_edited_field_other_than_detail_is_named(
        self, store: SecurityStore, raw: Raw
    ) -> None:
        for n in range(5):
            await store.append_audit(entry(n=n))
        await raw("UPDATE audit_log SET outcome = 'denied' WHERE seq = 5")
        assert (await store.verify_audit()).first_bad_seq == 5

    async def test_a_deleted_middle_entry_is_found(self, store: SecurityStore, raw: Raw) -> None:
        for n in range(10):
            await store.append_audit(entry(n=n))
        await raw("DELETE FROM audit_log WHERE seq = 6")
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 6, 5)
        assert "missing" in (result.reason or "")

    async def test_deleting_the_newest_entries_is_found(
        self, store: SecurityStore, raw: Raw
    ) -> None:
        for n in range(10):
            await store.append_audit(entry(n=n))
        await raw("DELETE FROM audit_log WHERE seq >= 9")
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 9, 8)
        await raw("DELETE FROM audit_log")
        assert (await store.verify_audit()).first_bad_seq == 1

    async def test_a_forged_entry_past_the_head_is_found_and_blocks_appends(
        self, store: SecurityStore, raw: Raw
    ) -> None:
        first = await store.append_audit(entry())
        await raw(
            "INSERT INTO audit_log (seq, time, tenant, actor, action, target, outcome, detail,"
            " hash) VALUES (2, 0, 'acme', 'pr_evil', 'key.create', NULL, 'success', '{}', 'x')"
        )
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq) == (False, 2)
        with pytest.raises(BackendError, match="entry 2 exists but the head"):
            await store.append_audit(entry())
        assert await store.audit_head() == (1, first.hash)

    async def test_a_deleted_head_is_found(self, store: SecurityStore, raw: Raw) -> None:
        await store.append_audit(entry())
        await raw("DELETE FROM audit_head")
        result = await store.verify_audit()
        assert not result.ok and "head is missing" in (result.reason or "")

    async def test_concurrent_appenders_keep_one_chain(
        self, store: SecurityStore, other: SecurityStore
    ) -> None:
        records = await asyncio.gather(
            *((store if n % 2 else other).append_audit(entry(n=n)) for n in range(50))
        )
        assert sorted(r.seq for r in records) == list(range(1, 51))
        assert len({r.hash for r in records}) == 50
        result = await other.verify_audit(page_size=16)
        assert (result.ok, result.checked) == (True, 50)

    async def test_verify_ignores_entries_appended_while_it_runs(
        self, store: SecurityStore, other: SecurityStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for n in range(20):
            await store.append_audit(entry(n=n))
        # Another process appends after every page verify reads, and just before its closing
        # reads: the worst moments for a walk not bounded by the head it started at, or for a
        # closing check that read the head before the highest seq.
        read_page, read_extent = store._audit_page, store._audit_extent

        async def page_then_append(after: int, upto: int, limit: int) -> Any:
            rows = await read_page(after, upto, limit)
            await other.append_audit(entry())
            return rows

        async def append_then_extent() -> Any:
            await other.append_audit(entry())
            return await read_extent()

        monkeypatch.setattr(store, "_audit_page", page_then_append)
        monkeypatch.setattr(store, "_audit_extent", append_then_extent)
        result = await store.verify_audit(page_size=5)
        assert (result.ok, result.checked) == (True, 20)
        monkeypatch.undo()
        assert (await store.verify_audit()).checked == 25


# -- the backends --------------------------------------------------------------------------------


class TestSqliteSecurityStore(SecurityStoreContract):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'state.db'}"

    @pytest.fixture
    def raw(self, tmp_path: Path) -> Raw:
        async def run(sql: str) -> None:
            conn = sqlite3.connect(tmp_path / "state.db")
            try:
                conn.execute(sql)
                conn.commit()
            finally:
                conn.close()

        return run


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    require("postgres")
    name = f"fl_sec_{uuid.uuid4().hex[:12]}"
    yield name
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.mark.postgres
class TestPostgresSecurityStore(SecurityStoreContract):
    @pytest.fixture
    def store_url(self, schema: str) -> str:
        return f"{SERVER}?schema={schema}"

    @pytest.fixture
    def raw(self, schema: str) -> Raw:
        async def run(sql: str) -> None:
            conn = await asyncpg.connect(SERVER, server_settings={"search_path": schema})
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        return run


async def test_an_in_memory_store_works_for_tests() -> None:
    async with open_security_store("sqlite:///:memory:") as store:
        made = await store.create_principal("acme", "test", "user", "ann")
        assert await store.get_principal(made.id) == made
        await store.append_audit(entry())
        assert (await store.verify_audit()).ok


def test_store_urls_pick_the_backend() -> None:
    from forgeline.security._postgres import PostgresSecurityStore
    from forgeline.security._sqlite import SqliteSecurityStore

    assert isinstance(open_security_store("sqlite:///:memory:"), SqliteSecurityStore)
    store = open_security_store("postgresql://u@db.example/forge?schema=plant_7")
    assert isinstance(store, PostgresSecurityStore) and store.schema == "plant_7"
    with pytest.raises(ConfigError, match="no store backend"):
        open_security_store("mysql://db/forge")
    with pytest.raises(ConfigError):
        open_security_store("postgresql://u@db/forge?schema=Robert;DROP")


def test_credential_state_is_decided_at_the_time_given() -> None:
    credential = Credential("cr_1", "pr_1", "api_key", "p", HASH, 0.0, expires_at=100.0)
    assert [credential.state(t) for t in (99.9, 100.0)] == ["active", "expired"]
    gone = dataclasses.replace(credential, revoked_at=50.0)
    assert gone.state(10.0) == "revoked"  # revocation takes effect at once, whatever the time


# -- the migration from 0002 ---------------------------------------------------------------------


def _upgrade_to(connection: sa.Connection, target: str, schema: str | None) -> None:
    if schema is not None:
        connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        connection.exec_driver_sql(f'SET LOCAL search_path TO "{schema}"')
    config = alembic_config()
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, target)


async def test_a_sqlite_store_at_0002_gains_the_tables_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    with engine.begin() as connection:
        _upgrade_to(connection, "0002", None)
    engine.dispose()
    url = f"sqlite:///{path}"
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO xrefs (system, entity, external_id, canonical_id, created_at)"
        " VALUES ('mes', 'product', 'P-1', 'product_1', 1.0)"
    )
    conn.commit()
    conn.close()
    async with open_security_store(url) as store:  # the first to open migrates
        await store.create_principal("acme", "prod", "service", "erp")
        await store.append_audit(entry())
    async with open_cross_references(url) as xref:
        assert await xref.resolve("mes", "product", "P-1") == "product_1"
    conn = sqlite3.connect(path)
    assert conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchall() == [(HEAD,)]
    conn.close()


@pytest.mark.postgres
async def test_a_postgres_store_at_0002_gains_the_tables_and_keeps_its_data(schema: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    async def connect() -> Any:
        return await asyncpg.connect(SERVER)

    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=connect, poolclass=sa.pool.NullPool
    )
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0002", schema)
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(SERVER)
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".xrefs (system, entity, external_id, canonical_id,'
            " created_at) VALUES ('mes', 'product', 'P-1', 'product_1', 1.0)"
        )
    finally:
        await conn.close()
    url = f"{SERVER}?schema={schema}"
    async with open_security_store(url) as store:
        await store.create_principal("acme", "prod", "service", "erp")
        assert (await store.append_audit(entry())).seq == 1
    async with open_cross_references(url) as xref:
        assert await xref.resolve("mes", "product", "P-1") == "product_1"
    conn = await asyncpg.connect(SERVER)
    try:
        version = await conn.fetchval(f'SELECT version_num FROM "{schema}".{VERSION_TABLE}')
    finally:
        await conn.close()
    assert version == HEAD
