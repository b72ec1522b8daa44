"""SOP drafts from similar resolved cases: extractive offline, the chat model online, stored as
a disabled `sop` source until a curator enables it."""

import pytest

from dispatch.errors import DispatchError
from dispatch.services import problem_card_resolve
from dispatch.sop import sop_draft_create
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import KnowledgeSource, SourceType
from knowledge.search.service import chunk_search
from knowledge.services import source_update
from tests.dispatch.factories import make_card
from tests.helpers import assert_error_shape, visible_text

pytestmark = pytest.mark.django_db(transaction=True)

MOTOR_CABLE = "Re-seated the motor cable behind the inside escutcheon."
NEW_MOTOR = "Replaced the gearbox motor of the bolt."


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def resolved(*, resolution: str, root_cause: str = "", parts_used: str = "", **card: str):
    created = make_card(**card)
    return problem_card_resolve(
        card_id=created.pk, resolution=resolution, root_cause=root_cause, parts_used=parts_used
    )


@pytest.fixture
def cases():
    """Three E-21 cases on one model (two fixed the same way) and one unrelated case."""
    found = {
        "first": resolved(
            error_code="E-21",
            resolution=MOTOR_CABLE,
            root_cause="Motor cable loose after installation.",
            parts_used="Cable tie",
        ),
        "second": resolved(
            error_code="E-21",
            description="The screen says E-21 and the bolt stays locked after the PIN.",
            resolution=MOTOR_CABLE.upper(),
        ),
        "third": resolved(
            error_code="e21",
            description="E21 on the display, the door stays locked.",
            resolution=NEW_MOTOR,
            parts_used="KG-200 bolt motor",
        ),
        "unrelated": resolved(
            brand="Lumio",
            lock_model="LM5",
            symptom="app",
            description="The phone app cannot find the lock over Bluetooth after the update.",
            resolution="Reset the Bluetooth module and paired the app again.",
        ),
    }
    embedding_run()
    return found


def draft_of(card, by: str = "curator") -> KnowledgeSource:
    return sop_draft_create(card_id=card.pk, by=by)


def text_of(source: KnowledgeSource) -> str:
    """The draft as search holds it: each chunk under its headings."""
    return "\n".join(
        " > ".join(chunk.location.get("heading_path", [])) + "\n" + chunk.content
        for chunk in source.chunks.order_by("id")
    )


def test_an_offline_draft_gathers_the_cases_words_under_its_sections(cases):
    source = draft_of(cases["first"])
    text = text_of(source)
    assert source.source_type == SourceType.SOP
    assert source.title == "SOP draft: Kagiya KG-200 · Won't unlock (E-21)"
    assert "Extractive draft to review" in text
    for heading in ("Symptoms", "Likely causes", "Steps", "Parts", "Cases"):
        assert heading in text
    assert "Motor cable loose after installation." in text
    assert "KG-200 bolt motor" in text
    # The same fix in other case is one step, not two.
    assert text.casefold().count(MOTOR_CABLE.casefold()) == 1
    assert f"2. {NEW_MOTOR}" in text
    for name in ("first", "second", "third"):
        assert f"Card #{cases[name].pk}" in text
    assert f"Card #{cases['unrelated'].pk}" not in text


def test_the_draft_records_where_it_came_from(cases):
    source = draft_of(cases["first"], by="chen")
    assert source.uri == f"dispatch://sop-drafts/{cases['first'].pk}-1"
    assert source.metadata["draft"] is True
    assert source.metadata["mode"] == "offline"
    assert source.metadata["drafted_by"] == "chen"
    assert source.metadata["brand"] == "Kagiya" and source.metadata["models"] == ["KG-200"]
    assert source.metadata["from_cards"][0] == cases["first"].pk
    assert set(source.metadata["from_cards"]) == {cases[n].pk for n in ("first", "second", "third")}


def test_a_second_draft_of_the_same_card_is_a_new_source(cases):
    first = draft_of(cases["first"])
    second = draft_of(cases["first"])
    assert first.pk != second.pk
    assert second.uri.endswith(f"/{cases['first'].pk}-2")


def test_the_draft_is_disabled_and_searchable_only_once_enabled(cases):
    source = draft_of(cases["first"])
    assert source.enabled is False
    embedding_run()

    def found() -> set[int]:
        return {hit.source_id for hit in chunk_search("escutcheon", mode="keyword").hits}

    assert source.pk not in found()
    source_update(source=source, enabled=True)
    assert source.pk in found()


