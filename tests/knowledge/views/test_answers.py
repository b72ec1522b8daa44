"""The Ask page, answer pages, feedback, the feedback queue and content gaps; a question asked
in the browser with the answer streaming in."""

import re

import pytest
from playwright.sync_api import expect

from knowledge.answer.answering import answer_ask
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import Answer, AnswerFeedback
from tests.helpers import visible_text
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db(transaction=True)

ASK = "/knowledge/ask/"
QUESTION = "How do I replace the batteries?"


def test_the_page_requires_login(client):
    assert client.get(ASK).status_code == 302


def test_the_nav_links_to_the_page(curator):
    assert f'href="{ASK}"' in curator.get("/knowledge/search/").content.decode()


def test_the_page_says_answers_are_extractive_offline(curator, embedded_manual):
    text = visible_text(curator.get(ASK))
    assert "Offline mode: answers are extractive" in text


def test_without_javascript_the_form_opens_the_stored_answer(curator, embedded_manual, staff_user):
    response = curator.post(ASK, {"q": QUESTION, "top_k": "5"})
    answer = Answer.objects.get()
    assert response.status_code == 302 and response.url == f"/knowledge/answers/{answer.pk}/"
    assert answer.asked_by == staff_user and answer.channel == "web"
    page = curator.get(response.url).content.decode()
    chunk = answer.sources.get(rank=1).chunk
    assert (
        f'<a class="citation" href="/knowledge/chunks/{chunk.pk}/" data-chunk="{chunk.pk}">[1]</a>'
        in page
    )


def test_an_empty_question_shows_its_error_code(curator, embedded_manual):
    response = curator.post(ASK, {"q": " "})
    assert response.status_code == 400
    assert "ASK_EMPTY_QUESTION" in response.content.decode()


def test_the_stream_endpoint_sends_events(curator, embedded_manual):
    response = curator.post("/knowledge/ask/stream/", {"q": QUESTION})
    assert response["Content-Type"] == "text/event-stream"
    body = b"".join(response.streaming_content).decode()
    assert [line[7:] for line in body.splitlines() if line.startswith("event: ")] == [
        "sources",
        "delta",
        "done",
    ]


def test_answer_text_is_escaped(curator, embedded_manual, settings, openai_stub):
    openai_stub.chat_reply = "<script>alert(1)</script> Replace them [1]."
    pipeline_resume()
    make_source(uri="kb://manual-2", title="Manual 2")
    embedding_run()
    answer = answer_ask(question=QUESTION)
    page = curator.get(f"/knowledge/answers/{answer.pk}/").content.decode()
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page


def test_only_curators_give_feedback(client, make_user, embedded_manual):
    answer = answer_ask(question=QUESTION)
    client.force_login(make_user("reader", "viewer", is_staff=True))
    url = f"/knowledge/answers/{answer.pk}/feedback/"
    assert client.post(url, {"helpful": "no"}).status_code == 403
    page = client.get(f"/knowledge/answers/{answer.pk}/")
    assert page.status_code == 200
    assert "Not helpful" not in page.content.decode()


def test_not_helpful_feedback_lands_in_the_queue_with_its_passages(curator, embedded_manual):
    answer = answer_ask(question=QUESTION)
    response = curator.post(
        f"/knowledge/answers/{answer.pk}/feedback/",
        {"helpful": "no", "comment": "Wrong cells"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    assert "Not helpful" in visible_text(response)
    answer.refresh_from_db()
    assert answer.feedback == AnswerFeedback.NOT_HELPFUL and answer.feedback_by == "curator"
    queue = curator.get("/knowledge/answers/feedback-queue/").content.decode()
    assert QUESTION in queue and "Wrong cells" in queue
    chunk = answer.sources.get(rank=1).chunk
    assert f'href="/knowledge/chunks/{chunk.pk}/"' in queue
    assert curator.post(f"/knowledge/answers/{answer.pk}/feedback/", {}).status_code == 400


def test_content_gaps_list_unanswerable_questions(curator, embedded_manual):
    answer_ask(question="What is the capital of France?")
    answer_ask(question="what is the capital of France")
    answer_ask(question=QUESTION)
    page = curator.get("/knowledge/answers/gaps/").content.decode()
    rows = re.findall(r'class="gap-question">([^<]*)</td><td class="gap-times">(\d+)<', page)
    assert [(question.lower().rstrip("?"), times) for question, times in rows] == [
        ("what is the capital of france", "2")
    ]


# --- In the browser ---------------------------------------------------------------------------


@pytest.fixture
def online_library(openai_stub):
    pipeline_resume()
    source = make_source(uri="kb://manual")
    embedding_run()
    return source


@pytest.mark.browser
def test_an_answer_streams_in_with_citations_and_takes_feedback(
    logged_in_page, online_library, openai_stub, screenshot
):
    openai_stub.chat_reply = (
        "Replace all eight AA batteries at once when the lock shows E-01 [1]. "
        "Use alkaline cells only."
    )
    openai_stub.stream_delay = 0.05
    page = logged_in_page
    page.goto(ASK)
    page.fill("#q", "How do I replace the batteries on the KG-200?")
    page.click("#ask-submit")

    # While the model writes: the sources are listed and the text grows.
    expect(page.locator(".answer.is-streaming .source-link").first).to_be_visible()
    expect(page.locator(".answer-text")).to_contain_text("Replace all eight")
    # Done: the stored answer replaces the stream, [1] links to the cited chunk.
    citation = page.locator(".answer-text a.citation")
    expect(citation).to_have_text("[1]")
    expect(page.locator(".answer-mode")).to_contain_text("online")
    screenshot(page, "ask")
    answer = Answer.objects.get()
    assert answer.answer == openai_stub.chat_reply

    page.fill(f"#comment-{answer.pk}", "Should mention the low-battery beep")
    page.click("button[value=no]")
    expect(page.locator(".feedback-given")).to_contain_text("Not helpful")
    page.goto("/knowledge/answers/feedback-queue/")
    expect(page.locator(".queue-question")).to_contain_text("replace the batteries")

    page.goto(f"/knowledge/answers/{answer.pk}/")
    page.locator("a.citation").click()
    chunk = answer.sources.get(rank=1).chunk
    expect(page).to_have_url(re.compile(rf"/knowledge/sources/\d+/#chunk-{chunk.pk}$"))
