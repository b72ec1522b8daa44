"""The search service: modes, thresholds, filters, CJK, error codes, safety, index usage."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from core.statements import split_settings_statement
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.spaces import space_state
from knowledge.models import EmbeddingSpaceState, KnowledgeChunk, KnowledgeSource
from knowledge.search.base import SearchError
from knowledge.search.filters import parse_filters, resolve_scope
from knowledge.search.keyword import lexeme_shares, lexeme_shares_forget
from knowledge.search.service import chunk_search
from knowledge.search.snippets import highlight_snippet
from knowledge.services import chunk_update
from tests.helpers import assert_error_shape
from tests.knowledge.factories import BATTERY, E21, JA, ZH, make_source
from tests.knowledge.search.sql_plans import analyzed_plan, captured_sql, cte_plan, explain_plan

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def corpus(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    sources = {
        "battery": make_source(
            text=BATTERY,
            title="Battery guide",
            uri="kb://battery",
            metadata={"brand": "Kagiya", "language": "en", "models": ["KG-200"]},
        ),
        "e21": make_source(
            text=E21,
            title="Troubleshooting",
            uri="kb://e21",
            source_type="faq",
            metadata={"brand": "Kagiya", "language": "en", "models": ["KG-200", "KG-300"]},
        ),
        "zh": make_source(
            text=ZH,
            title="常見問題",
            uri="kb://zh",
            source_type="faq",
            metadata={"brand": "Lumio", "language": "zh-TW"},
        ),
        "ja": make_source(
            text=JA,
            title="ガイド",
            uri="kb://ja",
            source_type="sop",
            metadata={"brand": "Kagiya", "language": "ja"},
        ),
    }
    embedding_run()
    return sources


def titles(result) -> list[str]:
    return [hit.source_title for hit in result.hits]


def test_vector_mode_ranks_by_cosine_similarity(corpus):
    result = chunk_search("replace the AA batteries", mode="vector", top_k=4)
    assert result.hits[0].source_title == "Battery guide"
    scores = [hit.score for hit in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1 <= s <= 1 for s in scores)
    assert result.hits[0].vector_rank == 1 and result.hits[0].keyword_rank is None
    assert result.offline and result.model == "local-hash-v1"


def test_min_similarity_drops_weak_matches(corpus):
    everything = chunk_search("replace the AA batteries", mode="vector", top_k=10)
    cutoff = everything.hits[0].score - 0.0001
    strict = chunk_search(
        "replace the AA batteries", mode="vector", top_k=10, min_similarity=cutoff
    )
    assert len(strict.hits) == 1 and strict.hits[0].score >= cutoff
    assert chunk_search("replace the AA batteries", mode="vector", min_similarity=0.9999).hits == []


def test_keyword_mode_matches_exact_error_codes(corpus):
    result = chunk_search("E-21", mode="keyword")
    assert titles(result) == ["Troubleshooting"]
    assert result.hits[0].keyword_rank == 1 and result.hits[0].vector_rank is None
    assert "<mark>E-21</mark>" in result.hits[0].snippet
    assert chunk_search("E-22", mode="keyword").hits == []  # no near-miss identifiers


def test_keyword_mode_finds_chinese_and_japanese_without_word_breaks(corpus):
    assert titles(chunk_search("電池沒電", mode="keyword")) == ["常見問題"]
    assert titles(chunk_search("電池切れ", mode="keyword")) == ["ガイド"]
    assert titles(chunk_search("電子錠", mode="keyword")) == ["ガイド"]
    # Bigrams 電子 and 子鎖 both occur in the Chinese text but 「電子錠」 does not: the recheck
    # keeps pg_bigm's exactness.
    assert "常見問題" not in titles(chunk_search("電子錠", mode="keyword"))


def test_mixed_language_query_finds_both(corpus):
    found = titles(chunk_search("E-21 電池沒電", mode="keyword"))
    assert set(found) == {"Troubleshooting", "常見問題"}


def test_hybrid_fuses_both_lists_with_rrf(corpus, settings):
    result = chunk_search("E-21 strike plate", mode="hybrid", top_k=4)
    top = result.hits[0]
    assert top.source_title == "Troubleshooting"
    assert top.vector_rank is not None and top.keyword_rank is not None
    k = settings.KIOKU_SEARCH_RRF_K
    assert top.score == pytest.approx(1 / (k + top.vector_rank) + 1 / (k + top.keyword_rank))


def test_pinned_chunks_get_a_boost(corpus, settings):
    plain = chunk_search("batteries lock", mode="hybrid", top_k=4)
    last = plain.hits[-1]
    chunk_update(chunk=KnowledgeChunk.objects.get(pk=last.chunk_id), pinned=True)
    boosted = chunk_search("batteries lock", mode="hybrid", top_k=4)
    hit = next(h for h in boosted.hits if h.chunk_id == last.chunk_id)
    assert hit.pinned and hit.score == pytest.approx(last.score + settings.KIOKU_SEARCH_PIN_BOOST)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"source_type": "faq"}, {"Troubleshooting", "常見問題"}),
        ({"source_types": ["sop", "manual"]}, {"Battery guide", "ガイド"}),
        ({"metadata": {"brand": "Lumio"}}, {"常見問題"}),
        ({"metadata": {"language": "ja"}}, {"ガイド"}),
        ({"metadata": {"models": "KG-300"}}, {"Troubleshooting"}),
    ],
)
def test_filters_narrow_every_mode(corpus, filters, expected):
    for mode in ("vector", "keyword", "hybrid"):
        found = set(
            titles(
                chunk_search("電池 battery E-21 電子錠 motor", mode=mode, top_k=10, filters=filters)
            )
        )
        assert found <= expected, (mode, found)
        if mode != "keyword":
            assert found == expected, (mode, found)


def test_filters_are_resolved_to_source_ids_first(corpus):
    scope = resolve_scope(parse_filters({"metadata": {"brand": "Kagiya"}, "source_type": "faq"}))
    assert scope.source_ids == (corpus["e21"].pk,)
    assert resolve_scope(parse_filters({})).source_ids is None
    nothing = resolve_scope(parse_filters({"metadata": {"brand": "Nobody"}}))
    assert nothing.is_empty
    for mode in ("vector", "keyword", "hybrid"):
        assert (
            chunk_search("battery E-21", mode=mode, filters={"metadata": {"brand": "Nobody"}}).hits
            == []
        )


def _index_setting(statements) -> str:
    sql, params = next((sql, params) for sql, params in statements if "<=>" in sql)
    return split_settings_statement(sql, params, needle="<=>")[0]["enable_indexscan"]


def test_a_small_filtered_set_is_searched_exactly_a_large_one_through_hnsw(corpus, settings):
    filters = {"metadata": {"brand": "Kagiya"}}
    statements = captured_sql(lambda: chunk_search("battery", mode="vector", filters=filters))
    assert _index_setting(statements) == "off"  # exact: every filtered row's distance
    exact = chunk_search("battery", mode="vector", filters=filters)

    settings.KIOKU_SEARCH_EXACT_MAX_ROWS = 0
    statements = captured_sql(lambda: chunk_search("battery", mode="vector", filters=filters))
    assert _index_setting(statements) == "on"
    through_index = chunk_search("battery", mode="vector", filters=filters)
    assert [h.chunk_id for h in through_index.hits] == [h.chunk_id for h in exact.hits]

    unfiltered = captured_sql(lambda: chunk_search("battery", mode="vector"))
    assert _index_setting(unfiltered) == "on"


def test_keyword_ranks_chunks_holding_every_term_above_those_holding_some(settings):
    settings.OPENAI_API_KEY = ""
    # "strike" alone appears many times in one chunk (a high ts_rank); the chunk holding both
    # words must still come first.
    make_source(text="strike strike strike strike strike plate? no, strike.", title="Some")
    make_source(text="Adjust the strike and the latch.", title="Strike only")
    make_source(text="The bolt rubs the strike plate.", title="Every")
    result = chunk_search("strike bolt", mode="keyword", top_k=3)
    assert titles(result)[0] == "Every"
    assert set(titles(result)) == {"Every", "Strike only", "Some"}


def test_hybrid_asks_for_some_term_matches_only_when_every_term_ones_cannot_fill_top_k(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_SEARCH_SIDE_WORKERS = 0  # the keyword leg in this thread, where SQL is seen
    for n in range(12):
        make_source(text=f"Strike bolt note {n}: the bolt rubs the strike.", title=f"Every {n}")
    make_source(text="Adjust the strike and the latch.", title="Strike only")

    def some_terms_scanned(top_k: int) -> bool:
        statements = captured_sql(lambda: chunk_search("strike bolt", mode="hybrid", top_k=top_k))
        keyword = [(sql, params) for sql, params in statements if "ts_rank" in sql]
        assert len(keyword) == 1  # both tiers are one statement, sent with the vector query
        plan = cte_plan(analyzed_plan(*keyword[0], needle="ts_rank"), "some_candidates")
        # The tier's scan sits under a condition on the first tier's count, evaluated once.
        gated = plan.split("One-Time Filter", 1)[1]
        first_node = next(line for line in gated.splitlines() if "->" in line)
        return "never executed" not in first_node

    # 12 chunks hold every term: enough for the 10 shown, though the leg fuses 20 candidates.
    assert not some_terms_scanned(10)
    assert "Strike only" not in titles(chunk_search("strike bolt", mode="keyword", top_k=10))
    # 15 shown: the every-term matches cannot fill them, so the some-terms tier runs.
    assert some_terms_scanned(15)
    assert "Strike only" in titles(chunk_search("strike bolt", mode="hybrid", top_k=15))


def test_keyword_ranks_a_bounded_candidate_set(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_SEARCH_KEYWORD_CANDIDATES = 10
    for n in range(30):
        make_source(text=f"Gasket note {n}: check the gasket.", title=f"Gasket {n}")
    statements = captured_sql(lambda: chunk_search("gasket", mode="keyword", top_k=5))
    sql, params = next((s, p) for s, p in statements if "ts_rank" in s)
    assert 10 in params and "LIMIT" in sql
    assert len(chunk_search("gasket", mode="keyword", top_k=5).hits) == 5


def test_source_id_and_date_filters(corpus):
    battery = corpus["battery"]
    assert set(
        titles(chunk_search("battery", mode="vector", filters={"source_id": battery.pk}))
    ) == {"Battery guide"}
    tomorrow = (timezone.now() + timezone.timedelta(days=1)).date().isoformat()
    assert chunk_search("battery", mode="vector", filters={"created_from": tomorrow}).hits == []
    assert chunk_search("battery", mode="vector", filters={"fetched_to": tomorrow}).hits


def test_channel_and_user_filters_apply_to_session_chunks(corpus):
    make_source(
        text="The bot said the KG-200 battery is low.",
        title="Session #ops",
        uri="kb://s1",
        source_type="session",
        metadata={"channel": "ops", "participants": ["alice", "bot"]},
    )
    make_source(
        text="Battery talk in another channel.",
        title="Session #sales",
        uri="kb://s2",
        source_type="session",
        metadata={"channel": "sales", "participants": ["bob"]},
    )
    embedding_run()
    assert titles(chunk_search("battery", mode="keyword", filters={"channel": "ops"})) == [
        "Session #ops"
    ]
    assert titles(chunk_search("battery", mode="keyword", filters={"user": "bob"})) == [
        "Session #sales"
    ]


def test_disabled_expired_and_superseded_content_is_never_returned(corpus):
    e21 = corpus["e21"]
    chunk = e21.chunks.get()
    chunk_update(chunk=chunk, valid_until=timezone.now() - timezone.timedelta(minutes=1))
    assert chunk_search("E-21", mode="keyword").hits == []
    chunk_update(chunk=chunk, valid_until=None)
    KnowledgeSource.objects.filter(pk=e21.pk).update(enabled=False)
    assert "Troubleshooting" not in titles(
        chunk_search("E-21 motor overcurrent", mode="hybrid", top_k=10)
    )
    other = make_source(
        text=E21.replace("Adjust", "Realign"), title="Troubleshooting v2", uri="kb://e21-v2"
    )
    KnowledgeSource.objects.filter(pk=e21.pk).update(enabled=True, superseded_by=other)
    embedding_run()
    assert titles(chunk_search("E-21", mode="keyword")) == ["Troubleshooting v2"]


def test_rows_embedded_by_another_model_are_not_mixed_in(corpus):
    KnowledgeChunk.objects.filter(source=corpus["battery"]).update(embedding_model="other-model")
    assert "Battery guide" not in titles(
        chunk_search("replace the AA batteries", mode="vector", top_k=10)
    )


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"query": "   "}, "SEARCH_EMPTY_QUERY"),
        ({"query": "x", "top_k": 0}, "VECTOR_INDEX_INVALID_TOP_K"),
        ({"query": "x", "top_k": 101}, "VECTOR_INDEX_INVALID_TOP_K"),
        ({"query": "x", "filters": {"colour": "red"}}, "SEARCH_INVALID_FILTER"),
        ({"query": "x", "filters": {"source_type": "video"}}, "SEARCH_INVALID_FILTER"),
        ({"query": "x", "filters": {"source_id": ["1; DROP TABLE"]}}, "SEARCH_INVALID_FILTER"),
        ({"query": "x", "filters": {"metadata": {"owner": "x"}}}, "SEARCH_INVALID_FILTER"),
        ({"query": "x", "filters": {"created_from": "yesterday"}}, "SEARCH_INVALID_FILTER"),
        ({"query": "x", "mode": "fuzzy"}, "SEARCH_INVALID_MODE"),
    ],
)
def test_bad_requests_get_exact_error_codes(corpus, kwargs, code):
    query = kwargs.pop("query")
    with pytest.raises(SearchError) as excinfo:
        chunk_search(query, **kwargs)
    assert excinfo.value.code == code


def test_an_empty_knowledge_base_says_so(settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(SearchError) as excinfo:
        chunk_search("anything")
    assert excinfo.value.code == "VECTOR_INDEX_EMPTY" and "ingest" in excinfo.value.message


def test_chunks_without_embeddings_degrade_hybrid_and_refuse_vector(settings):
    settings.OPENAI_API_KEY = ""
    make_source(text=E21, title="Troubleshooting", uri="kb://e21")
    result = chunk_search("E-21", mode="hybrid")
    assert result.degraded and "No embeddings yet" in result.degraded_reason
    assert titles(result) == ["Troubleshooting"]
    with pytest.raises(SearchError) as excinfo:
        chunk_search("E-21", mode="vector")
    assert excinfo.value.code == "VECTOR_INDEX_NOT_AVAILABLE"


def index_holds(model: str) -> None:
    """Pretend the corpus was embedded by `model` (the vectors and the recorded space)."""
    KnowledgeChunk.objects.update(embedding_model=model)
    EmbeddingSpaceState.objects.filter(pk=1).update(active_model=model)


def test_a_failing_provider_degrades_hybrid_to_keyword(corpus, openai_stub):
    index_holds(openai_stub_model())
    openai_stub.fail_next(500, count=5)
    result = chunk_search("E-21", mode="hybrid")
    assert result.degraded and "embedding provider failed" in result.degraded_reason
    assert titles(result) == ["Troubleshooting"]
    openai_stub.fail_next(500, count=5)
    with pytest.raises(SearchError) as excinfo:
        chunk_search("E-21", mode="vector")
    assert excinfo.value.code == "VECTOR_INDEX_EMBEDDING_GENERATION_FAILED"


def test_without_the_key_the_index_model_needs_search_falls_back_to_keyword(corpus, settings):
    index_holds("text-embedding-3-small")
    settings.OPENAI_API_KEY = ""
    result = chunk_search("E-21", mode="hybrid")
    assert result.degraded and "OPENAI_API_KEY" in result.degraded_reason
    assert result.model == "text-embedding-3-small" and titles(result) == ["Troubleshooting"]
    with pytest.raises(SearchError) as excinfo:
        chunk_search("E-21", mode="vector")
    assert excinfo.value.code == "VECTOR_INDEX_EMBEDDING_GENERATION_FAILED"
    assert excinfo.value.status == 503


def openai_stub_model() -> str:
    from django.conf import settings

    return settings.KIOKU_EMBEDDING_MODEL


@pytest.mark.parametrize(
    "query",
    [
        "'; DROP TABLE knowledge_knowledgechunk; --",
        "E-21' OR '1'='1",
        "battery) | (!x",
        "\\' & ! <-> :*",
        "%_%",
    ],
)
def test_injection_attempts_are_just_text(corpus, query):
    for mode in ("keyword", "hybrid", "vector"):
        chunk_search(query, mode=mode)
    assert KnowledgeChunk.objects.count() == 4


def test_highlighting_escapes_everything_but_mark():
    snippet = highlight_snippet(
        'Use <script>alert("x")</script> then E-21 & more', ["e-21", "script"]
    )
    assert "<script>" not in snippet and "&lt;<mark>script</mark>&gt;" in snippet
    assert "<mark>E-21</mark> &amp; more" in snippet
    assert snippet.replace("<mark>", "").replace("</mark>", "").count("<") == 0


def test_a_character_whose_lower_case_is_longer_does_not_shift_the_marks():
    # "İ".lower() is "i̇" (two characters): lowering the whole text moved every later match.
    snippet = highlight_snippet("İİİ Istanbul office: reset the router", ["router"])
    assert snippet.endswith("reset the <mark>router</mark>")


def test_filters_parse_dates_and_reject_inverted_ranges():
    parsed = parse_filters({"created_from": "2026-01-01", "created_to": "2026-01-31"})
    assert parsed.created_from.day == 1 and parsed.created_to.hour == 23
    with pytest.raises(SearchError):
        parse_filters({"created_from": "2026-02-01", "created_to": "2026-01-01"})


def test_the_vector_query_uses_the_hnsw_index(corpus):
    statements = captured_sql(lambda: chunk_search("battery", mode="vector"))
    sql, params = next((s, p) for s, p in statements if "<=>" in s)
    index = space_state().active.index_name(KnowledgeChunk)
    assert index == "chunk_embedding_hnsw_1536"  # the expression index of migration 0005
    assert f"Index Scan using {index} " in explain_plan(
        sql, params, needle="<=>", disable=("enable_sort",)
    )


def test_the_keyword_query_uses_the_gin_index(corpus):
    statements = captured_sql(lambda: chunk_search("E-21 battery", mode="keyword"))
    sql, params = next((s, p) for s, p in statements if "to_tsquery" in s and "ts_rank" in s)
    plan = explain_plan(
        sql, params, needle="ts_rank", disable=("enable_indexscan", "enable_nestloop")
    )
    assert "Bitmap Index Scan on chunk_search_vector_gin" in plan


def test_search_api_answers_with_hits(api, corpus):
    response = api.post("/api/v1/search", json={"query": "E-21", "mode": "keyword", "top_k": 3})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["hits"][0]["source_title"] == "Troubleshooting" and body["offline"] is True
    assert {"vector_rank", "keyword_rank", "snippet", "location"} <= set(body["hits"][0])


def test_search_api_error_codes(api, api_as, corpus):
    assert_error_shape(api.post("/api/v1/search", json={"query": ""}), 400, "SEARCH_EMPTY_QUERY")
    assert_error_shape(
        api.post("/api/v1/search", json={"query": "x", "top_k": 500}),
        400,
        "VECTOR_INDEX_INVALID_TOP_K",
    )
    assert_error_shape(
        api.post("/api/v1/search", json={"query": "x", "filters": {"evil": 1}}),
        400,
        "SEARCH_INVALID_FILTER",
    )
    assert_error_shape(api_as().post("/api/v1/search", json={"query": "x"}), 401, "AUTH_REQUIRED")


def test_search_command_prints_results(corpus, capsys):
    from django.core.management import call_command

    call_command("search", "E-21", "--mode", "keyword", "--top-k", "2")
    out = capsys.readouterr().out
    assert "Troubleshooting" in out and "keyword #1" in out


def test_hybrid_runs_the_keyword_query_on_a_second_connection(corpus, settings):
    threads = []

    def record(execute, sql, params, many, context):
        threads.append(("ts_rank" in sql, threading.current_thread().name))
        return execute(sql, params, many, context)

    side = chunk_search("E-21 strike plate", mode="hybrid", top_k=4)
    with connection.execute_wrapper(record):  # only wraps this thread's connection
        chunk_search("E-21 strike plate", mode="hybrid", top_k=4)
    assert threads and not any(is_keyword for is_keyword, _ in threads)

    settings.KIOKU_SEARCH_SIDE_WORKERS = 0
    inline = chunk_search("E-21 strike plate", mode="hybrid", top_k=4)
    assert [(h.chunk_id, h.score) for h in inline.hits] == [
        (h.chunk_id, h.score) for h in side.hits
    ]
    with connection.execute_wrapper(record):
        chunk_search("E-21 strike plate", mode="hybrid", top_k=4)
    assert any(is_keyword for is_keyword, _ in threads)


def test_inside_a_transaction_hybrid_sees_uncommitted_rows(settings):
    settings.OPENAI_API_KEY = ""
    with transaction.atomic():
        make_source(text="The gearbox squeals when cold.", title="Uncommitted")
        embedding_run()
        hits = chunk_search("gearbox squeals", mode="hybrid").hits
        assert [h.source_title for h in hits] == ["Uncommitted"]
        assert hits[0].keyword_rank == 1  # the keyword query ran on this connection


def test_common_words_are_left_out_of_the_some_terms_tier(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_SEARCH_KEYWORD_CANDIDATES = 10
    settings.KIOKU_SEARCH_COMMON_TERM_SHARE = 0.1  # the default
    for n in range(30):
        make_source(text=f"Gasket note {n}: check the gasket seal.", title=f"Gasket {n}")
    make_source(text="Zeolite cartridges absorb moisture.", title="Zeolite")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE knowledge_knowledgechunk")
    lexeme_shares_forget()
    assert lexeme_shares()["gasket"] > 0.9

    # No chunk holds both words; of those holding some, the rare word decides (the ten
    # candidates of "gasket OR zeolite" would all be gasket notes).
    assert titles(chunk_search("gasket zeolite", mode="keyword", top_k=5)) == ["Zeolite"]
    settings.KIOKU_SEARCH_COMMON_TERM_SHARE = 1.0  # off: nothing counts as common
    assert "Zeolite" not in titles(chunk_search("gasket zeolite", mode="keyword", top_k=5))
    lexeme_shares_forget()


def test_per_query_settings_do_not_outlive_the_query_in_a_callers_transaction(corpus):
    with transaction.atomic(), connection.cursor() as cursor:
        chunk_search("battery", mode="vector", filters={"metadata": {"brand": "Kagiya"}})  # exact
        chunk_search("E-21 battery", mode="keyword")
        cursor.execute(
            "SELECT current_setting('enable_indexscan'), current_setting('enable_seqscan')"
        )
        assert cursor.fetchone() == ("on", "on")
