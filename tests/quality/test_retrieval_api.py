"""POST/GET /api/v1/retrieval-tests: routing, scope, the comparison in the response, errors in
columns and as statuses, the shared history."""

import pytest

from quality.models import RetrievalTest
from quality.retrieval import retrieval_test_run
from tests.helpers import assert_error_shape
from tests.quality.retrieval_library import make_library

pytestmark = pytest.mark.django_db

URL = "/api/v1/retrieval-tests"


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""


def test_a_read_key_runs_a_test_and_gets_the_columns(api_as):
    make_library(embedded=False)
    client = api_as("read")
    body = {
        "query": "batteries",
        "variants": [{"mode": "keyword"}, {"mode": "vector", "min_similarity": 0.2}],
        "top_k": 3,
    }
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.content
    data = response.json()
    test = RetrievalTest.objects.get()
    assert data["id"] == test.pk and data["channel"] == "api" and data["user"] is None
    assert data["api_key"] == test.api_key.name and data["top_k"] == 3
    keyword, vector = data["columns"]
    assert keyword["label"] == "keyword" and keyword["error"] is None
    hit = keyword["hits"][0]
    assert hit["source_title"] == "Battery guide"
    assert hit["keyword_rank"] == 1 and hit["vector_rank"] is None and "<mark>" in hit["snippet"]
    assert vector["error"]["code"] == "VECTOR_INDEX_NOT_AVAILABLE" and vector["hits"] == []
    assert data["variants"][1] == {
        "mode": "vector",
        "min_similarity": 0.2,
        "rerank": None,
        "use_feedback": None,
    }


def test_without_variants_the_three_modes_are_compared(api):
    make_library(embedded=False)
    response = api.post(URL, json={"query": "E-21"})
    assert response.status_code == 201
    assert [c["label"] for c in response.json()["columns"]] == ["hybrid", "vector", "keyword"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": "x", "variants": []},
        {"query": "x", "variants": [{"mode": "keyword"}] * 5},
        {"query": "x", "variants": [{"mode": "fuzzy"}]},
        {"query": "x", "variants": [{"mode": "vector", "min_similarity": 1.5}]},
        {"query": "x", "variants": [{"mode": "vector", "rerank": "yes"}]},
        {"query": "x", "top_k": 51},
        {"query": "x", "top_k": "5"},
    ],
)
def test_bounds_are_refused_with_422(api, body):
    assert_error_shape(api.post(URL, json=body), 422, "VALIDATION_ERROR")
    assert not RetrievalTest.objects.exists()


def test_an_empty_query_and_bad_filters_are_the_search_errors(api):
    make_library(embedded=False)
    assert_error_shape(api.post(URL, json={"query": " "}), 400, "SEARCH_EMPTY_QUERY")
    body = {"query": "x", "filters": {"colour": "red"}}
    assert_error_shape(api.post(URL, json=body), 400, "SEARCH_INVALID_FILTER")
    assert not RetrievalTest.objects.exists()


def test_the_history_pages_page_and_api_tests_newest_first(api, make_user):
    make_library(embedded=False)
    one = [{"mode": "keyword"}]
    web = retrieval_test_run(
        query="from the page",
        variants=one,
        top_k=5,
        filters=None,
        channel="web",
        user=make_user("dora", "curator"),
    )
    api.post(URL, json={"query": "from the API", "variants": one})

    page = api.get(URL, data={"limit": 1}).json()
    assert (page["count"], page["limit"], page["offset"]) == (2, 1, 0)
    assert page["items"][0]["query"] == "from the API"
    second = api.get(URL, data={"limit": 1, "offset": 1}).json()["items"][0]
    assert (second["id"], second["user"], second["channel"]) == (web.pk, "dora", "web")
    assert api.get(URL, data={"channel": "web"}).json()["count"] == 1
    assert api.get(URL, data={"channel": "mail"}).status_code == 422


def test_one_test_by_id_and_an_unknown_id(api):
    make_library(embedded=False)
    created = api.post(URL, json={"query": "E-21", "variants": [{"mode": "keyword"}]}).json()
    got = api.get(f"{URL}/{created['id']}")
    assert got.status_code == 200 and got.json() == created
    assert_error_shape(api.get(f"{URL}/999999"), 404, "RETRIEVAL_TEST_NOT_FOUND")


def test_the_routes_need_a_key(api_as):
    client = api_as()
    assert_error_shape(client.get(URL), 401, "AUTH_REQUIRED")
    assert_error_shape(client.post(URL, json={"query": "x"}), 401, "AUTH_REQUIRED")
