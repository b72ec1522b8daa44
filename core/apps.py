import os

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Kioku core (API keys, health, pages)"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_migrate, post_save

        from core import checks  # noqa: F401  (registers the system checks)
        from core.database import connection_pools_forget
        from core.models import ApiKey
        from core.permissions import groups_sync_after_migrate
        from core.services import api_key_cache_forget

        # Keys changed or deleted (admin, API) stop being trusted at once: in this process, and
        # in every process when the cache is Redis.
        def forget_keys(*, instance: ApiKey, **_: object) -> None:
            api_key_cache_forget(key_hash=instance.key_hash)

        post_save.connect(forget_keys, sender=ApiKey, weak=False, dispatch_uid="api_key_saved")
        post_delete.connect(forget_keys, sender=ApiKey, weak=False, dispatch_uid="api_key_deleted")
        # django-q2 forks its workers from the cluster process: each must have its own pool.
        os.register_at_fork(after_in_child=connection_pools_forget)
        # The groups follow core/permissions.py after every migrate (and a test database flush).
        post_migrate.connect(groups_sync_after_migrate, dispatch_uid="groups_sync")
