"""Shared start-up for benchmark scripts: a separate database so dev data is never touched."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def django_setup(database: str = "kioku_bench") -> None:
    """KIOKU_BENCH_DB overrides the database (e.g. a small smoke run beside a loaded one)."""
    database = os.environ.get("KIOKU_BENCH_DB") or database
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not os.environ.get("DATABASE_URL"):
        os.environ["KIOKU_DB_NAME"] = database
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def counted_chunk_rows(source_id: int, texts: list[str]) -> list:
    """ChunkRows of `texts` in order, for chunks_copy(), their tokens counted as ingestion
    counts every chunk it stores."""
    from knowledge.ingest.chunk_copy import ChunkRow
    from knowledge.ingest.ingestion import content_hash
    from knowledge.tokens import get_token_counter

    counter = get_token_counter()
    return [
        ChunkRow(
            source_id=source_id,
            ordinal=i,
            content=text,
            content_hash=content_hash(text),
            token_count=counter.count(text),
            token_counter=counter.name,
            location={},
        )
        for i, text in enumerate(texts)
    ]
