"""Kioku side by side with what a team would otherwise build on: LangChain's `PGVector`
(`langchain-postgres`) and LlamaIndex's `PGVectorStore` (`llama-index-vector-stores-postgres`),
in one run, on the same embedded PostgreSQL, with the same precomputed vectors (issue 19).

    uv run --group peers python bench/peers.py [--chunks 10000] [--queries 100]
        [--filter-queries 60] [--embed-chunks 5000] [--latency 0.1] [--huge] [--skip-embed]

The peers live in the optional dependency group `peers` (pyproject.toml); `uv run --group peers`
installs them into the virtualenv (`uv sync --group peers` does it once; a later plain
`uv sync --frozen`, as scripts/test and scripts/run do, removes them again). The app never
imports them.

Database: `kioku_bench` (embedded; see bench/_setup.py) or DATABASE_URL. Its knowledge tables are
emptied first (bench/search.py reloads its data on its next run). Each peer gets its own tables,
dropped and recreated per run: LangChain's `langchain_pg_collection` / `langchain_pg_embedding`,
LlamaIndex's `data_peers_bench` (and `data_peers_embed` for the embedding part). They are dropped
again at the end.

Data: bench/_search_data.py's corpus of N chunks (100 sources; a `brand` on each source, so a
filter on Benkei selects ~5 % and on Akane ~1 % of the chunks) with its 1536-d clustered vectors,
generated once, rounded to float16 (Kioku stores halfvec; the peers' float32 `vector` columns get
the same values) and given to every system. Query vectors are fresh points of the same clusters,
also float16-rounded. Ground truth: exact top-10 in numpy over those vectors (as bench/search.py's
ExactIndex); a returned row tied with the exact 10th counts as found.

Per system:
- bulk ingest rows/s, vectors given, no API: the time inside the store's own write calls, rows
  prepared beforehand. Kioku: `chunks_with_vectors_copy` (binary COPY, one connection, as
  bench/search.py's load) with the GIN keyword index rebuilt after (counted: the text is not
  keyword-searchable before). LangChain: `PGVector.add_embeddings` in calls of 1,000 rows (numpy
  rows as the embeddings: pgvector's SQLAlchemy type takes them; Python lists would cost 49 KB a
  vector in the client). LlamaIndex: `PGVectorStore.add(nodes)` in calls of 1,000 `TextNode`s with
  their embeddings. The HNSW build after the load (Kioku's KIOKU_HNSW_M / KIOKU_HNSW_EF_CONSTRUCTION
  for everyone,
  `maintenance_work_mem = 2GB`, one parallel worker) is reported separately.
- vector search at top-10: p50/p95 and recall@10. Kioku: `vector_search()` as bench/search.py
  calls it. LangChain: `similarity_search_with_score_by_vector`. LlamaIndex:
  `query(VectorStoreQuery(...))`.
- filtered search (brand Benkei ~5 %, Akane ~1 %; half the queries from clusters the brand's rows
  live in, half from any cluster): share of queries answered with the full top-10, recall@10, p95.
- hybrid p95: Kioku `chunk_search(mode="hybrid")` (query text from bench/_search_data.py, query
  vector from the clusters through a provider stand-in, as bench/search.py does); LlamaIndex
  `VectorStoreQueryMode.HYBRID` (its dense top-10 and its `ts_rank` top-10 concatenated and
  de-duplicated, no fusion); LangChain's PGVector has no hybrid search.
- embedding pipeline chunks/s against the same local OpenAI-compatible stub (support/openai_stub.py
  in its own process, 100 ms a request, as bench/embed.py), `--embed-chunks` (5,000) chunk
  texts: bench/embed.py's manual-like chunks of ~1,030 tokens (pre-chunked; chunking is not
  measured). Kioku: chunk write (COPY) + `embedding_run()`, 4 requests in flight, the HNSW index
  deferred (its rebuild is reported, not counted: the peers build none). LangChain:
  `PGVector.from_documents` with `OpenAIEmbeddings(base_url=stub)` as shipped (it tokenises with
  tiktoken and packs requests under 300,000 tokens; tiktoken's cl100k_base is read from the copy
  llama-index-core ships, TIKTOKEN_CACHE_DIR, since nothing can be downloaded here). LlamaIndex:
  `VectorStoreIndex(nodes, storage_context=<PGVectorStore>, embed_model=OpenAIEmbedding(
  api_base=stub))`.
- client memory: peak RSS of this process during the system's ingest (and embedding) minus its RSS
  when the step began (sampled every 10 ms by psutil; Python keeps freed memory, so it is the extra
  the step needed, not what it keeps).

Each peer twice. "default": as shipped (LangChain with `embedding_length=1536`, which its docs
require for an index; LlamaIndex with its defaults: JSON metadata, no keyword column), no index
but the ones it creates itself, so vector search is an exact sequential scan. "tuned": an HNSW
index with Kioku's m / ef_construction built after the load, `hnsw.ef_search` = Kioku's (40 at
top-10) and pgvector's iterative scan on through the connection's session settings
(`strict_order`: the peers' SQL has no outer re-sort, which `relaxed_order` needs). LangChain
tuned is the default's table plus the index. LlamaIndex tuned is a second load with
`hybrid_search=True` (its keyword column, like Kioku's; needed for its hybrid search) and
`hnsw_kwargs`. LangChain tuned also runs with `enable_seqscan = off`: without it the planner
never uses the index for its query (the collection filter and the join; EXPLAIN ANALYZE at
10,000 rows: sequential scan + top-N sort 36.6 ms, against 0.4 ms through the index). PostgreSQL runs with the same settings for everyone (the embedded defaults).

Output: the figures per system as they are measured, then one markdown table with the absolute
figures and Kioku's advantage over each peer (×: > 1 means Kioku is better), then the issue's
targets. The machine is a shared 2-core VM: the load average is printed.

Sizes and time (measured on the 2-core VM): N = 10,000 takes under 2 minutes; `--chunks 100000
--skip-embed` took 9.5 minutes (LangChain's load 89 s and LlamaIndex's two loads 101 + 112 s, the
default peers' sequential scans ~0.35 s a query, four HNSW builds of ~20 s) and ~2 GB of client
memory (the float32 vectors, the ground-truth matrix, Kioku's COPY payload). `--huge`
(N = 1,000,000) is not run: it needs ~20 GB of client memory and ~25 GB of disk (3 KB a row as
halfvec for Kioku, 6 KB as vector for each of the three peer loads, plus indexes), and, scaled
from the 100,000 run, 2–3 hours: the three peer loads ~50 minutes, the default peers' ~500
sequential-scan queries at ~3.5 s each ~30 minutes, four HNSW builds whose graphs (~3.5 GB each)
no longer fit `maintenance_work_mem = 2GB`. Use a larger machine, `--skip-embed` and fewer
queries (`--queries 50 --filter-queries 20`).
"""

