"""The search page /knowledge/search/: hits as a reader sees them, filters and modes, HTMX
fragments, the service's error codes shown as messages, and a search typed in the browser."""

import re

import pytest
from playwright.sync_api import expect

from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import KnowledgeChunk
from knowledge.services import chunk_update
from tests.helpers import visible_text
from tests.knowledge.factories import BATTERY, ZH, make_source

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
SEARCH = "/knowledge/search/"

# Unlike the shared guide, this one also mentions the batteries.
E21 = """# Troubleshooting

## E-21 motor overcurrent

E-21 means the motor drew too much current because the door is misaligned and the bolt rubs the
strike plate. Adjust the strike plate, then replace the batteries if the lock still beeps.
"""


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""  # the local embedding provider, for queries and chunks alike


@pytest.fixture
def library():
    """An English manual, an English FAQ and a Traditional Chinese FAQ; nothing embedded yet."""
    return {
        "battery": make_source(
            text=BATTERY, title="Battery guide", uri="kb://battery", metadata={"language": "en"}
        ),
        "e21": make_source(
            text=E21,
            title="Troubleshooting",
            uri="kb://e21",
            source_type="faq",
            metadata={"language": "en"},
        ),
        "zh": make_source(
            text=ZH,
            title="常見問題",
            uri="kb://zh",
            source_type="faq",
            metadata={"language": "zh-TW"},
        ),
    }


@pytest.fixture
def embedded_library(library):
    # The embedder works in its own threads: the test needs transaction=True to share the rows.
    pipeline_resume()
    embedding_run()
    return library


def hit_titles(response) -> list[str]:
    return re.findall(r'class="search-hit-title"[^>]*>([^<]*)</a>', response.content.decode())


