"""Disk and memory per chunk: loads N chunks with 1536-d halfvec vectors the way the search
benchmark does (bench/search.py: binary COPY, GIN and HNSW built after, VACUUM ANALYZE), then
reports the size of each part of the chunk table and extrapolates to 1,000,000 rows. The figures
of docs/scaling.md.

    uv run python bench/sizes.py [--chunks 100000] [--keep]

Uses its own database `kioku_bench_sizes` (embedded) and drops it at the end unless --keep.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _search_data as data  # noqa: E402
import search  # noqa: E402
from _setup import django_setup  # noqa: E402

PARTS = """
SELECT 'heap (main fork, fillfactor 50)', pg_relation_size(c.oid)
  FROM pg_class c WHERE c.relname = 'knowledge_knowledgechunk'
UNION ALL
SELECT 'TOAST (vectors, long texts) + its index', pg_total_relation_size(c.reltoastrelid)
  FROM pg_class c WHERE c.relname = 'knowledge_knowledgechunk'
UNION ALL
SELECT 'index ' || i.indexrelid::regclass::text, pg_relation_size(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relname = 'knowledge_knowledgechunk'
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = ""
    django_setup("kioku_bench_sizes")
    from django.conf import settings
    from django.db import connection

    from knowledge.embed.providers import get_embedding_provider

    model = get_embedding_provider().model
    plan = data.make_plan(args.chunks, settings.KIOKU_EMBEDDING_DIMENSIONS)
    started = time.perf_counter()
    search.load(plan, model)
    print(f"loaded in {time.perf_counter() - started:.1f} s, load average {search.load_average()}")

    with connection.cursor() as cursor:
        cursor.execute(PARTS)
        parts = cursor.fetchall()
        cursor.execute("SELECT pg_total_relation_size('knowledge_knowledgechunk')")
        total = cursor.fetchone()[0]
    n = args.chunks
    print(f"\n{'part':<58} {'size':>10} {'per row':>9} {'at 1M rows':>11}")
    for name, size in sorted(parts, key=lambda part: -part[1]):
        print(
            f"{name:<58} {size / 2**20:8.1f} MB {size / n:7.0f} B {size / n * 1e6 / 2**30:8.2f} GB"
        )
    print(
        f"{'total':<58} {total / 2**20:8.1f} MB {total / n:7.0f} B {total / n * 1e6 / 2**30:8.2f} GB"
    )

    if not args.keep:
        name = connection.settings_dict["NAME"]
        connection.close()
        with connection._nodb_cursor() as cursor:
            cursor.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        print(f"dropped {name}")


if __name__ == "__main__":
    main()
