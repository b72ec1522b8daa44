"""The multilingual offline provider (knowledge/embed/use_provider.py): chosen by setting, its
own size, meaning across languages, and a model switch onto it that search follows."""

import numpy as np
import pytest

from knowledge.embed.base import ProviderConfigError
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.embed.providers import LOCAL_MODELS, get_embedding_provider
from knowledge.embed.spaces import embedding_switch_start, space_state
from knowledge.search.service import chunk_search
from tests.knowledge.factories import make_source

MODEL = "local-use-m3"


@pytest.fixture
def multilingual(settings):
    settings.OPENAI_API_KEY = ""
    settings.KIOKU_OFFLINE_EMBEDDING_MODEL = MODEL
    return get_embedding_provider()


def cosine(provider, first: str, second: str) -> float:
    one, two = np.asarray(provider.embed([first, second]))
    return float(one @ two)


def test_the_setting_chooses_the_multilingual_model_at_its_own_size(multilingual, settings):
    settings.KIOKU_EMBEDDING_DIMENSIONS = 1536  # the hashing model's size does not apply

    assert (multilingual.name, multilingual.model, multilingual.is_offline) == (
        "local",
        MODEL,
        True,
    )
    vectors = np.asarray(multilingual.embed(["The battery is dead.", "", "電池が切れた"]))
    assert vectors.shape == (3, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert get_embedding_provider(model=MODEL) is multilingual


def test_it_refuses_to_make_vectors_of_another_size(settings):
    settings.OPENAI_API_KEY = ""
    with pytest.raises(ProviderConfigError, match="512"):
        get_embedding_provider(model=MODEL, dimensions=1536)


def test_its_vectors_carry_meaning_across_languages_where_hashing_sees_none(multilingual):
    hashing = get_embedding_provider(model="local-hash-v1")
    question, passage, unrelated = "The battery is dead", "電池が切れた", "Quarterly revenue grew"

    assert cosine(multilingual, question, passage) > cosine(multilingual, question, unrelated) + 0.3
    assert cosine(hashing, question, passage) < 0.1


@pytest.mark.django_db(transaction=True)
def test_a_switch_to_the_multilingual_model_lets_a_japanese_question_find_an_english_manual(
    settings, vector_indexes_restored
):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    manual = make_source(
        text="# Batteries\n\nWhen the batteries are dead, hold a 9V battery to the contacts.",
        uri="kb://batteries",
    )
    make_source(text="# Wi-Fi\n\nThe lock joins 2.4 GHz networks only.", uri="kb://wifi")
    make_source(text="# Warranty\n\nTwo years on the electronics.", uri="kb://warranty")
    embedding_run()
    settings.KIOKU_OFFLINE_EMBEDDING_MODEL = MODEL

    assert embedding_switch_start().outcome == "started"
    embedding_run()

    active = space_state().active
    assert (active.model, active.dimensions) == (MODEL, 512)
    result = chunk_search("電池が切れて家に入れない", mode="vector", top_k=3)
    assert result.model == MODEL and result.offline
    assert result.hits[0].source_id == manual.pk


def test_every_offline_model_has_its_measured_thresholds(settings):
    assert set(settings.KIOKU_ASK_MIN_SIMILARITY_OFFLINE) == set(LOCAL_MODELS)
    assert set(settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE) == set(LOCAL_MODELS)