def test_the_page_requires_login(client):
    response = client.get(SEARCH, {"q": "batteries"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_an_empty_query_shows_a_hint(curator, library):
    response = curator.get(SEARCH)
    assert response.status_code == 200
    assert 'id="q"' in response.content.decode()
    text = visible_text(response)
    assert "Type to search" in text
    assert "SEARCH_EMPTY_QUERY" not in text


def test_the_nav_links_to_the_page(curator):
    assert f'href="{SEARCH}" aria-current="page"' in curator.get(SEARCH).content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_query_shows_highlighted_hits_linking_to_their_chunks(curator, embedded_library):
    response = curator.get(SEARCH, {"q": "replace batteries"})

    assert response.status_code == 200
    body = response.content.decode()
    assert hit_titles(response)[0] == "Battery guide"
    assert "<mark>batteries</mark>" in body and "<mark>Replace</mark>" in body
    chunk = embedded_library["battery"].chunks.get()
    assert f'href="/knowledge/chunks/{chunk.pk}/"' in body
    text = visible_text(response)
    assert "Battery guide › Replacing batteries" in text
    assert "vector #1 · " in text and "keyword #1 · " in text
    assert "offline embeddings" in text and " ms" in text
    # The best hit fills its score bar.
    assert '<meter class="score-bar" aria-hidden="true" min="0" max="100" value="100">' in body

    followed = curator.get(f"/knowledge/chunks/{chunk.pk}/")
    assert followed.status_code == 302
    assert followed["Location"].endswith(f"#chunk-{chunk.pk}")


@pytest.mark.django_db(transaction=True)
def test_markup_in_chunks_and_titles_is_shown_as_text(curator):
    make_source(
        text="Never paste <script>alert(1)</script> into the lock's web console.",
        text_format="text",
        title="<script>alert('title')</script> console notes",
    )
    # PostgreSQL's parser skips tags and what <script> encloses, so keyword search cannot find
    # "alert": the hit comes from the vector side of hybrid search.
    pipeline_resume()
    embedding_run()

    response = curator.get(SEARCH, {"q": "alert"})

    body = response.content.decode()
    assert "&lt;script&gt;<mark>alert</mark>(1)&lt;/script&gt;" in body
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt; console notes" in body
    assert "<script>alert" not in body


def test_keyword_mode_shows_keyword_ranks_only(curator, library):
    response = curator.get(SEARCH, {"q": "E-21", "mode": "keyword"})

    assert hit_titles(response) == ["Troubleshooting"]
    text = visible_text(response)
    assert "keyword #1 · " in text
    assert "vector #" not in text and "vector —" not in text
    assert 'value="keyword" checked' in response.content.decode()


def test_source_type_and_language_filters_narrow_the_hits(curator, library):
    everything = curator.get(SEARCH, {"q": "電池 batteries", "mode": "keyword"})
    assert set(hit_titles(everything)) == {"Battery guide", "Troubleshooting", "常見問題"}

    faqs = curator.get(SEARCH, {"q": "電池 batteries", "mode": "keyword", "type": "faq"})
    assert set(hit_titles(faqs)) == {"Troubleshooting", "常見問題"}

    chinese = curator.get(
        SEARCH,
        {"q": "電池 batteries", "mode": "keyword", "type": ["faq", "manual"], "language": "zh-TW"},
    )
    assert hit_titles(chinese) == ["常見問題"]
    assert "<mark>電池</mark>" in chinese.content.decode()
    assert '<option value="zh-TW" selected>' in chinese.content.decode()


def test_a_pinned_hit_is_marked(curator, library):
    chunk_update(chunk=library["e21"].chunks.get(), pinned=True)

    response = curator.get(SEARCH, {"q": "batteries", "mode": "keyword"})

    pinned = re.search(
        r'<article class="search-hit is-pinned".*?</article>', response.content.decode(), re.S
    )
    assert pinned and "Troubleshooting" in pinned.group() and ">pinned</span>" in pinned.group()


def test_an_htmx_request_gets_only_the_results(curator, library):
    response = curator.get(SEARCH, {"q": "batteries", "mode": "keyword"}, headers=HTMX)

    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="search-form"' not in body
    assert 'class="search-hit' in body
    assert "HX-Request" in response["Vary"]


def test_an_empty_knowledge_base_says_to_ingest_first(curator):
    response = curator.get(SEARCH, {"q": "batteries"})

    assert response.status_code == 409
    text = visible_text(response)
    assert "VECTOR_INDEX_EMPTY" in text and "ingest documents first" in text
    assert 'href="/knowledge/sources/"' in response.content.decode()
    # HTMX swaps 2xx answers only, so the fragment carries the message with a 200.
    partial = curator.get(SEARCH, {"q": "batteries"}, headers=HTMX)
    assert partial.status_code == 200 and "VECTOR_INDEX_EMPTY" in visible_text(partial)


@pytest.mark.parametrize("top_k", ["abc", "500", "0", "2.5", "--5"])
def test_a_bad_top_k_in_the_url_shows_the_error(curator, library, top_k):
    response = curator.get(SEARCH, {"q": "batteries", "top_k": top_k})

    assert response.status_code == 400
    assert "VECTOR_INDEX_INVALID_TOP_K" in visible_text(response)
    assert "top_k must be an integer from 1 to 100" in visible_text(response)


def test_an_unknown_source_type_shows_the_filter_error(curator, library):
    response = curator.get(SEARCH, {"q": "batteries", "type": "memo"}, headers=HTMX)

    assert response.status_code == 200
    assert "SEARCH_INVALID_FILTER" in visible_text(response)


def test_hybrid_without_embeddings_says_it_shows_keyword_results(curator, library):
    waiting = KnowledgeChunk.objects.count()

    response = curator.get(SEARCH, {"q": "batteries"})

    assert response.status_code == 200
    text = visible_text(response)
    assert "Keyword results only." in text
    assert f"No embeddings yet ({waiting} chunks waiting)" in text
    assert "keyword #1" in text and "vector —" not in text


def test_vector_mode_without_embeddings_offers_keyword_search(curator, library):
    response = curator.get(SEARCH, {"q": "batteries", "mode": "vector"})

    assert response.status_code == 409
    assert "VECTOR_INDEX_NOT_AVAILABLE" in visible_text(response)
    assert "?q=batteries&amp;mode=keyword" in response.content.decode()


# --- In the browser ---------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_results_follow_the_typing(logged_in_page, embedded_library, screenshot):
    page = logged_in_page
    page.goto(SEARCH)
    expect(page.locator(".search-hint")).to_be_visible()

    page.type("#q", "battery", delay=50)  # no Enter: results come 300 ms after the last key

    first = page.locator(".search-hit").first
    expect(first.locator(".search-hit-title")).to_have_text("Battery guide")
    expect(page).to_have_url(re.compile(r"[?&]q=battery\b"))
    expect(first.locator(".rank-vector")).to_contain_text("vector #")

    page.fill("#q", "")
    page.type("#q", "batteries", delay=50)
    expect(page.locator(".search-hit mark").first).to_have_text(re.compile("batteries", re.I))
    expect(page.locator(".search-summary")).to_contain_text("offline embeddings")

    page.locator(".mode-option", has_text="keyword").click()
    expect(page).to_have_url(re.compile(r"mode=keyword"))
    expect(page.locator(".rank-vector")).to_have_count(0)
    expect(page.locator(".rank-keyword").first).to_contain_text("keyword #1")

    page.fill("#q", "")
    page.type("#q", "電池沒電", delay=50)
    expect(page.locator(".search-hit-title").first).to_have_text("常見問題")
    expect(page.locator(".search-hit mark").first).to_have_text("電池沒電")

    page.locator(".mode-option", has_text="hybrid").click()
    page.fill("#q", "")
    page.type("#q", "replace batteries", delay=50)
    expect(page.locator(".rank-vector").first).to_be_visible()
    expect(page.locator(".search-hit-title").first).to_have_text("Battery guide")
    screenshot(page, "search")

    page.locator(".search-hit-title").first.click()
    chunk = embedded_library["battery"].chunks.get()
    expect(page).to_have_url(re.compile(rf"/knowledge/sources/\d+/#chunk-{chunk.pk}$"))


def test_a_hit_with_an_outcome_boost_is_marked_and_its_source_page_too(curator, library):
    from knowledge.feedback import chunk_feedback_apply
    from knowledge.models import FeedbackReason

    chunk = library["e21"].chunks.get()
    chunk_feedback_apply(
        chunk_ids=[chunk.pk], reason=FeedbackReason.DIAGNOSIS_WRONG, origin_ref="order:1"
    )

    results = curator.get(SEARCH, {"q": "batteries", "mode": "keyword"}).content.decode()
    source_page = curator.get(f"/knowledge/sources/{chunk.source_id}/").content.decode()

    assert 'class="badge flag flag-feedback is-down"' in results and "feedback -0.25" in results
    assert "feedback -0.25" in source_page
