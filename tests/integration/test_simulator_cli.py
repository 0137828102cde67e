"""`make simulator` as a user runs it: the demo fleet, the token and a curl line that works; a busy port is one line."""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "devtools.simulator", "--quiet", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_it_starts_with_the_demo_fleet_and_prints_a_working_curl_line() -> None:
    process = start("--port", "0")
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(5)]
        assert lines[0].startswith("VPS API simulator at http://127.0.0.1:")
        assert lines[1] == "token: dev-token"
        assert "12345 (web-server-01)" in lines[2]
        assert lines[3].startswith("try:")
        # When the printed curl line is run (its header and URL, through httpx)
        words = shlex.split(lines[3].removeprefix("try:"))
        assert words[:3] == ["curl", "-s", "-H"]
        name, value = words[3].split(": ", 1)
        answer = httpx.get(words[4], headers={name: value}, timeout=10)
        # Then it lists the demo server's backups
        assert answer.status_code == 200
        assert answer.json()["count"] > 0
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_busy_port_is_one_clear_line_and_exit_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start("--port", str(port))
        out, err = process.communicate(timeout=30)
    assert process.returncode == 1
    assert out == ""
    (line,) = err.strip().splitlines()
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert "PORT=" in line
