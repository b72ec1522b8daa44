"""Small helpers to put knowledge into the test database through the real services."""

from knowledge.ingestion import source_ingest_text
from knowledge.models import KnowledgeSource

MANUAL_MD = """# KG-200 Manual

## Batteries

The KG-200 runs on eight AA batteries. Replace all eight at once when the lock shows E-01.

## Troubleshooting

### E-21

E-21 means the motor drew too much current: the door is misaligned and the bolt rubs the strike.
Adjust the strike plate and test again.

## Warranty

Two years on the electronics, five years on the mechanical lock body.
"""


def make_source(
    *,
    text: str = MANUAL_MD,
    title: str = "KG-200 Manual",
    text_format: str = "markdown",
    source_type: str = "manual",
    uri: str = "",
    metadata: dict | None = None,
) -> KnowledgeSource:
    result = source_ingest_text(
        text=text,
        text_format=text_format,
        source_type=source_type,
        title=title,
        uri=uri,
        metadata=metadata,
    )
    return result.source
