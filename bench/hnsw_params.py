"""HNSW build parameters: recall@10, latency, build time and index size for each (m,
ef_construction), over several builds of each, on the search benchmark's data.

    uv run python bench/hnsw_params.py [--chunks 100000] [--configs 16:64,16:128,24:128]
                                       [--builds 2] [--queries 100] [--ef 40,80,200]

Why: on this data recall@10 stopped at ~0.93–0.95 whatever ef_search was (issue 19). The queries
that fail land in the wrong one of the data's near-orthogonal topics and never leave it: the
graph, not the search effort, is what limits them, so the build parameters are the lever.
pgvector draws each node's level at random, so one build says little: every configuration is
built `--builds` times and each build reported.

Uses the search benchmark's database and data (`bench/search.py` loads it when missing). Each
build drops the active space's HNSW index and creates it through the service's own SQL
(`vector_index_sql`, `index_build_settings`: KIOKU_INDEX_BUILD_WORKERS parallel workers) with
the configuration's m and ef_construction and `maintenance_work_mem` raised to 2 GB so no build
spills. Recall compares the service's `vector_search()` with the exact top-10 (numpy over the
same float16 vectors, as in bench/search.py) for cluster-space query vectors; latency is the
same calls, timed. At the end the index is built again with the configured KIOKU_HNSW_M /
KIOKU_HNSW_EF_CONSTRUCTION (unless `--keep-last`), so the other benchmarks find what the app
would build.
"""

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _search_data as data  # noqa: E402
from _setup import django_setup  # noqa: E402
from search import (  # noqa: E402
    ExactIndex,
    data_is_loaded,
    load,
    load_average,
    pct,
    recall_by_ef_search,
)


def build(m: int, ef_construction: int) -> tuple[float, int]:
    """Drop and build the active space's HNSW index with these parameters; (seconds, bytes)."""
    from django.conf import settings
    from django.db import connection

    from knowledge.embed.spaces import index_build_settings, space_state, vector_index_sql
    from knowledge.models import KnowledgeChunk

    space = space_state().active
    name = space.index_name(KnowledgeChunk)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {name}")
    saved = (settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION)
    settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION = m, ef_construction
    try:
        sql = vector_index_sql(KnowledgeChunk, space)
    finally:
        settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION = saved
    started = time.perf_counter()
    with index_build_settings() as cursor:
        cursor.execute(sql)
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_relation_size(%s::regclass)", [name])
        size = cursor.fetchone()[0]
    return seconds, size


def measure(warm, queries, truths, *, model: str, ef_values: list[int]) -> dict[int, tuple]:
    """Per ef_search: (mean recall@10, queries below 0.5, p50 ms, p95 ms)."""
    import numpy as np

    recalls, timings = recall_by_ef_search(
        [*warm, *queries], queries, truths, model=model, ef_values=ef_values
    )
    out = {}
    for ef in ef_values:
        p50, p95, _ = pct(timings[ef])
        below = sum(1 for r in recalls[ef] if r < 0.5)
        out[ef] = (float(np.mean(recalls[ef])), below, p50, p95)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument(
        "--configs", default="16:64,16:128,24:128,32:128", help="m:ef_construction,…"
    )
    parser.add_argument("--builds", type=int, default=2, help="builds per configuration")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--ef", default="40,80,200", help="ef_search values measured")
    parser.add_argument("--keep-last", action="store_true", help="leave the last build in place")
    args = parser.parse_args()
    configs = [tuple(int(x) for x in item.split(":")) for item in args.configs.split(",")]
    ef_values = [int(x) for x in args.ef.split(",")]

    os.environ["OPENAI_API_KEY"] = ""  # rows carry the offline model's label, as in search.py
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    django_setup()
    import numpy as np
    from django.conf import settings

    from knowledge.embed.providers import get_embedding_provider

    settings.KIOKU_INDEX_BUILD_MEMORY_MB = max(settings.KIOKU_INDEX_BUILD_MEMORY_MB, 2048)
    model = get_embedding_provider().model
    plan = data.make_plan(args.chunks, settings.KIOKU_EMBEDDING_DIMENSIONS)
    if not data_is_loaded(args.chunks, model):
        load(plan, model)
    # The recall queries of bench/search.py (same generator, same seed), so figures compare.
    rng = np.random.default_rng(data.SEED + 10)
    picks = rng.integers(0, plan.n, args.queries + 20)
    vectors = data.points(plan, plan.chunk_cluster[picks], rng)
    warm, queries = vectors[:20], vectors[20:]
    exact = ExactIndex(plan)
    truths = [exact.search(vector.tolist()) for vector in queries]
    print(
        f"HNSW parameters: {args.chunks:,} chunks, {settings.KIOKU_EMBEDDING_DIMENSIONS}-d "
        f"halfvec, {args.queries} queries, {args.builds} builds per configuration, "
        f"{settings.KIOKU_INDEX_BUILD_WORKERS} parallel build worker(s), "
        f"maintenance_work_mem {settings.KIOKU_INDEX_BUILD_MEMORY_MB} MB, "
        f"load average {load_average()}",
        flush=True,
    )
    header = "| m | ef_construction | build | seconds | MB |" + "".join(
        f" recall@10 ef {ef} (<0.5) | p50 / p95 ms ef {ef} |" for ef in ef_values
    )
    rows = []
    for m, ef_construction in configs:
        for attempt in range(1, args.builds + 1):
            seconds, size = build(m, ef_construction)
            figures = measure(warm, queries, truths, model=model, ef_values=ef_values)
            row = f"| {m} | {ef_construction} | {attempt} | {seconds:.1f} | {size / 2**20:.0f} |"
            for ef in ef_values:
                recall, below, p50, p95 = figures[ef]
                row += f" {recall:.3f} ({below}) | {p50:.1f} / {p95:.1f} |"
            rows.append(row)
            print(row, f" load average {load_average()}", flush=True)
    print()
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    print("\n".join(rows))
    if not args.keep_last:
        seconds, size = build(settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION)
        print(
            f"\nrebuilt with the settings (m = {settings.KIOKU_HNSW_M}, ef_construction = "
            f"{settings.KIOKU_HNSW_EF_CONSTRUCTION}) in {seconds:.1f} s, {size / 2**20:.0f} MB"
        )


if __name__ == "__main__":
    main()