import argparse
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _search_data as data  # noqa: E402
from _setup import counted_chunk_rows, django_setup  # noqa: E402
from search import (  # noqa: E402
    GIN_INDEX,
    ClusterSpaceProvider,
    load_average,
    pct,
    plan_sources_and_rows,
    recall_at,
    timed_vector_search,
)

TOP_K = 10
BATCH = 1_000
FILTERS = (("Benkei", "~5 %"), ("Akane", "~1 %"))
SYSTEMS = (
    "kioku",
    "langchain-default",
    "langchain-tuned",
    "llamaindex-default",
    "llamaindex-tuned",
)
LABELS = {
    "kioku": "Kioku",
    "langchain-default": "LangChain PGVector (default)",
    "langchain-tuned": "LangChain PGVector (tuned)",
    "llamaindex-default": "LlamaIndex PGVectorStore (default)",
    "llamaindex-tuned": "LlamaIndex PGVectorStore (tuned)",
}
LLAMA_TABLE = "peers_bench"
LLAMA_EMBED_TABLE = "peers_embed"
LANGCHAIN_TABLES = ("langchain_pg_embedding", "langchain_pg_collection")


# --- Measuring helpers -----------------------------------------------------------------------------


class RssPeak:
    """Peak RSS of this process while the block runs, minus the RSS when it began (MB)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.start = self.peak = 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.01)

    def __enter__(self) -> "RssPeak":
        self.start = self.peak = self.process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.start) / 1e6


class Truth:
    """Exact top-k by row index over the float16-rounded vectors every system holds."""

    def __init__(self, vectors) -> None:
        import numpy as np

        self.matrix = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def top(self, query, mask=None) -> list[tuple[int, float]]:
        import numpy as np

        q = query / np.linalg.norm(query)
        similarity = self.matrix @ q
        if mask is not None:
            similarity = np.where(mask, similarity, -np.inf)
        top = np.argpartition(-similarity, TOP_K)[:TOP_K]
        top = top[np.lexsort((top, -similarity[top]))]
        return [(int(i), float(similarity[i])) for i in top if np.isfinite(similarity[i])]

    def scored(self, query, rows: list[int]) -> list[tuple[int, float]]:
        """The returned rows with their exact similarity (so every system is judged alike)."""
        import numpy as np

        q = query / np.linalg.norm(query)
        return [(row, float(self.matrix[row] @ q)) for row in rows]


def write_result(rows: int, seconds: float, rss: "RssPeak", note: str = "") -> dict:
    """What an ingest or an embedding run reports: rows, seconds, rows/s, client memory."""
    result = {"rows": rows, "seconds": seconds, "rate": rows / seconds, "rss": rss.mb}
    return {**result, "note": note} if note else result


def hnsw_options() -> str:
    """Kioku's HNSW build parameters (KIOKU_HNSW_M, KIOKU_HNSW_EF_CONSTRUCTION): every system's
    index is built with them."""
    from knowledge.embed.spaces import hnsw_options

    return hnsw_options()


def hnsw_graph_settings() -> dict[str, int]:
    from knowledge.embed.spaces import hnsw_graph_settings

    return hnsw_graph_settings()


def hnsw_build(cursor, sql: str) -> float:
    """Every HNSW index of the run is built with the same session settings."""
    started = time.perf_counter()
    cursor.execute("SET maintenance_work_mem = '2GB'")
    cursor.execute("SET max_parallel_maintenance_workers = 1")
    cursor.execute(sql)
    cursor.execute("RESET maintenance_work_mem")
    cursor.execute("RESET max_parallel_maintenance_workers")
    return time.perf_counter() - started


def vacuum_analyze(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM ANALYZE {table}")


def drop_tables(*tables: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"DROP TABLE IF EXISTS {table} CASCADE")


def database_urls() -> dict[str, str]:
    """SQLAlchemy URLs of the database Django uses, one per driver the peers speak through."""
    from urllib.parse import quote

    from django.db import connection

    connection.ensure_connection()
    info = connection.connection.info
    auth = quote(info.user) + (f":{quote(info.password)}" if info.password else "")
    host = info.host
    tail = f"/{quote(info.dbname)}"
    if host.startswith("/"):
        query = f"?host={quote(host)}&port={info.port}"
        return {
            "psycopg": f"postgresql+psycopg://{auth}@{tail}{query}",
            "psycopg2": f"postgresql+psycopg2://{auth}@{tail}{query}",
            "asyncpg": f"postgresql+asyncpg://{auth}@{tail}{query}",
        }
    return {
        driver: f"postgresql+{driver}://{auth}@{host}:{info.port}{tail}"
        for driver in ("psycopg", "psycopg2", "asyncpg")
    }


def tuned_session_options(ef_search: int, *, seqscan: bool = True) -> dict:
    """The connection options of the tuned peers: Kioku's ef_search and the iterative scan, and
    for LangChain sequential scans off: its query's collection filter and join make the planner
    keep the sequential scan + top-N sort (36.6 ms at 10,000 rows in EXPLAIN ANALYZE) over the
    HNSW index (0.4 ms) it is given."""
    options = f"-c hnsw.ef_search={ef_search} -c hnsw.iterative_scan=strict_order"
    if not seqscan:
        options += " -c enable_seqscan=off"
    return {"connect_args": {"options": options}}


class Workload:
    """Everything generated once and shared: vectors, texts, queries, ground truth."""

    def __init__(self, n: int, dims: int, *, queries: int, filter_queries: int) -> None:
        import numpy as np

        started = time.perf_counter()
        self.plan = data.make_plan(n, dims)
        self.vectors = data.chunk_vectors(self.plan).astype(np.float16).astype(np.float32)
        self.texts = data.chunk_texts(self.plan)
        self.brands = np.array(self.plan.source_brands)[self.plan.chunk_source]
        self.source_types = np.array(self.plan.source_types)[self.plan.chunk_source]
        self.truth = Truth(self.vectors)
        rng = np.random.default_rng(data.SEED + 10)

        def query_points(clusters):
            return data.points(self.plan, clusters, rng).astype(np.float16).astype(np.float32)

        picks = rng.integers(0, n, queries + 20)
        everything = query_points(self.plan.chunk_cluster[picks])
        self.warm, self.vector_queries = everything[:20], everything[20:]
        self.vector_truth = [self.truth.top(q) for q in self.vector_queries]
        self.filtered = {}
        for brand, _ in FILTERS:
            mask = self.brands == brand
            rows = np.flatnonzero(mask)
            half = filter_queries // 2
            clusters = np.concatenate(
                [
                    self.plan.chunk_cluster[rng.choice(rows, half)],
                    self.plan.chunk_cluster[rng.integers(0, n, filter_queries - half)],
                ]
            )
            vectors = query_points(clusters)
            self.filtered[brand] = (
                float(mask.mean()),
                vectors,
                [self.truth.top(v, mask) for v in vectors],
            )
        texts = data.text_queries(queries + 20)
        self.hybrid_texts = texts
        self.hybrid_vectors = query_points(self.plan.chunk_cluster[rng.integers(0, n, len(texts))])
        self.seconds = time.perf_counter() - started

    def metadata(self, row: int) -> dict:
        return {"brand": str(self.brands[row]), "source_type": str(self.source_types[row])}


def measure_queries(run, vectors, truths, truth: Truth, *, warm) -> dict:
    """p50/p95 (ms), recall@10 and the share of full top-10 answers of `run(vector) -> rows`."""
    for vector in warm:
        run(vector)
    samples, recalls, full = [], [], []
    for vector, exact in zip(vectors, truths, strict=True):
        started = time.perf_counter()
        rows = run(vector)
        samples.append((time.perf_counter() - started) * 1000)
        # Full: as many rows as the filter can give, up to k (a 1 % filter at N = 500 has 5).
        full.append(len(rows) >= len(exact))
        recalls.append(recall_at(truth.scored(vector, rows[:TOP_K]), exact))
    import numpy as np

    p50, p95, _ = pct(samples)
    return {
        "p50": p50,
        "p95": p95,
        "recall": float(np.mean(recalls)),
        "full": float(np.mean(full)),
    }


def measure_filtered(run_filtered, work: Workload) -> dict:
    out = {}
    for brand, _ in FILTERS:
        share, vectors, truths = work.filtered[brand]
        out[brand] = measure_queries(
            lambda v, brand=brand: run_filtered(v, brand),
            vectors,
            truths,
            work.truth,
            warm=vectors[:5],
        )
        out[brand]["share"] = share
    return out


def measure_hybrid(run_hybrid, work: Workload) -> dict:
    pairs = list(zip(work.hybrid_texts, work.hybrid_vectors, strict=True))
    for text, vector in pairs[:20]:
        run_hybrid(text, vector)
    samples = []
    for text, vector in pairs[20:]:
        started = time.perf_counter()
        run_hybrid(text, vector)
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95, _ = pct(samples)
    return {"p50": p50, "p95": p95}


def report(label: str, result: dict) -> None:
    print(f"\n{label}  (load average {load_average()})", flush=True)
    if "ingest" in result:
        ingest = result["ingest"]
        print(
            f"  ingest: {ingest['rate']:,.0f} rows/s ({ingest['rows']:,} in {ingest['seconds']:.1f} s"
            f"{ingest.get('note', '')}); client RSS +{ingest['rss']:.0f} MB"
        )
    if "hnsw" in result:
        print(f"  HNSW build ({hnsw_options()}): {result['hnsw']:.1f} s")
    if "vector" in result:
        v = result["vector"]
        print(
            f"  vector top-10: p50 {v['p50']:.1f} ms  p95 {v['p95']:.1f} ms  "
            f"recall@10 {v['recall']:.3f}  full top-10 {v['full']:.0%}"
        )
    for brand, f in result.get("filtered", {}).items():
        print(
            f"  filter brand={brand} ({f['share']:.1%} of rows): full top-10 {f['full']:.0%}  "
            f"recall@10 {f['recall']:.3f}  p50 {f['p50']:.1f} ms  p95 {f['p95']:.1f} ms"
        )
    if "hybrid" in result:
        h = result["hybrid"]
        print(f"  hybrid: p50 {h['p50']:.1f} ms  p95 {h['p95']:.1f} ms")
    if "embed" in result:
        e = result["embed"]
        print(
            f"  embedding pipeline: {e['rate']:,.0f} chunks/s ({e['rows']:,} in {e['seconds']:.1f} s"
            f"{e.get('note', '')}); client RSS +{e['rss']:.0f} MB"
        )


# --- Kioku -----------------------------------------------------------------------------------------


def kioku_run(work: Workload, model: str) -> dict:
    from django.db import connection, transaction

    from knowledge.embed.spaces import vector_index_sql
    from knowledge.ingest.chunk_copy import (
        chunk_indexes_deferred,
        chunks_with_vectors_copy,
    )
    from knowledge.models import KnowledgeChunk
    from knowledge.search.filters import parse_filters
    from knowledge.search.service import chunk_search

    plan, n = work.plan, work.plan.n
    space, rows = plan_sources_and_rows(plan, work.texts, model=model, name="peers")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {space.index_name(KnowledgeChunk)}")
    result: dict = {}
    with RssPeak() as rss:
        started = time.perf_counter()
        with chunk_indexes_deferred([GIN_INDEX]):
            with transaction.atomic():
                chunks_with_vectors_copy(rows, work.vectors, model=model)
            copy_seconds = time.perf_counter() - started
        seconds = time.perf_counter() - started
    result["ingest"] = write_result(
        n,
        seconds,
        rss,
        f"; COPY {n / copy_seconds:,.0f} rows/s, GIN rebuild {seconds - copy_seconds:.1f} s",
    )
    with connection.cursor() as cursor:
        result["hnsw"] = hnsw_build(cursor, vector_index_sql(KnowledgeChunk, space))
    vacuum_analyze("knowledge_knowledgesource", "knowledge_knowledgechunk")

    # Chunk id → row of the generated data.
    import numpy as np

    starts = np.searchsorted(plan.chunk_source, np.arange(data.SOURCES))
    row_of: dict[int, int] = {}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.id, s.uri, c.ordinal FROM knowledge_knowledgechunk c "
            "JOIN knowledge_knowledgesource s ON s.id = c.source_id"
        )
        for chunk_id, uri, ordinal in cursor.fetchall():
            row_of[chunk_id] = int(starts[int(uri.rsplit("/", 1)[1])] + ordinal)
    assert len(row_of) == n

    no_filter = parse_filters({})
    brand_filters = {brand: parse_filters({"metadata": {"brand": brand}}) for brand, _ in FILTERS}

    def run(vector, filters=no_filter) -> list[int]:
        got, _ = timed_vector_search(vector.tolist(), model=model, filters=filters)
        return [row_of[chunk_id] for chunk_id, _ in got]

    result["vector"] = measure_queries(
        run, work.vector_queries, work.vector_truth, work.truth, warm=work.warm
    )
    result["filtered"] = measure_filtered(lambda v, brand: run(v, brand_filters[brand]), work)

    from knowledge.embed.providers import get_embedding_provider

    provider = get_embedding_provider()
    vectors = iter([])

    def hybrid(text, vector) -> None:
        nonlocal vectors
        vectors = iter([vector])
        chunk_search(text, mode="hybrid", top_k=TOP_K)

    class OneVector(ClusterSpaceProvider):
        def embed(self, texts: list[str]) -> list[list[float]]:
            return [next(vectors).tolist() for _ in texts]

    with mock.patch(
        "knowledge.search.service.embedding_provider_for",
        return_value=OneVector(provider, []),
    ):
        result["hybrid"] = measure_hybrid(hybrid, work)
    return result


# --- LangChain ------------------------------------------------------------------------------------


class GivenVectors:
    """An `Embeddings` for stores fed precomputed vectors: any call to it is a mistake."""

    def embed_documents(self, texts):
        raise AssertionError("the ingest part gives the vectors")

    def embed_query(self, text):
        raise AssertionError("the search part gives the vectors")


def langchain_store(url: str, *, engine_args: dict | None = None, embeddings=None, **kwargs):
    import sqlalchemy
    from langchain_postgres import PGVector

    engine = sqlalchemy.create_engine(url, **(engine_args or {}))
    store = PGVector(
        embeddings=embeddings or GivenVectors(),
        connection=engine,
        collection_name="peers_bench",
        embedding_length=data_dims(),
        use_jsonb=True,
        **kwargs,
    )
    return store, engine


def data_dims() -> int:
    from django.conf import settings

    return settings.KIOKU_EMBEDDING_DIMENSIONS


def langchain_run(work: Workload, urls: dict, ef_search: int) -> tuple[dict, dict]:
    from django.db import connection

    drop_tables(*LANGCHAIN_TABLES)
    store, engine = langchain_store(urls["psycopg"])
    n = work.plan.n
    default: dict = {}
    with RssPeak() as rss:
        seconds = 0.0
        for start in range(0, n, BATCH):
            end = min(n, start + BATCH)
            texts = work.texts[start:end]
            embeddings = list(work.vectors[start:end])
            metadatas = [work.metadata(i) for i in range(start, end)]
            ids = [str(i) for i in range(start, end)]
            started = time.perf_counter()
            store.add_embeddings(texts, embeddings, metadatas=metadatas, ids=ids)
            seconds += time.perf_counter() - started
    default["ingest"] = write_result(n, seconds, rss)
    vacuum_analyze(*LANGCHAIN_TABLES)

    def searcher(store):
        def run(vector, brand=None) -> list[int]:
            found = store.similarity_search_with_score_by_vector(
                vector.tolist(), k=TOP_K, filter={"brand": {"$eq": brand}} if brand else None
            )
            return [int(document.id) for document, _ in found]

        return run

    def measure(store, result: dict) -> dict:
        run = searcher(store)
        result["vector"] = measure_queries(
            run, work.vector_queries, work.vector_truth, work.truth, warm=work.warm
        )
        result["filtered"] = measure_filtered(run, work)
        return result

    measure(store, default)
    engine.dispose()

    tuned: dict = {"ingest": {**default["ingest"], "note": "; the default's load"}}
    with connection.cursor() as cursor:
        tuned["hnsw"] = hnsw_build(
            cursor,
            "CREATE INDEX langchain_pg_embedding_hnsw ON langchain_pg_embedding USING hnsw "
            f"(embedding vector_cosine_ops) WITH ({hnsw_options()})",
        )
    vacuum_analyze("langchain_pg_embedding")
    store, engine = langchain_store(
        urls["psycopg"], engine_args=tuned_session_options(ef_search, seqscan=False)
    )
    measure(store, tuned)
    engine.dispose()
    return default, tuned


# --- LlamaIndex ------------------------------------------------------------------------------------


def llama_store(urls: dict, table: str, **kwargs):
    from llama_index.vector_stores.postgres import PGVectorStore

    return PGVectorStore(
        connection_string=urls["psycopg2"],
        async_connection_string=urls["asyncpg"],
        table_name=table,
        embed_dim=data_dims(),
        **kwargs,
    )


def llama_load(work: Workload, store) -> dict:
    from llama_index.core.schema import TextNode

    n = work.plan.n
    with RssPeak() as rss:
        seconds = 0.0
        for start in range(0, n, BATCH):
            end = min(n, start + BATCH)
            nodes = [
                TextNode(
                    id_=str(i),
                    text=work.texts[i],
                    metadata=work.metadata(i),
                    embedding=work.vectors[i].tolist(),
                )
                for i in range(start, end)
            ]
            started = time.perf_counter()
            store.add(nodes)
            seconds += time.perf_counter() - started
            del nodes
    return write_result(n, seconds, rss)


def llama_searcher(store, *, hybrid: bool = False):
    from llama_index.core.vector_stores.types import (
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
    )

    def run(vector, brand=None) -> list[int]:
        filters = (
            MetadataFilters(filters=[MetadataFilter(key="brand", value=brand)]) if brand else None
        )
        found = store.query(
            VectorStoreQuery(
                query_embedding=vector.tolist(), similarity_top_k=TOP_K, filters=filters
            )
        )
        return [int(node_id) for node_id in found.ids]

    def run_hybrid(text, vector) -> None:
        store.query(
            VectorStoreQuery(
                query_embedding=vector.tolist(),
                query_str=text,
                similarity_top_k=TOP_K,
                mode=VectorStoreQueryMode.HYBRID,
            )
        )

    return run_hybrid if hybrid else run


def llama_run(work: Workload, urls: dict, ef_search: int) -> tuple[dict, dict]:
    drop_tables(f"data_{LLAMA_TABLE}")
    store = llama_store(urls, LLAMA_TABLE)
    default = {"ingest": llama_load(work, store)}
    vacuum_analyze(f"data_{LLAMA_TABLE}")
    run = llama_searcher(store)
    default["vector"] = measure_queries(
        run, work.vector_queries, work.vector_truth, work.truth, warm=work.warm
    )
    default["filtered"] = measure_filtered(run, work)
    store._engine.dispose()

    # Tuned: a load with its keyword column (hybrid_search=True), the HNSW index built after it
    # (LlamaIndex creates it before the first insert when given hnsw_kwargs; inserting into it row
    # by row would be slower still), Kioku's ef_search and the iterative scan.
    drop_tables(f"data_{LLAMA_TABLE}")
    store = llama_store(
        urls,
        LLAMA_TABLE,
        hybrid_search=True,
        create_engine_kwargs=tuned_session_options(ef_search),
    )
    tuned = {"ingest": llama_load(work, store)}
    tuned["ingest"]["note"] = "; with its keyword column (hybrid_search=True)"
    store._engine.dispose()
    store = llama_store(
        urls,
        LLAMA_TABLE,
        hybrid_search=True,
        create_engine_kwargs=tuned_session_options(ef_search),
        hnsw_kwargs={
            "hnsw_m": hnsw_graph_settings()["m"],
            "hnsw_ef_construction": hnsw_graph_settings()["ef_construction"],
            "hnsw_ef_search": ef_search,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    from django.db import connection

    with connection.cursor() as cursor:
        tuned["hnsw"] = hnsw_build(
            cursor,
            f"CREATE INDEX data_{LLAMA_TABLE}_embedding_idx ON data_{LLAMA_TABLE} USING hnsw "
            f"(embedding vector_cosine_ops) WITH ({hnsw_options()})",
        )
    vacuum_analyze(f"data_{LLAMA_TABLE}")
    run = llama_searcher(store)
    tuned["vector"] = measure_queries(
        run, work.vector_queries, work.vector_truth, work.truth, warm=work.warm
    )
    tuned["filtered"] = measure_filtered(run, work)
    tuned["hybrid"] = measure_hybrid(llama_searcher(store, hybrid=True), work)
    store._engine.dispose()
    return default, tuned


# --- Embedding pipeline ----------------------------------------------------------------------------


def embedding_part(work: Workload, urls: dict, *, count: int, latency: float) -> dict:
    from _stub_process import RemoteStub
    from django.conf import settings
    from django.db import connection, transaction
    from embed import chunk_texts  # bench/embed.py's manual-like chunks of ~1,030 tokens

    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from knowledge.embed.spaces import active_vector_index_names, space_record
    from knowledge.ingest.chunk_copy import chunk_indexes_deferred, chunks_copy
    from knowledge.models import KnowledgeChunk, KnowledgeSource

    generator = chunk_texts(seed=1)
    texts = [next(generator) for _ in range(count)]
    model = settings.KIOKU_EMBEDDING_MODEL
    stub = RemoteStub(latency=latency)
    results: dict = {}
    try:
        settings.OPENAI_API_KEY = stub.api_key
        settings.OPENAI_BASE_URL = stub.base_url
        settings.KIOKU_EMBEDDING_CONCURRENCY = 4
        settings.KIOKU_EMBED_ON_WRITE = False
        pipeline_resume()

        # Kioku: chunk write + embedding_run, HNSW deferred (rebuild reported, not counted).
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource,"
                " knowledge_embeddingspacestate RESTART IDENTITY CASCADE"
            )
        space_record()
        stub.configure(reset=True, latency=latency)
        source = KnowledgeSource.objects.create(
            source_type="manual", title="Peers embed", uri="bench://peers-embed"
        )
        rows = counted_chunk_rows(source.pk, texts)
        with RssPeak() as rss:
            started = time.perf_counter()
            with chunk_indexes_deferred(active_vector_index_names()):
                with chunk_indexes_deferred([GIN_INDEX]), transaction.atomic():
                    chunks_copy(rows)
                embedding_run(concurrency=4)
                seconds = time.perf_counter() - started
            rebuild = time.perf_counter() - started - seconds
        done = KnowledgeChunk.objects.filter(embedding_status="done").count()
        assert done == count, f"{done} of {count} chunks embedded"
        requests = stub.stats()["embedding_requests"]
        results["kioku"] = write_result(
            count, seconds, rss, f"; {requests} requests; HNSW rebuild after it {rebuild:.1f} s"
        )

        # LangChain: PGVector.from_documents with its OpenAI embeddings.
        from langchain_core.documents import Document
        from langchain_openai import OpenAIEmbeddings
        from langchain_postgres import PGVector

        drop_tables(*LANGCHAIN_TABLES)
        stub.configure(reset=True, latency=latency)
        documents = [
            Document(page_content=text, metadata=work.metadata(i)) for i, text in enumerate(texts)
        ]
        embeddings = OpenAIEmbeddings(model=model, base_url=stub.base_url, api_key=stub.api_key)
        import sqlalchemy

        engine = sqlalchemy.create_engine(urls["psycopg"])
        with RssPeak() as rss:
            started = time.perf_counter()
            PGVector.from_documents(
                documents,
                embeddings,
                connection=engine,
                collection_name="peers_embed",
                embedding_length=data_dims(),
                use_jsonb=True,
            )
            seconds = time.perf_counter() - started
        engine.dispose()
        requests = stub.stats()["embedding_requests"]
        results["langchain"] = write_result(count, seconds, rss, f"; {requests} requests")

        # LlamaIndex: VectorStoreIndex over TextNodes, its OpenAIEmbedding pointed at the stub.
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.core.schema import TextNode
        from llama_index.embeddings.openai import OpenAIEmbedding

        drop_tables(f"data_{LLAMA_EMBED_TABLE}")
        stub.configure(reset=True, latency=latency)
        store = llama_store(urls, LLAMA_EMBED_TABLE)
        nodes = [
            TextNode(id_=str(i), text=text, metadata=work.metadata(i))
            for i, text in enumerate(texts)
        ]
        embed_model = OpenAIEmbedding(
            model_name=model, api_base=stub.base_url, api_key=stub.api_key
        )
        with RssPeak() as rss:
            started = time.perf_counter()
            VectorStoreIndex(
                nodes,
                storage_context=StorageContext.from_defaults(vector_store=store),
                embed_model=embed_model,
            )
            seconds = time.perf_counter() - started
        store._engine.dispose()
        requests = stub.stats()["embedding_requests"]
        results["llamaindex"] = write_result(count, seconds, rss, f"; {requests} requests")
    finally:
        stub.stop()
        settings.OPENAI_API_KEY = ""
    return results


# --- Table ----------------------------------------------------------------------------------------


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def table(results: dict, embed: dict, n: int, embed_n: int) -> tuple[str, list[str]]:
    """The markdown table: absolute figures, and Kioku's advantage over each peer."""
    k = results["kioku"]
    peers = [s for s in SYSTEMS if s != "kioku" and s in results]

    def cell(system: str, value: float | None, text: str, kioku_value: float | None, better: str):
        if value is None or text == "—":
            return text
        if system == "kioku" or kioku_value is None or value == 0:
            return text
        ratio = kioku_value / value if better == "higher" else value / kioku_value
        return f"{text} ({ratio:.1f}×)"

    rows: list[tuple[str, dict]] = []

    def add(label: str, getter, formatter, better: str) -> None:
        kv = getter("kioku")
        cells = {}
        for system in ("kioku", *peers):
            value = getter(system)
            text = "—" if value is None else formatter(value)
            cells[system] = cell(system, value, text, kv, better)
        rows.append((label, cells))

    def get(system, *path):
        node = results.get(system, {})
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node

    add(
        f"Bulk ingest, {n:,} rows, vectors given (rows/s)",
        lambda s: get(s, "ingest", "rate"),
        fmt_rate,
        "higher",
    )
    add("HNSW build after the load (s)", lambda s: get(s, "hnsw"), lambda v: f"{v:.1f}", "lower")
    add("Vector top-10 p50 (ms)", lambda s: get(s, "vector", "p50"), lambda v: f"{v:.1f}", "lower")
    add("Vector top-10 p95 (ms)", lambda s: get(s, "vector", "p95"), lambda v: f"{v:.1f}", "lower")
    add("Vector recall@10", lambda s: get(s, "vector", "recall"), lambda v: f"{v:.3f}", "higher")
    for brand, share in FILTERS:
        add(
            f"Filter {brand} ({share}): full top-10",
            lambda s, b=brand: get(s, "filtered", b, "full"),
            lambda v: f"{v:.0%}",
            "higher",
        )
        add(
            f"Filter {brand} ({share}): recall@10",
            lambda s, b=brand: get(s, "filtered", b, "recall"),
            lambda v: f"{v:.3f}",
            "higher",
        )
        add(
            f"Filter {brand} ({share}): p95 (ms)",
            lambda s, b=brand: get(s, "filtered", b, "p95"),
            lambda v: f"{v:.1f}",
            "lower",
        )
    add("Hybrid p95 (ms)", lambda s: get(s, "hybrid", "p95"), lambda v: f"{v:.1f}", "lower")
    if embed:
        embed_key = {
            "kioku": "kioku",
            "langchain-default": "langchain",
            "llamaindex-default": "llamaindex",
        }
        add(
            f"Embedding pipeline, {embed_n:,} chunks, stub (chunks/s)",
            lambda s: embed.get(embed_key.get(s, ""), {}).get("rate"),
            fmt_rate,
            "higher",
        )
    add(
        "Client RSS during ingest (MB)",
        lambda s: get(s, "ingest", "rss"),
        lambda v: f"+{v:.0f}",
        "lower",
    )
    if embed:
        add(
            "Client RSS during the embedding pipeline (MB)",
            lambda s: embed.get(embed_key.get(s, ""), {}).get("rss"),
            lambda v: f"+{v:.0f}",
            "lower",
        )

    header = "| | " + " | ".join(LABELS[s] for s in ("kioku", *peers)) + " |"
    lines = [header, "|---" * (len(peers) + 2) + "|"]
    for label, cells in rows:
        if label.startswith("Hybrid"):
            for system in peers:
                if system.startswith("langchain"):
                    cells[system] = "none (PGVector has no hybrid search)"
        if label.startswith("Embedding") or label.startswith("Client RSS during the embedding"):
            for system in peers:
                if system.endswith("tuned"):
                    cells[system] = "(default only)"
        lines.append(f"| {label} | " + " | ".join(cells[s] for s in ("kioku", *peers)) + " |")

    # Targets.
    targets = []
    lc, li = results.get("langchain-default"), results.get("llamaindex-default")
    if lc:
        ratio = k["ingest"]["rate"] / lc["ingest"]["rate"]
        targets.append(
            f"{'MET ' if ratio >= 10 else 'MISS'} ingest ≥ 10× LangChain PGVector default: {ratio:.1f}×"
        )
    if li:
        ratio = k["ingest"]["rate"] / li["ingest"]["rate"]
        targets.append(
            f"{'MET ' if ratio >= 30 else 'MISS'} ingest ≥ 30× LlamaIndex add(): {ratio:.1f}×"
        )
    for system in ("langchain-tuned", "llamaindex-tuned"):
        peer = results.get(system)
        if not peer:
            continue
        ratio = peer["vector"]["p95"] / k["vector"]["p95"]
        recall_ok = k["vector"]["recall"] >= peer["vector"]["recall"] - 1e-9
        targets.append(
            f"{'MET ' if ratio >= 1.5 and recall_ok else 'MISS'} vector p95 ≥ 1.5× lower than "
            f"{LABELS[system]} at equal or better recall@10: {ratio:.2f}× "
            f"(recall@10 Kioku {k['vector']['recall']:.3f}, peer {peer['vector']['recall']:.3f})"
        )
    kioku_full = min(f["full"] for f in k["filtered"].values())
    shares = "; ".join(
        f"{LABELS[s]} "
        + ", ".join(f"{b} {results[s]['filtered'][b]['full']:.0%}" for b, _ in FILTERS)
        for s in peers
    )
    targets.append(
        f"{'MET ' if kioku_full >= 1.0 else 'MISS'} Kioku full top-10 on 100 % of filtered "
        f"queries: {kioku_full:.0%} (peers: {shares})"
    )
    if embed:
        ratio = embed["kioku"]["rate"] / embed["langchain"]["rate"]
        targets.append(
            f"{'MET ' if ratio >= 5 else 'MISS'} embedding pipeline ≥ 5× LangChain from_documents: {ratio:.1f}×"
        )
    return "\n".join(lines), targets


