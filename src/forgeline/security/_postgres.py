"""The security store in the PostgreSQL store (``postgresql://…?schema=NAME``), for scale-out.

Same tables as on SQLite, in the store's schema, migrated by the store's migrations (whoever
opens first brings the schema to head). Where SQLite gets atomicity from its one writer,
PostgreSQL gets it from single statements and row locks, under READ COMMITTED:

- an Idempotency-Key is claimed by ``INSERT … ON CONFLICT DO UPDATE … WHERE expired``: of two
  concurrent claims the second waits for the first to commit and then finds a live record, so
  it neither inserts nor updates; it reads that record in a statement of its own (a new
  snapshot, which sees it);
- an audit append first upserts the one head row, which locks it (``ON CONFLICT DO UPDATE``
  locks the conflicting row, and after waiting works on its newest version): appenders in
  every process queue there, so each reads the head its predecessor committed;
- a rotation locks the old credential (``FOR UPDATE``) so a concurrent revoke cannot be lost.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]

from ..exceptions import BackendError, NotFound
from ..store.beside import BesideStore
from .audit import (
    AUDIT_COLUMNS,
    GENESIS,
    AuditEntry,
    AuditRecord,
    Extent,
    Head,
    audit_from_row,
    chain,
    forged,
)
from .store import (
    CREDENTIAL_COLUMNS,
    IDEMPOTENCY_COLUMNS,
    PRINCIPAL_COLUMNS,
    SIGNING_KEY_COLUMNS,
    Credential,
    IdempotencyRecord,
    Principal,
    SecurityStore,
    SigningKeyRecord,
    credential_from_row,
    credential_row,
    idempotency_from_row,
    kid_taken,
    name_taken,
    prefix_taken,
    principal_from_row,
    principal_row,
    qualified,
    revoked,
    signing_key_from_row,
    signing_key_row,
)

__all__ = ["PostgresSecurityStore"]

T = TypeVar("T")

_DEFAULT_POOL = 4
_N_CREDENTIAL = CREDENTIAL_COLUMNS.count(",") + 1


def _marks(count: int, start: int = 1) -> str:
    return ", ".join(f"${n}" for n in range(start, start + count))


def _count(status: str) -> int:
    """The row count of an asyncpg command status (``"UPDATE 1"``, ``"DELETE 7"``)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresSecurityStore(BesideStore, SecurityStore):
    what = "PostgreSQL security store"

    def __init__(self, url: str) -> None:
        BesideStore.__init__(self, url, default_pool=_DEFAULT_POOL)
        s = f'"{self.schema}"'
        self._principals = f"{s}.principals"
        self._credentials = f"{s}.credentials"
        self._signing_keys = f"{s}.signing_keys"
        self._requests = f"{s}.idempotency_keys"
        self._log = f"{s}.audit_log"
        self._head = f"{s}.audit_head"
        self._in_tenant = f"principal_id IN (SELECT id FROM {self._principals} WHERE tenant = $%d)"
        self._lock_head_sql = (
            f"INSERT INTO {self._head} AS h (id, seq, hash) VALUES (1, 0, $1)"
            " ON CONFLICT (id) DO UPDATE SET seq = h.seq RETURNING seq, hash"
        )
        # One round trip for the entry and the head's move (a data-modifying CTE).
        self._append_sql = (
            f"WITH entry AS (INSERT INTO {self._log} ({AUDIT_COLUMNS}) VALUES ({_marks(9)}))"
            f" UPDATE {self._head} SET seq = $1, hash = $9 WHERE id = 1"
        )
        self._remember_sql = (
            f"INSERT INTO {self._requests} AS r ({IDEMPOTENCY_COLUMNS})"
            " VALUES ($1, $2, $3, $4, NULL, NULL, $5, NULL)"
            " ON CONFLICT (tenant, principal, key) DO UPDATE SET digest = excluded.digest,"
            " status = NULL, body = NULL, created_at = excluded.created_at, completed_at = NULL"
            " WHERE r.created_at < $6 OR (r.status IS NULL AND r.created_at < $7)"
            " RETURNING created_at"
        )

    async def _fetch(self, doing: str, sql: str, *args: Any) -> list[Any]:
        return await self._run(doing, lambda conn: conn.fetch(sql, *args))

    async def _fetchrow(self, doing: str, sql: str, *args: Any) -> Any:
        return await self._run(doing, lambda conn: conn.fetchrow(sql, *args))

    async def _execute(self, doing: str, sql: str, *args: Any) -> int:
        return _count(await self._run(doing, lambda conn: conn.execute(sql, *args)))

    # -- principals ------------------------------------------------------------------------

    async def _insert_principal(self, principal: Principal) -> None:
        async def insert(conn: Any) -> None:
            try:
                await conn.execute(
                    f"INSERT INTO {self._principals} ({PRINCIPAL_COLUMNS}) VALUES ({_marks(9)})",
                    *principal_row(principal),
                )
            except asyncpg.UniqueViolationError as exc:
                raise name_taken(principal) from exc

        await self._run("creating a principal", insert)

    async def _get_principal(self, id: str) -> Principal | None:
        row = await self._fetchrow(
            "reading a principal",
            f"SELECT {PRINCIPAL_COLUMNS} FROM {self._principals} WHERE id = $1",
            id,
        )
        return None if row is None else principal_from_row(row)

    async def _list_principals(
        self, tenant: str, kind: str | None, after: str, limit: int
    ) -> list[Principal]:
        sql = f"SELECT {PRINCIPAL_COLUMNS} FROM {self._principals} WHERE tenant = $1 AND id > $2"
        args: list[Any] = [tenant, after]
        if kind is not None:
            args.append(kind)
            sql += f" AND kind = ${len(args)}"
        args.append(limit)
        rows = await self._fetch(
            "listing principals", f"{sql} ORDER BY id LIMIT ${len(args)}", *args
        )
        return [principal_from_row(row) for row in rows]

    async def _update_principal(
        self, id: str, tenant: str | None, scopes: str | None, disabled: bool | None, now: float
    ) -> Principal | None:
        args: list[Any] = [id, now]
        sets = ["updated_at = $2"]
        if scopes is not None:
            args.append(scopes)
            sets.append(f"scopes = ${len(args)}")
        if disabled is True:
            sets.append("disabled_at = coalesce(disabled_at, $2)")
        elif disabled is False:
            sets.append("disabled_at = NULL")
        sql = f"UPDATE {self._principals} SET {', '.join(sets)} WHERE id = $1"
        if tenant is not None:
            args.append(tenant)
            sql += f" AND tenant = ${len(args)}"
        row = await self._fetchrow(
            "updating a principal", f"{sql} RETURNING {PRINCIPAL_COLUMNS}", *args
        )
        return None if row is None else principal_from_row(row)

    # -- credentials -----------------------------------------------------------------------

    async def _insert_credential(self, credential: Credential, tenant: str | None) -> None:
        async def insert(conn: Any) -> None:
            await self._insert_credential_on(conn, credential, tenant)

        await self._run("adding a credential", insert)

    async def _insert_credential_on(
        self, conn: Any, credential: Credential, tenant: str | None
    ) -> None:
        # INSERT … SELECT: the principal's existence (in the tenant) and the insert in one step.
        row = credential_row(credential)
        args: list[Any] = [row[0], *row[2:], credential.principal_id]
        sql = (
            f"INSERT INTO {self._credentials} ({CREDENTIAL_COLUMNS})"
            f" SELECT $1, id, {_marks(_N_CREDENTIAL - 2, 2)} FROM {self._principals}"
            f" WHERE id = ${len(args)}"
        )
        if tenant is not None:
            args.append(tenant)
            sql += f" AND tenant = ${len(args)}"
        try:
            inserted = _count(await conn.execute(sql, *args))
        except asyncpg.UniqueViolationError as exc:
            raise prefix_taken(credential.prefix) from exc
        if inserted != 1:
            raise NotFound(f"no principal {credential.principal_id!r}")

    async def _rotate_credential(
        self,
        id: str,
        tenant: str | None,
        *,
        new_id: str,
        prefix: str,
        secret_hash: str,
        created_at: float,
        expires_at: float | None,
        overlap_until: float,
    ) -> Credential | None:
        sql = f"SELECT {CREDENTIAL_COLUMNS} FROM {self._credentials} WHERE id = $1"
        args: list[Any] = [id]
        if tenant is not None:
            args.append(tenant)
            sql += " AND " + self._in_tenant % len(args)

        async def rotate(conn: Any) -> Credential | None:
            async with conn.transaction():
                row = await conn.fetchrow(f"{sql} FOR UPDATE", *args)
                if row is None:
                    return None
                old = credential_from_row(row)
                if old.revoked_at is not None:
                    raise revoked(id)
                new = Credential(
                    new_id, old.principal_id, old.kind, prefix, secret_hash, created_at, expires_at
                )
                await self._insert_credential_on(conn, new, None)
                await conn.execute(
                    f"UPDATE {self._credentials} SET expires_at = $2 WHERE id = $1",
                    id,
                    overlap_until if old.expires_at is None else min(old.expires_at, overlap_until),
                )
                return new

        return await self._run("rotating a credential", rotate)

    async def _credential_by_prefix(self, prefix: str) -> tuple[Credential, Principal] | None:
        row = await self._fetchrow(
            "looking up a credential",
            f"SELECT {qualified(CREDENTIAL_COLUMNS, 'c')}, {qualified(PRINCIPAL_COLUMNS, 'p')}"
            f" FROM {self._credentials} c JOIN {self._principals} p ON p.id = c.principal_id"
            " WHERE c.prefix = $1",
            prefix,
        )
        if row is None:
            return None
        values = list(row.values())
        return (
            credential_from_row(values[:_N_CREDENTIAL]),
            principal_from_row(values[_N_CREDENTIAL:]),
        )

    async def _list_credentials(self, principal_id: str) -> list[Credential]:
        rows = await self._fetch(
            "listing credentials",
            f"SELECT {CREDENTIAL_COLUMNS} FROM {self._credentials} WHERE principal_id = $1"
            " ORDER BY created_at, id",
            principal_id,
        )
        return [credential_from_row(row) for row in rows]

    async def _revoke_credential(
        self, id: str, tenant: str | None, now: float
    ) -> Credential | None:
        sql = f"UPDATE {self._credentials} SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1"
        args: list[Any] = [id, now]
        if tenant is not None:
            args.append(tenant)
            sql += " AND " + self._in_tenant % len(args)
        row = await self._fetchrow(
            "revoking a credential", f"{sql} RETURNING {CREDENTIAL_COLUMNS}", *args
        )
        return None if row is None else credential_from_row(row)

    async def _touch_credential(self, id: str, now: float, stale_before: float) -> bool:
        touched = await self._execute(
            "recording a credential's use",
            f"UPDATE {self._credentials} SET last_used_at = $2"
            " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
            id,
            now,
            stale_before,
        )
        return touched == 1

    # -- signing keys ----------------------------------------------------------------------

    async def _insert_signing_key(self, key: SigningKeyRecord) -> None:
        async def insert(conn: Any) -> None:
            try:
                await conn.execute(
                    f"INSERT INTO {self._signing_keys} ({SIGNING_KEY_COLUMNS})"
                    f" VALUES ({_marks(6)})",
                    *signing_key_row(key),
                )
            except asyncpg.UniqueViolationError as exc:
                raise kid_taken(key.kid) from exc

        await self._run("adding a signing key", insert)

    async def _active_signing_keys(self, since: float) -> list[SigningKeyRecord]:
        rows = await self._fetch(
            "reading signing keys",
            f"SELECT {SIGNING_KEY_COLUMNS} FROM {self._signing_keys}"
            " WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at, kid",
            since,
        )
        return [signing_key_from_row(row) for row in rows]

    async def _retire_signing_key(self, kid: str, at: float) -> SigningKeyRecord | None:
        row = await self._fetchrow(
            "retiring a signing key",
            f"UPDATE {self._signing_keys} SET retired_at = coalesce(retired_at, $2)"
            f" WHERE kid = $1 RETURNING {SIGNING_KEY_COLUMNS}",
            kid,
            at,
        )
        return None if row is None else signing_key_from_row(row)

    # -- idempotency -----------------------------------------------------------------------

    async def _remember(
        self, claim: IdempotencyRecord, expired_before: float, abandoned_before: float
    ) -> IdempotencyRecord | None:
        key = (claim.tenant, claim.principal, claim.key)
        read_sql = (
            f"SELECT {IDEMPOTENCY_COLUMNS} FROM {self._requests}"
            " WHERE tenant = $1 AND principal = $2 AND key = $3"
        )

        async def remember(conn: Any) -> IdempotencyRecord | None:
            # Twice at most: the record that won a race vanishes only if it is released.
            for _ in range(2):
                won = await conn.fetchrow(
                    self._remember_sql,
                    *key,
                    claim.digest,
                    claim.created_at,
                    expired_before,
                    abandoned_before,
                )
                if won is not None:
                    return None
                row = await conn.fetchrow(read_sql, *key)
                if row is not None:
                    return idempotency_from_row(row)
            raise BackendError(f"Idempotency-Key {claim.key!r} did not settle; try again")

        return await self._run("claiming an Idempotency-Key", remember)

    async def _complete(
        self,
        tenant: str,
        principal: str,
        key: str,
        digest: str,
        status: int,
        body: bytes,
        now: float,
    ) -> bool:
        done = await self._execute(
            "storing an idempotent answer",
            f"UPDATE {self._requests} SET status = $5, body = $6, completed_at = $7"
            " WHERE tenant = $1 AND principal = $2 AND key = $3 AND digest = $4"
            " AND status IS NULL",
            tenant,
            principal,
            key,
            digest,
            status,
            body,
            now,
        )
        return done == 1

    async def _release(self, tenant: str, principal: str, key: str, digest: str) -> bool:
        released = await self._execute(
            "releasing an Idempotency-Key",
            f"DELETE FROM {self._requests} WHERE tenant = $1 AND principal = $2 AND key = $3"
            " AND digest = $4 AND status IS NULL",
            tenant,
            principal,
            key,
            digest,
        )
        return released == 1

    async def _purge_requests(self, before: float) -> int:
        return await self._execute(
            "purging Idempotency-Keys",
            f"DELETE FROM {self._requests} WHERE created_at < $1",
            before,
        )

    # -- audit -----------------------------------------------------------------------------

    async def _append_audit(self, entry: AuditEntry, detail: str) -> AuditRecord:
        async def append(conn: Any) -> AuditRecord:
            async with conn.transaction():
                # Locks the head row (creating it on the first append) until commit.
                head = await conn.fetchrow(self._lock_head_sql, GENESIS)
                record = chain(entry, detail, head["seq"] + 1, time.time(), head["hash"])
                try:
                    await conn.execute(
                        self._append_sql,
                        record.seq,
                        record.time,
                        record.tenant,
                        record.actor,
                        record.action,
                        record.target,
                        record.outcome,
                        detail,
                        record.hash,
                    )
                except asyncpg.UniqueViolationError as exc:
                    raise forged(record.seq) from exc
                return record

        return await self._run("appending to the audit log", append)

    async def _query_audit(
        self, tenant: str, action: str | None, since: float | None, after: int, limit: int
    ) -> list[AuditRecord]:
        sql = f"SELECT {AUDIT_COLUMNS} FROM {self._log} WHERE tenant = $1 AND seq > $2"
        args: list[Any] = [tenant, after]
        if action is not None:
            args.append(action)
            sql += f" AND action = ${len(args)}"
        if since is not None:
            args.append(since)
            sql += f" AND time >= ${len(args)}"
        args.append(limit)
        rows = await self._fetch(
            "reading the audit log", f"{sql} ORDER BY seq LIMIT ${len(args)}", *args
        )
        return [audit_from_row(row) for row in rows]

    async def _audit_head(self) -> Head:
        row = await self._fetchrow(
            "reading the audit head", f"SELECT seq, hash FROM {self._head} WHERE id = 1"
        )
        return None if row is None else (int(row[0]), str(row[1]))

    async def _audit_page(self, after: int, upto: int, limit: int) -> list[AuditRecord]:
        rows = await self._fetch(
            "verifying the audit log",
            f"SELECT {AUDIT_COLUMNS} FROM {self._log} WHERE seq > $1 AND seq <= $2"
            " ORDER BY seq LIMIT $3",
            after,
            upto,
            limit,
        )
        return [audit_from_row(row) for row in rows]

    async def _audit_extent(self) -> Extent:
        row = await self._fetchrow(
            "verifying the audit log", f"SELECT min(seq), max(seq) FROM {self._log}"
        )
        return None if row[0] is None else (int(row[0]), int(row[1]))
