from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.backups import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Back up the database with pg_dump (custom format) into KIOKU_BACKUP_DIR, then delete"
        " the oldest backups beyond KIOKU_BACKUP_KEEP."
    )

    def handle(self, *args: str, **options: Any) -> None:
        try:
            result = backup_create()
        except BackupError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        backup = result.backup
        self.stdout.write(
            f"Backed up to {backup.path} ({backup.size_bytes:,} bytes) in {result.seconds:.1f} s."
        )
        for path in result.pruned:
            self.stdout.write(f"Deleted the old backup {path}.")
