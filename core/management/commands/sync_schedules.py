from typing import Any

from django.core.management.base import BaseCommand

from core.schedules import schedules_sync


class Command(BaseCommand):
    help = "Create/update the django-q2 schedules declared in core/schedules.py."

    def handle(self, *args: str, **options: Any) -> None:
        for name in schedules_sync():
            self.stdout.write(f"schedule: {name}")
