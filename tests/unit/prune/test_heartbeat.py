"""The heartbeat (prune.heartbeat): one GET, a short timeout, never raising, the secret path never logged;
and the handler calls it after a completed run only, with the URL set."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from vpsbackup.prune import heartbeat

URL = "https://hc-ping.com/0b7f7c3e-5f1a-4d4e-9d1c-2f8a1b0c9d7e"


def answering(status: int, seen: list[dict[str, Any]]) -> Any:
    def get(url: str, **kwargs: Any) -> httpx.Response:
        seen.append({"url": url, **kwargs})
        return httpx.Response(status, request=httpx.Request("GET", url))

    return get


def test_a_heartbeat_is_one_get_with_a_short_timeout() -> None:
    seen: list[dict[str, Any]] = []
    assert heartbeat.ping(URL, get=answering(200, seen))
    assert seen == [{"url": URL, "timeout": heartbeat.TIMEOUT_S, "follow_redirects": False}]
    assert heartbeat.TIMEOUT_S <= 5


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectTimeout("timed out"), httpx.ConnectError("no route"), RuntimeError("anything at all")],
)
def test_a_heartbeat_that_fails_is_logged_without_its_secret_and_never_raises(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    def get(url: str, **kwargs: Any) -> httpx.Response:
        raise failure

    with caplog.at_level(logging.WARNING):
        assert heartbeat.ping(URL, get=get) is False
    assert "heartbeat not sent" in caplog.text
    assert "0b7f7c3e" not in caplog.text


def test_a_heartbeat_refused_by_the_service_is_logged_and_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert heartbeat.ping(URL, get=answering(404, [])) is False
    assert "heartbeat refused" in caplog.text


def test_against_a_real_socket_nothing_listening_is_a_quick_false() -> None:
    # 127.0.0.1:9 (discard) refuses the connection at once: no hang, no exception
    assert heartbeat.ping("https://127.0.0.1:9/ping", timeout_s=1.0) is False