def test_an_online_draft_is_written_by_the_chat_model_from_fenced_cases(cases, openai_stub):
    openai_stub.chat_reply = (
        "## Symptoms\nE-21 shown.\n\n## Steps\n1. Re-seat the motor cable [1][2]."
    )
    source = draft_of(cases["first"])
    text = text_of(source)
    assert source.metadata["mode"] == "online" and "fallback" not in source.metadata
    assert "Re-seat the motor cable [1][2]." in text
    assert source.enabled is False
    messages = openai_stub.requests[-1]["json"]["messages"]
    fence = messages[0]["content"].split("<<<CASE n ")[1].split(">>>")[0]
    assert f"<<<CASE 1 {fence}>>>" in messages[1]["content"]
    assert f"<<<END CASE 3 {fence}>>>" in messages[1]["content"]
    assert "untrusted data" in messages[1]["content"]


def test_an_online_draft_falls_back_to_the_extractive_one_when_the_model_fails(cases, openai_stub):
    openai_stub.fail_next(400)
    source = draft_of(cases["first"])
    text = text_of(source)
    assert source.metadata["mode"] == "offline"
    assert source.metadata["fallback"].startswith("The language model failed")
    assert "Extractive draft to review" in text


def test_a_card_without_similar_resolved_cases_is_refused(cases):
    with pytest.raises(DispatchError) as excinfo:
        draft_of(cases["unrelated"])
    assert excinfo.value.code == "DISPATCH_SOP_NEEDS_CASES"
    assert "needs at least two similar resolved cases" in excinfo.value.message
    assert not KnowledgeSource.objects.filter(source_type=SourceType.SOP).exists()


def test_an_unresolved_card_is_refused(cases):
    card = make_card(error_code="E-21")
    with pytest.raises(DispatchError) as excinfo:
        draft_of(card)
    assert excinfo.value.code == "DISPATCH_SOP_NEEDS_CASES"
    assert excinfo.value.status == 409


# --- API --------------------------------------------------------------------------------------


def test_the_api_answers_201_with_the_disabled_draft(cases, api):
    response = api.post(f"/api/v1/problem-cards/{cases['first'].pk}/sop-draft")
    assert response.status_code == 201, response.content
    body = response.json()
    source = KnowledgeSource.objects.get(pk=body["id"])
    assert body["enabled"] is False and body["mode"] == "offline"
    assert body["title"] == source.title
    assert body["card_ids"] == source.metadata["from_cards"]
    assert source.metadata["drafted_by"].startswith("api:")


def test_the_api_needs_the_write_scope(cases, api_as, client):
    path = f"/api/v1/problem-cards/{cases['first'].pk}/sop-draft"
    assert client.post(path).status_code == 401
    assert_error_shape(api_as("read").post(path), 403, "AUTH_FORBIDDEN_SCOPE")
    assert not KnowledgeSource.objects.filter(source_type=SourceType.SOP).exists()


def test_the_api_refuses_too_few_cases_and_unknown_cards(cases, api):
    assert_error_shape(
        api.post(f"/api/v1/problem-cards/{cases['unrelated'].pk}/sop-draft"),
        409,
        "DISPATCH_SOP_NEEDS_CASES",
    )
    assert api.post("/api/v1/problem-cards/999999/sop-draft").status_code == 404


# --- Page -------------------------------------------------------------------------------------


def test_staff_see_the_button_on_a_resolved_card_only(cases, curator):
    resolved = curator.get(f"/dispatch/cases/{cases['first'].pk}/")
    assert "Draft an SOP from similar cases" in visible_text(resolved)
    open_card = make_card()
    assert "Draft an SOP" not in visible_text(curator.get(f"/dispatch/cases/{open_card.pk}/"))


def test_an_agent_sees_no_button_and_may_not_draft(cases, agent):
    page = agent.get(f"/dispatch/cases/{cases['first'].pk}/")
    assert "Draft an SOP" not in visible_text(page)
    assert agent.post(f"/dispatch/cases/{cases['first'].pk}/sop-draft/").status_code == 403


def test_the_button_drafts_and_leads_to_the_new_source(cases, curator):
    response = curator.post(f"/dispatch/cases/{cases['first'].pk}/sop-draft/")
    source = KnowledgeSource.objects.get(source_type=SourceType.SOP)
    assert response.status_code == 302
    assert response["Location"] == f"/knowledge/sources/{source.pk}/"
    assert source.metadata["drafted_by"] == "curator"


def test_the_button_over_htmx_links_to_the_draft(cases, curator):
    response = curator.post(
        f"/dispatch/cases/{cases['first'].pk}/sop-draft/", HTTP_HX_REQUEST="true"
    )
    source = KnowledgeSource.objects.get(source_type=SourceType.SOP)
    assert response.status_code == 200
    assert f'href="/knowledge/sources/{source.pk}/"' in response.content.decode()


def test_the_button_shows_why_a_draft_is_refused(cases, curator):
    response = curator.post(f"/dispatch/cases/{cases['unrelated'].pk}/sop-draft/")
    assert response.status_code == 409
    assert "DISPATCH_SOP_NEEDS_CASES" in visible_text(response)
