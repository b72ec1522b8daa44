"""`manage.py ask "question"`."""

import pytest
from django.core.management import CommandError, call_command

from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import Answer
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def library(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_source(uri="kb://manual")
    embedding_run()


def test_it_prints_the_answer_citations_and_mode(library, capsys):
    call_command("ask", "How do I replace the batteries?", "--top-k", "3")
    out = capsys.readouterr().out
    answer = Answer.objects.get()
    assert f"Answer #{answer.pk} (offline, extractive, Answered" in out
    assert "[1] KG-200 Manual (chunk" in out
    assert answer.channel == "cli" and answer.top_k == 3


def test_it_reports_error_codes(library):
    with pytest.raises(CommandError, match="ASK_INVALID_TOP_K"):
        call_command("ask", "batteries", "--top-k", "0")
