"""quality.retrieval: one query searched under several settings side by side, a setting the
search refuses shown in its own column, the settings kept per user, the history, and a hit
turned into an evaluation case (through the evaluation services)."""

import inspect

import pytest

from core.errors import ApiError
from core.services import api_key_create
from knowledge.search.service import chunk_search
from quality.models import CaseOrigin, EvalCase, RetrievalTest
from quality.retrieval import (
    retrieval_hit_case_add,
    retrieval_preference_get,
    retrieval_preference_save,
    retrieval_test_list,
    retrieval_test_run,
)
from quality.services import eval_case_create, eval_set_ensure
from tests.quality.retrieval_library import make_library

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""  # the local embedding provider, for queries and chunks alike


def run(query: str = "replace batteries", **overrides):
    arguments = {"variants": None, "top_k": 5, "filters": None, "channel": "web"}
    return retrieval_test_run(query=query, **{**arguments, **overrides})


def column(test: RetrievalTest, index: int) -> dict:
    return test.results["columns"][index]


def titles(test: RetrievalTest, index: int) -> list[str]:
    return [hit["source_title"] for hit in column(test, index)["hits"]]


@pytest.mark.django_db(transaction=True)
def test_each_variant_is_a_column_with_the_scores_of_its_legs(make_user):
    make_library(embedded=True)
    user = make_user("carol", "curator")
    test = run(variants=[{"mode": "hybrid"}, {"mode": "vector"}, {"mode": "keyword"}], user=user)

    assert [c["label"] for c in test.results["columns"]] == ["hybrid", "vector", "keyword"]
    assert titles(test, 0)[0] == titles(test, 2)[0] == "Battery guide"
    hybrid, vector, keyword = (column(test, i)["hits"][0] for i in range(3))
    assert hybrid["vector_rank"] and hybrid["keyword_rank"] == 1
    assert vector["vector_score"] is not None and vector["keyword_rank"] is None
    assert keyword["keyword_score"] is not None and keyword["vector_rank"] is None
    assert "<mark>" in keyword["snippet"]
    assert all(column(test, i)["error"] is None for i in range(3))
    assert column(test, 1)["model"] and column(test, 1)["offline"] is True
    stored = RetrievalTest.objects.get()
    assert (stored.user, stored.channel, stored.query) == (user, "web", "replace batteries")
    assert stored.config["top_k"] == 5 and len(stored.config["variants"]) == 3


@pytest.mark.django_db(transaction=True)
def test_a_threshold_changes_only_its_column():
    make_library(embedded=True)
    test = run(variants=[{"mode": "vector"}, {"mode": "vector", "min_similarity": 0.99}])
    assert column(test, 1)["label"] == "vector · ≥ 0.99"
    assert len(titles(test, 0)) == 3  # every chunk has some similarity
    assert titles(test, 1) == []


def test_a_variant_the_search_refuses_shows_its_error_in_its_column():
    make_library(embedded=False)  # nothing embedded: vector search cannot run yet
    test = run(variants=[{"mode": "vector"}, {"mode": "keyword"}])
    error = column(test, 0)["error"]
    assert error["code"] == "VECTOR_INDEX_NOT_AVAILABLE" and error["status"] == 409
    assert column(test, 0)["hits"] == []
    assert titles(test, 1) == ["Battery guide"]
    assert RetrievalTest.objects.count() == 1


def test_a_threshold_the_search_refuses_fails_only_its_column():
    make_library(embedded=False)
    test = run(variants=[{"mode": "keyword"}, {"mode": "hybrid", "min_similarity": 2}])
    assert column(test, 0)["error"] is None
    assert column(test, 1)["error"]["code"] == "SEARCH_INVALID_THRESHOLD"


def test_no_variants_compare_hybrid_vector_and_keyword():
    make_library(embedded=False)
    test = run(variants=None)
    assert [c["variant"]["mode"] for c in test.results["columns"]] == [
        "hybrid",
        "vector",
        "keyword",
    ]


@pytest.mark.parametrize(
    ("query", "code"), [("   ", "SEARCH_EMPTY_QUERY"), ("x" * 2001, "SEARCH_QUERY_TOO_LONG")]
)
def test_a_query_the_search_refuses_stores_nothing(query, code):
    make_library(embedded=False)
    with pytest.raises(ApiError) as raised:
        run(query)
    assert raised.value.code == code
    assert not RetrievalTest.objects.exists()


def test_bad_filters_store_nothing():
    with pytest.raises(ApiError) as raised:
        run(filters={"colour": "red"})
    assert raised.value.code == "SEARCH_INVALID_FILTER"
    assert not RetrievalTest.objects.exists()


