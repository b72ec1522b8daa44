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
