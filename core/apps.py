from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Kioku core (API keys, health, pages)"

    def ready(self) -> None:
        from core import checks  # noqa: F401  (registers the pgvector check)
