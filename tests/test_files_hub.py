"""The hub with a files system: a partner's CSV drop becomes events (leader only), a ``file``
sink writes them back out into the outbox, and a config naming a missing system is refused."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest

from forgeline import Hub, Settings
from forgeline.exceptions import ConfigError


def _config(root: Path, system: str = "acme") -> str:
    return f"""
systems:
  acme:
    kind: files
    path: {root}
    poll_ms: 20
    stable_ms: 0
    outbox_batch: {{max_events: 100, max_delay_ms: 50}}
    watch:
      - glob: "asn-*.csv"
        type: asn.received.v1
        subject: "{{data.asn}}"
subscriptions:
  - name: asn-out
    types: [asn.received.v1]
    sink:
      file: {{system: {system}, name: "asn-{{date}}-{{seq}}.jsonl", payload: data}}
"""


async def test_drop_to_outbox_through_the_hub(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(_config(tmp_path / "acme"))
    settings = Settings.load(config_file=config, env={}, data_dir=tmp_path / "data")
    hub = Hub(settings)
    await hub.start()
    try:
        inbox = tmp_path / "acme" / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        (inbox / "asn-1.csv.part").write_text("asn,qty\nASN-1,5\nASN-2,7\n")
        os.rename(inbox / "asn-1.csv.part", inbox / "asn-1.csv")
        outbox = tmp_path / "acme" / "outbox"
        lines: list[dict[str, str]] = []
        for _ in range(500):
            files = list(outbox.glob("asn-*.jsonl")) if outbox.exists() else []
            lines = [orjson.loads(line) for p in files for line in p.read_bytes().splitlines()]
            if len(lines) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(line["asn"] for line in lines) == ["ASN-1", "ASN-2"]
        assert os.listdir(tmp_path / "acme" / "archive") == ["asn-1.csv"]
    finally:
        await hub.stop()


def test_a_file_sink_must_name_a_files_system(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(_config(tmp_path / "acme", system="nope"))
    with pytest.raises(ConfigError, match=r"sink\.file\.system: no system named 'nope'"):
        Settings.load(config_file=config, env={}, data_dir=tmp_path / "data")
