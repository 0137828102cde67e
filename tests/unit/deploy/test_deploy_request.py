"""The deploy request's pure parts: the model, server resolution, the description, the signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_TEST_SECRET, load_event
from vpsbackup.deploy.request import (
    DeployRequest,
    InvalidDeployRequestError,
    backup_description,
    parse_deploy_body,
    parse_deploy_request,
    resolve_servers,
)
from vpsbackup.deploy.webhook import resign_function_url_event, signature_for, signed_headers, verify_signature
from vpsbackup.markers import MAX_DESCRIPTION_LENGTH, make_marker, marker_matches

NOW = 1_737_042_300.0
GROUPS = {"production": [12345, 12346], "empty": []}

# -- request model -------------------------------------------------------------------------------


def test_the_spec_sample_request_parses_with_every_field() -> None:
    # Given the request from docs/backup-on-deploy.md
    data = {
        "deployment_id": "gh-8812-1",
        "server_ids": [12345],
        "environment": "production",
        "description": "Release 2.3",
        "repository": "acme/shop",
        "ref": "main",
        "commit": "3f2c1a9",
        "actor": "alice",
        "url": "https://ci.example/run/8812",
        "unknown_field": "ignored",
    }
    # When it is parsed
    request = parse_deploy_request(data)
    # Then every documented field is kept and unknown ones are ignored
    assert request.deployment_id == "gh-8812-1"
    assert request.server_ids == [12345]
    assert request.actor == "alice"


@given(st.text(min_size=1, max_size=128).filter(lambda s: s.strip() and s.isprintable()))
def test_any_printable_deployment_id_of_1_to_128_characters_is_accepted(deployment_id: str) -> None:
    assert parse_deploy_request({"deployment_id": deployment_id, "server_ids": [1]}).deployment_id == deployment_id


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({}, "deployment_id", id="missing"),
        pytest.param({"deployment_id": ""}, "deployment_id", id="empty"),
        pytest.param({"deployment_id": "   "}, "deployment_id", id="blank"),
        pytest.param({"deployment_id": "a\nb"}, "deployment_id", id="control-character"),
        pytest.param({"deployment_id": "x" * 129}, "deployment_id", id="129-characters"),
        pytest.param({"deployment_id": ["x"]}, "deployment_id", id="not-a-string"),
        pytest.param({"deployment_id": "d", "server_ids": [0]}, "server_ids", id="server-zero"),
        pytest.param({"deployment_id": "d", "server_ids": [False]}, "server_ids", id="server-bool"),
        pytest.param({"deployment_id": "d", "server_ids": 12345}, "server_ids", id="servers-not-a-list"),
        pytest.param({"deployment_id": "d", "server_ids": list(range(1, 102))}, "server_ids", id="101-servers"),
        pytest.param({"deployment_id": "d", "environment": ""}, "environment", id="empty-environment"),
        pytest.param({"deployment_id": "d", "description": "x" * 1001}, "description", id="huge-description"),
    ],
)
def test_a_bad_field_is_named(data: dict[str, Any], field: str) -> None:
    # When a bad request is parsed, Then the error names the field (and never echoes the value)
    with pytest.raises(InvalidDeployRequestError) as exc:
        parse_deploy_request(data)
    assert field in exc.value.fields
    assert field in exc.value.message


@pytest.mark.parametrize("raw", [b"", b"   ", b"{oops", b"[1]", b'"text"', b"\xff\xfe"])
def test_a_body_that_is_not_a_json_object_names_the_body(raw: bytes) -> None:
    with pytest.raises(InvalidDeployRequestError) as exc:
        parse_deploy_body(raw)
    assert exc.value.fields == ["body"]


def test_numeric_strings_are_read_as_server_ids() -> None:
    assert parse_deploy_request({"deployment_id": "d", "server_ids": ["12345"]}).server_ids == [12345]


# -- server resolution -------------------------------------------------------------------------


def test_server_ids_win_over_the_environment_and_repeats_collapse() -> None:
    request = DeployRequest(deployment_id="d", server_ids=[12346, 12345, 12346], environment="production")
    assert resolve_servers(request, GROUPS) == [12346, 12345]


def test_the_environment_resolves_through_server_groups() -> None:
    request = DeployRequest(deployment_id="d", environment="production")
    assert resolve_servers(request, GROUPS) == [12345, 12346]


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        pytest.param(DeployRequest(deployment_id="d"), "server_ids", id="nothing"),
        pytest.param(DeployRequest(deployment_id="d", server_ids=[]), "server_ids", id="empty-list"),
        pytest.param(DeployRequest(deployment_id="d", environment="qa"), "environment", id="unknown-environment"),
        pytest.param(DeployRequest(deployment_id="d", environment="empty"), "environment", id="empty-group"),
    ],
)
def test_at_least_one_server_must_resolve(request_: DeployRequest, field: str) -> None:
    with pytest.raises(InvalidDeployRequestError) as exc:
        resolve_servers(request_, GROUPS)
    assert field in exc.value.fields


# -- description ---------------------------------------------------------------------------------


def test_the_requests_description_is_used_with_the_marker() -> None:
    request = DeployRequest(deployment_id="gh-8812-1", description="Release 2.3", repository="acme/shop")
    assert backup_description(request) == f"Release 2.3 {make_marker('gh-8812-1')}"


def test_without_a_description_one_is_built_from_the_context_with_the_url_when_it_fits() -> None:
    request = DeployRequest(
        deployment_id="gh-8812-1",
        repository="acme/shop",
        ref="main",
        commit="3f2c1a9e8d7c6b5a4",
        actor="alice",
        url="https://ci.example/run/8812",
    )
    assert backup_description(request) == (
        "Pre-deploy backup of acme/shop ref main commit 3f2c1a9e8d7c by alice (https://ci.example/run/8812) "
        "[vpsbackup deployment=gh-8812-1]"
    )


def test_a_url_that_does_not_fit_is_left_out_rather_than_cut() -> None:
    request = DeployRequest(deployment_id="d", repository="acme/shop", url="https://ci.example/" + "x" * 300)
    assert backup_description(request) == "Pre-deploy backup of acme/shop [vpsbackup deployment=d]"


def test_a_request_with_no_context_still_says_which_deployment() -> None:
    assert backup_description(DeployRequest(deployment_id="d-1")).startswith("Pre-deploy backup for deployment d-1")


_optional = st.none() | st.text(max_size=1000)


@given(
    deployment_id=st.text(min_size=1, max_size=128).filter(str.strip),
    description=_optional,
    repository=_optional,
    ref=_optional,
    commit=_optional,
    actor=_optional,
    url=_optional,
)
def test_every_description_fits_the_api_and_carries_the_deployments_marker(
    deployment_id: str,
    description: str | None,
    repository: str | None,
    ref: str | None,
    commit: str | None,
    actor: str | None,
    url: str | None,
) -> None:
    request = DeployRequest.model_construct(
        deployment_id=deployment_id,
        description=description,
        repository=repository,
        ref=ref,
        commit=commit,
        actor=actor,
        url=url,
    )
    text = backup_description(request)
    assert len(text) <= MAX_DESCRIPTION_LENGTH
    assert marker_matches(text, deployment_id)


# -- signature -----------------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert signature_for("k", "1700000000", b"{}") == f"sha256={expected}"


@given(body=st.binary(max_size=2000), skew=st.integers(min_value=-300, max_value=300))
def test_a_correct_signature_within_300_seconds_verifies(body: bytes, skew: int) -> None:
    headers = signed_headers("secret", body, NOW + skew)
    assert verify_signature("secret", headers, body, now=NOW)


@given(body=st.binary(max_size=200), tamper=st.binary(min_size=1, max_size=20))
def test_a_body_changed_after_signing_does_not_verify(body: bytes, tamper: bytes) -> None:
    headers = signed_headers("secret", body, NOW)
    assert not verify_signature("secret", headers, body + tamper, now=NOW)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-headers"),
        pytest.param({"x-signature-timestamp": str(int(NOW))}, id="no-signature"),
        pytest.param({"x-signature": signature_for("secret", str(int(NOW)), b"{}")}, id="no-timestamp"),
        pytest.param(signed_headers("secret", b"{}", NOW - 301), id="301s-old"),
        pytest.param(signed_headers("secret", b"{}", NOW + 301), id="301s-ahead"),
        pytest.param(signed_headers("other", b"{}", NOW), id="other-key"),
        pytest.param(
            {"x-signature-timestamp": "17e8", "x-signature": signature_for("secret", "17e8", b"{}")}, id="not-digits"
        ),
        pytest.param(
            {"x-signature-timestamp": str(int(NOW)), "x-signature": signature_for("secret", str(int(NOW)), b"{}")[7:]},
            id="no-sha256-prefix",
        ),
        pytest.param({"x-signature-timestamp": str(int(NOW)), "x-signature": "sha256=é"}, id="non-ascii"),
    ],
)
def test_anything_but_a_fresh_correct_signature_is_refused(headers: dict[str, str]) -> None:
    assert not verify_signature("secret", headers, b"{}", now=NOW)


def test_no_configured_key_refuses_even_a_signature_made_with_an_empty_key() -> None:
    headers = signed_headers("", b"{}", NOW)
    assert not verify_signature(None, headers, b"{}", now=NOW)
    assert not verify_signature("", headers, b"{}", now=NOW)


def test_an_upper_case_hex_digest_is_accepted() -> None:
    headers = signed_headers("secret", b"{}", NOW)
    headers["x-signature"] = "sha256=" + headers["x-signature"][7:].upper()
    assert verify_signature("secret", headers, b"{}", now=NOW)


def test_resigning_a_sample_event_makes_it_verify_now() -> None:
    # Given the signed sample, whose timestamp is long past
    event = load_event("deploy-webhook-signed.json")
    body = event["body"].encode()
    assert not verify_signature(WEBHOOK_TEST_SECRET, event["headers"], body, now=NOW + 10_000_000)

    # When it is re-signed for a later time
    fresh = resign_function_url_event(event, WEBHOOK_TEST_SECRET, NOW + 10_000_000)

    # Then it verifies at that time, and the body is untouched
    assert verify_signature(WEBHOOK_TEST_SECRET, fresh["headers"], body, now=NOW + 10_000_000)
    assert json.loads(fresh["body"]) == json.loads(event["body"])


def test_the_signed_sample_was_signed_with_the_documented_test_key() -> None:
    event = load_event("deploy-webhook-signed.json")
    timestamp = event["headers"]["x-signature-timestamp"]
    assert event["headers"]["x-signature"] == signature_for(WEBHOOK_TEST_SECRET, timestamp, event["body"].encode())
