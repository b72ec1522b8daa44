"""The library the retrieval test's tests search: the shared lock guides (English battery and
E-21 guides, a Chinese FAQ), ingested through the real services."""

from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import KnowledgeSource
from tests.knowledge.factories import BATTERY, E21, ZH, make_source


def make_library(*, embedded: bool) -> dict[str, KnowledgeSource]:
    """Embedding runs in the embedder's own threads: a test embedding needs transaction=True."""
    library = {
        "battery": make_source(text=BATTERY, title="Battery guide", uri="kb://battery"),
        "e21": make_source(text=E21, title="Troubleshooting", uri="kb://e21", source_type="faq"),
        "zh": make_source(text=ZH, title="常見問題", uri="kb://zh", source_type="faq"),
    }
    if embedded:
        pipeline_resume()
        embedding_run()
    return library
