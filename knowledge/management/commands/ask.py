from django.core.management.base import BaseCommand, CommandError

from core.errors import ApiError
from knowledge.answer.answering import answer_ask
from knowledge.models import SourceType


class Command(BaseCommand):
    help = "Ask the knowledge base a question; prints the answer, its citations and the mode."

    def add_arguments(self, parser):
        parser.add_argument("question")
        parser.add_argument("--top-k", type=int, default=None)
        parser.add_argument(
            "--type", dest="source_types", action="append", choices=SourceType.values
        )

    def handle(self, *args, question, top_k, source_types, **options):
        filters = {"source_type": source_types} if source_types else {}
        try:
            answer = answer_ask(question=question, top_k=top_k, filters=filters, channel="cli")
        except ApiError as exc:
            raise CommandError(f"[{exc.code}] {exc.message}") from None
        mode = "offline, extractive" if answer.mode == "offline" else f"online, {answer.model}"
        self.stdout.write(
            f"Answer #{answer.pk} ({mode}, {answer.get_outcome_display()}, {answer.latency_ms} ms)\n"
        )
        self.stdout.write(answer.answer)
        cited = [source for source in answer.sources.all() if source.cited]
        if cited:
            self.stdout.write("\nCitations:")
        for source in cited:
            self.stdout.write(
                f"  [{source.rank}] {source.source_title} (chunk {source.chunk_id}, "
                f"score {source.score:.4f})"
            )
