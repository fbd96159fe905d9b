"""The ``forgeline`` command, run in-process with CliRunner; client commands against a real hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from click.testing import Result
from typer.testing import CliRunner

from forgeline import Hub, Settings
from forgeline.cli import app
from forgeline.store import DeadLetterFilter
from forgeline.testing import Receiver, Reply

runner = CliRunner()
WIDE = {"COLUMNS": "200", "FORGELINE_URL": None, "FORGELINE_TOKEN": None}


def invoke(*args: str) -> Result:
    return runner.invoke(app, list(args), env=WIDE)


def test_token_prints_the_admin_key_of_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "admin.key").write_text("flk_secret\n")
    result = invoke("token", "--admin", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout.strip() == "flk_secret"


def test_token_without_a_key_tells_how_to_get_one(tmp_path: Path) -> None:
    result = invoke("token", "--admin", "--data-dir", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "forgeline serve" in result.output


def test_serve_with_a_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text("hub:\n  colour: blue\n")
    result = invoke("serve", "--config", str(config), "--data-dir", str(tmp_path / "d"))
    assert result.exit_code == 2
    assert "hub.colour is not a setting" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "d").exists()


def test_serve_refuses_a_data_dir_another_hub_holds(tmp_path: Path) -> None:
    async def hold_and_serve() -> Result:
        async with Hub(Settings.load(env={}, data_dir=tmp_path)):
            return await asyncio.to_thread(
                invoke, "serve", "--data-dir", str(tmp_path), "--port", "0"
            )

    result = asyncio.run(hold_and_serve())
    assert result.exit_code == 2
    assert "another hub is running" in result.output
    assert "Traceback" not in result.output


def test_client_without_a_hub_says_so(tmp_path: Path) -> None:
    result = invoke("subs", "list", "--url", "http://127.0.0.1:9", "--token", "x")
    assert result.exit_code == 1
    assert "no hub at http://127.0.0.1:9" in result.output


async def test_subscribe_publish_tail_and_list(
    served: tuple[Hub, str], receiver: Receiver, tmp_path: Path
) -> None:
    hub, url = served
    client = ("--url", url, "--token", hub.admin_key)

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(invoke, *args)

    created = await run(
        "subs", "create", "erp", "--type", "lot.*", "--url", receiver.url("/erp"),
        "--ordering", "key", "--max-attempts", "3",
        "--hub", url, "--token", hub.admin_key,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "created subscription erp" in created.output

    lines = [
        orjson.dumps(
            {"specversion": "1.0", "id": f"e{i}", "source": "mes/line-1",
             "type": "lot.released.v1", "subject": f"LOT-{i % 7}", "data": {"n": i}}
        ).decode()
        for i in range(1200)
    ]  # fmt: skip
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    published = await run("events", "publish", str(jsonl), *client)
    assert published.exit_code == 0, published.output
    assert "stored 1200, duplicates 0" in published.stdout

    again = await run("events", "publish", str(jsonl), *client)
    assert "stored 0, duplicates 1200" in again.stdout

    tail = await run("events", "tail", "--no-follow", "--type", "lot.*", *client)
    assert tail.exit_code == 0, tail.output
    rows = [line.split("\t") for line in tail.stdout.splitlines()]
    assert len(rows) == 1200
    assert rows[0][1:] == ["lot.released.v1", "LOT-0", "e0"]
    assert [row[3] for row in rows] == [f"e{i}" for i in range(1200)]
    positions = [int(row[0]) for row in rows]
    assert positions == sorted(positions)

    later = await run("events", "tail", "--no-follow", "--after", str(positions[-2]), *client)
    assert [line.split("\t")[3] for line in later.stdout.splitlines()] == ["e1199"]

    shown = await run("events", "show", "e5", *client)
    assert shown.exit_code == 0
    assert orjson.loads(shown.stdout)["data"] == {"n": 5}

    await receiver.wait_for(1200)
    listed = await run("subs", "list", *client)
    assert listed.exit_code == 0
    assert "erp" in listed.stdout
    assert receiver.url("/erp") in listed.stdout
    assert "0/0/0" in listed.stdout  # everything delivered: no backlog

    deleted = await run("subs", "delete", "erp", *client)
    assert deleted.exit_code == 0
    assert "erp" not in (await run("subs", "list", *client)).stdout


async def test_invalid_events_show_the_problem(served: tuple[Hub, str], tmp_path: Path) -> None:
    hub, url = served
    bad = tmp_path / "bad.json"
    bad.write_text('[{"specversion": "1.0", "id": "x1", "source": "mes", "type": "nodots"}]')
    result = await asyncio.to_thread(
        invoke, "events", "publish", str(bad), "--url", url, "--token", hub.admin_key
    )
    assert result.exit_code == 1
    assert "Invalid event" in result.output
    assert "[0].type" in result.output
    assert "'nodots' is not a dotted name" in result.output
    assert await hub.log.head() == 0


async def test_publish_one_event_from_options(served: tuple[Hub, str]) -> None:
    hub, url = served
    result = await asyncio.to_thread(
        invoke, "events", "publish", "--type", "machine.stopped.v1", "--source", "mes/m-4",
        "--subject", "M-4", "--data", '{"reason": "jam"}', "--url", url, "--token", hub.admin_key,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "stored 1, duplicates 0" in result.stdout
    records = await hub.log.read(0, 10)
    assert [(r.event.type, r.event.subject, r.event.data) for r in records] == [
        ("machine.stopped.v1", "M-4", {"reason": "jam"})
    ]


async def test_wrong_token_is_reported(served: tuple[Hub, str]) -> None:
    _, url = served
    result = await asyncio.to_thread(invoke, "subs", "list", "--url", url, "--token", "nope")
    assert result.exit_code == 1
    assert "Unauthorized: unknown or expired credential" in result.output


@pytest.mark.parametrize(
    "args",
    [["dlq", "replay"], ["dlq", "replay", "3", "--all"], ["dlq", "discard", "3"]],
)
def test_dlq_argument_mistakes_exit_2(args: list[str]) -> None:
    result = invoke(*args, "--url", "http://127.0.0.1:9")
    assert result.exit_code == 2


async def test_dead_letters_list_show_replay_discard(served: tuple[Hub, str]) -> None:
    hub, url = served
    client = ("--url", url, "--token", hub.admin_key)

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(invoke, *args, *client)

    def refuse_first(path: str, event: dict[str, object], seen: int) -> Reply:
        return Reply(422, "lot unknown") if seen == 0 else Reply(204)

    async with Receiver(refuse_first) as portal:
        created = await asyncio.to_thread(
            invoke, "subs", "create", "portal", "--type", "lot.*", "--url", portal.url("/lots"),
            "--hub", url, "--token", hub.admin_key,
        )  # fmt: skip
        assert created.exit_code == 0, created.output
        for lot in ("L1", "L2"):
            await run("events", "publish", "--type", "lot.released.v1", "--subject", lot)
        sub = await hub.store.get_subscription("portal")
        async with asyncio.timeout(10):
            while (await hub.store.backlog()).get(sub.id, {}).get("dead", 0) < 2:
                await asyncio.sleep(0.05)
        dead = await hub.store.list_deliveries("dead", DeadLetterFilter(), 10, 0)
        first, second = sorted(d.id for d in dead)

        listed = await run("dlq", "list", "--subscription", "portal")
        assert listed.exit_code == 0, listed.output
        assert "lot.released.v1" in listed.stdout
        assert "HTTP 422" in listed.stdout

        shown = await run("dlq", "show", str(first))
        assert shown.exit_code == 0, shown.output
        assert "422" in shown.stdout
        assert "lot unknown" in shown.stdout
        assert '"subject": "L1"' in shown.stdout

        replayed = await run("dlq", "replay", str(first))
        assert "replayed 1" in replayed.stdout
        await portal.wait_for(1)
        discarded = await run("dlq", "discard", "--all", "--reason", "portal retired")
        assert "discarded 1" in discarded.stdout
        assert (await hub.store.get_delivery(second)).state == "discarded"

        again = await run("replay", "portal", "--type", "lot.*")
        assert again.exit_code == 0, again.output
        assert "scheduled 2 deliveries" in again.stdout
        await portal.wait_for(2)

    missing = await run("dlq", "show", "999")
    assert missing.exit_code == 1
    assert "Not found" in missing.output
