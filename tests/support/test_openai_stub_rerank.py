"""The stub's ``POST /v1/rerank`` (Cohere/Jina/vLLM shape), through plain HTTP."""

import httpx
import pytest

from support.openai_stub import OpenAIStub, stub_rerank_score

AUTH = {"Authorization": "Bearer test-key"}
DOCUMENTS = [
    "Adjust the strike plate when the lock shows E-21.",
    "Replace all eight AA batteries at once.",
    "The strike plate rubs the bolt: E-21 means motor overcurrent.",
]


@pytest.fixture
def stub():
    server = OpenAIStub().start()
    yield server
    server.stop()


def rerank(stub, body, headers=AUTH, timeout=5.0):
    return httpx.post(f"{stub.base_url}/rerank", json=body, headers=headers, timeout=timeout)


def test_the_score_is_the_share_of_query_words_and_word_pairs_in_the_document():
    # "strike plate": the words strike, plate and the pair (strike, plate) → 3 terms.
    assert stub_rerank_score("strike plate", "adjust the strike plate") == 1.0
    assert stub_rerank_score("strike plate", "the plate of the strike") == round(2 / 3, 6)
    assert stub_rerank_score("Strike", "STRIKE!") == 1.0
    assert stub_rerank_score("strike plate", "batteries") == 0.0
    assert stub_rerank_score("!!", "anything") == 0.0


def test_rerank_answers_indexes_best_first_with_the_stub_scores(stub):
    response = rerank(stub, {"model": "rr", "query": "E-21 strike plate", "documents": DOCUMENTS})
    assert response.status_code == 200
    body = response.json()
    expected = sorted(
        range(3), key=lambda i: (-stub_rerank_score("E-21 strike plate", DOCUMENTS[i]), i)
    )
    assert [r["index"] for r in body["results"]] == expected == [0, 2, 1]
    assert [r["relevance_score"] for r in body["results"]] == [
        stub_rerank_score("E-21 strike plate", DOCUMENTS[i]) for i in expected
    ]
    assert body["model"] == "rr" and body["usage"]["total_tokens"] > 0
    assert "document" not in body["results"][0]


def test_top_n_cuts_the_results_and_return_documents_adds_the_text(stub):
    body = {
        "query": "batteries",
        "documents": [{"text": d} for d in DOCUMENTS],
        "top_n": 1,
        "return_documents": True,
    }
    response = rerank(stub, body)
    assert response.status_code == 200
    assert response.json()["results"] == [
        {"index": 1, "relevance_score": 1.0, "document": {"text": DOCUMENTS[1]}}
    ]


def test_rerank_requests_are_recorded(stub):
    rerank(stub, {"query": "q", "documents": ["a"], "top_n": 1})
    [request] = stub.requests_for("/rerank")
    assert request["json"] == {"query": "q", "documents": ["a"], "top_n": 1}
    assert request["status"] == 200 and stub.rerank_requests == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"documents": ["a"]}, "query"),
        ({"query": " ", "documents": ["a"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": ["a", 3]}, "documents[1]"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ({"query": "q", "documents": ["a"], "model": ""}, "model"),
        ({"query": "q", "documents": ["a"] * 1001}, "documents"),
    ],
)
def test_bad_rerank_requests_get_400_naming_the_parameter(stub, body, param):
    response = rerank(stub, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_rerank_needs_a_key(stub):
    assert rerank(stub, {"query": "q", "documents": ["a"]}, headers={}).status_code == 401


def test_rerank_honours_injected_failures_and_hangs(stub):
    stub.fail_next(503)
    failed = rerank(stub, {"query": "q", "documents": ["a"]})
    assert failed.status_code == 503 and failed.json()["error"]["type"] == "server_error"
    stub.hang_next(5)
    with pytest.raises(httpx.ReadTimeout):
        rerank(stub, {"query": "q", "documents": ["a"]}, timeout=0.2)
    assert rerank(stub, {"query": "q", "documents": ["q"]}).json()["results"][0] == {
        "index": 0,
        "relevance_score": 1.0,
    }
