"""The security store in the SQLite store file (the embedded default).

It opens the store's file with a ``Database`` of its own (or shares one the caller opened),
as the cross-reference does: writes go through the group-committing writer thread, reads
through the reader. Every write job runs inside the group's ``BEGIN IMMEDIATE`` transaction,
which holds the file's write lock, so a job that reads then writes (claiming an
Idempotency-Key, appending to the audit chain, rotating a credential) is atomic against other
jobs and other processes without a lock of its own. A job that raises is rolled back to its
savepoint: a failed append leaves neither an entry nor a moved head.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from .._sqlite import Database, sqlite_path
from ..exceptions import NotFound
from ..store.migrations import prepare_sqlite
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

__all__ = ["SqliteSecurityStore"]

_N_PRINCIPAL = PRINCIPAL_COLUMNS.count(",") + 1
_N_CREDENTIAL = CREDENTIAL_COLUMNS.count(",") + 1
_JOINED = f"{qualified(CREDENTIAL_COLUMNS, 'c')}, {qualified(PRINCIPAL_COLUMNS, 'p')}"
_IN_TENANT = "principal_id IN (SELECT id FROM principals WHERE tenant = ?)"


def _marks(count: int) -> str:
    return ", ".join(["?"] * count)


class SqliteSecurityStore(SecurityStore):
    """``sqlite:///PATH`` (the store's URL), or ``database=`` an open store ``Database``."""

    def __init__(self, url: str | None = None, *, database: Database | None = None) -> None:
        if (url is None) == (database is None):
            raise ValueError("give the store's URL or its open Database, one of them")
        self._own = database is None
        self._db = database or Database(sqlite_path(url or ""), name="security")
        self._opened = not self._own  # a shared Database is opened (and closed) by its owner

    async def open(self) -> None:
        if self._opened:
            return
        if self._db.path == ":memory:":
            # A private in-memory database: the head schema, on the writer's connection.
            from ..store.migrations import HEAD
            from ..store.schema import sqlite_script

            await self._db.open(";\n".join(sqlite_script(HEAD)) + ";")
        else:
            await asyncio.to_thread(prepare_sqlite, self._db.path)
            await self._db.open("")
        self._opened = True

    async def aclose(self) -> None:
        if self._own:
            await self._db.aclose()

    # -- principals ------------------------------------------------------------------------

    async def _insert_principal(self, principal: Principal) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO principals ({PRINCIPAL_COLUMNS}) VALUES ({_marks(_N_PRINCIPAL)})",
                    principal_row(principal),
                )
            except sqlite3.IntegrityError as exc:
                raise name_taken(principal) from exc

        await self._db.write(insert)

    async def _get_principal(self, id: str) -> Principal | None:
        def get(conn: sqlite3.Connection) -> Principal | None:
            row = conn.execute(
                f"SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = ?", (id,)
            ).fetchone()
            return None if row is None else principal_from_row(row)

        return await self._db.read(get)

    async def _list_principals(
        self, tenant: str, kind: str | None, after: str, limit: int
    ) -> list[Principal]:
        sql = f"SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE tenant = ? AND id > ?"
        params: list[Any] = [tenant, after]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        params.append(limit)

        def list_(conn: sqlite3.Connection) -> list[Principal]:
            cursor = conn.execute(f"{sql} ORDER BY id LIMIT ?", params)
            return [principal_from_row(row) for row in cursor]

        return await self._db.read(list_)

    async def _update_principal(
        self, id: str, tenant: str | None, scopes: str | None, disabled: bool | None, now: float
    ) -> Principal | None:
        sets = ["updated_at = ?"]
        params: list[Any] = [now]
        if scopes is not None:
            sets.append("scopes = ?")
            params.append(scopes)
        if disabled is True:
            sets.append("disabled_at = coalesce(disabled_at, ?)")
            params.append(now)
        elif disabled is False:
            sets.append("disabled_at = NULL")
        sql = f"UPDATE principals SET {', '.join(sets)} WHERE id = ?"
        params.append(id)
        if tenant is not None:
            sql += " AND tenant = ?"
            params.append(tenant)

        def update(conn: sqlite3.Connection) -> Principal | None:
            row = conn.execute(f"{sql} RETURNING {PRINCIPAL_COLUMNS}", params).fetchone()
            return None if row is None else principal_from_row(row)

        return await self._db.write(update)

    # -- credentials -----------------------------------------------------------------------

    async def _insert_credential(self, credential: Credential, tenant: str | None) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            _insert_credential(conn, credential, tenant)

        await self._db.write(insert)

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
        def rotate(conn: sqlite3.Connection) -> Credential | None:
            old = _credential(conn, id, tenant)
            if old is None:
                return None
            if old.revoked_at is not None:
                raise revoked(id)
            new = Credential(
                new_id, old.principal_id, old.kind, prefix, secret_hash, created_at, expires_at
            )
            _insert_credential(conn, new, None)
            conn.execute(
                "UPDATE credentials SET expires_at = ? WHERE id = ?",
                (_earlier(old.expires_at, overlap_until), id),
            )
            return new

        return await self._db.write(rotate)

    async def _credential_by_prefix(self, prefix: str) -> tuple[Credential, Principal] | None:
        def get(conn: sqlite3.Connection) -> tuple[Credential, Principal] | None:
            row = conn.execute(
                f"SELECT {_JOINED} FROM credentials c JOIN principals p ON p.id = c.principal_id"
                " WHERE c.prefix = ?",
                (prefix,),
            ).fetchone()
            if row is None:
                return None
            return credential_from_row(row[:_N_CREDENTIAL]), principal_from_row(row[_N_CREDENTIAL:])

        return await self._db.read(get)

    async def _list_credentials(self, principal_id: str) -> list[Credential]:
        def list_(conn: sqlite3.Connection) -> list[Credential]:
            cursor = conn.execute(
                f"SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE principal_id = ?"
                " ORDER BY created_at, id",
                (principal_id,),
            )
            return [credential_from_row(row) for row in cursor]

        return await self._db.read(list_)

    async def _revoke_credential(
        self, id: str, tenant: str | None, now: float
    ) -> Credential | None:
        sql = "UPDATE credentials SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?"
        params: list[Any] = [now, id]
        if tenant is not None:
            sql += f" AND {_IN_TENANT}"
            params.append(tenant)

        def revoke(conn: sqlite3.Connection) -> Credential | None:
            row = conn.execute(f"{sql} RETURNING {CREDENTIAL_COLUMNS}", params).fetchone()
            return None if row is None else credential_from_row(row)

        return await self._db.write(revoke)

    async def _touch_credential(self, id: str, now: float, stale_before: float) -> bool:
        def touch(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE credentials SET last_used_at = ?"
                " WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                (now, id, stale_before),
            )
            return cursor.rowcount == 1

        return await self._db.write(touch)

    # -- signing keys ----------------------------------------------------------------------

    async def _insert_signing_key(self, key: SigningKeyRecord) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO signing_keys ({SIGNING_KEY_COLUMNS}) VALUES ({_marks(6)})",
                    signing_key_row(key),
                )
            except sqlite3.IntegrityError as exc:
                raise kid_taken(key.kid) from exc

        await self._db.write(insert)

    async def _active_signing_keys(self, since: float) -> list[SigningKeyRecord]:
        def list_(conn: sqlite3.Connection) -> list[SigningKeyRecord]:
            cursor = conn.execute(
                f"SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys"
                " WHERE retired_at IS NULL OR retired_at > ? ORDER BY created_at, kid",
                (since,),
            )
            return [signing_key_from_row(row) for row in cursor]

        return await self._db.read(list_)

    async def _retire_signing_key(self, kid: str, at: float) -> SigningKeyRecord | None:
        def retire(conn: sqlite3.Connection) -> SigningKeyRecord | None:
            row = conn.execute(
                "UPDATE signing_keys SET retired_at = coalesce(retired_at, ?) WHERE kid = ?"
                f" RETURNING {SIGNING_KEY_COLUMNS}",
                (at, kid),
            ).fetchone()
            return None if row is None else signing_key_from_row(row)

        return await self._db.write(retire)

    # -- idempotency -----------------------------------------------------------------------

    async def _remember(
        self, claim: IdempotencyRecord, expired_before: float, abandoned_before: float
    ) -> IdempotencyRecord | None:
        key = (claim.tenant, claim.principal, claim.key)

        def remember(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            row = conn.execute(
                f"SELECT {IDEMPOTENCY_COLUMNS} FROM idempotency_keys"
                " WHERE tenant = ? AND principal = ? AND key = ?",
                key,
            ).fetchone()
            abandoned = row is not None and row[4] is None and row[6] < abandoned_before
            if row is not None and row[6] >= expired_before and not abandoned:
                return idempotency_from_row(row)
            conn.execute(
                f"INSERT OR REPLACE INTO idempotency_keys ({IDEMPOTENCY_COLUMNS})"
                " VALUES (?, ?, ?, ?, NULL, NULL, ?, NULL)",
                (*key, claim.digest, claim.created_at),
            )
            return None

        return await self._db.write(remember)

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
        def complete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE idempotency_keys SET status = ?, body = ?, completed_at = ?"
                " WHERE tenant = ? AND principal = ? AND key = ? AND digest = ?"
                " AND status IS NULL",
                (status, body, now, tenant, principal, key, digest),
            )
            return cursor.rowcount == 1

        return await self._db.write(complete)

    async def _release(self, tenant: str, principal: str, key: str, digest: str) -> bool:
        def release(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant = ? AND principal = ? AND key = ?"
                " AND digest = ? AND status IS NULL",
                (tenant, principal, key, digest),
            )
            return cursor.rowcount == 1

        return await self._db.write(release)

    async def _purge_requests(self, before: float) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM idempotency_keys WHERE created_at < ?", (before,)
            ).rowcount

        return await self._db.write(purge)

    # -- audit -----------------------------------------------------------------------------

    async def _append_audit(self, entry: AuditEntry, detail: str) -> AuditRecord:
        def append(conn: sqlite3.Connection) -> AuditRecord:
            # The group's BEGIN IMMEDIATE holds the write lock: no other appender reads the
            # head until this job's transaction commits.
            head = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            seq, previous = head if head is not None else (0, GENESIS)
            record = chain(entry, detail, seq + 1, time.time(), previous)
            try:
                conn.execute(
                    f"INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES ({_marks(9)})",
                    (*_audit_row(record, detail),),
                )
            except sqlite3.IntegrityError as exc:
                raise forged(record.seq) from exc
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                (record.seq, record.hash),
            )
            return record

        return await self._db.write(append)

    async def _query_audit(
        self, tenant: str, action: str | None, since: float | None, after: int, limit: int
    ) -> list[AuditRecord]:
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE tenant = ? AND seq > ?"
        params: list[Any] = [tenant, after]
        if action is not None:
            sql += " AND action = ?"
            params.append(action)
        if since is not None:
            sql += " AND time >= ?"
            params.append(since)
        params.append(limit)

        def query(conn: sqlite3.Connection) -> list[AuditRecord]:
            return [
                audit_from_row(row) for row in conn.execute(f"{sql} ORDER BY seq LIMIT ?", params)
            ]

        return await self._db.read(query)

    async def _audit_head(self) -> Head:
        def head(conn: sqlite3.Connection) -> Head:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            return None if row is None else (int(row[0]), str(row[1]))

        return await self._db.read(head)

    async def _audit_page(self, after: int, upto: int, limit: int) -> list[AuditRecord]:
        def page(conn: sqlite3.Connection) -> list[AuditRecord]:
            cursor = conn.execute(
                f"SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > ? AND seq <= ?"
                " ORDER BY seq LIMIT ?",
                (after, upto, limit),
            )
            return [audit_from_row(row) for row in cursor]

        return await self._db.read(page)

    async def _audit_extent(self) -> Extent:
        def extent(conn: sqlite3.Connection) -> Extent:
            low, high = conn.execute("SELECT min(seq), max(seq) FROM audit_log").fetchone()
            return None if low is None else (int(low), int(high))

        return await self._db.read(extent)


