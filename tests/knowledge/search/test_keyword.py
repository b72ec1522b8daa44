"""The keyword leg's query: which words become terms and which are highlighted."""

import pytest

from knowledge.search.keyword import build_keyword_query
from knowledge.search.service import chunk_search
from tests.knowledge.factories import make_source


def test_a_lone_letter_is_neither_a_term_nor_highlighted():
    keyword = build_keyword_query("door won't open")
    assert keyword.highlight == ["door", "won", "open"]
    assert keyword.words == ["door", "won", "open"]


def test_a_lone_letter_is_a_term_when_it_is_the_whole_query():
    keyword = build_keyword_query("t")
    assert keyword.words == ["t"]
    assert keyword.highlight == []


def test_a_lone_cjk_character_stays_a_highlighted_term():
    keyword = build_keyword_query("鍵 won't")
    assert keyword.highlight == ["鍵", "won"]


@pytest.mark.django_db
def test_search_does_not_mark_every_letter_t_in_snippets(settings):
    settings.OPENAI_API_KEY = ""
    make_source(
        text="# Door\n\nIf the door won't open, test the strike plate; it often sticks in winter.",
        title="Door troubleshooting",
        uri="kb://door",
    )
    result = chunk_search("door won't open", mode="keyword")
    snippets = [hit.snippet for hit in result.hits]
    assert any("<mark>door</mark>" in s.lower() for s in snippets)
    assert not any("<mark>t</mark>" in s.lower() for s in snippets)
