import pytest

from core.demo import demo_load_if_empty
from knowledge.demo import demo_manifest
from knowledge.models import KnowledgeChunk, KnowledgeSource

pytestmark = pytest.mark.django_db


def test_demo_corpus_loads_every_file_once():
    lines = demo_load_if_empty()
    manifest = demo_manifest()
    assert any(line.startswith("knowledge:") for line in lines)
    # The sessions demo archives its chats as session sources, the dispatch demo's resolved
    # cards are case sources: the corpus files are the rest.
    documents = KnowledgeSource.objects.filter(uri__startswith="demo://")
    assert documents.count() == len(manifest)
    assert not KnowledgeSource.objects.filter(status="failed").exists()
    languages = set(KnowledgeSource.objects.values_list("metadata__language", flat=True))
    assert {"en", "zh-TW", "ja"} <= languages
    assert demo_load_if_empty() == []  # not loaded twice
    assert documents.count() == len(manifest)


def test_demo_corpus_has_findable_cjk_and_error_codes():
    demo_load_if_empty()
    assert KnowledgeChunk.objects.filter(content__contains="E-21").exists()
    assert KnowledgeChunk.objects.filter(content__contains="電池沒電").exists()
    assert (
        KnowledgeChunk.objects.filter(content__contains="電池")
        .filter(source__metadata__language="ja")
        .exists()
    )