def _credential(conn: sqlite3.Connection, id: str, tenant: str | None) -> Credential | None:
    sql, params = f"SELECT {CREDENTIAL_COLUMNS} FROM credentials WHERE id = ?", [id]
    if tenant is not None:
        sql += f" AND {_IN_TENANT}"
        params.append(tenant)
    row = conn.execute(sql, params).fetchone()
    return None if row is None else credential_from_row(row)


def _insert_credential(
    conn: sqlite3.Connection, credential: Credential, tenant: str | None
) -> None:
    # INSERT … SELECT: the principal's existence (in the tenant) and the insert in one step.
    sql = (
        f"INSERT INTO credentials ({CREDENTIAL_COLUMNS})"
        f" SELECT ?, id, {_marks(_N_CREDENTIAL - 2)} FROM principals WHERE id = ?"
    )
    row = credential_row(credential)
    params: list[Any] = [row[0], *row[2:], credential.principal_id]
    if tenant is not None:
        sql += " AND tenant = ?"
        params.append(tenant)
    try:
        inserted = conn.execute(sql, params).rowcount
    except sqlite3.IntegrityError as exc:
        raise prefix_taken(credential.prefix) from exc
    if inserted != 1:
        raise NotFound(f"no principal {credential.principal_id!r}")


def _earlier(expires_at: float | None, overlap_until: float) -> float:
    return overlap_until if expires_at is None else min(expires_at, overlap_until)


def _audit_row(record: AuditRecord, detail: str) -> tuple[Any, ...]:
    return (
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
