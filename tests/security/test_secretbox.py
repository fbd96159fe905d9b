"""Secrets at rest: sealing, tampering, master key rotation, and where master keys come from."""

from __future__ import annotations

import base64
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from forgeline.exceptions import ConfigError, InvalidInput
from forgeline.security.secretbox import (
    DEV_KEY_FILE,
    ENV_KEY,
    ENV_KEY_FILE,
    MasterKey,
    SecretBox,
    load_secretbox,
    new_master_key,
    parse_master_keys,
)

CONTEXT = b"subscription:42:sink.auth"
K1 = bytes(range(32))
K2 = bytes(range(32, 64))


def entry(kid: str, key: bytes, *, urlsafe: bool = False) -> str:
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    return f"{kid}:{encode(key).decode()}"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([MasterKey("k1", K1)])


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# -- sealing -------------------------------------------------------------------------------


def test_seal_then_open(box: SecretBox) -> None:
    token = box.seal(b"odoo api key \x00\xff", context=CONTEXT)
    version, kid, nonce, ciphertext = token.split(".")
    assert (version, kid) == ("v1", "k1")
    assert len(unb64(nonce)) == 12
    assert len(unb64(ciphertext)) == len(b"odoo api key \x00\xff") + 16
    assert b"odoo" not in unb64(ciphertext)
    assert box.open(token, context=CONTEXT) == b"odoo api key \x00\xff"


def test_each_seal_uses_a_fresh_nonce(box: SecretBox) -> None:
    first, second = (box.seal(b"same", context=CONTEXT) for _ in range(2))
    assert first != second
    assert first.split(".")[2] != second.split(".")[2]


def test_empty_plaintext_round_trips(box: SecretBox) -> None:
    assert box.open(box.seal(b"", context=CONTEXT), context=CONTEXT) == b""


def test_a_value_moved_to_another_row_does_not_open(box: SecretBox) -> None:
    token = box.seal(b"secret of row 42", context=b"subscription:42:sink.auth")
    with pytest.raises(InvalidInput, match="does not open"):
        box.open(token, context=b"subscription:43:sink.auth")
    with pytest.raises(InvalidInput, match="does not open"):
        box.open(token, context=b"subscription:42:sink.headers")


@pytest.mark.parametrize("context", [b"", "subscription:42"])
def test_a_context_is_required(box: SecretBox, context: Any) -> None:
    with pytest.raises(ValueError, match="context"):
        box.seal(b"x", context=context)
    token = box.seal(b"x", context=CONTEXT)
    with pytest.raises(ValueError, match="context"):
        box.open(token, context=context)


# -- tampering -----------------------------------------------------------------------------


def flip(text: str, index: int) -> str:
    raw = bytearray(unb64(text))
    raw[index] ^= 0x01
    return b64(bytes(raw))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v, k, n, c: (v, k, flip(n, 0), c),  # nonce
        lambda v, k, n, c: (v, k, n, flip(c, 0)),  # ciphertext
        lambda v, k, n, c: (v, k, n, flip(c, -1)),  # tag
        lambda v, k, n, c: (v, k, n, b64(unb64(c)[:-1])),  # truncated tag
        lambda v, k, n, c: (v, k, n, b64(unb64(c) + b"\x00")),  # appended byte
        lambda v, k, n, c: (v, "k2", n, c),  # relabelled as the other configured key
    ],
    ids=["nonce", "ciphertext", "tag", "truncated", "extended", "other-kid"],
)
def test_tampered_values_do_not_open(tamper: Any) -> None:
    box = SecretBox([MasterKey("k1", K1), MasterKey("k2", K2)])
    token = box.seal(b"webhook secret", context=CONTEXT)
    tampered = ".".join(tamper(*token.split(".")))
    with pytest.raises(InvalidInput) as caught:
        box.open(tampered, context=CONTEXT)
    assert "webhook" not in str(caught.value)


