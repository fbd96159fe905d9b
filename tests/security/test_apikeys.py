"""API keys and client secrets: the format operators see, what the store keeps, and how a
presented key is checked (garbage in is ``None`` or ``False``, never an exception)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest

from forgeline.exceptions import ConfigError, InvalidInput, Unauthorized
from forgeline.security.apikeys import (
    MAX_KEY_LENGTH,
    KeyRecordParts,
    ParsedKey,
    check_usable,
    matches,
    new_client_secret,
    new_key,
    parse,
    rotated_expiry,
)

KEY_FORMAT = re.compile(r"flk_prod_[a-z2-7]{12}_[a-z2-7]{52}")


def test_a_new_key_has_the_documented_format_and_stores_only_its_hash() -> None:
    plaintext, parts = new_key("prod")
    assert KEY_FORMAT.fullmatch(plaintext)
    assert parts.environment == "prod"
    assert plaintext.startswith(f"{parts.prefix}_")
    assert parts.prefix == f"flk_prod_{parts.key_id}"
    assert parts.key_hash == "sha256:" + hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.rsplit("_", 1)[1]
    assert secret not in repr(parts)
    assert secret not in parts.key_hash


def test_new_keys_are_unique_and_random() -> None:
    keys = [new_key("dev") for _ in range(500)]
    assert len({plaintext for plaintext, _ in keys}) == 500
    assert len({parts.key_id for _, parts in keys}) == 500
    secrets = [plaintext.rsplit("_", 1)[1] for plaintext, _ in keys]
    # 256 bits each: every character of the alphabet shows up across 500 secrets.
    assert set("".join(secrets)) == set("abcdefghijklmnopqrstuvwxyz234567")


@pytest.mark.parametrize("environment", ["", "Prod", "pr od", "prod_eu", "1prod", "x" * 17, "é"])
def test_new_key_refuses_environments_that_would_break_the_format(environment: str) -> None:
    with pytest.raises(InvalidInput):
        new_key(environment)


def test_parse_finds_environment_and_id() -> None:
    plaintext, parts = new_key("test2")
    assert parse(plaintext) == ParsedKey(environment="test2", key_id=parts.key_id)
    # The lookup: what parse() gives is what the store keeps.
    parsed = parse(plaintext)
    assert parsed is not None and parsed.prefix == parts.prefix


@pytest.mark.parametrize(
    "text",
    [
        None,
        42,
        b"flk_prod_aaaaaaaaaaaa_" + b"a" * 52,
        ["flk"],
        "",
        "flk",
        "flk_prod",
        "flk_prod_aaaaaaaaaaaa",
        "flk_prod_aaaaaaaaaaaa_",
        "flk_prod_aaaaaaaaaaaa_" + "a" * 51,
        "flk_prod_aaaaaaaaaaaa_" + "a" * 53,
        "flk_prod_aaaaaaaaaaa_" + "a" * 52,
        "flk_prod_AAAAAAAAAAAA_" + "a" * 52,
        "flk_prod_aaaaaaaaaaaa_" + "a" * 51 + "1",  # 1 is not base32
        "flk_prod_aaaaaaaaaaaa_" + "a" * 51 + "_",
        "flk__aaaaaaaaaaaa_" + "a" * 52,
        "flk_pr_od_aaaaaaaaaaaa_" + "a" * 52,
        "xlk_prod_aaaaaaaaaaaa_" + "a" * 52,
        "FLK_prod_aaaaaaaaaaaa_" + "a" * 52,
        " flk_prod_aaaaaaaaaaaa_" + "a" * 52,
        "flk_prod_aaaaaaaaaaaa_" + "a" * 52 + "\n",
        "flk_prod_aaaaaaaaaaaa_" + "a" * 52 + " ",
        "flk_prod_aaaaaaaaaaaa_" + "а" * 52,  # Cyrillic a
        "Bearer flk_prod_aaaaaaaaaaaa_" + "a" * 52,
        "flcs_" + "a" * 52,  # a client secret is not an API key
        "flk_" + "x" * 10_000_000,
    ],
)
def test_parse_says_none_to_anything_that_is_not_a_key(text: Any) -> None:
    assert parse(text) is None


def test_parse_refuses_a_key_with_anything_appended() -> None:
    plaintext, _ = new_key("prod")
    assert len(plaintext) <= MAX_KEY_LENGTH
    assert parse(plaintext + "a" * MAX_KEY_LENGTH) is None


def test_matches_only_the_key_it_was_made_from() -> None:
    plaintext, parts = new_key("prod")
    other, other_parts = new_key("prod")
    assert matches(plaintext, parts.key_hash)
    assert not matches(other, parts.key_hash)
    # Another key's secret presented under this key's id: the hash covers the whole text.
    forged = f"{parts.prefix}_{other.rsplit('_', 1)[1]}"
    assert not matches(forged, parts.key_hash)
    # The same secret and id in another environment is another key.
    assert not matches(plaintext.replace("flk_prod_", "flk_dev_", 1), parts.key_hash)
    assert matches(other, other_parts.key_hash)


@pytest.mark.parametrize(
    "stored_hash",
    [
        "",
        "sha256:",
        "sha256:00",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "argon2:whatever",
        "sha256:ü",
        None,
    ],
)
def test_matches_is_false_for_a_hash_it_cannot_check(stored_hash: Any) -> None:
    plaintext, _ = new_key("prod")
    assert matches(plaintext, stored_hash) is False


@pytest.mark.parametrize("text", [None, 7, b"flk", "", "x" * (MAX_KEY_LENGTH + 1), "ключ"])
def test_matches_is_false_for_garbage_text(text: Any) -> None:
    _, parts = new_key("prod")
    assert matches(text, parts.key_hash) is False


def test_client_secrets_use_the_same_primitives() -> None:
    secret, stored = new_client_secret()
    assert re.fullmatch(r"flcs_[a-z2-7]{52}", secret)
    assert stored == "sha256:" + hashlib.sha256(secret.encode()).hexdigest()
    assert matches(secret, stored)
    assert not matches(new_client_secret()[0], stored)
    assert parse(secret) is None


def test_check_usable_accepts_a_live_key() -> None:
    check_usable(expires_at=None, revoked_at=None, now=1000)
    check_usable(expires_at=1000.001, revoked_at=None, now=1000)


@pytest.mark.parametrize(
    ("expires_at", "revoked_at"),
    [(1000, None), (999, None), (None, 1000), (None, 10), (2000, 500)],
)
def test_expired_or_revoked_keys_are_refused_alike(
    expires_at: float | None, revoked_at: float | None
) -> None:
    with pytest.raises(Unauthorized) as caught:
        check_usable(expires_at=expires_at, revoked_at=revoked_at, now=1000)
    assert caught.value.detail == "API key expired or revoked"


def test_rotation_overlap_never_extends_a_key() -> None:
    assert rotated_expiry(None, now=1000, overlap=3600) == 4600
    assert rotated_expiry(10_000, now=1000, overlap=3600) == 4600
    assert rotated_expiry(2000, now=1000, overlap=3600) == 2000
    assert rotated_expiry(None, now=1000, overlap=0) == 1000
    old_ends = rotated_expiry(None, now=1000, overlap=60)
    check_usable(expires_at=old_ends, revoked_at=None, now=1059)
    with pytest.raises(Unauthorized):
        check_usable(expires_at=old_ends, revoked_at=None, now=1060)


@pytest.mark.parametrize("overlap", [-1, float("nan"), float("inf")])
def test_rotation_overlap_must_be_sane(overlap: float) -> None:
    with pytest.raises(ConfigError):
        rotated_expiry(None, now=1000, overlap=overlap)


def test_record_parts_are_plain_values() -> None:
    parts = KeyRecordParts("abcdefghijkl", "prod", "sha256:00")
    assert parts.prefix == "flk_prod_abcdefghijkl"
    with pytest.raises(AttributeError):
        parts.key_hash = "x"  # type: ignore[misc]
