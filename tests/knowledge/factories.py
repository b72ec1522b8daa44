"""Small helpers to put knowledge into the test database through the real services."""

import time
from datetime import datetime

from django.conf import settings
from django.db import connection

from knowledge.answer.answering import normalize_question
from knowledge.ingest.ingestion import source_ingest_text
from knowledge.models import Answer, AnswerFeedback, AnswerMode, AnswerOutcome, KnowledgeSource

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


# Short lock guides in English, Chinese and Japanese shared by the search and answer tests.
BATTERY = """# Battery guide

## Replacing batteries

Replace all eight AA batteries at once when the lock shows E-01. Use alkaline cells only.
"""
E21 = """# Troubleshooting

## E-21 motor overcurrent

E-21 means the motor drew too much current because the door is misaligned and the bolt rubs the
strike plate. Adjust the strike plate.
"""
ZH = """# 電子鎖常見問題

## 電池沒電怎麼辦

電池沒電時請使用 9V 電池緊急供電，再用密碼開門。指紋辨識失敗時請擦乾手指。
"""
JA = """# 電子錠ガイド

## 電池切れ

電池切れの時は非常用キーで解錠してください。電子錠の暗証番号は六桁です。
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


def make_answer(
    question: str,
    *,
    outcome: str = AnswerOutcome.ANSWERED,
    feedback: str = AnswerFeedback.NONE,
    asked_at: datetime | None = None,
) -> Answer:
    """A stored answer as the ask service leaves it; `asked_at` backdates it."""
    answer = Answer.objects.create(
        question=question,
        question_normalized=normalize_question(question),
        language="en",
        outcome=outcome,
        mode=AnswerMode.OFFLINE,
        top_k=5,
        channel="web",
        feedback=feedback,
    )
    if asked_at is not None:
        Answer.objects.filter(pk=answer.pk).update(created_at=asked_at)
    return answer


def make_chunks(n: int, *, prefix: str = "Chunk") -> KnowledgeSource:
    text = "\n\n".join(
        f"## {prefix} {i}\n\n{prefix} number {i} about lock battery E-{i:02d}." for i in range(n)
    )
    return make_source(text=f"# Doc\n\n{text}", uri=f"kb://{prefix}-{n}-{time.monotonic_ns()}")


def fake_embed(source: KnowledgeSource, *, model: str = "test-model") -> None:
    """Give every chunk a vector in slot 1, as the embedding pipeline would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE knowledge_knowledgechunk SET embedding = array_fill(0.5::real, ARRAY[%s])::halfvec,"
            " embedding_model = %s, embedding_status = 'done', embedding_text_hash = content_hash,"
            " embedded_at = now() WHERE source_id = %s",
            [settings.KIOKU_EMBEDDING_DIMENSIONS, model, source.pk],
        )


FAQ_MD = """# Door lock FAQ

## Why does the lock beep three times?

The batteries are low. Replace all of them within a week.

## Can I open the door with a key?

Yes, the override key opens the door when the batteries are empty.
"""
