import pytest

from knowledge.models import KnowledgeChunk, KnowledgeSource
from tests.knowledge.factories import fake_embed, make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(
        django_user_model.objects.create_superuser("root", "root@kioku.invalid", "pw-123456789")
    )
    return client


def run_action(client, action: str, ids: list[int]):
    return client.post(
        "/admin/knowledge/knowledgesource/",
        {"action": action, "_selected_action": [str(pk) for pk in ids]},
        follow=True,
    )


def test_source_list_filters_and_searches(admin_client):
    make_source(title="KG-200 Manual", uri="kb://a")
    make_source(title="FAQ", source_type="faq", uri="kb://b", text="Q? A.", text_format="text")
    html = admin_client.get(
        "/admin/knowledge/knowledgesource/?source_type__exact=faq"
    ).content.decode()
    assert "FAQ" in html and "KG-200 Manual" not in html
    assert (
        "KG-200 Manual"
        in admin_client.get("/admin/knowledge/knowledgesource/?q=KG-200").content.decode()
    )


def test_source_detail_shows_chunk_inlines(admin_client):
    source = make_source()
    html = admin_client.get(
        f"/admin/knowledge/knowledgesource/{source.pk}/change/"
    ).content.decode()
    assert "Batteries" in html or "eight AA batteries" in html


def test_disable_and_enable_actions(admin_client):
    source = make_source()
    run_action(admin_client, "disable", [source.pk])
    assert not KnowledgeSource.objects.get(pk=source.pk).enabled
    run_action(admin_client, "enable", [source.pk])
    assert KnowledgeSource.objects.get(pk=source.pk).enabled


def test_reembed_and_rechunk_actions(admin_client):
    source = make_source()
    fake_embed(source)
    run_action(admin_client, "reembed", [source.pk])
    assert set(source.chunks.values_list("embedding_status", flat=True)) == {"pending"}
    count = source.chunks.count()
    response = run_action(admin_client, "rechunk", [source.pk])
    assert f"into {count} chunks" in response.content.decode()


def test_delete_action_removes_chunks(admin_client):
    source = make_source()
    run_action(admin_client, "delete_with_chunks", [source.pk])
    assert not KnowledgeSource.objects.exists() and not KnowledgeChunk.objects.exists()


def test_editing_a_chunk_in_admin_queues_reembedding(admin_client):
    source = make_source()
    fake_embed(source)
    chunk = source.chunks.first()
    response = admin_client.post(
        f"/admin/knowledge/knowledgechunk/{chunk.pk}/change/",
        {
            "content": "Rewritten by a curator.",
            "enabled": "on",
            "valid_until_0": "",
            "valid_until_1": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    chunk.refresh_from_db()
    assert chunk.content == "Rewritten by a curator."
    assert chunk.embedding is None and chunk.embedding_status == "pending"


@pytest.mark.django_db(transaction=True)
def test_answer_admin_filters_not_helpful_and_shows_the_retrieved_chunks(admin_client, settings):
    from knowledge.answer.answering import answer_ask, answer_feedback
    from knowledge.embed.pipeline import embedding_run, pipeline_resume

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    make_source(uri="kb://a")
    embedding_run()
    bad = answer_ask(question="How do I replace the batteries?")
    good = answer_ask(question="What does E-21 mean?")
    answer_feedback(answer=bad, is_helpful=False, by="root")
    html = admin_client.get("/admin/knowledge/answer/?feedback__exact=not_helpful").content.decode()
    assert "How do I replace the batteries?" in html and "What does E-21 mean?" not in html
    detail = admin_client.get(f"/admin/knowledge/answer/{bad.pk}/change/").content.decode()
    chunk_id = bad.sources.get(rank=1).chunk_id
    assert f"/admin/knowledge/knowledgechunk/{chunk_id}/change/" in detail
    admin_client.post(
        "/admin/knowledge/answer/",
        {"action": "mark_not_helpful", "_selected_action": [str(good.pk)]},
        follow=True,
    )
    good.refresh_from_db()
    assert good.feedback == "not_helpful" and good.feedback_by == "root"


def test_a_chunks_signals_are_listed_and_reverted_from_the_admin(admin_client, settings):
    from knowledge.feedback import chunk_feedback_apply
    from knowledge.models import ChunkFeedback, FeedbackReason, RevertCause

    chunk = make_source().chunks.first()
    chunk_feedback_apply(
        chunk_ids=[chunk.pk], reason=FeedbackReason.ANSWER_NOT_HELPFUL, origin_ref="answer:3"
    )
    page = admin_client.get(f"/admin/knowledge/knowledgechunk/{chunk.pk}/change/").content.decode()
    assert "answer:3" in page and "Answer marked not helpful" in page
    signal = ChunkFeedback.objects.get()
    response = admin_client.post(
        "/admin/knowledge/chunkfeedback/",
        {"action": "revert", "_selected_action": [str(signal.pk)]},
        follow=True,
    )
    assert "Reverted 1 signal(s)" in response.content.decode()
    chunk.refresh_from_db()
    signal.refresh_from_db()
    assert chunk.feedback_boost == 0.0 and signal.revert_cause == RevertCause.CURATOR
    admin_client.post(
        "/admin/knowledge/chunkfeedback/",
        {"action": "restore", "_selected_action": [str(signal.pk)]},
    )
    chunk.refresh_from_db()
    assert chunk.feedback_boost == -settings.KIOKU_FEEDBACK_STEP
