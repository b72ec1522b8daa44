"""The offline embedding models compared on the demo evaluation set.

    uv run python bench/offline_models.py [--models local-hash-v1,local-use-m3] [--repeat 3]

For each offline model, in the database `kioku_bench_offline` (embedded, or DATABASE_URL):
everything is flushed (sequences too, so the demo's resolved cards get the ids a new database
gives them, which the evaluation set refers to), the knowledge and dispatch demos are loaded as
`./scripts/run` loads them, with that model configured, and the embedding pipeline embeds every
row. Then every case of quality/demo_data/eval_cases.jsonl is searched with
`knowledge.search.service.chunk_search` (top 10) in vector and hybrid mode (keyword mode once,
as the reference neither model changes) and scored with `quality.metrics.case_score`, an
expected source or chunk resolved from its URI (and ordinal). Refusal cases (nothing expected)
have no retrieval score; their best vector similarity is shown beside the answerable cases' best
relevant one, which is what an ask threshold must separate.

Prints recall@1/3/10, MRR and nDCG@10 per model, mode and language (and per tag: error codes,
exact wording, paraphrases, cross-language questions); embedding speed (the
provider alone over the chunk texts, and the pipeline run with its database writes, after the
model is loaded); the model's load time; and query latency (p50/p95 of chunk_search, `--repeat`
passes over the questions after one warm-up query).
"""

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import ROOT, django_setup  # noqa: E402

EVAL_CASES = ROOT / "quality" / "demo_data" / "eval_cases.jsonl"
LANGUAGES = ("en", "ja", "zh")
TAGS = ("error-code", "exact", "paraphrase", "cross-language")
THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def demo_load_fresh(model: str) -> dict:
    """Flush the database and load the demos with `model` as the offline model; embed it all."""
    from django.core.management import call_command
    from django.db import transaction
    from django.test import override_settings

    import dispatch.demo
    import knowledge.demo
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from knowledge.embed.providers import get_embedding_provider
    from knowledge.models import KnowledgeChunk

    call_command("flush", interactive=False, verbosity=0)
    pipeline_resume()
    with override_settings(KIOKU_OFFLINE_EMBEDDING_MODEL=model):
        provider = get_embedding_provider()
        started = time.perf_counter()
        provider.embed(["warm-up"])  # loads a model's weights, once per process
        load_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for module in (knowledge.demo, dispatch.demo):
            with transaction.atomic():
                module.demo_load()
        ingest_seconds = time.perf_counter() - started
        report = embedding_run()
        texts = list(KnowledgeChunk.objects.values_list("content", flat=True))
        started = time.perf_counter()
        provider.embed(texts)
        provider_seconds = time.perf_counter() - started
    if report.totals.failed or report.totals.dead or report.totals.paused:
        raise SystemExit(f"{model}: embedding failed: {report.totals}")
    return {
        "load_seconds": load_seconds,
        "ingest_seconds": ingest_seconds,
        "pipeline_rows": report.totals.embedded,
        "pipeline_seconds": report.seconds,
        "chunks": len(texts),
        "characters": sum(map(len, texts)),
        "provider_seconds": provider_seconds,
    }


def expected_items(case: dict) -> list:
    from knowledge.models import KnowledgeChunk, KnowledgeSource
    from quality.metrics import ExpectedItem

    items = []
    for item in case["expected"]:
        source = KnowledgeSource.objects.get(uri=item["source_uri"])
        chunk_id = None
        if item["chunk_ordinal"] is not None:
            chunk_id = KnowledgeChunk.objects.get(source=source, ordinal=item["chunk_ordinal"]).pk
        items.append(ExpectedItem(source_id=source.pk, chunk_id=chunk_id, grade=item["grade"]))
    return items


def evaluate(cases: list[dict], *, mode: str, repeat: int) -> dict:
    """Every case searched in `mode`: scores by language, latencies, similarities."""
    import numpy as np

    from knowledge.search.service import chunk_search
    from quality.metrics import RankedHit, case_score, mean_scores

    chunk_search(cases[0]["question"], mode=mode, top_k=10)  # warm-up
    scores = defaultdict(list)
    latencies = []
    best_relevant, refusal_top = [], []
    for case in cases:
        expected = expected_items(case)
        for _ in range(repeat):
            started = time.perf_counter()
            result = chunk_search(case["question"], mode=mode, top_k=10)
            latencies.append((time.perf_counter() - started) * 1000)
        hits = [RankedHit(chunk_id=hit.chunk_id, source_id=hit.source_id) for hit in result.hits]
        similarities = [hit.vector_score for hit in result.hits if hit.vector_score is not None]
        if not expected:
            refusal_top.append(max(similarities, default=0.0))
            continue
        score = case_score(hits, expected)
        scores["all"].append(score)
        scores[case["language"]].append(score)
        for tag in set(case["tags"]) & set(TAGS):
            scores[tag].append(score)
        relevant = [
            hit.vector_score
            for hit in result.hits
            if hit.vector_score is not None
            and any(
                item.matches(chunk_id=hit.chunk_id, source_id=hit.source_id) for item in expected
            )
        ]
        best_relevant.append(max(relevant, default=0.0))
    return {
        "metrics": {group: mean_scores(values) for group, values in scores.items()},
        "latency": np.percentile(latencies, [50, 95]).tolist(),
        "best_relevant": best_relevant,
        "refusal_top": refusal_top,
    }


