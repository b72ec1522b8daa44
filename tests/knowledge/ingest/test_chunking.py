import unicodedata

import pytest

from knowledge import tokens
from knowledge.ingest.base import ChunkDraft, Section
from knowledge.ingest.chunking import (
    ChunkingConfig,
    ChunkingConfigError,
    chunk_sections,
    chunk_text,
    config_for_source_type,
)
from knowledge.tokens import EstimatedTokenCounter, TiktokenCounter
from tests.knowledge.test_tokens import build_small_encoding

ESTIMATOR = EstimatedTokenCounter()
SMALL_ENCODING = TiktokenCounter(build_small_encoding())

JAPANESE = (
    "プリンターの電源を入れてください。エラーコードE102が表示されましたか？"
    "トナーカートリッジを交換します！修理には三日かかります。担当者から折り返し連絡します。"
)
CHINESE = (
    "請先關閉印表機的電源。畫面上是否顯示錯誤代碼？技術人員將於明天到府服務！"
    "更換碳粉匣大約需要十分鐘。若問題仍然存在，請聯絡客服中心。"
)


def english_paragraph(n: int, sentences: int = 5) -> str:
    return " ".join(
        f"Step {n}.{k} tells the technician to check the printer tray." for k in range(sentences)
    )


MIXED = "\n\n".join(
    [
        english_paragraph(1),
        JAPANESE * 3,
        "- part 4471: toner\n- part 4472: drum\n- part 4473: fuser unit",
        CHINESE * 4,
        english_paragraph(2, sentences=12),
        "x" * 3000,
        "あ" * 800,
        english_paragraph(3),
    ]
)


@pytest.fixture(params=[ESTIMATOR, SMALL_ENCODING], ids=["estimator", "tiktoken"])
def counter(request):
    return request.param


def assert_chunks_address(drafts: list[ChunkDraft], text: str, *, config, counter) -> None:
    assert drafts
    for draft in drafts:
        start, end = draft.location["char_start"], draft.location["char_end"]
        assert text[start:end] == draft.content
        assert draft.content and draft.content == draft.content.strip()
        assert draft.token_count == counter.count(draft.content)
        assert 1 <= draft.token_count <= config.max_tokens
    ends = [draft.location["char_end"] for draft in drafts]
    assert ends == sorted(set(ends))  # in order, and every chunk adds new text
    assert drafts[0].location["char_start"] == len(text) - len(text.lstrip())
    assert drafts[-1].location["char_end"] == len(text.rstrip())


def test_chunks_keep_the_heading_path_and_page_of_their_section():
    sections = [
        Section(text=english_paragraph(1, sentences=20), heading_path=("Manual", "Setup"), page=3),
        Section(text=english_paragraph(2, sentences=20), heading_path=("Manual", "Errors")),
    ]
    config = ChunkingConfig(max_tokens=60, overlap_tokens=10)

    drafts = chunk_sections(sections, config=config, counter=ESTIMATOR)

    by_heading = {}
    for draft in drafts:
        by_heading.setdefault(tuple(draft.location["heading_path"]), []).append(draft)
    assert set(by_heading) == {("Manual", "Setup"), ("Manual", "Errors")}
    assert all(d.location["page"] == 3 for d in by_heading["Manual", "Setup"])
    assert all("page" not in d.location for d in by_heading["Manual", "Errors"])
    assert list(drafts[0].location) == ["heading_path", "page", "char_start", "char_end"]
    for section, group in zip(sections, by_heading.values(), strict=True):
        assert_chunks_address(group, section.text, config=config, counter=ESTIMATOR)


def test_chunks_break_between_paragraphs_that_fit(counter):
    paragraphs = [english_paragraph(n, sentences=2) for n in range(8)]
    text = "\n\n".join(paragraphs)
    config = ChunkingConfig(max_tokens=counter.count(paragraphs[0]) * 3, overlap_tokens=0)

    drafts = chunk_text(text, config=config, counter=counter)

    assert len(drafts) > 1
    for draft in drafts:
        assert all(part in paragraphs for part in draft.content.split("\n\n"))
    assert_chunks_address(drafts, text, config=config, counter=counter)


def test_each_chunk_starts_with_the_end_of_the_previous_one(counter):
    text = english_paragraph(1, sentences=40)
    sentence_tokens = counter.count("Step 1.10 tells the technician to check the printer tray. ")
    config = ChunkingConfig(max_tokens=sentence_tokens * 5, overlap_tokens=sentence_tokens * 2)

    drafts = chunk_text(text, config=config, counter=counter)

    assert len(drafts) > 2
    for previous, following in zip(drafts, drafts[1:], strict=False):
        start, end = following.location["char_start"], previous.location["char_end"]
        overlap = text[start:end].strip()
        assert overlap
        assert previous.content.endswith(overlap)
        assert following.content.startswith(overlap)
        assert counter.count(overlap) <= config.overlap_tokens
        assert text[:start].rstrip().endswith(".")  # the overlap starts with a whole sentence
    assert_chunks_address(drafts, text, config=config, counter=counter)


