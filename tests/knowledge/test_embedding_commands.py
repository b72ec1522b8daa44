import pytest
from django.core.management import call_command

from knowledge.embedding import pipeline_resume
from knowledge.models import KnowledgeChunk
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def test_embed_pending_embeds_everything_and_reports(capsys):
    make_source()
    call_command("embed_pending")
    out = capsys.readouterr().out
    assert "Embedded 3, failed 0" in out and "Pending now: 0." in out
    assert not KnowledgeChunk.objects.filter(embedding_status="pending").exists()


def test_embed_pending_once_processes_a_single_batch(settings, capsys):
    settings.KIOKU_EMBEDDING_CLAIM_ROWS = 2
    make_source()
    call_command("embed_pending", "--once")
    assert "Pending now: 1." in capsys.readouterr().out


def test_retry_dead_letters_command(capsys):
    source = make_source()
    KnowledgeChunk.objects.filter(source=source).update(
        embedding_status="dead", embedding_attempts=5
    )
    call_command("retry_dead_letters")
    assert "Queued 3 dead letter(s)" in capsys.readouterr().out
    assert set(KnowledgeChunk.objects.values_list("embedding_status", "embedding_attempts")) == {
        ("pending", 0)
    }


def test_reembed_queues_rows_of_another_model(capsys):
    make_source()
    call_command("embed_pending")
    KnowledgeChunk.objects.update(embedding_model="text-embedding-ada-002")
    call_command("reembed")
    assert "Queued 3 chunk(s)" in capsys.readouterr().out
