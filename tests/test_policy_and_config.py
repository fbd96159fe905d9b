"""Retry schedule, config loading and retention: the rules behind delivery, tested directly."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import pytest

from forgeline import ConfigError, Event, Hub, Settings
from forgeline.deliver.retry import backoff, next_attempt_at
from forgeline.route.subscription import RetryPolicy, SubscriptionSpec
from forgeline.store import Routed


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_delay=1, multiplier=2, max_delay=10, jitter=0)
    assert [backoff(policy, n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_jitter_only_shortens_within_its_fraction() -> None:
    policy = RetryPolicy(initial_delay=8, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff(policy, 1, rng) for _ in range(500)]
    assert min(delays) >= 6 and max(delays) <= 8
    assert max(delays) - min(delays) > 1  # actually spread, not constant


def test_give_up_after_max_attempts_or_max_age() -> None:
    policy = RetryPolicy(initial_delay=1, jitter=0, max_attempts=3, max_age=100)
    now = 1000.0
    assert next_attempt_at(policy, failures=2, round_started_at=now, now=now) == now + 2
    assert next_attempt_at(policy, failures=3, round_started_at=now, now=now) is None
    assert next_attempt_at(policy, failures=1, round_started_at=now - 100, now=now) is None


def test_retry_after_is_honoured_but_capped() -> None:
    policy = RetryPolicy(initial_delay=1, jitter=0, max_delay=60)
    assert next_attempt_at(policy, failures=1, round_started_at=0, now=0, retry_after=30) == 30
    assert next_attempt_at(policy, failures=1, round_started_at=0, now=0, retry_after=1e9) == 60


def test_config_file_sets_hub_and_subscriptions(tmp_path: Path) -> None:
    config = tmp_path / "forgeline.yaml"
    config.write_text(
        "hub:\n  port: 9123\n  max_batch: 50\n"
        "subscriptions:\n  - name: erp\n    types: ['production.*']\n"
        "    sink: {url: 'http://127.0.0.1:9/'}\n    policy: {ordering: key}\n"
    )
    settings = Settings.load(config_file=config, env={"FORGELINE_PORT": "9200"})
    assert settings.port == 9200  # the environment overrides the file
    assert settings.max_batch == 50
    assert settings.subscriptions[0].policy.ordering == "key"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hub:\n  prot: 1\n", "hub.prot is not a setting"),
        ("hub:\n  port: many\n", "hub.port"),
        ("extra: 1\n", "unknown top-level keys"),
        (
            "subscriptions:\n  - name: x\n    types: ['a b']\n    sink: {url: 'http://h/'}\n",
            "subscriptions[0].types",
        ),
        ("[1, 2", "cannot read config"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, words: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        Settings.load(config_file=config, env={})
    assert words in str(info.value)


async def test_configured_subscriptions_are_applied_by_name(tmp_path: Path) -> None:
    spec = SubscriptionSpec.model_validate(
        {"name": "erp", "types": ["production.*"], "sink": {"url": "http://127.0.0.1:9/"}}
    )
    settings = Settings.load(env={}, data_dir=tmp_path, subscriptions=(spec,))
    async with Hub(settings) as hub:
        first = await hub.store.get_subscription("erp")
    changed = spec.model_copy(update={"types": ["quality.*"]})
    async with Hub(Settings.load(env={}, data_dir=tmp_path, subscriptions=(changed,))) as hub:
        again = await hub.store.get_subscription("erp")
    assert again.id == first.id and again.spec.types == ["quality.*"]


async def test_second_hub_on_one_data_dir_is_refused(tmp_path: Path) -> None:
    from forgeline import ForgelineError

    settings = Settings.load(env={}, data_dir=tmp_path)
    async with Hub(settings):
        with pytest.raises(ForgelineError, match="another hub"):
            await Hub(settings).start()


async def test_retention_keeps_what_dead_letters_and_routing_still_need(tmp_path: Path) -> None:
    settings = Settings.load(env={}, data_dir=tmp_path, retention_seconds=0.0)
    spec = SubscriptionSpec.model_validate(
        {
            "name": "erp",
            "types": ["production.*"],
            "sink": {"url": "http://127.0.0.1:9/"},
            "enabled": False,
        }
    )
    async with Hub(settings) as hub:
        sub = await hub.create_subscription(spec)
        events = [Event.new("production.completed.v1", "mes", subject=f"MO/{i}") for i in range(4)]
        answers = await hub.publish(events)
        # Pretend event 3 went dead for this subscription.
        routed = Routed(
            answers[2].position, time.time(), events[2].id, "mes", events[2].type, None, [sub.id]
        )
        await hub.store.schedule_replay(sub.id, [routed], time.time())
        await hub.store._db.write(lambda conn: conn.execute("UPDATE deliveries SET state = 'dead'"))
        while hub.router.position < await hub.log.head():  # routing pins what it has not read
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.01)
        _, trimmed = await hub.enforce_retention()
        assert trimmed == 2  # positions 1 and 2; 3 is pinned by the dead letter, 4 kept after it
        assert [r.position for r in await hub.log.read(0)] == [3, 4]


def test_split_roles_need_shared_backends(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--role worker needs shared backends"):
        Settings.load(env={}, data_dir=tmp_path, role="worker")
    with pytest.raises(ConfigError, match="role 'both' is not one of"):
        Settings.load(env={"FORGELINE_ROLE": "both"}, data_dir=tmp_path)
    shared = Settings.load(
        env={"FORGELINE_ROLE": "api"},
        data_dir=tmp_path,
        log_url="postgresql://localhost/test",
        store_url="postgresql://localhost/test",
    )
    assert shared.role == "api" and not shared.embedded
