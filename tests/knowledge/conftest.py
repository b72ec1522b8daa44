import pytest


@pytest.fixture
def vector_indexes_restored(transactional_db, settings):
    """Model-switch tests create and drop vector indexes (DDL outlives the test's flush): give the
    next test the index of the configured size on slot 1 again."""
    from knowledge.embed.spaces import SpaceState, VectorSpace, vector_indexes_sync
    from knowledge.models import EmbeddingSpaceState

    dimensions = settings.KIOKU_EMBEDDING_DIMENSIONS
    yield
    EmbeddingSpaceState.objects.all().delete()
    vector_indexes_sync(SpaceState(active=VectorSpace("any", dimensions, 1)))


@pytest.fixture
def embedded_manual(settings):
    """The KG-200 manual, ingested and embedded offline (local provider): ready to search and ask."""
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from tests.knowledge.factories import make_source

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    source = make_source(uri="kb://manual")
    embedding_run()
    return source
