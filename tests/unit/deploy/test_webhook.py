"""The webhook's signature (scheme v1): what is signed, what verifies, the keys of a rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_TEST_SECRET, load_event
from vpsbackup.deploy.webhook import (
    MAX_FUTURE_SKEW_SECONDS,
    SignedRequest,
    WebhookKeys,
    WebhookSecretError,
    decode_body,
    parse_webhook_secret,
    request_target,
    resign_function_url_event,
    signature_for,
    signed_headers,
    signed_request_of,
    verify_signature,
)

NOW = 1_737_042_300.0
KEYS = WebhookKeys("secret")
POST = SignedRequest("POST", "/", b'{"deployment_id":"d","server_ids":[1]}')
STATUS = SignedRequest("GET", "/?deployment_id=gh-1", b"")


def verifies(headers: dict[str, str], request: SignedRequest = POST, keys: WebhookKeys | None = KEYS) -> bool:
    return verify_signature(keys, headers, request, now=NOW).ok


# -- what is signed ------------------------------------------------------------------------------


def test_the_signature_is_v1_hmac_sha256_of_timestamp_method_target_and_body() -> None:
    expected = hmac.new(b"k", b"1700000000.GET./?deployment_id=gh-1.", hashlib.sha256).hexdigest()
    assert signature_for("k", "1700000000", STATUS) == f"v1={expected}"
    expected = hmac.new(b"k", b"1700000000.POST./.{}", hashlib.sha256).hexdigest()
    assert signature_for("k", "1700000000", SignedRequest("post", "/", b"{}")) == f"v1={expected}"


@pytest.mark.parametrize(
    ("path", "query", "target"),
    [("/", "", "/"), ("/", "deployment_id=gh-1", "/?deployment_id=gh-1"), ("/a/b", "x=1&y=%20", "/a/b?x=1&y=%20")],
)
def test_the_request_target_is_the_path_and_the_query_after_a_question_mark_when_there_is_one(
    path: str, query: str, target: str
) -> None:
    assert request_target(path, query) == target


def test_a_function_url_events_signed_request_is_its_method_raw_target_and_raw_body() -> None:
    event = load_event("deploy-status-get.json")
    assert signed_request_of(event) == SignedRequest("GET", "/?deployment_id=gh-8812-1", b"")
    raw = b'{"deployment_id": "b64"}'
    event = {
        **load_event("deploy-webhook-signed.json"),
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }
    assert signed_request_of(event) == SignedRequest("POST", "/", raw)


def test_the_signed_target_is_the_event_s_own_raw_path_and_query() -> None:
    event = {**load_event("deploy-status-get.json"), "rawPath": "/status/x", "rawQueryString": "a=1"}
    assert signed_request_of(event).target == "/status/x?a=1"
    assert signed_request_of({**event, "rawPath": ""}).target == "/?a=1"


# -- what verifies -------------------------------------------------------------------------------


@given(
    body=st.binary(max_size=2000),
    skew=st.integers(min_value=-300, max_value=MAX_FUTURE_SKEW_SECONDS),
)
def test_a_correct_signature_up_to_300_s_old_or_60_s_ahead_verifies(body: bytes, skew: int) -> None:
    request = SignedRequest("POST", "/", body)
    check = verify_signature(KEYS, signed_headers("secret", request, NOW + skew), request, now=NOW)
    assert check.ok
    assert (check.problem, check.key) == (None, "current")


@given(body=st.binary(max_size=200), tamper=st.binary(min_size=1, max_size=20))
def test_a_body_changed_after_signing_does_not_verify(body: bytes, tamper: bytes) -> None:
    request = SignedRequest("POST", "/", body)
    assert not verifies(signed_headers("secret", request, NOW), SignedRequest("POST", "/", body + tamper))


@pytest.mark.parametrize(
    "replayed_as",
    [
        pytest.param(SignedRequest("POST", "/?deployment_id=gh-1", b""), id="another-method"),
        pytest.param(SignedRequest("GET", "/?deployment_id=gh-2", b""), id="another-deployment"),
        pytest.param(SignedRequest("GET", "/?deployment_id=gh-1&x=1", b""), id="a-longer-query"),
        pytest.param(SignedRequest("GET", "/", b""), id="no-query"),
        pytest.param(SignedRequest("GET", "/other?deployment_id=gh-1", b""), id="another-path"),
        pytest.param(SignedRequest("GET", "/?deployment_id=gh-1", b"x"), id="a-body"),
    ],
)
def test_a_signature_replayed_on_another_method_path_query_or_body_is_refused(replayed_as: SignedRequest) -> None:
    # Given a status call signed correctly now
    headers = signed_headers("secret", STATUS, NOW)
    assert verifies(headers, STATUS)

    # When the same headers come with another method, path, query or body: refused
    check = verify_signature(KEYS, headers, replayed_as, now=NOW)
    assert not check.ok
    assert check.problem == "the signature matches no key for this method, path, query and body"


def test_only_a_dot_in_the_target_lets_bytes_move_from_the_target_to_the_body() -> None:
    # The fields are joined with "."; a target with a dot in it signs the same bytes as a shorter
    # target and a longer body. A status call (GET) must therefore have no body (the function
    # refuses one with 400, tests/integration/test_backup_on_deploy.py), and a deploy body is JSON,
    # whose dots outside strings are followed by digits: no JSON object starts after one.
    headers = signed_headers("secret", SignedRequest("GET", "/?deployment_id=release.1", b""), NOW)
    assert verifies(headers, SignedRequest("GET", "/?deployment_id=release", b"1."))
    assert not verifies(headers, SignedRequest("GET", "/?deployment_id=release", b""))


def _retired(timestamp: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(b"secret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-signature-timestamp": timestamp, "x-signature": f"sha256={digest}"}


def test_the_retired_sha256_scheme_is_refused_and_the_log_says_so() -> None:
    check = verify_signature(KEYS, _retired(str(int(NOW)), POST.body), POST, now=NOW)
    assert not check.ok
    assert check.problem is not None and "retired sha256= scheme" in check.problem


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        pytest.param({}, "the signature headers are missing", id="no-headers"),
        pytest.param({"x-signature-timestamp": str(int(NOW))}, "the signature headers are missing", id="no-signature"),
        pytest.param(
            {"x-signature": signature_for("secret", str(int(NOW)), POST)},
            "the signature headers are missing",
            id="no-timestamp",
        ),
        pytest.param(
            signed_headers("secret", POST, NOW - 301), "the timestamp is 301 s old (at most 300 s)", id="301s-old"
        ),
        pytest.param(
            signed_headers("secret", POST, NOW + 61),
            "the timestamp is 61 s in the future (at most 60 s)",
            id="61s-ahead",
        ),
        pytest.param(
            signed_headers("secret", POST, NOW + 301),
            "the timestamp is 301 s in the future (at most 60 s)",
            id="301s-ahead",
        ),
        pytest.param(
            signed_headers("other", POST, NOW),
            "the signature matches no key for this method, path, query and body",
            id="other-key",
        ),
        pytest.param(
            {"x-signature-timestamp": "17e8", "x-signature": signature_for("secret", "17e8", POST)},
            "the timestamp is not unix seconds",
            id="not-digits",
        ),
        pytest.param(
            {"x-signature-timestamp": "1" * 13, "x-signature": signature_for("secret", "1" * 13, POST)},
            "the timestamp is not unix seconds",
            id="13-digits",
        ),
        pytest.param(
            {"x-signature-timestamp": str(int(NOW)), "x-signature": signature_for("secret", str(int(NOW)), POST)[3:]},
            "the signature matches no key for this method, path, query and body",
            id="no-v1-prefix",
        ),
        pytest.param(
            {"x-signature-timestamp": str(int(NOW)), "x-signature": "v1=é"},
            "the signature matches no key for this method, path, query and body",
            id="non-ascii",
        ),
    ],
)
def test_anything_but_a_fresh_correct_v1_signature_is_refused_and_the_log_says_why(
    headers: dict[str, str], problem: str
) -> None:
    check = verify_signature(KEYS, headers, POST, now=NOW)
    assert not check.ok
    assert (check.problem, check.key) == (problem, None)


def test_a_twelve_digit_timestamp_is_read_as_seconds_and_thirteen_digits_are_not() -> None:
    # The longest timestamp read (12 digits, ~year 5138) is a time, refused for being far ahead;
    # one digit more is not unix seconds at all
    twelve = "9" * 12
    check = verify_signature(
        KEYS, {"x-signature-timestamp": twelve, "x-signature": signature_for("secret", twelve, POST)}, POST, now=NOW
    )
    assert check.problem == f"the timestamp is {int(999_999_999_999 - NOW)} s in the future (at most 60 s)"


def test_the_future_skew_is_never_more_than_the_past_skew() -> None:
    headers = signed_headers("secret", POST, NOW + 30)
    assert verify_signature(KEYS, headers, POST, now=NOW, max_skew=30).ok
    check = verify_signature(KEYS, signed_headers("secret", POST, NOW + 31), POST, now=NOW, max_skew=30)
    assert check.problem == "the timestamp is 31 s in the future (at most 30 s)"


def test_no_configured_key_refuses_even_a_signature_made_with_an_empty_key() -> None:
    headers = signed_headers("", POST, NOW)
    check = verify_signature(None, headers, POST, now=NOW)
    assert (check.ok, check.problem) == (False, "no webhook key is configured")


def test_an_upper_case_hex_digest_is_accepted() -> None:
    headers = signed_headers("secret", POST, NOW)
    headers["x-signature"] = "v1=" + headers["x-signature"][3:].upper()
    assert verifies(headers)


# -- key rotation --------------------------------------------------------------------------------


def test_during_a_rotation_the_current_and_the_previous_key_verify_and_no_other() -> None:
    keys = WebhookKeys("new", previous="old")
    assert verify_signature(keys, signed_headers("new", POST, NOW), POST, now=NOW).key == "current"
    assert verify_signature(keys, signed_headers("old", POST, NOW), POST, now=NOW).key == "previous"
    assert not verify_signature(keys, signed_headers("older", POST, NOW), POST, now=NOW).ok
    # without a previous key the old one no longer verifies
    assert not verify_signature(WebhookKeys("new"), signed_headers("old", POST, NOW), POST, now=NOW).ok


def test_a_stale_signature_is_refused_even_with_the_previous_key() -> None:
    keys = WebhookKeys("new", previous="old")
    assert not verify_signature(keys, signed_headers("old", POST, NOW - 301), POST, now=NOW).ok


@pytest.mark.parametrize(
    ("value", "keys"),
    [
        pytest.param("0f3a9c", WebhookKeys("0f3a9c"), id="a-plain-key"),
        pytest.param('{"current": "new"}', WebhookKeys("new"), id="json-current"),
        pytest.param('{"current": "new", "previous": "old"}', WebhookKeys("new", "old"), id="json-both"),
        pytest.param('{"current": "new", "previous": ""}', WebhookKeys("new"), id="json-empty-previous"),
        pytest.param('{"current": "new", "previous": null}', WebhookKeys("new"), id="json-null-previous"),
        pytest.param('"quoted"', WebhookKeys('"quoted"'), id="a-json-string-is-a-plain-key"),
        pytest.param("12345", WebhookKeys("12345"), id="a-json-number-is-a-plain-key"),
    ],
)
def test_the_secret_is_a_plain_key_or_current_and_previous(value: str, keys: WebhookKeys) -> None:
    assert parse_webhook_secret(value) == keys


@pytest.mark.parametrize(
    ("value", "named"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param('{"previous": "old"}', "current", id="no-current"),
        pytest.param('{"current": ""}', "current", id="empty-current"),
        pytest.param('{"current": 5}', "current", id="current-not-a-string"),
        pytest.param('{"current": "new", "previous": 5}', "previous", id="previous-not-a-string"),
        pytest.param('{"current": "new", "next": "x"}', "next", id="unknown-key"),
    ],
)
def test_a_malformed_secret_is_an_error_naming_the_key(value: str, named: str) -> None:
    with pytest.raises(WebhookSecretError, match=named):
        parse_webhook_secret(value)


# -- the samples and the helpers -----------------------------------------------------------------


def test_resigning_a_sample_event_makes_it_verify_now() -> None:
    # Given the signed sample, whose timestamp is long past
    event = load_event("deploy-webhook-signed.json")
    request = signed_request_of(event)
    keys = WebhookKeys(WEBHOOK_TEST_SECRET)
    assert not verify_signature(keys, event["headers"], request, now=NOW + 10_000_000).ok

    # When it is re-signed for a later time
    fresh = resign_function_url_event(event, WEBHOOK_TEST_SECRET, NOW + 10_000_000)

    # Then it verifies at that time, and the body is untouched
    assert verify_signature(keys, fresh["headers"], request, now=NOW + 10_000_000).ok
    assert json.loads(fresh["body"]) == json.loads(event["body"])
    # and every other header is kept as it was, the two signature headers replaced
    others = {k: v for k, v in event["headers"].items() if k not in ("x-signature", "x-signature-timestamp")}
    assert others
    assert {k: v for k, v in fresh["headers"].items() if k in others} == others
    assert fresh["headers"]["x-signature-timestamp"] == str(int(NOW + 10_000_000))


@pytest.mark.parametrize("sample", ["deploy-webhook-signed.json", "deploy-status-get.json"])
def test_the_signed_samples_were_signed_v1_with_the_documented_test_key(sample: str) -> None:
    event = load_event(sample)
    timestamp = event["headers"]["x-signature-timestamp"]
    assert event["headers"]["x-signature"] == signature_for(WEBHOOK_TEST_SECRET, timestamp, signed_request_of(event))
    assert verify_signature(
        WebhookKeys(WEBHOOK_TEST_SECRET), event["headers"], signed_request_of(event), now=float(timestamp)
    ).ok


def test_decode_body_reads_a_base64_body_as_its_bytes_and_a_plain_one_as_utf8() -> None:
    raw = '{"deployment_id":"été"}'.encode()
    assert decode_body(base64.b64encode(raw).decode("ascii"), base64_encoded=True) == raw
    assert decode_body('{"deployment_id":"été"}', base64_encoded=False) == raw
    assert decode_body("", base64_encoded=True) == b""


def test_a_body_that_claims_base64_and_is_not_is_a_value_error() -> None:
    assert decode_body("e30=", base64_encoded=True) == b"{}"
    assert decode_body(None, base64_encoded=False) == b""
    with pytest.raises(ValueError, match="base64"):
        decode_body("not base64!", base64_encoded=True)
