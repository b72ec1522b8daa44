import argparse

from django.core.management.base import BaseCommand, CommandError

from knowledge.models import SourceType
from knowledge.search.base import MODES, SearchError
from knowledge.search.service import chunk_search


class Command(BaseCommand):
    help = "Search the knowledge base from the command line."

    def add_arguments(self, parser):
        parser.add_argument("query")
        parser.add_argument("--mode", choices=MODES, default="hybrid")
        parser.add_argument("--top-k", type=int, default=5)
        parser.add_argument(
            "--type", dest="source_types", action="append", choices=SourceType.values
        )
        parser.add_argument("--min-similarity", type=float, default=None)
        parser.add_argument(
            "--rerank",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Rerank with the configured reranker (default: when KIOKU_RERANKER is set).",
        )
        parser.add_argument("--json", action="store_true", help="Print the raw result as JSON.")

    def handle(self, *args, query, mode, top_k, source_types, min_similarity, rerank, **options):
        filters = {"source_type": source_types} if source_types else {}
        try:
            result = chunk_search(
                query,
                mode=mode,
                top_k=top_k,
                filters=filters,
                min_similarity=min_similarity,
                rerank=rerank,
            )
        except SearchError as exc:
            raise CommandError(f"[{exc.code}] {exc.message}") from None
        if options["json"]:
            self._print_json(result)
            return
        label = "offline embeddings" if result.offline else result.model
        if result.reranker:
            label += f", reranked by {result.reranker}"
        self.stdout.write(
            f"{len(result.hits)} result(s), {result.mode}, {label}, {result.took_ms:.0f} ms"
        )
        if result.degraded:
            self.stdout.write(self.style.WARNING(f"degraded: {result.degraded_reason}"))
        for n, hit in enumerate(result.hits, 1):
            ranks = f"vector #{hit.vector_rank or '-'} keyword #{hit.keyword_rank or '-'}"
            if hit.rerank_score is not None:
                ranks += f" rerank {hit.rerank_score:.4f}"
            where = " › ".join(hit.location.get("heading_path") or [])
            self.stdout.write(
                f"\n{n}. [{hit.score:.4f}] {hit.source_title} ({hit.source_type}) {ranks}"
            )
            if where:
                self.stdout.write(f"   {where}")
            self.stdout.write("   " + " ".join(hit.content.split())[:240])

    def _print_json(self, result) -> None:
        import dataclasses
        import json as jsonlib

        self.stdout.write(jsonlib.dumps(dataclasses.asdict(result), ensure_ascii=False, indent=2))
