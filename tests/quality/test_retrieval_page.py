"""The retrieval test page /quality/retrieval/ without a browser: permissions, a run drawn in
columns by the search page's partial, errors shown, the settings form, history and adding a
hit as a case."""

import re

import pytest

from quality.models import EvalCase, EvalSet, RetrievalTest
from quality.retrieval import retrieval_test_run
from tests.helpers import visible_text
from tests.quality.retrieval_library import make_library

pytestmark = pytest.mark.django_db

PAGE = "/quality/retrieval/"
RUN = "/quality/retrieval/run/"
ADD = "/quality/retrieval/cases/"
HTMX = {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""


def form(query: str = "batteries", **fields) -> dict:
    data = {"q": query, "top_k": "5", "mode_0": "keyword", "mode_1": "vector"}
    data.update(fields)
    return data


def column_labels(response) -> list[str]:
    text = response.content.decode()
    return re.findall(r'class="retrieval-column-label">([^<]*)</h2>', text)


def test_a_viewer_sees_the_history_but_no_run_button(agent):
    make_library(embedded=False)
    retrieval_test_run(
        query="E-21", variants=[{"mode": "keyword"}], top_k=5, filters=None, channel="api"
    )
    response = agent.get(PAGE)
    assert response.status_code == 200
    text = response.content.decode()
    assert 'id="retrieval-run"' not in text and "E-21" in visible_text(response)
    assert agent.post(RUN, form()).status_code == 403


def test_a_run_redirects_to_the_stored_test_with_a_column_per_setting(curator, staff_user):
    make_library(embedded=False)
    response = curator.post(RUN, form())
    test = RetrievalTest.objects.get()
    assert response.status_code == 302 and response["Location"] == f"{PAGE}?test={test.pk}"
    assert (test.user, test.channel) == (staff_user, "web")

    page = curator.get(response["Location"])
    assert column_labels(page) == ["keyword", "vector"]
    text = visible_text(page)
    assert "Battery guide" in text and "keyword #1" in text
    assert "VECTOR_INDEX_NOT_AVAILABLE" in text  # the vector column's own error
    assert 'value="batteries"' in page.content.decode()  # the query back in the form


def test_an_htmx_run_gets_the_workspace_and_the_new_url(curator):
    make_library(embedded=False)
    response = curator.post(RUN, form(mode_1=""), headers=HTMX)
    test = RetrievalTest.objects.get()
    assert response.status_code == 200
    assert response["HX-Push-Url"] == f"{PAGE}?test={test.pk}"
    text = response.content.decode()
    assert "<html" not in text and column_labels(response) == ["keyword"]
    assert 'id="retrieval-history"' in text and "Add as eval case" in text


def test_the_last_settings_fill_the_form_next_time(curator):
    make_library(embedded=False)
    curator.post(
        RUN, form(mode_0="vector", min_similarity_0="0.4", mode_1="", top_k="7", type="faq")
    )
    text = curator.get(PAGE).content.decode()
    assert re.search(r'<option value="vector" selected>', text)
    assert 'name="min_similarity_0" value="0.4"' in text
    assert 'name="top_k" value="7"' in text
    assert re.search(r'value="faq"[^>]*checked', text)
    assert 'id="q" name="q" value=""' in text  # the query is not a setting


def test_an_empty_query_is_shown_as_the_search_error(curator):
    response = curator.post(RUN, form("  "), headers=HTMX)
    assert response.status_code == 200
    assert "SEARCH_EMPTY_QUERY" in visible_text(response)
    assert not RetrievalTest.objects.exists()


def test_no_column_chosen_is_shown_as_an_error(curator):
    response = curator.post(RUN, form(mode_0="", mode_1=""))
    assert response.status_code == 422
    assert "RETRIEVAL_TEST_INVALID" in visible_text(response)


def test_a_threshold_that_is_not_a_number_is_a_form_error(curator):
    response = curator.post(RUN, form(min_similarity_0="high"))
    assert response.status_code == 422
    assert "Enter a number" in visible_text(response)


def test_an_unknown_test_id_is_a_404_with_the_form(curator):
    response = curator.get(PAGE, {"test": "999999"})
    assert response.status_code == 404
    assert "RETRIEVAL_TEST_NOT_FOUND" in visible_text(response)
    assert curator.get(PAGE, {"test": "abc"}).status_code == 404
    assert curator.get(PAGE, {"test": "9" * 30}).status_code == 404  # past bigint: no 500


def test_a_hit_is_added_as_a_case_to_a_new_set(curator):
    library = make_library(embedded=False)
    curator.post(RUN, form("E-21", mode_1=""))
    test = RetrievalTest.objects.get()
    chunk_id = library["e21"].chunks.get().pk
    data = {"test": test.pk, "chunk": chunk_id, "new_set": "Error codes", "grade": "2"}

    response = curator.post(ADD, data, headers=HTMX)
    assert response.status_code == 200
    case = EvalCase.objects.get()
    assert f"as case {case.pk}" in visible_text(response)
    assert case.eval_set.name == "Error codes" and case.created_by == "curator"
    assert list(case.expected.values_list("chunk_id", "grade")) == [(chunk_id, 2)]

    # The set now exists: the next form offers it; choosing it adds to the same case.
    data = {"test": test.pk, "chunk": chunk_id, "eval_set": case.eval_set.pk, "grade": "3"}
    response = curator.post(ADD, data, headers=HTMX)
    assert "already asks this" in visible_text(response)
    assert case.expected.get().grade == 3


def test_adding_without_a_set_says_so(curator):
    make_library(embedded=False)
    test = retrieval_test_run(
        query="E-21", variants=[{"mode": "keyword"}], top_k=5, filters=None, channel="web"
    )
    hit = test.results["columns"][0]["hits"][0]
    data = {"test": test.pk, "chunk": hit["chunk_id"], "grade": "3"}
    response = curator.post(ADD, data, headers=HTMX)
    assert "Choose an evaluation set" in visible_text(response)
    response = curator.post(ADD, {**data, "chunk": 999_999, "new_set": "X"}, headers=HTMX)
    assert "RETRIEVAL_HIT_NOT_FOUND" in visible_text(response)
    assert not EvalCase.objects.exists()
    assert not EvalSet.objects.exists()  # the set named for it neither


def test_a_plain_post_adds_and_goes_back_to_the_test(curator):
    make_library(embedded=False)
    test = retrieval_test_run(
        query="E-21", variants=[{"mode": "keyword"}], top_k=5, filters=None, channel="web"
    )
    hit = test.results["columns"][0]["hits"][0]
    data = {"test": test.pk, "chunk": hit["chunk_id"], "new_set": "Codes", "grade": "3"}
    response = curator.post(ADD, data, follow=True)
    assert response.redirect_chain[-1][0] == f"{PAGE}?test={test.pk}"
    assert "Added to “Codes”" in visible_text(response)


def test_ids_past_bigint_are_form_errors(curator):
    data = {"test": "9" * 30, "chunk": "1", "eval_set": "9" * 30, "grade": "3"}
    response = curator.post(ADD, data, headers=HTMX)
    assert response.status_code == 200 and "less than or equal" in visible_text(response)


def test_a_viewer_cannot_add_a_case(agent):
    assert agent.post(ADD, {}).status_code == 403


def test_a_chunk_in_two_columns_has_a_distinct_id_in_each(curator):
    make_library(embedded=False)
    page = curator.get(curator.post(RUN, form())["Location"]).content.decode()
    ids = re.findall(r'<article class="search-hit[^"]*" id="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids))
    assert all(identifier.startswith("column") for identifier in ids)