def test_a_value_sealed_under_another_master_key_with_the_same_kid_does_not_open() -> None:
    token = SecretBox([MasterKey("k1", K2)]).seal(b"x", context=CONTEXT)
    with pytest.raises(InvalidInput, match="does not open"):
        SecretBox([MasterKey("k1", K1)]).open(token, context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "v1",
        "v1.k1.x",
        "v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.extra",
        "v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1.k1.AAAA.AAAAAAAAAAAAAAAAAAAAAA",  # 3-byte nonce
        "v1.k1.AAAAAAAAAAAAAAAA.AAAA",  # shorter than a tag
        "v1.k1.AAAAAAAAAAAA+AAA.AAAAAAAAAAAAAAAAAAAAAA",  # not base64url
        "v1.k:1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        "v1..AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
        None,
        b"v1.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA",
    ],
)
def test_garbage_is_invalid_input(box: SecretBox, token: Any) -> None:
    with pytest.raises(InvalidInput, match="not a sealed secret"):
        box.open(token, context=CONTEXT)
    with pytest.raises(InvalidInput, match="not a sealed secret"):
        box.needs_reseal(token)


def test_unknown_kid_is_a_config_error_naming_the_key(box: SecretBox) -> None:
    token = SecretBox([MasterKey("retired-2025", K2)]).seal(b"x", context=CONTEXT)
    with pytest.raises(ConfigError, match=r"'retired-2025'.*not configured") as caught:
        box.open(token, context=CONTEXT)
    assert base64.b64encode(K2).decode() not in str(caught.value)


# -- rotation ------------------------------------------------------------------------------


def test_master_key_rotation() -> None:
    old_box = SecretBox([MasterKey("k1", K1)])
    sealed = old_box.seal(b"sink password", context=CONTEXT)
    assert not old_box.needs_reseal(sealed)

    # Step 1: the new key goes first, the old one stays: everything still opens.
    rotating = SecretBox([MasterKey("k2", K2), MasterKey("k1", K1)])
    assert rotating.open(sealed, context=CONTEXT) == b"sink password"
    assert rotating.needs_reseal(sealed)
    fresh = rotating.seal(b"new secret", context=CONTEXT)
    assert fresh.split(".")[1] == "k2" and not rotating.needs_reseal(fresh)

    # Step 2: reseal what needs it.
    resealed = rotating.reseal(sealed, context=CONTEXT)
    assert resealed.split(".")[1] == "k2"
    assert not rotating.needs_reseal(resealed)
    assert rotating.reseal(resealed, context=CONTEXT) == resealed

    # Step 3: drop the old key; what was resealed opens, what was forgotten says why not.
    new_box = SecretBox([MasterKey("k2", K2)])
    assert new_box.open(resealed, context=CONTEXT) == b"sink password"
    with pytest.raises(ConfigError, match="'k1'"):
        new_box.open(sealed, context=CONTEXT)


def test_reseal_refuses_the_wrong_context() -> None:
    rotating = SecretBox([MasterKey("k2", K2), MasterKey("k1", K1)])
    sealed = SecretBox([MasterKey("k1", K1)]).seal(b"x", context=CONTEXT)
    with pytest.raises(InvalidInput):
        rotating.reseal(sealed, context=b"another:field")
    current = rotating.seal(b"x", context=CONTEXT)
    with pytest.raises(InvalidInput):
        rotating.reseal(current, context=b"another:field")


# -- master keys ---------------------------------------------------------------------------


