"""Every django-q2 schedule Kioku runs, declared in code and synced by `manage.py sync_schedules`
(also run by `./scripts/run`). Sweepers use catch_up=False (set globally in Q_CLUSTER) so a
worker that was down does not replay every missed run."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    func: str
    minutes: int
    # First run one period after the schedule is created, not at the worker's first start (a
    # daily evaluation would otherwise repeat the demo's first run).
    defer_first_run: bool = False


# Off unless KIOKU_BACKUP_EVERY_HOURS is set (schedules_declared).
BACKUP_SCHEDULE_NAME = "core: back up the database"

SCHEDULES = [
    # Sweeper: retries after backoff, leases that expired, anything ingestion did not enqueue.
    ScheduleSpec("knowledge: embed pending rows", "knowledge.tasks.embedding_run", 1),
    ScheduleSpec("knowledge: re-fetch due web sources", "knowledge.tasks.web_sources_refresh", 15),
    # After a bulk load, before autovacuum: stale statistics make the planner skip the HNSW and
    # GIN indexes. Cheap when nothing changed (one read of pg_stat_user_tables).
    ScheduleSpec(
        "knowledge: refresh statistics after bulk loads",
        "knowledge.tasks.analyze_if_bulk_loaded",
        10,
    ),
    ScheduleSpec("sessions: archive idle sessions", "sessions_app.tasks.sessions_archive_idle", 5),
    # The API throttle's windows on PostgreSQL: one row per key and period, read for two periods.
    ScheduleSpec("core: prune API rate windows", "core.tasks.rate_windows_prune", 60),
    # Daily evaluation of the sets marked for it: quality trends without anyone pressing Run.
    ScheduleSpec(
        "quality: evaluate scheduled sets",
        "quality.tasks.eval_runs_scheduled",
        1440,
        defer_first_run=True,
    ),
]


def schedules_declared() -> list[ScheduleSpec]:
    """SCHEDULES, and those a setting switches on (absent while it is off, so a sync deletes
    them again)."""
    from django.conf import settings

    declared = list(SCHEDULES)
    if settings.KIOKU_BACKUP_EVERY_HOURS:
        # First run at the sync that switches it on: a backup right away, then every period.
        declared.append(
            ScheduleSpec(
                BACKUP_SCHEDULE_NAME,
                "core.tasks.backup_create",
                settings.KIOKU_BACKUP_EVERY_HOURS * 60,
            )
        )
    return declared


def schedules_sync() -> list[str]:
    """Create or update the declared schedules; delete Kioku schedules no longer declared."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone
    from django_q.models import Schedule

    names = []
    for spec in schedules_declared():
        Schedule.objects.update_or_create(
            name=spec.name,
            defaults={
                "func": spec.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
            },
            create_defaults={
                "func": spec.func,
                "schedule_type": Schedule.MINUTES,
                "minutes": spec.minutes,
                "repeats": -1,
                "next_run": timezone.now()
                + timedelta(minutes=spec.minutes if spec.defer_first_run else 0),
            },
        )
        names.append(spec.name)
    ours = Q()
    for app in ("knowledge.", "sessions_app.", "dispatch.", "quality.", "core."):
        ours |= Q(func__startswith=app)
    Schedule.objects.filter(ours).exclude(name__in=names).delete()
    return names
