"""Demo data: a small original corpus (Kagiya / Lumio electronic locks) in English, Traditional
Chinese and Japanese, loaded by `./scripts/run` into an empty database."""

import json
from pathlib import Path

from knowledge.ingest.ingestion import source_ingest_file
from knowledge.models import KnowledgeSource

DEMO_CORPUS = Path(__file__).resolve().parent / "demo_corpus"
DEMO_URI_PREFIX = "demo://"


def demo_manifest() -> list[dict]:
    return json.loads((DEMO_CORPUS / "manifest.json").read_text(encoding="utf-8"))


def demo_is_loaded() -> bool:
    return KnowledgeSource.objects.exists()


def demo_load() -> str:
    sources = chunks = 0
    for entry in demo_manifest():
        path = DEMO_CORPUS / entry["file"]
        metadata = {**entry.get("metadata", {}), "language": entry["language"], "demo": True}
        result = source_ingest_file(
            data=path.read_bytes(),
            filename=path.name,
            source_type=entry["source_type"],
            title=entry["title"],
            uri=DEMO_URI_PREFIX + entry["file"],
            metadata=metadata,
        )
        sources += result.outcome != "failed"
        chunks += result.chunks
    return f"{sources} sources, {chunks} chunks"