def test_without_overlap_chunks_do_not_repeat_text():
    text = english_paragraph(1, sentences=40)

    drafts = chunk_text(text, config=ChunkingConfig(max_tokens=60, overlap_tokens=0))

    for previous, following in zip(drafts, drafts[1:], strict=False):
        assert previous.location["char_end"] <= following.location["char_start"]
    assert " ".join(draft.content for draft in drafts) == text


def test_a_sentence_longer_than_the_overlap_lends_its_last_words():
    text = " ".join(f"word{n}" for n in range(300))  # one sentence, no punctuation
    config = ChunkingConfig(max_tokens=40, overlap_tokens=10)

    drafts = chunk_text(text, config=config, counter=ESTIMATOR)

    for previous, following in zip(drafts, drafts[1:], strict=False):
        overlap = text[following.location["char_start"] : previous.location["char_end"]].strip()
        assert overlap and ESTIMATOR.count(overlap) <= 10
        assert following.content.startswith(overlap) and previous.content.endswith(overlap)
    assert_chunks_address(drafts, text, config=config, counter=ESTIMATOR)


@pytest.mark.parametrize("text", [JAPANESE * 6, CHINESE * 6], ids=["japanese", "chinese"])
def test_cjk_text_is_cut_after_sentence_ends(text, counter):
    config = ChunkingConfig(max_tokens=counter.count(text) // 5, overlap_tokens=0)

    drafts = chunk_text(text, config=config, counter=counter)

    assert len(drafts) >= 5
    for draft in drafts:
        assert draft.content[-1] in "。！？"
        start = draft.location["char_start"]
        assert start == 0 or text[start - 1] in "。！？"
    assert "".join(draft.content for draft in drafts) == text
    assert_chunks_address(drafts, text, config=config, counter=counter)


@pytest.mark.parametrize("text", [JAPANESE * 6, CHINESE * 6], ids=["japanese", "chinese"])
def test_cjk_chunks_overlap_by_whole_sentences(text, counter):
    sentence_tokens = max(counter.count(part + "。") for part in text.split("。") if part)
    config = ChunkingConfig(max_tokens=sentence_tokens * 4, overlap_tokens=sentence_tokens * 2)

    drafts = chunk_text(text, config=config, counter=counter)

    assert len(drafts) > 2
    for previous, following in zip(drafts, drafts[1:], strict=False):
        start = following.location["char_start"]
        assert start < previous.location["char_end"]
        assert text[start - 1] in "。！？"
    assert_chunks_address(drafts, text, config=config, counter=counter)


@pytest.mark.parametrize(
    "run",
    ["x" * 5000, "あ" * 3000, "電源" * 1500, "e\u0301" * 2000, "👩\u200d💻" * 1000],
    ids=["latin", "kana", "han", "combining", "emoji-zwj"],
)
def test_a_giant_unbroken_run_is_cut_between_characters(run, counter):
    text = f"Before it. {run} After it."
    config = ChunkingConfig(max_tokens=50, overlap_tokens=10)

    drafts = chunk_text(text, config=config, counter=counter)

    assert len(drafts) > 5
    for draft in drafts:
        first, last = draft.content[0], draft.content[-1]
        assert unicodedata.category(first) not in ("Mn", "Mc", "Me")
        assert first != "\u200d" and last != "\u200d"
    assert_chunks_address(drafts, text, config=config, counter=counter)


def test_a_character_with_more_accents_than_the_budget_is_cut_between_code_points(counter):
    text = "Zalgo: " + "e" + "\u0301" * 400 + " done."
    config = ChunkingConfig(max_tokens=16, overlap_tokens=4)

    drafts = chunk_text(text, config=config, counter=counter)

    assert_chunks_address(drafts, text, config=config, counter=counter)


@pytest.mark.parametrize(
    ("max_tokens", "overlap_tokens"), [(16, 0), (16, 15), (50, 10), (200, 50), (1000, 200)]
)
def test_every_chunk_fits_the_budget(max_tokens, overlap_tokens, counter):
    config = ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap_tokens)

    drafts = chunk_text(MIXED, config=config, counter=counter)

    assert_chunks_address(drafts, MIXED, config=config, counter=counter)


class JoinPenaltyCounter:
    """Counts words plus the gaps between them, so a chunk costs more than its units summed."""

    name = "join-penalty"
    is_exact = True

    def count(self, text: str) -> int:
        return max(0, 2 * len(text.split()) - 1)

    def encode_len_many(self, texts):
        return [self.count(text) for text in texts]


