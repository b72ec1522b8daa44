"""Embedding pipeline benchmark against the local OpenAI-compatible stub (real `openai` client).

    uv run python bench/embed.py [--chunks 20000] [--latency 0.1] [--concurrency 4] [--tpm 1000000]

The stub enforces the real limits (2,048 inputs, 8,192 tokens per input, 300,000 tokens per
request) and, for the rate-limit part, a tokens-per-minute limit answered with 429. Prints
chunks/s, requests and retries for: the first full embedding (HNSW index dropped and rebuilt
after vs. kept and updated row by row), an incremental run with the index present, a TPM-limited
run, and a naive one-request-per-chunk loop for the ratio. Uses the `kioku_bench_embed` database.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import counted_chunk_rows, django_setup  # noqa: E402


def chunk_texts(*, seed: int, words_per_chunk: int = 600):
    """Endless manual-like chunks: 50 topics over the search benchmark's 4,000-word vocabulary.
    Each chunk mixes its topic's words with common ones (Zipf-distributed), so embeddings
    cluster by topic the way real ones do, instead of 20,000 near-copies of one text (on which
    HNSW builds slowly: every distance is about the same)."""
    import numpy as np
    from _search_data import _vocabulary  # the search benchmark's words

    rng = np.random.default_rng(seed)
    vocabulary = _vocabulary(rng)
    # Every twelfth word or so ends a sentence.
    words = np.array(vocabulary + [f"{word}." for word in vocabulary])
    # Steeper than the search benchmark's offset Zipf: fewer distinct words per chunk, as in
    # manuals that repeat their few subjects.
    cdf = np.cumsum(1.0 / np.arange(1, len(vocabulary) + 1) ** 1.1)
    cdf /= cdf[-1]
    topics = np.stack([rng.choice(len(vocabulary), size=60, replace=False) for _ in range(50)])
    batch = 1_000
    while True:
        picks = np.searchsorted(cdf, rng.random((batch, words_per_chunk)))
        from_topic = rng.random((batch, words_per_chunk)) < 0.4
        topic_words = topics[rng.integers(len(topics), size=batch)]
        chosen = np.take_along_axis(
            topic_words, rng.integers(60, size=(batch, words_per_chunk)), axis=1
        )
        picks = np.where(from_topic, chosen, picks)
        picks += len(vocabulary) * (rng.random((batch, words_per_chunk)) < 1 / 12)
        for row in words[picks]:
            yield " ".join(row.tolist())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--incremental", type=int, default=2_000)
    parser.add_argument("--tpm", type=int, default=1_000_000, help="tokens per window")
    parser.add_argument("--tpm-window", type=float, default=15.0, help="the rate window, seconds")
    parser.add_argument("--tpm-windows", type=float, default=6.0, help="load size in windows")
    parser.add_argument("--naive", type=int, default=300)
    parser.add_argument("--skip-incremental-index", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--cpu", action="store_true", help="print CPU seconds per process")
    parser.add_argument(
        "--parts", default="full,indexed,tpm,naive", help="which parts to run (comma-separated)"
    )
    args = parser.parse_args()

    django_setup("kioku_bench_embed")  # its own database: bench/search.py keeps data loaded
    from _cpu import cpu_report
    from _stub_process import RemoteStub
    from django.conf import settings
    from django.db import connection, transaction

    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from knowledge.embed.providers import get_embedding_provider
    from knowledge.embed.spaces import active_vector_index_names, space_record
    from knowledge.ingest.chunk_copy import chunk_indexes_deferred, chunks_copy
    from knowledge.models import KnowledgeChunk, KnowledgeSource

    stub = RemoteStub(latency=args.latency)
    settings.OPENAI_API_KEY = stub.api_key
    settings.OPENAI_BASE_URL = stub.base_url
    settings.KIOKU_EMBEDDING_CONCURRENCY = args.concurrency
    settings.KIOKU_EMBED_ON_WRITE = False
    pipeline_resume()
    texts = chunk_texts(seed=1)

    def load(n: int, label: str) -> KnowledgeSource:
        source = KnowledgeSource.objects.create(
            source_type="manual", title=label, uri=f"bench://{label}"
        )
        rows = counted_chunk_rows(source.pk, [f"{next(texts)} ({label} {i})" for i in range(n)])
        with chunk_indexes_deferred(["chunk_search_vector_gin"]), transaction.atomic():
            chunks_copy(rows)
        return source

    def reset() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource,"
                " knowledge_embeddingspacestate RESTART IDENTITY CASCADE"
            )
        # Record the configured model as the active space now (with its index), or the first
        # write-back would, re-creating an index the run defers.
        space_record()
        stub.configure(reset=True, latency=args.latency)

    def run(label: str, expected: int) -> float:
        requests_before = stub.stats()["embedding_requests"]
        started = time.perf_counter()
        report = embedding_run(concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        done = KnowledgeChunk.objects.filter(embedding_status="done").count()
        stats = stub.stats()
        print(
            f"{label}: {expected / seconds:,.0f} chunks/s ({expected:,} in {seconds:.1f} s), "
            f"{stats['embedding_requests'] - requests_before} requests, {report.totals.retries} "
            f"retries, stub limit violations {stats['limit_violations']}; rows done {done:,}"
        )
        return seconds

    parts = set(args.parts.split(","))
    provider = get_embedding_provider()
    print(
        f"provider: {provider.name} {provider.model} {provider.dimensions}-d, latency {args.latency * 1000:.0f} ms/request"
    )

    if "full" in parts:
        # 1a. First full embedding with the HNSW index dropped, rebuilt afterwards.
        reset()
        load(args.chunks, "full")
        started = time.perf_counter()
        with chunk_indexes_deferred(active_vector_index_names()):
            with cpu_report("embedding", enabled=args.cpu):
                run("first full embedding, HNSW off (embedding only)", args.chunks)
            index_started = time.perf_counter()
        total = time.perf_counter() - started
        print(
            f"  HNSW rebuild: {time.perf_counter() - index_started:.1f} s; end to end {args.chunks / total:,.0f} chunks/s ({total:.1f} s)"
        )
        embedded_inputs = stub.stats()["embedded_inputs"]
        assert embedded_inputs == args.chunks, "every chunk embedded exactly once"
        print(
            f"  inputs sent to the API: {embedded_inputs:,} for {args.chunks:,} chunks (exactly once)"
        )

        # 2. Incremental run with the index present.
        load(args.incremental, "incremental")
        run("incremental with HNSW present", args.incremental)

    if "indexed" in parts:
        # 1b. The same first embedding with the index kept (updated row by row), on a sample.
        if not args.skip_incremental_index:
            reset()
            sample = min(args.chunks, 5_000)
            load(sample, "indexed")
            run(f"first embedding with HNSW kept ({sample:,}-chunk sample)", sample)

    if "tpm" in parts:
        # 3. Sustained throughput under a tokens-per-minute limit. The stub and the pacer use a
        # shortened "minute" (--tpm-window seconds) so several windows fit in a short run; the
        # steady-state rate is measured after the first window (which may start with a burst).
        reset()
        from knowledge.embed import pacing

        window = args.tpm_window
        sample = chunk_texts(seed=2)
        per_chunk = sum(stub.count_tokens(next(sample)) for _ in range(100)) / 100
        n = int(args.tpm * args.tpm_windows / per_chunk)
        load(n, "tpm")
        stub.configure(tpm=args.tpm, rate_window=window)
        settings.KIOKU_EMBEDDING_TPM = args.tpm
        pacing._pacers.clear()
        pacing.get_request_pacer().window = window
        started = time.perf_counter()
        # Like the first full embedding, with the HNSW index built afterwards: with the index
        # present, each write-back of 1,000 vectors spends ~7 s in HNSW inserts, and that (not
        # the pacing) would set the pace (see the incremental figure above).
        with chunk_indexes_deferred(active_vector_index_names()):
            embedding_run(concurrency=args.concurrency)
            seconds = time.perf_counter() - started
        stats = stub.stats()
        accepted = sorted((at, tokens) for at, tokens in stats["accepted"])
        # A sliding window lets a full window's worth go at once at the start, and paced traffic
        # then comes in window-sized waves. Measure whole waves: from one window after the first
        # request up to (not including) the last request.
        first, last = accepted[0][0], accepted[-1][0]
        middle = [tokens for at, tokens in accepted if first + window <= at < last]
        if args.verbose:
            buckets: dict[int, int] = {}
            for at, tokens in accepted:
                key = int((at - first) // (window / 3))
                buckets[key] = buckets.get(key, 0) + tokens
            print(
                "  tokens per third of a window:",
                [buckets.get(i, 0) for i in range(max(buckets) + 1)],
            )
        span = last - first - window
        rate = sum(middle) / span * window if span > 0 else float("nan")
        print(
            f"TPM limit {args.tpm:,} per {window:g} s window: sustained {rate:,.0f} tokens/window = "
            f"{rate / args.tpm:.0%} of the limit; {n:,} chunks in {seconds:.0f} s; "
            f"{stats['limit_violations']} limit violations (429); {len(accepted)} requests"
        )
        settings.KIOKU_EMBEDDING_TPM = 0
        stub.configure(tpm=None)
        pacing._pacers.clear()

    if "naive" in parts:
        # 4. Naive loop: one request per chunk, one at a time.
        reset()
        source = load(args.naive, "naive")
        client_provider = get_embedding_provider()
        started = time.perf_counter()
        for chunk in source.chunks.all():
            vector = client_provider.embed([chunk.content])[0]
            KnowledgeChunk.objects.filter(pk=chunk.pk).update(
                embedding=vector, embedding_status="done"
            )
        naive = args.naive / (time.perf_counter() - started)
        print(f"naive one-request-per-chunk loop: {naive:,.1f} chunks/s")

    reset()
    stub.stop()


if __name__ == "__main__":
    main()
