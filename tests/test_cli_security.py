"""The identity commands, run in-process with CliRunner against a real hub: principals, keys,
client secrets and tokens over HTTP, and ``audit verify`` reading the store itself."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner, Result

from forgeline import Hub, Settings, testing
from forgeline.cli_security import register

from .test_identity import Clock

runner = CliRunner()
_UNSET = (
    "FORGELINE_URL", "FORGELINE_TOKEN", "FORGELINE_CLIENT_ID", "FORGELINE_CLIENT_SECRET",
    "FORGELINE_CONFIG", "FORGELINE_DATA_DIR", "FORGELINE_STORE_URL",
)  # fmt: skip
ENV: dict[str, str | None] = {"COLUMNS": "250", **dict.fromkeys(_UNSET)}

app = typer.Typer()
register(app)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, list(args), env={**ENV, **(env or {})})


async def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """A command in a thread: the hub it talks to runs on this event loop."""
    return await asyncio.to_thread(invoke, *args, env=env)


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[Hub, str]]:
    async with testing.running_hub(settings) as (hub, url):
        assert hub.authority is not None
        hub.authority.clock = Clock()
        yield hub, url


def hub_options(served: tuple[Hub, str]) -> tuple[str, ...]:
    hub, url = served
    return ("--url", url, "--token", hub.admin_key)


def wrong_secret(secret: str) -> str:
    return secret[:-1] + ("b" if secret.endswith("a") else "a")


async def status_with(url: str, credential: str, path: str = "/v1/events") -> int:
    headers = {"Authorization": f"Bearer {credential}"}
    async with httpx.AsyncClient(base_url=url, headers=headers) as client:
        return (await client.get(path)).status_code


async def test_principals_and_keys_from_the_command_line(served: tuple[Hub, str]) -> None:
    url = served[1]
    options = hub_options(served)
    created = await run(
        "principals", "create", "mes", "--kind", "plant", "--scope", "events:read",
        "--tenant", "acme", *options,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    principal = re.search(r"pr_\w+", created.stdout)
    assert principal is not None
    pid = principal[0]

    key = await run("keys", "create", pid, "--expires-in", "3600", *options)
    assert key.exit_code == 0, key.output
    plaintext = key.stdout.strip()
    assert plaintext.startswith("flk_dev_")
    assert "shown this once" in key.stderr
    assert await status_with(url, plaintext) == 200

    listed = await run("keys", "list", pid, *options)
    assert listed.exit_code == 0
    assert "active" in listed.stdout
    assert plaintext not in listed.stdout
    key_id = re.search(r"cr_\w+", listed.stdout)
    assert key_id is not None

    rotated = await run("keys", "rotate", pid, key_id[0], "--overlap", "0", *options)
    assert rotated.exit_code == 0, rotated.output
    new_key = rotated.stdout.strip()
    assert await status_with(url, new_key) == 200
    assert await status_with(url, plaintext) == 401  # no overlap asked for

    shown = await run("principals", "show", pid, *options)
    assert shown.exit_code == 0
    assert "events:read" in shown.stdout
    assert new_key not in shown.stdout and "sha256" not in shown.stdout

    listing = await run("principals", "list", "--tenant", "acme", *options)
    assert "mes" in listing.stdout and pid in listing.stdout

    disabled = await run("principals", "disable", pid, *options)
    assert disabled.exit_code == 0
    assert await status_with(url, new_key) == 401
    enabled = await run("principals", "disable", pid, "--enable", *options)
    assert enabled.exit_code == 0
    assert await status_with(url, new_key) == 200

    new_id = re.findall(r"cr_\w+", (await run("keys", "list", pid, *options)).stdout)
    revoked = await run("keys", "revoke", pid, new_id[-1], *options)
    assert revoked.exit_code == 0, revoked.output
    assert await status_with(url, new_key) == 401


async def test_refusals_are_reported_with_the_hubs_reason(served: tuple[Hub, str]) -> None:
    options = hub_options(served)
    refused = await run(
        "principals", "create", "supplier", "--kind", "partner", "--scope", "principals:admin",
        "--tenant", "acme", *options,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "administrative scope" in refused.output
    missing = await run("principals", "show", "pr_nobody", *options)
    assert missing.exit_code == 1
    assert "no principal 'pr_nobody'" in missing.output
    unknown = await run(
        "principals", "list", "--tenant", "acme", "--url", served[1], "--token", "x"
    )
    assert unknown.exit_code == 1
    assert "Unauthorized" in unknown.output


async def test_token_for_a_client(served: tuple[Hub, str]) -> None:
    url = served[1]
    options = hub_options(served)
    created = await run(
        "principals", "create", "wms", "--scope", "events:read", "--scope", "subscriptions:read",
        "--tenant", "acme", *options,
    )  # fmt: skip
    principal = re.search(r"pr_\w+", created.stdout)
    assert principal is not None
    secret = await run("keys", "create", principal[0], "--client-secret", *options)
    assert secret.exit_code == 0, secret.output
    client_secret = secret.stdout.strip()
    assert client_secret.startswith("flcs_")

    got = await run(
        "token", "--client-id", principal[0], "--url", url, "--scope", "events:read",
        env={"FORGELINE_CLIENT_SECRET": client_secret},
    )  # fmt: skip
    assert got.exit_code == 0, got.output
    access_token = got.stdout.strip()
    assert await status_with(url, access_token) == 200
    assert await status_with(url, access_token, "/v1/subscriptions") == 403  # not asked for

    wrong = await run(
        "token", "--client-id", principal[0], "--client-secret", wrong_secret(client_secret),
        "--url", url,
    )  # fmt: skip
    assert wrong.exit_code == 1
    assert "invalid_client" in wrong.output

    assert (await run("token", "--url", url)).exit_code == 2


def test_token_admin_prints_the_data_dirs_key(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("flk_secret\n")
    result = invoke("token", "--admin", "--data-dir", str(tmp_path))
    assert (result.exit_code, result.stdout.strip()) == (0, "flk_secret")
    missing = invoke("token", "--admin", "--data-dir", str(tmp_path / "none"))
    assert missing.exit_code == 2
    assert "forgeline serve" in missing.output


async def test_signing_keys_and_audit_list(served: tuple[Hub, str]) -> None:
    options = hub_options(served)
    rotated = await run("signing-keys", "rotate", *options)
    assert rotated.exit_code == 0, rotated.output
    listed = await run("signing-keys", "list", *options)
    assert listed.stdout.count("EdDSA") == 2
    await run("principals", "create", "mes", "--tenant", "acme", *options)
    hub_entries = await run("audit", "list", "--tenant", "*", *options)
    assert "signing_key.rotate" in hub_entries.stdout
    acme = await run("audit", "list", "--tenant", "acme", *options)
    assert "principal.create" in acme.stdout
    assert "signing_key.rotate" not in acme.stdout
    assert (await run("audit", "list", *options)).exit_code == 1  # the operator names one


async def test_audit_verify_detects_an_edited_or_deleted_entry(served: tuple[Hub, str]) -> None:
    hub, _ = served
    options = hub_options(served)
    for name in ("mes", "wms", "qms"):
        created = await run("principals", "create", name, "--tenant", "acme", *options)
        assert created.exit_code == 0
    data_dir = str(hub.settings.data_dir)

    intact = await run("audit", "verify", "--data-dir", data_dir)
    assert intact.exit_code == 0, intact.output
    assert "intact: 3 entries" in intact.stdout
    assert "head: entry 3" in intact.stdout

    with sqlite3.connect(hub.settings.data_dir / "state.db") as db:
        db.execute("""UPDATE audit_log SET detail = '{"name":"root"}' WHERE seq = 2""")
    edited = await run("audit", "verify", "--data-dir", data_dir)
    assert edited.exit_code == 1
    assert "broken at entry 2" in edited.output


async def test_audit_verify_detects_the_newest_entry_deleted(served: tuple[Hub, str]) -> None:
    hub, _ = served
    options = hub_options(served)
    for name in ("mes", "wms"):
        await run("principals", "create", name, "--tenant", "acme", *options)
    with sqlite3.connect(hub.settings.data_dir / "state.db") as db:
        db.execute("DELETE FROM audit_log WHERE seq = 2")
    result = await run("audit", "verify", "--data-dir", str(hub.settings.data_dir))
    assert result.exit_code == 1
    assert "entry 2" in result.output


def test_audit_verify_without_a_store_creates_none(tmp_path: Path) -> None:
    result = invoke("audit", "verify", "--data-dir", str(tmp_path / "nothing"))
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert not (tmp_path / "nothing").exists()
