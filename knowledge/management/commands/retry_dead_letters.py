from django.core.management.base import BaseCommand

from knowledge.embed.pipeline import dead_letters_retry


class Command(BaseCommand):
    help = "Give dead-letter chunks a fresh set of embedding attempts (their error history stays)."

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="Only these chunk ids (default: all).")

    def handle(self, *args, ids: list[int], **options):
        count = dead_letters_retry(ids=ids or None)
        self.stdout.write(f"Queued {count} dead letter(s) for embedding.")
