from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.errors import ApiError
from sessions_app.archiver import session_archive, sessions_archive_idle
from sessions_app.models import ChatSession


class Command(BaseCommand):
    help = (
        "Archive chat sessions idle longer than KIOKU_SESSION_IDLE_MINUTES into knowledge "
        "(or the sessions named by --key, idle or not)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key", action="append", default=[], help="Archive this session now.")
        parser.add_argument("--limit", type=int, default=None, help="At most this many sessions.")

    def handle(self, *args: str, key: list[str], limit: int | None, **options: Any) -> None:
        if key:
            for session_key in key:
                session = ChatSession.objects.filter(key=session_key).first()
                if session is None:
                    raise CommandError(f"No session with key {session_key!r}.")
                try:
                    outcome = session_archive(session_id=session.pk)
                except ApiError as exc:
                    raise CommandError(f"{exc.code}: {exc.message}") from exc
                detail = f" ({outcome.reason})" if outcome.reason else ""
                self.stdout.write(f"{session_key}: {outcome.outcome}{detail}")
            return
        run = sessions_archive_idle(limit=limit)
        for outcome in run.outcomes:
            detail = f" ({outcome.reason})" if outcome.reason else ""
            self.stdout.write(f"session {outcome.session_id}: {outcome.outcome}{detail}")
        summary = ", ".join(f"{name} {count}" for name, count in run.summary().items())
        self.stdout.write(self.style.SUCCESS(f"Done: {summary}."))
