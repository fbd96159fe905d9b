"""Standard Webhooks signatures: interoperable with the official ``standardwebhooks`` package
and the reference libraries' published vectors (v1 from their Python tests, v1a from the Go
library, the only reference v1a), and refusing every tampered, stale or malformed message
with the same words."""

from __future__ import annotations

import base64
import pickle
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError as OfficialVerificationError

from forgeline.exceptions import InvalidInput, Unauthorized
from forgeline.webhooks.signing import (
    InvalidWebhookKey,
    WebhookVerificationError,
    message_id,
    new_keypair,
    new_symmetric_secret,
    public_key_of,
    sign,
    signature_headers,
    verify,
)

# standard-webhooks/standard-webhooks libraries/python/tests/test_webhooks.py::test_sign_function
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_V1 = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# libraries/go/webhook_asymmetric_test.go::TestAsymmetricWebhookSign (the key without prefix)
VECTOR_PRIVATE = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
VECTOR_V1A = (
    "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)

NOW = 1_800_000_000.0
BODY = b'{"type":"lot.released.v1","data":{"lot":"L-42"}}'
SECRET = new_symmetric_secret()
PRIVATE, PUBLIC = new_keypair()


def _headers(*secrets: str, msg_id: str = "msg_1", now: float = NOW) -> dict[str, str]:
    return signature_headers(msg_id, BODY, secrets or (SECRET,), now=now)


# --- the published vectors and the official package ---------------------------------------


def test_the_published_v1_vector() -> None:
    assert sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, [VECTOR_SECRET]) == VECTOR_V1
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_V1,
    }
    assert verify(headers, VECTOR_BODY, [VECTOR_SECRET], now=VECTOR_TIMESTAMP) == VECTOR_ID


def test_the_reference_v1a_vector() -> None:
    assert sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, [VECTOR_PRIVATE]) == VECTOR_V1A
    public = public_key_of(VECTOR_PRIVATE)
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TIMESTAMP),
        "webhook-signature": VECTOR_V1A,
    }
    assert verify(headers, VECTOR_BODY, [public], now=VECTOR_TIMESTAMP) == VECTOR_ID


def test_the_official_package_verifies_our_v1_signatures_among_others() -> None:
    other = new_symmetric_secret()
    # Rotation: old and new secret sign together, with a v1a key in between.
    headers = signature_headers("msg_2Kx", BODY, [other, PRIVATE, SECRET])
    assert headers["webhook-signature"].count(" ") == 2
    for secret in (other, SECRET):
        assert Webhook(secret).verify(BODY, headers) == {
            "type": "lot.released.v1",
            "data": {"lot": "L-42"},
        }
    with pytest.raises(OfficialVerificationError):
        Webhook(new_symmetric_secret()).verify(BODY, headers)


def test_we_verify_the_official_packages_signatures() -> None:
    sent = datetime.now(tz=UTC)
    signature = Webhook(SECRET).sign("msg_official", sent, BODY.decode())
    headers = {
        "Webhook-Id": "msg_official",
        "Webhook-Timestamp": str(int(sent.timestamp())),
        "Webhook-Signature": signature,
    }
    assert verify(headers, BODY, [SECRET]) == "msg_official"


def test_v1a_round_trip_and_the_public_half() -> None:
    assert public_key_of(PRIVATE) == PUBLIC
    assert (PRIVATE[:5], PUBLIC[:5]) == ("whsk_", "whpk_")
    assert len(base64.b64decode(PRIVATE[5:])) == len(base64.b64decode(PUBLIC[5:])) == 32
    headers = _headers(PRIVATE)
    assert headers["webhook-signature"].startswith("v1a,")
    assert len(base64.b64decode(headers["webhook-signature"][4:])) == 64
    assert verify(headers, BODY, [PUBLIC], now=NOW) == "msg_1"
    # Trust lists mix both kinds: either one verifying is enough.
    assert verify(headers, BODY, [new_symmetric_secret(), PUBLIC], now=NOW) == "msg_1"


def test_fresh_secrets_are_spec_sized_and_distinct() -> None:
    made = {new_symmetric_secret() for _ in range(20)}
    assert len(made) == 20
    assert {len(base64.b64decode(s.removeprefix("whsec_"))) for s in made} == {32}
    assert len({new_keypair()[0] for _ in range(5)}) == 5


# --- refusals ---------------------------------------------------------------------------------


