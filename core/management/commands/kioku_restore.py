from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.backups import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a kioku_backup file into an empty database (the configured one, or --database"
        " NAME on the same server), in one transaction."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="A .dump file written by kioku_backup.")
        parser.add_argument(
            "--database",
            dest="target",
            default="",
            help="Restore into this database on the same server (it must exist).",
        )
        parser.add_argument(
            "--clean",
            action="store_true",
            help="Restore into a database that holds tables: drop the dump's objects first.",
        )

    def handle(self, *args: str, path: Path, target: str, clean: bool, **options: Any) -> None:
        try:
            result = backup_restore(path=path, database=target or None, clean=clean)
        except BackupError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from exc
        self.stdout.write(
            f"Restored {path} into {result.database!r} in {result.seconds:.1f} s."
            " Run `manage.py migrate` if the backup is older than this code."
        )
