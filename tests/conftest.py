"""Shared fixtures: a hub on a temporary data directory, served on a real loopback port."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from forgeline import Hub, Settings
from forgeline.security.secretbox import new_master_key
from forgeline.testing import Receiver, running_hub

# Processes that share a store must share a master key (secrets at rest are sealed with it):
# as a deployment would, every hub this test run starts, in-process or not, gets one.
os.environ.setdefault("FORGELINE_MASTER_KEY", new_master_key())


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(env={}, data_dir=tmp_path / "hub")


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[Hub, str]]:
    async with running_hub(settings) as pair:
        yield pair


@pytest.fixture
async def hub(served: tuple[Hub, str]) -> Hub:
    return served[0]


@pytest.fixture
async def client(served: tuple[Hub, str]) -> AsyncIterator[httpx.AsyncClient]:
    hub, url = served
    headers = {"Authorization": f"Bearer {hub.admin_key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as c:
        yield c


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r
