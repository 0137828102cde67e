"""``make demo`` writes bold headings on a terminal only: piped or with ``NO_COLOR``, no ANSI codes."""

from __future__ import annotations

import io

import pytest

from devtools.demo import bold


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_bold_headings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", _Terminal())

    assert bold("1. a deploy") == "\033[1m1. a deploy\033[0m"


def test_no_color_on_a_terminal_and_a_pipe_get_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr("sys.stdout", _Terminal())
    assert bold("1. a deploy") == "1. a deploy"

    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert bold("1. a deploy") == "1. a deploy"
