from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.models import ApiScope
from core.services import ApiKeyError, api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it once (only its hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiScope.values,
            required=True,
            help="read, write or admin; repeat for several.",
        )

    def handle(self, *args: str, name: str, scope: list[str], **options: Any) -> None:
        try:
            api_key, raw_key = api_key_create(name=name, scopes=scope)
        except ApiKeyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Created API key {api_key.name!r} with scopes {', '.join(api_key.scopes)}."
        )
        self.stdout.write("Send it as 'Authorization: Bearer <key>'. It is shown only now:")
        self.stdout.write(raw_key)