def print_metrics(rows: list[tuple[str, str, dict]]) -> None:
    header = "model          mode     cases           n   R@1    R@3    R@10   MRR    nDCG@10"
    print(header)
    print("-" * len(header))
    for model, mode, metrics in rows:
        for group in ("all", *LANGUAGES, *TAGS):
            summary = metrics.get(group)
            if not summary:
                continue
            print(
                f"{model:<14} {mode:<8} {group:<14} {summary['cases']:>3}  "
                f"{summary['recall_at_1']:.3f}  {summary['recall_at_3']:.3f}  "
                f"{summary['recall_at_10']:.3f}  {summary['reciprocal_rank']:.3f}  "
                f"{summary['ndcg_at_10']:.3f}"
            )


def print_similarities(model: str, result: dict) -> None:
    """Where an ask threshold would cut: answerable cases keep their best relevant passage,
    refusals should find nothing above it."""
    import numpy as np

    best = np.asarray(result["best_relevant"])
    refusals = np.asarray(result["refusal_top"])
    print(
        f"\n{model}, vector mode: best relevant similarity of answerable cases (0: none in "
        "the top 10): "
        f"p10 {np.percentile(best, 10):.3f}  p25 {np.percentile(best, 25):.3f}  "
        f"median {np.median(best):.3f}; refusal cases' top similarity: "
        + ", ".join(f"{value:.3f}" for value in sorted(refusals))
    )
    print("threshold  answerable kept  refusals passing")
    for threshold in THRESHOLDS:
        print(
            f"  {threshold:.2f}        {np.mean(best >= threshold):.3f}          "
            f"{int(np.sum(refusals >= threshold))}/{len(refusals)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="local-hash-v1,local-use-m3")
    parser.add_argument("--repeat", type=int, default=3, help="passes for the latency figures")
    args = parser.parse_args()
    os.environ["OPENAI_API_KEY"] = ""  # offline models only
    os.environ["KIOKU_EMBED_ON_WRITE"] = "false"  # the benchmark runs the pipeline itself
    django_setup("kioku_bench_offline")
    from django.conf import settings
    from django.test import override_settings

    from knowledge.embed.providers import LOCAL_MODELS

    models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = set(models) - set(LOCAL_MODELS)
    if unknown:
        raise SystemExit(f"not an offline model: {', '.join(sorted(unknown))}")
    lines = EVAL_CASES.read_text(encoding="utf-8").splitlines()
    cases = [json.loads(line) for line in lines if line.strip()]
    answerable = sum(1 for case in cases if case["expected"])
    print(
        f"{len(cases)} cases ({answerable} answerable, {len(cases) - answerable} refusals), "
        f"languages {dict(sorted(defaultdict(int, _count(cases)).items()))}, "
        f"top 10, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n"
    )
    rows, speeds, latencies, similarity = [], {}, [], {}
    keyword = None
    for model in models:
        speeds[model] = demo_load_fresh(model)
        with override_settings(KIOKU_OFFLINE_EMBEDDING_MODEL=model):
            assert settings.KIOKU_OFFLINE_EMBEDDING_MODEL == model
            for mode in ("vector", "hybrid"):
                result = evaluate(cases, mode=mode, repeat=args.repeat)
                rows.append((model, mode, result["metrics"]))
                latencies.append((model, mode, result["latency"]))
                if mode == "vector":
                    similarity[model] = result
            if keyword is None:
                keyword = evaluate(cases, mode="keyword", repeat=args.repeat)
    rows.append(("(any)", "keyword", keyword["metrics"]))
    latencies.append(("(any)", "keyword", keyword["latency"]))

    print_metrics(rows)
    print("\nmodel          load s  demo ingest s  pipeline rows/s  provider chunks/s  chars/s")
    for model, speed in speeds.items():
        print(
            f"{model:<14} {speed['load_seconds']:6.2f}  {speed['ingest_seconds']:13.2f}  "
            f"{speed['pipeline_rows'] / speed['pipeline_seconds']:15.0f}  "
            f"{speed['chunks'] / speed['provider_seconds']:17.0f}  "
            f"{speed['characters'] / speed['provider_seconds']:7.0f}"
        )
    print(
        f"({speeds[models[0]]['chunks']} chunks, {speeds[models[0]]['characters']:,} characters; "
        "pipeline rows: chunks, resolved cards and their case sources' chunks)"
    )
    print("\nquery latency (chunk_search, ms)")
    print("model          mode     p50     p95")
    for model, mode, (p50, p95) in latencies:
        print(f"{model:<14} {mode:<8} {p50:6.1f}  {p95:6.1f}")
    for model, result in similarity.items():
        print_similarities(model, result)


def _count(cases: list[dict]) -> dict:
    counts: dict = defaultdict(int)
    for case in cases:
        counts[case["language"]] += 1
    return counts


if __name__ == "__main__":
    main()
