"""The deploy request's pure parts: the model, server resolution, the description (the signature: test_webhook)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpsbackup.deploy.request import (
    DeployRequest,
    InvalidDeployRequestError,
    backup_description,
    parse_deploy_body,
    parse_deploy_request,
    resolve_servers,
)
from vpsbackup.markers import MAX_DESCRIPTION_LENGTH, make_marker, marker_matches

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


@pytest.mark.parametrize(
    ("server_ids", "named"),
    [
        pytest.param([99999], "server_ids: 99999 is in no group of SERVER_GROUPS", id="one-outside"),
        pytest.param([12345, 7, 8, 7], "server_ids: 7, 8 are in no group of SERVER_GROUPS", id="some-outside"),
    ],
)
def test_with_server_groups_set_a_server_id_outside_every_group_is_refused_naming_the_field(
    server_ids: list[int], named: str
) -> None:
    request = DeployRequest(deployment_id="d", server_ids=server_ids, environment="production")
    with pytest.raises(InvalidDeployRequestError) as exc:
        resolve_servers(request, GROUPS)
    assert (exc.value.fields, exc.value.message) == (["server_ids"], named)


def test_a_server_id_of_any_group_is_accepted_whatever_the_environment_says() -> None:
    groups = {"production": [12345], "staging": [12346]}
    request = DeployRequest(deployment_id="d", server_ids=[12346, 12345], environment="production")
    assert resolve_servers(request, groups) == [12346, 12345]


@given(server_ids=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=10))
def test_without_server_groups_any_server_id_is_accepted_and_with_them_none_outside(server_ids: list[int]) -> None:
    request = DeployRequest(deployment_id="d", server_ids=server_ids)
    assert resolve_servers(request, {}) == list(dict.fromkeys(server_ids))
    groups = {"a": [1, 2, 3], "b": [3, 4, 5]}
    if all(server <= 5 for server in server_ids):
        assert resolve_servers(request, groups) == list(dict.fromkeys(server_ids))
    else:
        with pytest.raises(InvalidDeployRequestError) as refused:
            resolve_servers(request, groups)
        assert refused.value.fields == ["server_ids"]


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
