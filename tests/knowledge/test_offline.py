"""The one offline rule: the badge, search results, index status and answers agree, also while a
switch from the local model to OpenAI is still running."""

import pytest

from knowledge.embed.spaces import space_record
from knowledge.offline import offline_state
from knowledge.queries import index_status
from knowledge.search.service import chunk_search
from tests.knowledge.factories import make_source

pytestmark = pytest.mark.django_db


@pytest.fixture
def local_index(settings):
    """Chunks embedded offline, so the active embedding space is the local model's."""
    settings.OPENAI_API_KEY = ""
    make_source()
    space_record()


def test_without_a_key_everything_is_offline(local_index):
    state = offline_state()
    assert state.search and state.answers
    assert state.label == "offline mode"
    assert chunk_search("battery", mode="keyword").offline
    assert index_status()["offline"] is True


def test_during_a_switch_to_openai_search_stays_offline_and_says_so(local_index, settings):
    # The key is set, but the index still holds local vectors until `reembed` completes: search
    # embeds with the local provider, so every surface must call it offline search.
    settings.OPENAI_API_KEY = "sk-test"
    state = offline_state()
    assert state.search and not state.answers
    assert state.label == "offline search"
    assert chunk_search("battery", mode="keyword").offline is True
    assert index_status()["offline"] is True


def test_the_badge_follows_the_same_rule_during_a_switch(local_index, settings, client):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_user("lead", password="pw-for-tests-only"))
    settings.OPENAI_API_KEY = "sk-test"
    html = client.get("/").content.decode()
    assert "offline search" in html
    assert "offline mode" not in html


def test_with_a_key_and_an_openai_index_nothing_is_offline(settings):
    settings.OPENAI_API_KEY = "sk-test"
    state = offline_state()
    assert not state.is_offline
    assert state.label == "online"
    assert index_status()["offline"] is False
