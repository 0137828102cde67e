from datetime import UTC, datetime, timedelta, timezone

from vpsbackup.provider.models import Backup, BackupPage, CreatedBackup

DOC_PAGE = {
    "count": 3,
    "results": [
        {"id": 501, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "automatic",
         "status": "completed", "size_mb": 4523, "created_at": "2025-01-16T03:00:00Z",
         "expires_at": "2025-02-16T03:00:00Z", "description": "Automatic daily backup"},
        {"id": 499, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "manual",
         "status": "completed", "size_mb": 4456, "created_at": "2025-01-14T10:30:00Z",
         "expires_at": None, "description": "Pre-update backup"},
        {"id": 495, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "automatic",
         "status": "completed", "size_mb": 4389, "created_at": "2025-01-15T03:00:00Z",
         "expires_at": "2025-02-15T03:00:00Z", "description": "Automatic daily backup"},
    ],
}  # fmt: skip


def test_the_documented_page_parses() -> None:
    page = BackupPage.model_validate(DOC_PAGE)
    assert [b.id for b in page.results] == [501, 499, 495]
    assert page.next is None
    manual = page.results[1]
    assert manual.is_manual and manual.is_completed and manual.expires_at is None
    assert manual.created_at == datetime(2025, 1, 14, 10, 30, tzinfo=UTC)
    assert manual.server_id == 12345


def test_created_backup_keeps_the_message_and_null_size() -> None:
    created = CreatedBackup.model_validate(
        {"id": 502, "server": {"id": 12345, "name": "web-server-01"}, "backup_type": "manual",
         "status": "in_progress", "size_mb": None, "created_at": "2025-01-16T15:45:00Z",
         "expires_at": None, "description": "Pre-deployment backup",
         "message": "Backup is being created."}
    )  # fmt: skip
    assert created.size_mb is None and not created.is_completed
    assert created.message == "Backup is being created."


def _raw(**overrides: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "id": 1, "server": {"id": 7}, "backup_type": "manual", "status": "completed",
        "created_at": "2025-01-16T03:00:00Z",
    }  # fmt: skip
    raw.update(overrides)
    return raw


def test_unknown_fields_are_ignored_and_unknown_statuses_kept() -> None:
    backup = Backup.model_validate(_raw(status="deleting", region="eu", server={"id": 7, "zone": "x"}))
    assert backup.status == "deleting"
    assert not backup.is_completed


def test_timestamps_are_always_aware() -> None:
    naive = Backup.model_validate(_raw(created_at="2025-01-16T03:00:00"))
    assert naive.created_at == datetime(2025, 1, 16, 3, tzinfo=UTC)
    offset = Backup.model_validate(_raw(created_at="2025-01-16T05:00:00.250+02:00"))
    assert offset.created_at.tzinfo == timezone(timedelta(hours=2))
    assert offset.created_at == datetime(2025, 1, 16, 3, 0, 0, 250000, tzinfo=UTC)


def test_an_invalid_items_server_is_read_as_far_as_it_can_be_and_null_means_a_deleted_server() -> None:
    from pydantic import ValidationError

    from vpsbackup.provider.models import Backup, InvalidItem

    def invalid(item: dict[str, object]) -> InvalidItem:
        try:
            Backup.model_validate(item)
        except ValidationError as error:
            return InvalidItem.of(item, error)
        raise AssertionError(f"{item} validated")

    base = {"id": 9, "type": "manual", "status": "completed", "created_at": "2025-01-01T00:00:00Z"}
    assert (invalid({**base, "server": 7}).server_id, invalid({**base, "server": 7}).owner_unknown) == (7, False)
    assert invalid({**base, "server": "7"}).server_id == 7
    assert invalid({**base, "server": None}).owner_unknown is False  # a deleted server's backup
    assert invalid({**base, "server": {"id": "web"}}).owner_unknown is True
    assert invalid({**base, "server": []}).owner_unknown is True
    no_server = {k: v for k, v in base.items()}
    assert invalid(no_server).owner_unknown is True
    bad_time = {**base, "created_at": None, "server": {"id": 7, "name": "web"}}
    assert (invalid(bad_time).server_id, invalid(bad_time).owner_unknown) == (7, False)