def _replace(name: str, value: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {**headers, name: value}


def _drop(name: str) -> Callable[[dict[str, str]], dict[str, str]]:
    return lambda headers: {k: v for k, v in headers.items() if k != name}


def _flip_last_signature_byte(headers: dict[str, str]) -> dict[str, str]:
    version, encoded = headers["webhook-signature"].split(",")
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    return {**headers, "webhook-signature": f"{version},{base64.b64encode(raw).decode()}"}


def _truncate_signature(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "webhook-signature": headers["webhook-signature"][:20]}


def _relabel(version: str) -> Callable[[dict[str, str]], dict[str, str]]:
    def relabel(headers: dict[str, str]) -> dict[str, str]:
        encoded = headers["webhook-signature"].split(",", 1)[1]
        return {**headers, "webhook-signature": f"{version},{encoded}"}

    return relabel


TAMPERED = {
    "another id": _replace("webhook-id", "msg_2"),
    "another timestamp, still current": _replace("webhook-timestamp", str(int(NOW) + 1)),
    "a flipped signature bit": _flip_last_signature_byte,
    "a truncated signature": _truncate_signature,
    "garbage base64": _replace("webhook-signature", "v1,@@@not-base64@@@"),
    "an empty signature": _replace("webhook-signature", "v1,"),
    "no version": _replace("webhook-signature", "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
    "an unknown version": _relabel("v2"),
    "the v1 signature labelled v1a": _relabel("v1a"),
    "no id": _drop("webhook-id"),
    "no timestamp": _drop("webhook-timestamp"),
    "no signature": _drop("webhook-signature"),
    "an empty id": _replace("webhook-id", ""),
    "a fractional timestamp": _replace("webhook-timestamp", f"{NOW}"),
    "a negative timestamp": _replace("webhook-timestamp", "-1"),
    "an exponent timestamp": _replace("webhook-timestamp", "1.8e9"),
    "too old": _replace("webhook-timestamp", str(int(NOW) - 301)),
    "too new": _replace("webhook-timestamp", str(int(NOW) + 301)),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_tampered_message_is_refused_with_the_same_words(
    tamper: Callable[[dict[str, str]], dict[str, str]],
) -> None:
    headers = tamper(_headers())
    with pytest.raises(WebhookVerificationError) as caught:
        verify(headers, BODY, [SECRET], now=NOW)
    assert isinstance(caught.value, Unauthorized) and caught.value.status == 401
    assert caught.value.detail == "the webhook signature could not be verified"


def test_a_tampered_body_is_refused_for_either_version() -> None:
    for key, trusted in ((SECRET, SECRET), (PRIVATE, PUBLIC)):
        with pytest.raises(WebhookVerificationError) as caught:
            verify(_headers(key), BODY + b" ", [trusted], now=NOW)
        assert caught.value.reason == "signature"


def test_reasons_are_told_apart_for_logs_only() -> None:
    def reason(headers: dict[str, str]) -> str:
        with pytest.raises(WebhookVerificationError) as caught:
            verify(headers, BODY, [SECRET], now=NOW)
        return caught.value.reason

    assert reason(_drop("webhook-id")(_headers())) == "headers"
    assert reason(_headers(now=NOW - 301)) == "timestamp"
    assert reason(_headers(new_symmetric_secret())) == "signature"
    restored = pickle.loads(pickle.dumps(WebhookVerificationError(reason="timestamp")))
    assert (restored.reason, restored.detail) == ("timestamp", WebhookVerificationError().detail)


def test_the_tolerance_is_inclusive_and_configurable() -> None:
    for skew in (-300, 300):
        assert verify(_headers(now=NOW + skew), BODY, [SECRET], now=NOW) == "msg_1"
    assert verify(_headers(now=NOW - 3000), BODY, [SECRET], now=NOW, tolerance=3600)
    with pytest.raises(WebhookVerificationError):
        verify(_headers(now=NOW - 61), BODY, [SECRET], now=NOW, tolerance=60)


def test_a_key_of_the_other_kind_never_verifies() -> None:
    v1_only = _headers(SECRET)
    v1a_only = _headers(PRIVATE)
    with pytest.raises(WebhookVerificationError):  # a v1 signature, a v1a key
        verify(v1_only, BODY, [PUBLIC], now=NOW)
    with pytest.raises(WebhookVerificationError):  # a v1a signature, a v1 secret
        verify(v1a_only, BODY, [SECRET], now=NOW)
    # The first 32 bytes of an Ed25519 signature relabelled v1: still nothing.
    encoded = v1a_only["webhook-signature"].split(",")[1]
    half = base64.b64encode(base64.b64decode(encoded)[:32]).decode()
    with pytest.raises(WebhookVerificationError):
        verify({**v1a_only, "webhook-signature": f"v1,{half}"}, BODY, [SECRET], now=NOW)


def test_wrong_keys_never_verify() -> None:
    other_private, other_public = new_keypair()
    with pytest.raises(WebhookVerificationError):
        verify(_headers(SECRET), BODY, [new_symmetric_secret()], now=NOW)
    with pytest.raises(WebhookVerificationError):
        verify(_headers(PRIVATE), BODY, [other_public], now=NOW)
    assert verify(_headers(other_private), BODY, [PUBLIC, other_public], now=NOW) == "msg_1"


def test_one_valid_signature_among_several_is_enough() -> None:
    valid = _headers()["webhook-signature"]
    noise = [
        "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
        "v1a,@@@",
        "junk",
    ]
    headers = {**_headers(), "webhook-signature": "  ".join([*noise, valid, noise[0]])}
    assert verify(headers, BODY, [SECRET], now=NOW) == "msg_1"


def test_a_flood_of_signatures_is_refused_even_with_a_valid_one() -> None:
    headers = _headers()
    flood = " ".join([f"v1a,{'A' * 86}=="] * 16 + [headers["webhook-signature"]])
    with pytest.raises(WebhookVerificationError):
        verify({**headers, "webhook-signature": flood}, BODY, [SECRET], now=NOW)


def test_headers_are_found_whatever_their_case_but_not_twice() -> None:
    shouted = {name.upper(): value for name, value in _headers().items()}
    assert verify(shouted, BODY, [SECRET], now=NOW) == "msg_1"
    twice = {**_headers(), "Webhook-Id": "msg_other"}
    with pytest.raises(WebhookVerificationError):
        verify(twice, BODY, [SECRET], now=NOW)


# --- keys and ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("s3cret", "starts with whsec_"),
        ("whsec_", "never empty"),
        ("whsec_not base64!", "standard base64"),
        ("whpk_" + base64.b64encode(b"k" * 31).decode(), "32-byte"),
        ("whsk_" + base64.b64encode(b"k" * 64).decode(), "32-byte"),
    ],
)
def test_a_key_that_is_not_one_is_refused_without_repeating_it(key: str, words: str) -> None:
    for use in (
        lambda: verify(_headers(), BODY, [key], now=NOW),
        lambda: sign("msg_1", 1, BODY, [key]),
    ):
        with pytest.raises(InvalidWebhookKey) as caught:
            use()
        assert words in caught.value.detail
        material = key.partition("_")[2]
        assert not material or material not in caught.value.detail


def test_each_key_has_its_one_job() -> None:
    with pytest.raises(InvalidWebhookKey, match="whpk_ public key verifies"):
        sign("msg_1", 1, BODY, [PUBLIC])
    with pytest.raises(InvalidWebhookKey, match="not the whsk_ private key"):
        verify(_headers(PRIVATE), BODY, [PRIVATE], now=NOW)
    with pytest.raises(InvalidWebhookKey, match="only a whsk_"):
        public_key_of(SECRET)
    with pytest.raises(InvalidWebhookKey, match="at least one"):
        verify(_headers(), BODY, [], now=NOW)


def test_secret_sizes_the_spec_requires_for_signing_only() -> None:
    short = "whsec_" + base64.b64encode(b"s" * 16).decode()
    with pytest.raises(InvalidWebhookKey, match="24 to 64 bytes"):
        sign("msg_1", 1, BODY, [short])
    too_long = "whsec_" + base64.b64encode(b"s" * 65).decode()
    with pytest.raises(InvalidWebhookKey, match="24 to 64 bytes"):
        sign("msg_1", 1, BODY, [too_long])
    # A partner's short secret still verifies inbound, as with the reference libraries.
    signature = Webhook(short).sign("msg_1", datetime.fromtimestamp(NOW, tz=UTC), BODY.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(NOW)),
        "webhook-signature": signature,
    }
    assert verify(headers, BODY, [short], now=NOW) == "msg_1"