def test_parse_master_keys_first_is_current() -> None:
    keys = parse_master_keys(f" {entry('k2', K2)},{entry('k1', K1, urlsafe=True)}\n")
    assert [k.kid for k in keys] == ["k2", "k1"]
    assert [k.key for k in keys] == [K2, K1]
    assert SecretBox(keys).current.kid == "k2"
    spaced = parse_master_keys(f"{entry('a', K1)}\n{entry('b', K2)}\n")
    assert [k.kid for k in spaced] == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no master key"),
        (" , ", "no master key"),
        (base64.b64encode(K1).decode(), "not kid:base64key"),
        (f":{base64.b64encode(K1).decode()}", "not kid:base64key"),
        ("k1:", "not kid:base64key"),
        ("k1:abc!", "not base64"),
        ("k1:%%%%", "not base64"),
        (entry("k1", K1[:16]), "32 bytes"),
        (entry("k1", K1 + b"x"), "32 bytes"),
        (entry("k.1", K1), "1-32 of"),
        (entry("x" * 33, K1), "1-32 of"),
        (f"{entry('k1', K1)},{entry('k1', K2)}", "twice"),
    ],
)
def test_bad_master_keys_are_config_errors_that_leak_nothing(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        SecretBox(parse_master_keys(text))
    for key in (K1, K2, K1[:16]):
        assert base64.b64encode(key).decode() not in str(caught.value)


def test_master_key_never_shows_in_repr() -> None:
    key = MasterKey("k1", K1)
    assert repr(K1) not in repr(key)
    assert base64.b64encode(K1).decode() not in repr(key)


def test_new_master_key_entries_parse_and_differ() -> None:
    first, second = new_master_key("prod-2026"), new_master_key()
    (key,) = parse_master_keys(first)
    assert key.kid == "prod-2026" and len(key.key) == 32
    assert parse_master_keys(second)[0].key != key.key


# -- where the keys come from --------------------------------------------------------------


def test_keys_from_the_environment(tmp_path: Path) -> None:
    box = load_secretbox(data_dir=tmp_path, env={ENV_KEY: f"{entry('k2', K2)},{entry('k1', K1)}"})
    assert box.kids == ("k2", "k1")
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_keys_from_a_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{entry('k1', K1)}\n{entry('k0', K2)}\n")
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        box = load_secretbox(data_dir=tmp_path / "data", env={ENV_KEY_FILE: str(path)})
    assert box.kids == ("k1", "k0")
    assert caplog.records == []


def test_a_key_file_others_can_read_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys"
    path.write_text(entry("k1", K1))
    path.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        assert load_secretbox(data_dir=tmp_path, env={ENV_KEY_FILE: str(path)}).kids == ("k1",)
    assert "chmod 600" in caplog.text


def test_a_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_secretbox(data_dir=tmp_path, env={ENV_KEY_FILE: str(tmp_path / "nope")})


def test_both_sources_at_once_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(entry("k1", K1))
    with pytest.raises(ConfigError, match="not both"):
        load_secretbox(data_dir=tmp_path, env={ENV_KEY: entry("k2", K2), ENV_KEY_FILE: str(path)})


def test_dev_default_generates_a_private_key_file_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "hub"
    with caplog.at_level(logging.WARNING):
        first = load_secretbox(data_dir=data_dir, env={})
    path = data_dir / DEV_KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ENV_KEY in caplog.text and str(path) in caplog.text
    assert [p.name for p in data_dir.iterdir()] == [DEV_KEY_FILE]  # no temporary left behind

    sealed = first.seal(b"kept across restarts", context=CONTEXT)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        again = load_secretbox(data_dir=data_dir, env={})
    assert caplog.records == []
    assert again.kids == first.kids
    assert again.open(sealed, context=CONTEXT) == b"kept across restarts"


def test_dev_default_is_the_same_key_for_processes_starting_together(tmp_path: Path) -> None:
    boxes: list[SecretBox] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        boxes.append(load_secretbox(data_dir=tmp_path, env={}))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(boxes) == 8
    assert len({box.current.key for box in boxes}) == 1
    assert sorted(os.listdir(tmp_path)) == [DEV_KEY_FILE]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({ENV_KEY: ""}, "no master key"),
        ({ENV_KEY: "  "}, "no master key"),
        ({ENV_KEY_FILE: ""}, "empty"),
    ],
)
def test_a_variable_set_but_empty_never_falls_back_to_a_dev_key(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_secretbox(data_dir=tmp_path, env=env)
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_shared_stores_refuse_the_dev_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="share a master key"):
        load_secretbox(data_dir=tmp_path, env={}, allow_dev_key=False)
    assert not (tmp_path / DEV_KEY_FILE).exists()
    box = load_secretbox(data_dir=tmp_path, env={ENV_KEY: entry("k1", K1)}, allow_dev_key=False)
    assert box.kids == ("k1",)


def test_dev_default_is_not_used_when_a_key_is_configured(tmp_path: Path) -> None:
    load_secretbox(data_dir=tmp_path, env={ENV_KEY: entry("k1", K1)})
    assert not (tmp_path / DEV_KEY_FILE).exists()


def test_an_empty_secretbox_is_refused() -> None:
    with pytest.raises(ConfigError, match="no master key"):
        SecretBox([])