def versions() -> str:
    names = (
        "langchain-postgres",
        "langchain-core",
        "langchain-openai",
        "llama-index-core",
        "llama-index-vector-stores-postgres",
        "llama-index-embeddings-openai",
        "sqlalchemy",
        "psycopg",
        "psycopg2-binary",
        "pgvector",
        "openai",
    )
    out = []
    for name in names:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} (not installed)")
    return ", ".join(out)


@contextmanager
def section(title: str):
    print(f"\n== {title} ==", flush=True)
    started = time.perf_counter()
    yield
    print(f"   ({time.perf_counter() - started:.0f} s)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--huge", action="store_true", help="1,000,000 chunks (see the docstring)")
    parser.add_argument("--queries", type=int, default=100, help="unfiltered and hybrid queries")
    parser.add_argument("--filter-queries", type=int, default=60, help="per filter")
    parser.add_argument(
        "--embed-chunks", type=int, default=5_000, help="chunks for the embedding pipeline part"
    )
    parser.add_argument("--latency", type=float, default=0.1, help="stub latency per request (s)")
    parser.add_argument("--skip-embed", action="store_true")
    parser.add_argument(
        "--systems", default=",".join(("kioku", "langchain", "llamaindex")), help="comma-separated"
    )
    args = parser.parse_args()
    if args.huge:
        args.chunks = 1_000_000
    if args.chunks < data.SOURCES:
        parser.error(f"--chunks must be at least {data.SOURCES}")
    try:
        import langchain_postgres  # noqa: F401
        import llama_index.vector_stores.postgres  # noqa: F401
    except ImportError:
        sys.exit("the peers are not installed: uv run --group peers python bench/peers.py")

    # Offline provider for the search part (rows labelled with its model, as bench/search.py).
    os.environ["OPENAI_API_KEY"] = ""
    # tiktoken cannot download its tables here; llama-index-core ships cl100k_base (the encoding
    # of text-embedding-3-small), so Kioku's token counter and LangChain's OpenAIEmbeddings
    # (which tokenises by default) both run as they would with network access.
    from llama_index.core import __file__ as llama_core

    os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR", str(Path(llama_core).parent / "_static" / "tiktoken_cache")
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    django_setup()
    import psutil
    from django.conf import settings
    from django.db import connection

    from knowledge.embed.providers import get_embedding_provider
    from knowledge.search.vector import ef_search_for

    model = get_embedding_provider().model
    dims = settings.KIOKU_EMBEDDING_DIMENSIONS
    ef_search = ef_search_for(TOP_K)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('server_version'), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'vector'), "
            "current_setting('shared_buffers'), current_setting('work_mem'), "
            "current_setting('max_parallel_workers_per_gather')"
        )
        pg_version, vector_version, shared_buffers, work_mem, gather = cursor.fetchone()
    print(
        f"peers benchmark: {args.chunks:,} chunks, {dims}-d, top-{TOP_K}, ef_search {ef_search}, "
        f"HNSW {hnsw_options()}\n"
        f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"load average {load_average()}\n"
        f"PostgreSQL {pg_version}, pgvector {vector_version}, shared_buffers {shared_buffers}, "
        f"work_mem {work_mem}, max_parallel_workers_per_gather {gather}\n"
        f"Python {sys.version.split()[0]}; {versions()}",
        flush=True,
    )
    urls = database_urls()
    wanted = set(args.systems.split(","))
    work = Workload(args.chunks, dims, queries=args.queries, filter_queries=args.filter_queries)
    print(f"data: vectors, texts, queries and exact top-10s generated in {work.seconds:.1f} s")
    results: dict = {}
    try:
        # Kioku always: the ratios need it.
        with section("Kioku"):
            results["kioku"] = kioku_run(work, model)
        report(LABELS["kioku"], results["kioku"])
        if "langchain" in wanted:
            with section("LangChain PGVector"):
                default, tuned = langchain_run(work, urls, ef_search)
            results["langchain-default"], results["langchain-tuned"] = default, tuned
            report(LABELS["langchain-default"], default)
            report(LABELS["langchain-tuned"], tuned)
        if "llamaindex" in wanted:
            with section("LlamaIndex PGVectorStore"):
                default, tuned = llama_run(work, urls, ef_search)
            results["llamaindex-default"], results["llamaindex-tuned"] = default, tuned
            report(LABELS["llamaindex-default"], default)
            report(LABELS["llamaindex-tuned"], tuned)
        embed: dict = {}
        embed_n = args.embed_chunks
        if not args.skip_embed:
            with section(
                f"Embedding pipeline, {embed_n:,} chunks, stub latency {args.latency * 1000:.0f} ms"
            ):
                embed = embedding_part(work, urls, count=embed_n, latency=args.latency)
            for name, figures in embed.items():
                report(f"{name}: embedding", {"embed": figures})
    finally:
        cleanup()

    markdown, targets = table(results, embed, args.chunks, embed_n)
    print(
        f"\nKioku's advantage in parentheses (× > 1: Kioku better; peer ÷ Kioku for times and "
        f"memory, Kioku ÷ peer for rates and shares). Load average now {load_average()}.\n"
    )
    print(markdown)
    print("\nTargets (issue 19):")
    for line in targets:
        print(f"  {line}")


def cleanup() -> None:
    """Peers' tables dropped; the knowledge tables left empty with their indexes, as
    bench/ingest.py leaves them."""
    from django.db import connection

    from knowledge.embed.spaces import space_state, vector_indexes_sync
    from knowledge.models import EmbeddingSpaceState

    connection.close()
    drop_tables(*LANGCHAIN_TABLES, f"data_{LLAMA_TABLE}", f"data_{LLAMA_EMBED_TABLE}")
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE knowledge_knowledgechunk, knowledge_knowledgesource RESTART IDENTITY CASCADE"
        )
    EmbeddingSpaceState.objects.all().delete()
    vector_indexes_sync(space_state())


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