def test_unpadded_secrets_are_read_as_the_reference_libraries_read_them() -> None:
    padded = "whsec_" + base64.b64encode(b"p" * 25).decode()
    assert padded.endswith("=")
    unpadded = padded.rstrip("=")
    assert sign("msg_1", 1, BODY, [unpadded]) == sign("msg_1", 1, BODY, [padded])


@pytest.mark.parametrize("msg_id", ["evt.1", "", "two words", "tab\there", "ü-id", "x" * 257])
def test_ids_that_cannot_be_signed_safely_are_refused_and_message_id_maps_them(
    msg_id: str,
) -> None:
    with pytest.raises(InvalidInput, match="message_id"):
        sign(msg_id, 1, BODY, [SECRET])
    safe = message_id(msg_id)
    assert safe.startswith("msg_") and safe == message_id(msg_id)  # the same on every retry
    assert verify(_headers(msg_id=safe), BODY, [SECRET], now=NOW) == safe


def test_a_safe_event_id_is_its_own_message_id() -> None:
    for event_id in ("evt-1", "sha256:ab12", "0f3c9a", "WMS_EVT/00001"):
        assert message_id(event_id) == event_id


@pytest.mark.parametrize("timestamp", [-1, True])
def test_a_timestamp_that_is_not_unix_seconds_is_refused(timestamp: int) -> None:
    with pytest.raises(InvalidInput, match="timestamp"):
        sign("msg_1", timestamp, BODY, [SECRET])
    with pytest.raises(InvalidInput, match="at least one"):
        sign("msg_1", 1, BODY, [])


def test_signature_headers_stamp_the_current_second() -> None:
    headers = signature_headers("msg_1", BODY, [SECRET], now=NOW + 0.9)
    assert headers["webhook-timestamp"] == str(int(NOW))
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
