import pytest
from django.core.management import call_command

from knowledge.embed.pipeline import pipeline_resume
from knowledge.models import KnowledgeChunk
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def offline(settings, vector_indexes_restored):
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


def test_reembed_switches_to_the_configured_size_and_reports(settings, capsys):
    make_source()
    call_command("embed_pending")
    call_command("reembed")
    assert "already uses local-hash-v1 (1536 dimensions)" in capsys.readouterr().out
    settings.KIOKU_EMBEDDING_DIMENSIONS = 64
    call_command("reembed")
    out = capsys.readouterr().out
    assert "Switch started: local-hash-v1 (1536 dimensions) → local-hash-v1 (64" in out
    assert "Queued 3 row(s)" in out
    call_command("embed_pending")
    call_command("reembed")
    assert "already uses local-hash-v1 (64 dimensions)" in capsys.readouterr().out
