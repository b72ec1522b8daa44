"""Session knowledge never leaks across the channel and user filters: 200 archived sessions of
other channels and users say what the query asks, nearer to it than the one session the filter
allows, and every mode — through the service and the API, exact and through the HNSW index —
answers with the allowed session only, and does find it (the filter is applied in SQL before
LIMIT, not to the nearest rows after it)."""

import pytest
from django.db import connection

from core.statements import split_settings_statement
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.spaces import space_state
from knowledge.models import KnowledgeChunk
from knowledge.search.service import chunk_search
from tests.knowledge.factories import make_source
from tests.knowledge.search.sql_plans import captured_sql, cte_plan

pytestmark = pytest.mark.django_db(transaction=True)

QUERY = "KG-500 keypad beeps three times battery low"
DECOYS = 200
MODES = ("vector", "keyword", "hybrid")
# Each filter lets in the allowed session only.
FILTERS = ({"channel": "ops"}, {"user": "alice"}, {"channel": "ops", "user": "alice"})


@pytest.fixture
def crowd(settings):
    """The allowed session (channel ops, alice) and 200 nearer ones of other channels and users."""
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    allowed = make_source(
        text=(
            "Alice asked why the garage gate lock complains at night. Bot: the KG-500 keypad "
            "beeps three times when its battery is low; replace all four cells and the beeping "
            "stops. Alice: thanks, the gate opens fine now."
        ),
        text_format="text",
        title="Session ops",
        uri="kb://session/ops",
        source_type="session",
        metadata={"channel": "ops", "participants": ["alice", "kioku-bot"]},
    )
    for i in range(DECOYS):
        make_source(
            text=(
                f"KG-500 keypad beeps three times, battery low. Ticket {i}: the KG-500 keypad "
                "beeps three times when the battery is low."
            ),
            text_format="text",
            title=f"Session other {i}",
            uri=f"kb://session/other-{i}",
            source_type="session",
            # Near misses too: a channel and a user that contain the allowed ones.
            metadata={
                "channel": ["sales", "ops-archive", "Ops", "support"][i % 4],
                "participants": [f"user-{i}", "alice2" if i % 2 else "Alice"],
            },
        )
    embedding_run()
    return allowed


def _source_ids(result) -> set[int]:
    return {hit.source_id for hit in result.hits}


def test_the_decoys_are_nearer_to_the_query_than_the_allowed_session(crowd):
    for mode in MODES:
        unfiltered = chunk_search(QUERY, mode=mode, top_k=20)
        assert len(unfiltered.hits) == 20
        assert crowd.pk not in _source_ids(unfiltered), mode


def test_every_mode_answers_a_filtered_search_with_the_allowed_session_only(crowd):
    for mode in MODES:
        for filters in FILTERS:
            result = chunk_search(QUERY, mode=mode, top_k=10, filters=filters)
            assert _source_ids(result) == {crowd.pk}, (mode, filters)


def test_through_the_hnsw_index_every_mode_still_keeps_to_the_filter(crowd, settings):
    settings.KIOKU_SEARCH_EXACT_MAX_ROWS = 0  # a filtered vector search walks the HNSW graph
    for mode in MODES:
        for filters in FILTERS:
            result = chunk_search(QUERY, mode=mode, top_k=10, filters=filters)
            assert _source_ids(result) == {crowd.pk}, (mode, filters)


def test_the_api_keeps_to_the_filter_in_every_mode(crowd, api):
    for mode in MODES:
        for filters in FILTERS:
            body = {"query": QUERY, "mode": mode, "top_k": 10, "filters": filters}
            response = api.post("/api/v1/search", json=body)
            assert response.status_code == 200, response.content
            assert {hit["source_id"] for hit in response.json()["hits"]} == {crowd.pk}, body


def _vector_statement(settings) -> tuple[dict, str, list]:
    settings.KIOKU_SEARCH_EXACT_MAX_ROWS = 0
    statements = captured_sql(
        lambda: chunk_search(QUERY, mode="vector", top_k=5, filters={"channel": "ops"})
    )
    sql, params = next((sql, params) for sql, params in statements if "<=>" in sql)
    return split_settings_statement(sql, params, needle="<=>")


def _run_on_the_index(values: dict, sql: str, params: list, *, explain: bool) -> list:
    """The search's own statement with its settings, the planner kept on the HNSW index (on a
    table this small it would rightly read every row instead)."""
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            for name, value in values.items():
                cursor.execute("SELECT set_config(%s, %s, true)", [name, value])
            for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
                cursor.execute(f"SET LOCAL {setting} = off")
            cursor.execute(("EXPLAIN " if explain else "") + sql, params)
            return cursor.fetchall()
        finally:
            cursor.execute("ROLLBACK")


def test_the_hnsw_plan_filters_inside_the_index_scan_below_the_limit(crowd, settings):
    values, sql, params = _vector_statement(settings)
    assert values["hnsw.iterative_scan"] == "relaxed_order"
    plan = "\n".join(row[0] for row in _run_on_the_index(values, sql, params, explain=True))
    index = space_state().active.index_name(KnowledgeChunk)
    scan = plan[plan.index("Limit") :]
    assert f"Index Scan using {index}" in scan, plan
    # The filter is a condition of the scan under the LIMIT, not applied to its output.
    assert "source_id = ANY" in scan.split(f"Index Scan using {index}")[1], plan
    rows = _run_on_the_index(values, sql, params, explain=False)
    assert rows and {row[4] for row in rows} == {crowd.pk}


def test_without_the_iterative_scan_the_index_would_lose_the_allowed_session(crowd, settings):
    # What the iterative scan is for: the first ef_search candidates of the graph are all
    # decoys, so a plain HNSW scan filtered afterwards finds nothing.
    values, sql, params = _vector_statement(settings)
    values = {**values, "hnsw.iterative_scan": "off"}
    assert _run_on_the_index(values, sql, params, explain=False) == []


def test_an_answer_asked_with_a_filter_cites_and_lists_the_allowed_session_only(crowd, api):
    for filters in FILTERS:
        body = {"question": "Why does the KG-500 keypad beep three times?", "filters": filters}
        response = api.post("/api/v1/ask", json=body)
        assert response.status_code == 200, response.content
        answer = response.json()
        assert answer["sources"], answer
        assert {source["source_id"] for source in answer["sources"]} == {crowd.pk}, filters
        assert "Ticket" not in answer["answer"]


def test_the_keyword_plan_filters_the_candidates_before_their_limit(crowd):
    statements = captured_sql(
        lambda: chunk_search(QUERY, mode="keyword", top_k=5, filters={"channel": "ops"})
    )
    sql, params = next((sql, params) for sql, params in statements if "ts_rank" in sql)
    values, sql, params = split_settings_statement(sql, params, needle="ts_rank")
    plan = "\n".join(row[0] for row in _run_on_the_index(values, sql, params, explain=True))
    for tier in ("every_candidates", "some_candidates"):  # every term, some terms
        candidates = cte_plan(plan, tier)
        assert "Limit" in candidates and "source_id = ANY" in candidates.split("Limit", 1)[1], plan
