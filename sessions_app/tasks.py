"""django-q2 entry points: load ids, call one service, safe to run twice."""

from sessions_app.archiver import session_archive, sessions_archive_idle


def sessions_archive_idle_task() -> dict[str, int]:
    return sessions_archive_idle().summary()


def session_archive_task(session_id: int) -> str:
    return session_archive(session_id=session_id).outcome
