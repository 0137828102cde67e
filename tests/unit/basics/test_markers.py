from hypothesis import given
from hypothesis import strategies as st

from vpsbackup.markers import (
    MAX_DESCRIPTION_LENGTH,
    describe_with_marker,
    is_managed,
    make_marker,
    marker_matches,
)


def test_marker_names_the_deployment() -> None:
    assert make_marker("gh-8812-1") == "[vpsbackup deployment=gh-8812-1]"
    assert marker_matches("Release 2.3 [vpsbackup deployment=gh-8812-1]", "gh-8812-1")
    assert not marker_matches("Release 2.3 [vpsbackup deployment=gh-8812-1]", "gh-8812-2")


def test_people_descriptions_are_not_managed() -> None:
    assert not is_managed("Pre-update backup")
    assert not is_managed(None)
    assert not is_managed("[vpsbackup deployment=]")


def test_a_bracket_in_the_id_cannot_end_the_marker_early() -> None:
    description = describe_with_marker("x", "a] [vpsbackup deployment=b")
    assert marker_matches(description, "a] [vpsbackup deployment=b")
    assert not marker_matches(description, "b")


@given(text=st.text(max_size=400), deployment_id=st.text(min_size=1, max_size=128))
def test_description_fits_and_carries_the_marker(text: str, deployment_id: str) -> None:
    description = describe_with_marker(text, deployment_id)
    assert len(description) <= MAX_DESCRIPTION_LENGTH
    assert marker_matches(description, deployment_id)
    assert is_managed(description)


@given(a=st.text(min_size=1, max_size=128), b=st.text(min_size=1, max_size=128))
def test_distinct_deployments_have_distinct_markers(a: str, b: str) -> None:
    if a != b:
        assert make_marker(a) != make_marker(b)
