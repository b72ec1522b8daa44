"""The database router (DATABASE_ROUTERS): writes to the primary, reads where core/replicas.py
says. Without replicas it answers nothing and Django uses `default` as it always did."""

from typing import Any

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model

from core.replicas import is_primary_only, read_alias, replica_aliases, write_seen


class ReplicaRouter:
    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        if not replica_aliases():
            return None
        if is_primary_only(model._meta.app_label, model._meta.model_name):
            return DEFAULT_DB_ALIAS
        return read_alias()

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        if not replica_aliases():
            return None
        if not is_primary_only(model._meta.app_label, model._meta.model_name):
            write_seen()
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        # A replica holds the primary's rows: an object read there may point at one read here.
        ours = {DEFAULT_DB_ALIAS, *replica_aliases()}
        if obj1._state.db in ours and obj2._state.db in ours:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        # Replicas follow the primary's WAL; they are never migrated themselves.
        if db in replica_aliases():
            return False
        return None