@pytest.mark.parametrize(
    "settings_",
    [
        {"variants": []},
        {"variants": [{"mode": "keyword"}] * 5},
        {"variants": [{"mode": "fuzzy"}]},
        {"variants": [{"mode": "keyword", "colour": "red"}]},
        {"variants": [{"mode": "vector", "min_similarity": "high"}]},
        {"variants": [{"mode": "vector", "rerank": "yes"}]},
        {"variants": ["keyword"]},
        {"top_k": 51},
        {"top_k": 0},
        {"top_k": True},
    ],
)
def test_settings_of_the_wrong_shape_are_refused(settings_):
    with pytest.raises(ApiError) as raised:
        run(**settings_)
    assert raised.value.code == "RETRIEVAL_TEST_INVALID" and raised.value.status == 422
    assert not RetrievalTest.objects.exists()


def test_an_option_the_search_does_not_have_yet_shows_in_its_column():
    if "rerank" in inspect.signature(chunk_search).parameters:
        pytest.skip("chunk_search takes rerank now: the column runs it (see the rerank tests)")
    make_library(embedded=False)
    test = run(variants=[{"mode": "keyword", "rerank": True}, {"mode": "keyword"}])
    assert column(test, 0)["label"] == "keyword · rerank"
    assert column(test, 0)["error"]["code"] == "RETRIEVAL_OPTION_UNAVAILABLE"
    assert titles(test, 1) == ["Battery guide"]


# --- Settings kept per user ---------------------------------------------------------------------


def test_a_user_without_settings_gets_the_defaults(make_user):
    config = retrieval_preference_get(user=make_user("dora", "viewer"))
    assert [v["mode"] for v in config["variants"]] == ["hybrid", "vector", "keyword"]
    assert config["top_k"] == 10 and config["filters"] == {}


def test_saved_settings_come_back_for_that_user_only(make_user):
    dora, eve = make_user("dora", "curator"), make_user("eve", "curator")
    variants = [{"mode": "keyword"}, {"mode": "vector", "min_similarity": 0.3}]
    retrieval_preference_save(
        user=dora, variants=variants, top_k=20, filters={"source_type": ["faq"]}
    )
    retrieval_preference_save(user=dora, variants=variants[:1], top_k=7, filters=None)

    config = retrieval_preference_get(user=dora)
    assert config["variants"] == [{"mode": "keyword", "min_similarity": None}]
    assert (config["top_k"], config["filters"]) == (7, {})
    assert retrieval_preference_get(user=eve)["top_k"] == 10


def test_settings_are_saved_only_if_a_run_would_take_them(make_user):
    dora = make_user("dora", "curator")
    with pytest.raises(ApiError) as raised:
        retrieval_preference_save(user=dora, variants=[{"mode": "fuzzy"}], top_k=5, filters=None)
    assert raised.value.code == "RETRIEVAL_TEST_INVALID"
    with pytest.raises(ApiError) as raised:
        retrieval_preference_save(user=dora, variants=None, top_k=5, filters={"colour": 1})
    assert raised.value.code == "SEARCH_INVALID_FILTER"
    assert retrieval_preference_get(user=dora)["top_k"] == 10


# --- History --------------------------------------------------------------------------------------


def test_the_history_holds_page_and_api_tests_newest_first(make_user):
    make_library(embedded=False)
    key, _ = api_key_create(name="bench", scopes=("read",))
    web = run("batteries", variants=[{"mode": "keyword"}], user=make_user("dora", "curator"))
    api = run("E-21", variants=[{"mode": "keyword"}], channel="api", api_key=key)

    assert list(retrieval_test_list()) == [api, web]
    assert list(retrieval_test_list(channel="api")) == [api]
    assert retrieval_test_list().get(pk=api.pk).api_key.name == "bench"


# --- A hit as an evaluation case -----------------------------------------------------------------


@pytest.fixture
def keyword_test():
    library = make_library(embedded=False)
    test = run("batteries E-21", variants=[{"mode": "keyword"}], top_k=5)
    hits = {hit["source_title"]: hit for hit in column(test, 0)["hits"]}
    return test, library, hits


