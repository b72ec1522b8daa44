from django.core.management.base import BaseCommand

from knowledge.embed.spaces import embedding_switch_start


class Command(BaseCommand):
    help = (
        "After changing KIOKU_EMBEDDING_MODEL or KIOKU_EMBEDDING_DIMENSIONS: re-embed every row "
        "into the second vector slot. Search keeps using the current vectors until all new ones "
        "exist, then switches. Safe to run again (it reports progress)."
    )

    def handle(self, *args, **options):
        report = embedding_switch_start()
        self.stdout.write(report.message)
        if report.queued:
            self.stdout.write(f"Queued {report.queued} row(s) for re-embedding.")
