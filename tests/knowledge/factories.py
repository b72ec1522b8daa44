"""Small helpers to put knowledge into the test database through the real services."""

from knowledge.ingest.ingestion import source_ingest_text
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