def test_a_chunk_that_counts_higher_joined_gives_back_units():
    text = english_paragraph(1, sentences=30)
    counter = JoinPenaltyCounter()
    config = ChunkingConfig(max_tokens=60, overlap_tokens=12)

    drafts = chunk_text(text, config=config, counter=counter)

    assert_chunks_address(drafts, text, config=config, counter=counter)


def test_a_short_chunk_wholly_repeated_in_the_next_is_dropped():
    text = "Warranty\n\n" + english_paragraph(1, sentences=10)
    config = ChunkingConfig(max_tokens=80, overlap_tokens=20)

    drafts = chunk_text(text, config=config, counter=ESTIMATOR)

    assert drafts[0].content.startswith("Warranty\n\nStep 1.0")
    assert_chunks_address(drafts, text, config=config, counter=ESTIMATOR)


def test_whitespace_only_sections_give_no_chunks():
    sections = [Section(text=""), Section(text="  \n\n\t \n"), Section(text="\u3000\n")]

    assert chunk_sections(sections, config=ChunkingConfig(), counter=ESTIMATOR) == []


def test_chunks_are_trimmed_and_never_empty(counter):
    text = "\n\n   \n  First paragraph here.  \n\n\n\n  \n Second one.\n\n   \n"
    config = ChunkingConfig(max_tokens=16, overlap_tokens=0)

    drafts = chunk_text(text, config=config, counter=counter)

    assert drafts[0].content.startswith("First")
    assert drafts[-1].content.endswith("Second one.")
    assert_chunks_address(drafts, text, config=config, counter=counter)


def test_chunking_is_deterministic():
    config = ChunkingConfig(max_tokens=100, overlap_tokens=30)

    assert chunk_text(MIXED, config=config, counter=ESTIMATOR) == chunk_text(
        MIXED, config=config, counter=ESTIMATOR
    )


def test_chunk_text_is_one_untitled_section():
    (draft,) = chunk_text("Short note.", config=ChunkingConfig(), counter=ESTIMATOR)

    assert draft == ChunkDraft(
        content="Short note.",
        token_count=3,
        location={"heading_path": [], "char_start": 0, "char_end": 11},
        token_counter="estimator",
    )


def test_without_a_counter_the_configured_encoding_counts(settings, monkeypatch):
    settings.KIOKU_TOKEN_ENCODING = "test_bytes"
    monkeypatch.setattr(tokens, "_counters", {"test_bytes": SMALL_ENCODING})

    (draft,) = chunk_text("the thing", config=ChunkingConfig())

    assert draft.token_count == SMALL_ENCODING.count("the thing") == 4


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 8}, "max_tokens must be at least 16"),
        ({"overlap_tokens": -1}, "overlap_tokens must be at least 0"),
        ({"max_tokens": 100, "overlap_tokens": 100}, "less than max_tokens"),
        ({"max_tokens": "1000"}, "max_tokens must be an integer"),
        ({"overlap_tokens": True}, "overlap_tokens must be an integer"),
    ],
)
def test_config_rejects_impossible_budgets(kwargs, message):
    with pytest.raises(ChunkingConfigError, match=message) as raised:
        ChunkingConfig(**kwargs)

    assert raised.value.code == "VECTOR_INDEX_INVALID_TEXT_SPLITTER_CONFIG"
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    ("source_type", "budget"),
    [
        ("document", (1000, 200)),
        ("manual", (1000, 200)),
        ("faq", (500, 50)),
        ("session", (800, 150)),
        ("something-new", (1000, 200)),
    ],
)
def test_source_types_have_built_in_budgets(source_type, budget, settings):
    settings.KIOKU_CHUNKING = {}

    config = config_for_source_type(source_type)

    assert (config.max_tokens, config.overlap_tokens) == budget


def test_settings_override_the_budget_per_source_type(settings):
    settings.KIOKU_CHUNKING = {
        "faq": {"max_tokens": 400, "overlap_tokens": 40},
        "manual": {"max_tokens": 600},
    }

    assert config_for_source_type("faq") == ChunkingConfig(max_tokens=400, overlap_tokens=40)
    assert config_for_source_type("manual") == ChunkingConfig(max_tokens=600, overlap_tokens=200)
    assert config_for_source_type("document") == ChunkingConfig(max_tokens=1000, overlap_tokens=200)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"faq": {"max_tokens": 30}}, r"KIOKU_CHUNKING\['faq'\]: overlap_tokens"),
        ({"faq": {"max_token": 300}}, r"KIOKU_CHUNKING\['faq'\] has unknown keys: max_token"),
        ({"faq": 300}, r"KIOKU_CHUNKING\['faq'\] must be a dict"),
    ],
)
def test_a_bad_override_in_settings_is_rejected(override, message, settings):
    settings.KIOKU_CHUNKING = override

    with pytest.raises(ChunkingConfigError, match=message):
        config_for_source_type("faq")
