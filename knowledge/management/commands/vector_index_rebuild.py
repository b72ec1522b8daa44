from django.core.management.base import BaseCommand

from knowledge.embed.spaces import hnsw_options, vector_index_graphs, vector_indexes_rebuild


class Command(BaseCommand):
    help = (
        "After changing KIOKU_HNSW_M or KIOKU_HNSW_EF_CONSTRUCTION: rebuild the vector indexes "
        "built with another graph, one at a time, while search keeps using the old one "
        "(REINDEX CONCURRENTLY). --check only lists them; --all rebuilds every vector index."
    )

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="list, do not rebuild")
        parser.add_argument("--all", action="store_true", help="rebuild even matching indexes")

    def handle(self, *args, check: bool = False, all: bool = False, **options):
        self.stdout.write(f"The settings ask for: {hnsw_options()}")
        for name, graph in vector_index_graphs().items():
            self.stdout.write(f"  {name}: built with {hnsw_options(graph)}")
        if check:
            return
        rebuilt = vector_indexes_rebuild(every=all)
        for result in rebuilt:
            self.stdout.write(f"Rebuilt {result.index} in {result.seconds:.1f} s.")
        if not rebuilt:
            self.stdout.write("Every vector index already has that graph.")
