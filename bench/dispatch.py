"""Diagnosis layer 1 at scale: the one SQL statement over 50,000 (or --cards) resolved cards.

Loads N resolved problem cards with 1536-d vectors from bench/_search_data.py's clustered model
(brands by source: Akane ~1 %, Benkei ~5 %, Chidori ~10 % of the cards, the rest shared by four
others; a model per brand and cluster family; error codes on a third), builds the card HNSW
index (KIOKU_HNSW_M, KIOKU_HNSW_EF_CONSTRUCTION) and runs fresh query points through
`dispatch.diagnosis.similar_cases` — the production statement — printing p50/p95 latency and
recall@10 of its index-served candidates against an exact scan, with and without the
same-brand/model preference.

    uv run python bench/dispatch.py                    # 50,000 cards (loads once, then reuses)
    uv run python bench/dispatch.py --cards 200000 --reload

Runs in its own database (kioku_bench_dispatch); nothing is timed as pass/fail.
"""

import argparse
import hashlib
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _search_data as data  # noqa: E402
from bench._setup import django_setup  # noqa: E402

MODEL = "bench-clustered"
DIMS = 1536
RECALL_K = 10
MARKER = "bench-dispatch-marker"


def load(n: int) -> None:
    from django.db import connection

    from dispatch.models import ProblemCard
    from knowledge.embed.spaces import space_reset_for_import, vector_index_sql

    print(f"loading {n:,} resolved cards …", flush=True)
    started = time.perf_counter()
    plan = data.make_plan(n, DIMS)
    vectors = data.chunk_vectors(plan)
    print(f"  generated {n:,} vectors in {time.perf_counter() - started:.1f} s", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE dispatch_problemcard RESTART IDENTITY CASCADE")
        cursor.execute("TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource CASCADE")
    space = space_reset_for_import(model=MODEL, dimensions=DIMS)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {space.index_name(ProblemCard)}")
    started = time.perf_counter()
    columns = (
        "customer_name, brand, brand_key, lock_model, model_key, symptom, error_code, "
        "description, status, diagnosis, resolution, root_cause, parts_used, is_case_enabled, "
        "search_text, search_text_hash, version, created_at, updated_at, resolved_at, "
        "embedding, embedding_model, embedding_alt_model, embedding_text_hash, embedding_status, "
        "embedding_attempts, embedding_last_error, embedding_errors, address, service_area, "
        "customer_phone, customer_line_user_id"
    )
    now = _now()
    buffer = io.StringIO()
    for i in range(n):
        brand = plan.source_brands[int(plan.chunk_source[i])]
        cluster = int(plan.chunk_cluster[i])
        model = f"{brand[:2].upper()}-{cluster % 7}00"
        code = f"E-{cluster % 60:02d}" if i % 3 == 0 else ""
        text = f"{brand} {model}\nOther\n{code}\nBench case {i} in cluster {cluster}."
        digest = hashlib.sha256(text.encode()).hexdigest()
        vector = "[" + ",".join(f"{x:.5g}" for x in vectors[i]) + "]"
        buffer.write(
            "\t".join(
                [
                    f"Bench {i}",
                    brand,
                    brand.lower(),
                    model,
                    model.lower().replace("-", ""),
                    "other",
                    code,
                    f"Bench case {i}.",
                    "resolved",
                    "{}",
                    "Bench fix.",
                    "",
                    "",
                    "t",
                    text.replace("\n", "\\n"),
                    digest,
                    "1",
                    now,
                    now,
                    now,
                    vector,
                    MODEL,
                    "",
                    digest,
                    "done",
                    "0",
                    "",
                    "[]",
                    "",
                    "",
                    "",
                    "",
                ]
            )  # fmt: skip
            + "\n"
        )
    with connection.cursor() as cursor:
        sql = f"COPY dispatch_problemcard ({columns}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            copy.write(buffer.getvalue())
    print(f"  COPY: {n / (time.perf_counter() - started):,.0f} rows/s", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute(vector_index_sql(ProblemCard, space))
        cursor.execute("VACUUM ANALYZE dispatch_problemcard")
    # The marker goes in last: an interrupted load is never mistaken for a complete one.
    from knowledge.models import KnowledgeSource

    KnowledgeSource.objects.create(
        source_type="document", title=MARKER, uri=f"{MARKER}://{n}", enabled=False, status="ready"
    )
    print(f"  HNSW build + ANALYZE: {time.perf_counter() - started:.1f} s", flush=True)


def _now() -> str:
    from django.utils import timezone

    return timezone.now().isoformat()


def is_loaded(n: int) -> bool:
    from knowledge.models import KnowledgeSource

    return KnowledgeSource.objects.filter(uri=f"{MARKER}://{n}").exists()


def exact_top(vector: np.ndarray, k: int) -> list[int]:
    from django.db import connection

    from knowledge.embed.spaces import halfvec_literal

    literal = halfvec_literal(vector)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_indexscan = off")
        cursor.execute(
            f"SELECT id FROM dispatch_problemcard ORDER BY embedding::halfvec({DIMS}) <=> "
            f"%s::halfvec({DIMS}) LIMIT %s",
            [literal, k],
        )
        found = [row[0] for row in cursor.fetchall()]
        cursor.execute("RESET enable_indexscan")
    return found


def run(queries: int, prefer: bool) -> tuple[list[float], list[float]]:
    from django.conf import settings

    from dispatch.diagnosis import similar_cases
    from dispatch.models import ProblemCard
    from knowledge.embed.spaces import space_state

    plan = data.make_plan(1000, DIMS)
    rng = np.random.default_rng(7)
    clusters = rng.integers(data.CLUSTERS, size=queries)
    points = data.points(plan, clusters, rng)
    space = space_state().active
    settings.KIOKU_CASE_CANDIDATES = RECALL_K
    latencies, recalls = [], []
    brands = ["akane", "benkei", "chidori", "daikoku"]
    for i, vector in enumerate(points):
        card = ProblemCard(pk=0, brand_key=brands[i % 4], model_key="", error_code="")
        started = time.perf_counter()
        found, _ = similar_cases(
            card=card,
            vector=vector.tolist(),
            space=space,
            threshold=-1.0,
            limit=RECALL_K,
            prefer_same_lock=prefer,
        )
        latencies.append((time.perf_counter() - started) * 1000)
        if i < 100:
            exact = set(exact_top(vector, RECALL_K))
            recalls.append(len(exact & {case.card_id for case in found}) / RECALL_K)
    return latencies, recalls


def api_diagnose(requests: int) -> list[float]:
    """POST /problem-cards with "diagnose": true through gunicorn, the provider being the
    OpenAI-compatible stub in its own process (embedding the card in the index's space, and the
    chat model): report, layer 1 over the loaded cases, layer 2 over the (empty) manuals, layer 3
    with matching. Milliseconds per request."""
    from bench._http import ApiClient, api_server, wait_ready
    from bench._stub_process import RemoteStub
    from core.services import api_key_create

    _, key = api_key_create(name=f"bench-dispatch-{time.time_ns()}", scopes=["write"])
    stub = RemoteStub(latency=0)
    report = {
        "brand": "Benkei",
        "model": "BE-300",
        "symptom": "error_code",
        "error_code": "E-21",
        "description": "The keypad shows E-21 and the bolt stops halfway.",
        "customer": {"name": "Bench", "service_area": "Taipei Da'an"},
        "diagnose": True,
    }
    env = {"OPENAI_API_KEY": stub.api_key, "OPENAI_BASE_URL": stub.base_url}
    try:
        with api_server(env) as (process, port):
            client = ApiClient(port, key)
            wait_ready(process, client, "/api/v1/problem-cards", report)
            timings = []
            for _ in range(requests):
                started = time.perf_counter()
                status, body = client.post("/api/v1/problem-cards", report)
                timings.append((time.perf_counter() - started) * 1000)
                if status != 201:
                    raise RuntimeError(f"API answered {status}: {body}")
            client.close()
            return timings
    finally:
        stub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cards", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--reload", action="store_true")
    parser.add_argument("--api-requests", type=int, default=200, help="0 skips the API run")
    args = parser.parse_args()
    django_setup("kioku_bench_dispatch")
    if args.reload or not is_loaded(args.cards):
        load(args.cards)
    print(f"\n{args.cards:,} resolved cards, {DIMS}-d, {args.queries} queries (recall on 100)")
    for prefer in (False, True):
        run(20, prefer)  # warm the cache and the connection
        latencies, recalls = run(args.queries, prefer)
        q = statistics.quantiles(latencies, n=100)
        print(
            f"  layer 1 {'with' if prefer else 'without'} brand/model preference: "
            f"p50 {q[49]:.2f} ms  p95 {q[94]:.2f} ms  recall@{RECALL_K} {np.mean(recalls):.3f}"
        )
    if args.api_requests:
        timings = api_diagnose(args.api_requests)
        q = statistics.quantiles(timings, n=100)
        print(
            f"  POST /problem-cards with diagnose, through gunicorn and the stub, "
            f"{args.api_requests} requests: p50 {q[49]:.1f} ms  p95 {q[94]:.1f} ms"
        )


if __name__ == "__main__":
    main()
