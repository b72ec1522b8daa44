"""The HNSW graph settings (KIOKU_HNSW_M, KIOKU_HNSW_EF_CONSTRUCTION): what the indexes were
built with, the status that compares, and the rebuild that applies them (knowledge/embed/spaces.py,
`manage.py vector_index_rebuild`). DDL here runs in the test's transaction and is rolled back."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection

from dispatch.models import ProblemCard
from knowledge.embed.spaces import (
    space_state,
    vector_index_graphs,
    vector_index_sql,
    vector_indexes_rebuild,
)
from knowledge.models import KnowledgeChunk
from knowledge.queries import index_status

pytestmark = pytest.mark.django_db


def chunk_index() -> str:
    return space_state().active.index_name(KnowledgeChunk)


def card_index() -> str:
    return space_state().active.index_name(ProblemCard)


def test_migrations_built_every_vector_index_with_the_settings_graph(settings):
    configured = {
        "m": settings.KIOKU_HNSW_M,
        "ef_construction": settings.KIOKU_HNSW_EF_CONSTRUCTION,
    }
    assert vector_index_graphs() == {chunk_index(): configured, card_index(): configured}
    assert index_status()["graph"] == {
        "built": configured,
        "configured": configured,
        "rebuild_needed": False,
    }


def test_a_new_space_index_is_built_with_the_settings_graph(settings):
    settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION = 12, 48
    assert vector_index_sql(KnowledgeChunk, space_state().active).endswith(
        "WITH (m = 12, ef_construction = 48)"
    )


def test_an_index_without_options_reads_as_pgvector_defaults():
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {chunk_index()}")
        cursor.execute(
            f"CREATE INDEX {chunk_index()} ON knowledge_knowledgechunk USING hnsw "
            f"({space_state().active.cast()} halfvec_cosine_ops)"
        )
    assert vector_index_graphs()[chunk_index()] == {"m": 16, "ef_construction": 64}


def test_changed_settings_show_a_rebuild_is_needed_and_the_rebuild_applies_them(settings):
    before = {"m": settings.KIOKU_HNSW_M, "ef_construction": settings.KIOKU_HNSW_EF_CONSTRUCTION}
    settings.KIOKU_HNSW_M, settings.KIOKU_HNSW_EF_CONSTRUCTION = 24, 100
    wanted = {"m": 24, "ef_construction": 100}
    status = index_status()["graph"]
    assert status == {"built": before, "configured": wanted, "rebuild_needed": True}

    rebuilt = vector_indexes_rebuild()

    assert {(r.index, tuple(r.before.values()), tuple(r.after.values())) for r in rebuilt} == {
        (chunk_index(), tuple(before.values()), (24, 100)),
        (card_index(), tuple(before.values()), (24, 100)),
    }
    # Only valid indexes are listed: the rebuilt ones are in place.
    assert vector_index_graphs() == {chunk_index(): wanted, card_index(): wanted}
    assert index_status()["graph"]["rebuild_needed"] is False
    assert vector_indexes_rebuild() == []  # nothing left to do


def test_every_rebuilds_indexes_that_already_match():
    rebuilt = vector_indexes_rebuild(every=True)
    assert sorted(r.index for r in rebuilt) == sorted([chunk_index(), card_index()])
    assert all(r.before == r.after for r in rebuilt)


def test_command_check_lists_without_rebuilding(settings):
    settings.KIOKU_HNSW_EF_CONSTRUCTION = settings.KIOKU_HNSW_EF_CONSTRUCTION + 8
    out = StringIO()
    call_command("vector_index_rebuild", "--check", stdout=out)
    text = out.getvalue()
    assert f"ef_construction = {settings.KIOKU_HNSW_EF_CONSTRUCTION}" in text.splitlines()[0]
    assert f"{chunk_index()}: built with" in text
    assert index_status()["graph"]["rebuild_needed"] is True


def test_command_rebuilds_and_says_so(settings):
    settings.KIOKU_HNSW_M = settings.KIOKU_HNSW_M + 2
    out = StringIO()
    call_command("vector_index_rebuild", stdout=out)
    assert f"Rebuilt {chunk_index()}" in out.getvalue()
    out = StringIO()
    call_command("vector_index_rebuild", stdout=out)
    assert "Every vector index already has that graph." in out.getvalue()
