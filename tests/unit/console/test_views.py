"""The console's pure pieces: ages, deployment ids from markers, and the packaging list."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from vpsbackup.markers import describe_with_marker
from vpsbackup.records import Hold
from vpsbackup_console.views import age, deployment_of, holds_view

ROOT = Path(__file__).resolve().parents[3]
NOW = datetime(2025, 1, 16, 12, 0, tzinfo=UTC)


def test_age_is_coarse_enough_to_read() -> None:
    assert age(NOW, NOW + timedelta(seconds=5)) == "0s"
    assert age(NOW, NOW - timedelta(seconds=42)) == "42s"
    assert age(NOW, NOW - timedelta(hours=3, minutes=20, seconds=9)) == "3h20m"
    assert age(NOW, NOW - timedelta(days=17, hours=4, minutes=59)) == "2w3d4h"


def test_the_deployment_id_comes_back_from_the_marker() -> None:
    assert deployment_of(describe_with_marker("Release 2.3", "gh 88/1")) == "gh 88/1"
    assert deployment_of("Pre-update backup") is None
    assert deployment_of(None) is None
    assert deployment_of(describe_with_marker("x", "d" * 200)).startswith("sha256:")  # type: ignore[union-attr]


def test_holds_view_shows_holds_in_force_soonest_first() -> None:
    holds = [
        Hold(backup_id=1, server_id=1, until=NOW + timedelta(days=2), kind="manual", placed_by="alice"),
        Hold(backup_id=2, server_id=2, until=NOW + timedelta(hours=1)),
        Hold(backup_id=3, server_id=1, until=NOW - timedelta(seconds=1)),
    ]
    assert [h["backup_id"] for h in holds_view(holds, NOW)["holds"]] == [2, 1]
    assert [h["backup_id"] for h in holds_view(holds, NOW, server_id=1)["holds"]] == [1]


def test_every_package_folder_is_in_the_install() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    folders = {
        "vpsbackup": ROOT / "layers/shared/vpsbackup",
        "vpsbackup_console": ROOT / "console/vpsbackup_console",
        "vpsbackup_local": ROOT / "console/vpsbackup_local",
    }
    found = set()
    for name, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder)
            found.add(".".join([name, *relative.parts]))
    assert set(config["packages"]) == found
    assert config["package-dir"] == {name: str(path.relative_to(ROOT)) for name, path in folders.items()}