def test_a_hit_becomes_a_case_expecting_its_chunk(keyword_test):
    test, library, hits = keyword_test
    eval_set = eval_set_ensure(name="Lock questions")
    case, created = retrieval_hit_case_add(
        test=test,
        chunk_id=hits["Troubleshooting"]["chunk_id"],
        eval_set=eval_set,
        grade=3,
        created_by="dora",
    )
    assert created
    assert (case.question, case.language, case.origin) == ("batteries E-21", "en", "retrieval")
    assert case.origin_ref == f"test:{test.pk}" and case.created_by == "dora"
    [expected] = case.expected.all()
    chunk = library["e21"].chunks.get()
    assert (expected.source, expected.chunk, expected.grade) == (library["e21"], chunk, 3)
    assert (expected.source_title, expected.source_uri) == ("Troubleshooting", "kb://e21")
    assert expected.chunk_ordinal == chunk.ordinal


def test_a_second_hit_of_the_same_query_joins_the_same_case(keyword_test):
    test, library, hits = keyword_test
    eval_set = eval_set_ensure(name="Lock questions")
    first, _ = retrieval_hit_case_add(
        test=test, chunk_id=hits["Troubleshooting"]["chunk_id"], eval_set=eval_set, grade=3
    )
    second, created = retrieval_hit_case_add(
        test=test, chunk_id=hits["Battery guide"]["chunk_id"], eval_set=eval_set, grade=1
    )
    again, _ = retrieval_hit_case_add(
        test=test, chunk_id=hits["Battery guide"]["chunk_id"], eval_set=eval_set, grade=2
    )
    assert first == second == again and not created
    assert EvalCase.objects.count() == 1
    grades = dict(first.expected.values_list("source_title", "grade"))
    assert grades == {"Troubleshooting": 3, "Battery guide": 2}


def test_the_same_hit_in_another_set_is_another_case(keyword_test):
    test, _, hits = keyword_test
    chunk_id = hits["Battery guide"]["chunk_id"]
    one, _ = retrieval_hit_case_add(
        test=test, chunk_id=chunk_id, eval_set=eval_set_ensure(name="A"), grade=3
    )
    two, _ = retrieval_hit_case_add(
        test=test, chunk_id=chunk_id, eval_set=eval_set_ensure(name="B"), grade=3
    )
    assert one != two


def test_a_chunk_that_is_not_a_hit_of_the_test_is_refused(keyword_test):
    test, library, _ = keyword_test
    with pytest.raises(ApiError) as raised:
        retrieval_hit_case_add(
            test=test,
            chunk_id=library["zh"].chunks.get().pk,
            eval_set=eval_set_ensure(name="A"),
            grade=3,
        )
    assert raised.value.code == "RETRIEVAL_HIT_NOT_FOUND"
    assert not EvalCase.objects.exists()


@pytest.mark.parametrize("grade", [0, 4])
def test_a_grade_outside_1_to_3_is_refused(keyword_test, grade):
    test, _, hits = keyword_test
    with pytest.raises(ApiError) as raised:
        retrieval_hit_case_add(
            test=test,
            chunk_id=hits["Battery guide"]["chunk_id"],
            eval_set=eval_set_ensure(name="A"),
            grade=grade,
        )
    assert raised.value.code == "EVAL_CASE_INVALID"
    assert not EvalCase.objects.exists()


# --- The evaluation services this relies on (quality/services.py) ---------------------------------


def test_a_set_name_is_reused_and_must_not_be_blank():
    assert eval_set_ensure(name=" Locks ") == eval_set_ensure(name="Locks")
    for name in ("", "   ", "x" * 101):
        with pytest.raises(ApiError) as raised:
            eval_set_ensure(name=name)
        assert raised.value.code == "EVAL_SET_INVALID_NAME"


def test_a_case_of_the_same_origin_twice_is_one_case():
    library = make_library(embedded=False)
    eval_set = eval_set_ensure(name="Locks")
    expected = [{"source_id": library["zh"].pk, "chunk_id": None, "grade": 2}]
    arguments = {"eval_set": eval_set, "question": "電池沒電怎麼辦", "expected": expected}
    one = eval_case_create(**arguments, origin=CaseOrigin.ANSWER, origin_ref="answer:1")
    two = eval_case_create(**arguments, origin=CaseOrigin.ANSWER, origin_ref="answer:1")
    assert one == two and one.language == "zh"
    assert one.expected.get().chunk is None


def test_a_case_expecting_an_unknown_source_is_refused():
    with pytest.raises(ApiError) as raised:
        eval_case_create(
            eval_set=eval_set_ensure(name="Locks"),
            question="What is E-21?",
            expected=[{"source_id": 999_999, "chunk_id": None, "grade": 1}],
        )
    assert raised.value.code == "EVAL_CASE_UNKNOWN_SOURCE"
    assert not EvalCase.objects.exists()
