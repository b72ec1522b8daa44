"""Ingestion benchmark: chunking speed, bulk database write, and vectors loaded by binary COPY.

    uv run python bench/ingest.py [--mb 20] [--vectors 50000]

Uses the database `kioku_bench` (embedded) or DATABASE_URL; its knowledge tables are emptied first.
Targets on a 2-core machine: chunking ≥ 2 MB/s, database write ≥ 10,000 chunks/s,
binary COPY of vectors ≥ 30,000 rows/s.
"""

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor

from _setup import django_setup

EN_WORDS = (
    "lock battery motor clutch door strike plate firmware keypad fingerprint sensor deadbolt "
    "install replace check torque screw cable connector module reset factory code alarm tamper "
    "technician customer visit warranty bolt latch handle cylinder override emergency terminal"
).split()
ZH = "電子鎖電池沒電指紋辨識門片天地鉤馬達離合器更換韌體更新錯誤代碼維修技師到府服務保固緊急開門機械鑰匙"
JA = "電子錠電池切れ暗証番号施錠解錠非常用キー初期設定交換修理点検エラーコード取付扉サムターン"


def generate_document(rng: random.Random, target_bytes: int) -> str:
    parts: list[str] = [f"# Manual {rng.randrange(10**6)}\n"]
    size = 0
    while size < target_bytes:
        parts.append(f"\n## Section {rng.randrange(1000)}\n")
        for _ in range(rng.randint(2, 6)):
            roll = rng.random()
            if roll < 0.6:
                sentences = [
                    " ".join(rng.choices(EN_WORDS, k=rng.randint(8, 20))).capitalize() + "."
                    for _ in range(rng.randint(2, 6))
                ]
                paragraph = " ".join(sentences) + f" Error E-{rng.randint(1, 50):02d}."
            elif roll < 0.8:
                paragraph = "".join(
                    "".join(rng.choices(ZH, k=rng.randint(10, 30))) + "。"
                    for _ in range(rng.randint(2, 5))
                )
            else:
                paragraph = "".join(
                    "".join(rng.choices(JA, k=rng.randint(10, 30))) + "。"
                    for _ in range(rng.randint(2, 5))
                )
            parts.append(paragraph + "\n\n")
            size += len(paragraph.encode())
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--doc-kb", type=int, default=200, help="size of each generated document")
    parser.add_argument("--vectors", type=int, default=50_000)
    parser.add_argument("--hnsw", action="store_true", help="also time the HNSW build (slow)")
    args = parser.parse_args()

    django_setup()
    import numpy as np
    from django.conf import settings
    from django.db import connection, transaction

    from knowledge.embed.spaces import (
        space_reset_for_import,
        space_state,
        vector_index_sql,
        vector_indexes_sync,
    )
    from knowledge.ingest.chunk_copy import (
        ChunkRow,
        chunk_indexes_deferred,
        chunks_copy,
        chunks_with_vectors_copy,
    )
    from knowledge.ingest.chunking import chunk_sections, config_for_source_type
    from knowledge.ingest.ingestion import content_hash
    from knowledge.ingest.parsers import extract_text
    from knowledge.models import EmbeddingSpaceState, KnowledgeChunk, KnowledgeSource
    from knowledge.tokens import get_token_counter

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource RESTART IDENTITY CASCADE"
        )

    rng = random.Random(42)
    target = int(args.mb * 1024 * 1024)
    documents = []
    total_bytes = 0
    while total_bytes < target:
        text = generate_document(rng, args.doc_kb * 1024)
        documents.append(text)
        total_bytes += len(text.encode())
    counter = get_token_counter()
    print(
        f"corpus: {len(documents)} documents, {total_bytes / 1e6:.1f} MB, token counter: {counter.name}"
    )

    # 1. Extraction + chunking (pure Python, one core).
    config = config_for_source_type("manual")
    started = time.perf_counter()
    drafts_per_doc = []
    for text in documents:
        document = extract_text(text, format="markdown")
        drafts_per_doc.append(chunk_sections(document.sections, config=config, counter=counter))
    chunk_seconds = time.perf_counter() - started
    n_chunks = sum(len(d) for d in drafts_per_doc)
    print(
        f"chunking: {total_bytes / 1e6 / chunk_seconds:.2f} MB/s, {n_chunks / chunk_seconds:,.0f} chunks/s "
        f"({n_chunks:,} chunks in {chunk_seconds:.1f} s)"
    )

    # 2. Database write of those chunks through the bulk COPY path used by ingestion. The keyword
    # column (tsvector with CJK bigrams) is computed by PostgreSQL during the COPY.
    sources = KnowledgeSource.objects.bulk_create(
        [
            KnowledgeSource(source_type="manual", title=f"Bench {i}", uri=f"bench://{i}")
            for i in range(len(documents))
        ]
    )
    rows = [
        ChunkRow(
            source_id=source.pk,
            ordinal=ordinal,
            content=draft.content,
            content_hash=content_hash(draft.content),
            token_count=draft.token_count,
            location=draft.location,
        )
        for source, drafts in zip(sources, drafts_per_doc, strict=True)
        for ordinal, draft in enumerate(drafts)
    ]
    chunk_bytes = sum(len(row.content.encode()) for row in rows)

    def report(label: str, seconds: float, count: int) -> None:
        print(
            f"{label}: {count / seconds:,.0f} chunks/s, {chunk_bytes * count / len(rows) / 1e6 / seconds:.2f} MB/s "
            f"({count:,} chunks in {seconds:.2f} s)"
        )

    def timed_copy(batch) -> float:
        started = time.perf_counter()
        with transaction.atomic():
            chunks_copy(batch)
        return time.perf_counter() - started

    def clear() -> None:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE knowledge_knowledgechunk CASCADE")

    report("database write, indexes maintained (routine ingestion)", timed_copy(rows), len(rows))
    clear()
    started = time.perf_counter()
    with chunk_indexes_deferred():
        with transaction.atomic():
            chunks_copy(rows)
    report(
        "database write, indexes rebuilt after (bulk import)",
        time.perf_counter() - started,
        len(rows),
    )
    clear()

    def parallel_copy(batch) -> None:
        try:
            with transaction.atomic():
                chunks_copy(batch)
        finally:
            connection.close()

    started = time.perf_counter()
    with chunk_indexes_deferred():
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(parallel_copy, [rows[0::2], rows[1::2]]))
    report(
        "database write, 2 connections, indexes rebuilt after",
        time.perf_counter() - started,
        len(rows),
    )

    # 3. Vectors by binary COPY (bulk import path), HNSW index built afterwards.
    dims = settings.KIOKU_EMBEDDING_DIMENSIONS
    n = args.vectors
    source = KnowledgeSource.objects.create(
        source_type="document", title="Vectors", uri="bench://vectors"
    )
    vector_rows = [
        ChunkRow(
            source_id=source.pk,
            ordinal=i,
            content=f"vector row {i}",
            content_hash=f"{i:064x}",
            token_count=3,
            location={},
        )
        for i in range(n)
    ]
    vectors = np.random.default_rng(7).standard_normal((n, dims), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    space = space_reset_for_import(model="bench", dimensions=dims)
    hnsw = vector_index_sql(KnowledgeChunk, space)
    started = time.perf_counter()
    with chunk_indexes_deferred(["chunk_search_vector_gin"]):
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {space.index_name(KnowledgeChunk)}")
        with transaction.atomic():
            chunks_with_vectors_copy(vector_rows, vectors, model="bench")
        copy_seconds = time.perf_counter() - started
    print(
        f"vectors by binary COPY ({dims}-d halfvec, indexes off): {n / copy_seconds:,.0f} rows/s ({n:,} in {copy_seconds:.2f} s)"
    )
    with connection.cursor() as cursor:
        if args.hnsw:
            started = time.perf_counter()
            cursor.execute("SET maintenance_work_mem = '2GB'")
            cursor.execute(hnsw)
            print(
                f"HNSW index build afterwards: {time.perf_counter() - started:.1f} s for {n:,} vectors"
            )
        # Leave the bench database empty, with every index in place.
        cursor.execute(
            "TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource RESTART IDENTITY CASCADE"
        )
    EmbeddingSpaceState.objects.all().delete()
    vector_indexes_sync(space_state())


if __name__ == "__main__":
    main()
