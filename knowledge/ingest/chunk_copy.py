"""Fast bulk writes of chunks with PostgreSQL COPY (one round trip for thousands of rows)."""

import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.backends.utils import CursorWrapper
from django.utils import timezone
from psycopg import Copy

from knowledge.embed.spaces import (
    VectorSpace,
    active_vector_index_names,
    index_build_settings,
    space_record,
    space_state_locked,
)
from knowledge.models import EmbeddingStatus, KnowledgeChunk

CHUNK_TABLE = KnowledgeChunk._meta.db_table

COPY_COLUMNS = (
    "source_id",
    "ordinal",
    "content",
    "content_hash",
    "token_count",
    "token_counter",
    "location",
    "enabled",
    "pinned",
    "valid_until",
    "embedding",
    "embedding_model",
    "embedding_alt",
    "embedding_alt_model",
    "embedding_text_hash",
    "embedding_status",
    "embedding_attempts",
    "embedding_next_attempt_at",
    "embedding_last_error",
    "embedding_errors",
    "embedded_at",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class ChunkRow:
    source_id: int
    ordinal: int
    content: str
    content_hash: str
    token_count: int
    location: dict
    token_counter: str = ""  # see KnowledgeChunk.token_counter
    enabled: bool = True
    pinned: bool = False
    valid_until: datetime | None = None
    # Text form of halfvecs ("[0.1,0.2,…]") kept from an earlier revision, per vector slot, with
    # their models (the caller keeps only vectors of the spaces the slots hold now).
    embedding: str | None = None
    embedding_model: str = ""
    embedding_alt: str | None = None
    embedding_alt_model: str = ""
    embedded_at: datetime | None = None
    # Holds a vector of the space the pipeline fills, so nothing is owed.
    is_embedded: bool = False


class HalfvecBinary:
    """Vectors in PostgreSQL's binary `halfvec` format (dimensions, unused, big-endian float16s),
    all converted by numpy in one call: per-row Python adapters cost ~100 µs a row, this ~10 µs.
    Used by every binary COPY of vectors (bulk import, the embedding write-back)."""

    def __init__(self, vectors: Sequence[Sequence[float]]) -> None:
        import numpy as np

        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim != 2:
            raise ValueError(f"expected a list of vectors, got an array of shape {matrix.shape}")
        self.dimensions = matrix.shape[1]
        self._count = matrix.shape[0]
        self._header = struct.pack(">hh", self.dimensions, 0)
        self._halves = matrix.astype(">f2").tobytes()
        self._stride = self.dimensions * 2

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> bytes:
        return self._header + self._halves[index * self._stride : (index + 1) * self._stride]


def chunks_copy(rows: Iterable[ChunkRow]) -> int:
    """COPY chunk rows into the table (text format). Must run inside the caller's transaction."""
    now = timezone.now()
    count = 0
    sql = f"COPY {CHUNK_TABLE} ({', '.join(COPY_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, _copy(cursor, sql) as copy:
        for row in rows:
            embedded = row.is_embedded
            copy.write_row(
                (
                    row.source_id,
                    row.ordinal,
                    row.content,
                    row.content_hash,
                    row.token_count,
                    row.token_counter,
                    json.dumps(row.location, ensure_ascii=False),
                    row.enabled,
                    row.pinned,
                    row.valid_until,
                    row.embedding,
                    row.embedding_model if row.embedding is not None else "",
                    row.embedding_alt,
                    row.embedding_alt_model if row.embedding_alt is not None else "",
                    row.content_hash if embedded else "",
                    EmbeddingStatus.DONE if embedded else EmbeddingStatus.PENDING,
                    0,
                    now,
                    "",
                    "[]",
                    row.embedded_at if embedded else None,
                    now,
                    now,
                )
            )
            count += 1
    return count


def chunks_with_vectors_copy(
    rows: Sequence[ChunkRow], vectors: Sequence[Sequence[float]], *, model: str
) -> int:
    """Binary COPY of chunks that already carry vectors of `model` (imports, benchmarks).

    The vectors go to the slot of the space holding that model and size (the first import
    records it as the active space); vectors of a space the index does not hold are refused.
    Rows whose vectors fill the active space while a switch runs stay owed a target vector.
    Must run inside the caller's transaction."""
    encoded = HalfvecBinary(vectors)
    if len(encoded) != len(rows):
        raise ValueError(f"expected {len(rows)} vectors, got {len(encoded)}")
    space, status = _import_space(model, encoded.dimensions)
    now = _pg_timestamp(timezone.now())
    model_bytes = model.encode()
    sql = f"COPY {CHUNK_TABLE} ({', '.join(COPY_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
    with connection.cursor() as cursor, _copy(cursor, sql) as copy:
        copy.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        buffer = bytearray()
        for index, row in enumerate(rows):
            fields = _binary_fields(
                row, encoded[index], slot=space.slot, model=model_bytes, status=status, now=now
            )
            _binary_tuple_append(buffer, fields)
            if len(buffer) > 1 << 20:
                copy.write(bytes(buffer))
                buffer.clear()
        buffer += b"\xff\xff"  # end of data
        copy.write(bytes(buffer))
    return len(rows)


@contextmanager
def _copy(cursor: CursorWrapper, sql: str) -> Iterator[Copy]:
    """A COPY whose server errors arrive as Django's (IntegrityError, …), as from any cursor.

    psycopg's QueuedLibpqWriter (a thread sends while this one encodes) was measured: +5–8 %
    rows/s for vectors alone, +1.5 % with chunk texts (the server's per-row work bounds it),
    and it lets the encoder run up to 1,024 buffers ahead (+122 MB client RSS at 100,000 rows).
    Not kept (BENCHMARKS.md)."""
    with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
        yield copy


def _import_space(model: str, dimensions: int) -> tuple[VectorSpace, bytes]:
    """The space whose slot takes imported vectors of (model, dimensions), and the status of
    the rows (done when it is the space being filled). The spaces stay share-locked until commit."""
    space_record()
    state = space_state_locked()
    space = next(
        (s for s in (state.active, state.target) if s and s.holds(model, dimensions)),
        None,
    )
    if space is None:
        target = f", switching to {state.target}" if state.target else ""
        raise ValueError(
            f"The index holds {state.active}{target}: {model} vectors of {dimensions} "
            "dimensions have no slot. Configure that model and run `manage.py reembed` first."
        )
    status = (EmbeddingStatus.DONE if space == state.writing else EmbeddingStatus.PENDING).value
    return space, status.encode()


def _binary_fields(
    row: ChunkRow, vector: bytes, *, slot: int, model: bytes, status: bytes, now: bytes
) -> tuple[bytes | None, ...]:
    """One chunk's values in COPY_COLUMNS order, in PostgreSQL's binary format (None: NULL)."""
    hash_bytes = row.content_hash.encode()
    slots = (vector, model, None, b"") if slot == 1 else (None, b"", vector, model)
    return (
        struct.pack(">q", row.source_id),
        struct.pack(">i", row.ordinal),
        row.content.encode(),
        hash_bytes,
        struct.pack(">i", row.token_count),
        row.token_counter.encode(),
        b"\x01" + json.dumps(row.location, ensure_ascii=False).encode(),
        b"\x01" if row.enabled else b"\x00",
        b"\x01" if row.pinned else b"\x00",
        None if row.valid_until is None else _pg_timestamp(row.valid_until),
        *slots,
        hash_bytes,
        status,
        b"\x00\x00",
        now,
        b"",
        b"\x01[]",
        now,
        now,
        now,
    )


def _binary_tuple_append(buffer: bytearray, fields: tuple[bytes | None, ...]) -> None:
    """A binary COPY tuple: the field count, then each field's length and bytes (-1: NULL)."""
    buffer += struct.pack(">h", len(fields))
    for field in fields:
        if field is None:
            buffer += b"\xff\xff\xff\xff"
        else:
            buffer += struct.pack(">i", len(field)) + field


_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _pg_timestamp(moment: datetime) -> bytes:
    delta = moment - _PG_EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return struct.pack(">q", micros)


KEYWORD_INDEX = "chunk_search_vector_gin"


@contextmanager
def chunk_indexes_deferred(names: Iterable[str] | None = None) -> Iterator[None]:
    """For very large imports: drop the keyword (GIN) and the active vector (HNSW) indexes (or
    `names`), load, then rebuild them in one pass, which is far cheaper than maintaining them row
    by row. Search is slower while the indexes are missing, so use it for imports, not routine
    ingestion."""
    if names is None:
        names = [KEYWORD_INDEX, *active_vector_index_names()]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname = ANY(%s)",
            [CHUNK_TABLE, list(names)],
        )
        definitions = cursor.fetchall()
        for name, _ in definitions:
            cursor.execute(f'DROP INDEX IF EXISTS "{name}"')
    try:
        yield
    finally:
        with index_build_settings() as cursor:
            for _, definition in definitions:
                cursor.execute(definition.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
