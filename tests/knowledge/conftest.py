import pytest


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
