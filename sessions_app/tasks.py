"""django-q2 entry points: load ids, call one service, safe to run twice. Each shares the name of
the service it wraps."""

from sessions_app import archiver


def sessions_archive_idle() -> dict[str, int]:
    return archiver.sessions_archive_idle().summary()


def session_archive(session_id: int) -> str:
    return archiver.session_archive(session_id=session_id).outcome
