"""django-q2 entry points of core: one service call each, safe to run twice."""

from core import backups, throttle


def backup_create() -> dict:
    """The scheduled backup (KIOKU_BACKUP_EVERY_HOURS): a new dump, the oldest pruned."""
    result = backups.backup_create()
    return {
        "path": str(result.backup.path),
        "size_bytes": result.backup.size_bytes,
        "seconds": round(result.seconds, 1),
        "pruned": [str(path) for path in result.pruned],
    }


def rate_windows_prune() -> int:
    """Expired API throttle windows deleted (they are never read again)."""
    return throttle.rate_windows_prune()
