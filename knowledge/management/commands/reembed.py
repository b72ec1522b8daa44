from django.core.management.base import BaseCommand

from knowledge.embedding import embedding_queue_other_models


class Command(BaseCommand):
    help = (
        "After changing KIOKU_EMBEDDING_MODEL: queue every chunk embedded by another model. "
        "Search keeps answering while the worker re-embeds them."
    )

    def handle(self, *args, **options):
        self.stdout.write(f"Queued {embedding_queue_other_models()} chunk(s) for re-embedding.")
