from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config import embedded_db


class Command(BaseCommand):
    help = "Start, stop or show the embedded PostgreSQL (used when DATABASE_URL is not set)."
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["start", "stop", "status"])

    def handle(self, *args: str, action: str, **options: Any) -> None:
        from django.conf import settings

        if settings.DATABASE_URL:
            raise CommandError(
                "DATABASE_URL is set: Kioku uses that database, not the embedded one."
            )
        if action == "start":
            server = embedded_db.ensure_running()
            self.stdout.write(
                f"Embedded PostgreSQL running (pid {server.pid}, socket {server.socket_dir})."
            )
        elif action == "stop":
            stopped = embedded_db.stop()
            self.stdout.write(
                "Embedded PostgreSQL stopped."
                if stopped
                else "Embedded PostgreSQL was not running."
            )
        else:
            state = embedded_db.status()
            for key, value in state.items():
                self.stdout.write(f"{key}: {value}")
