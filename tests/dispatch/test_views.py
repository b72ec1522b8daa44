"""The Cases pages: report and diagnose, list, detail, resolve; who may do what."""

import pytest

from dispatch.models import CardStatus, ProblemCard
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from tests.dispatch.factories import make_card, make_case
from tests.helpers import visible_text

pytestmark = pytest.mark.django_db(transaction=True)

NEW = "/dispatch/cases/new/"
FORM = {
    "customer_name": "Chen Mei",
    "service_area": "Taipei Da'an",
    "brand": "Kagiya",
    "lock_model": "KG-200",
    "symptom": "wont_unlock",
    "error_code": "e21",
    "description": "I typed my PIN, the screen says E-21, and the bolt stays locked.",
    "diagnose": "on",
}


@pytest.fixture(autouse=True)
def offline(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()


def test_reporting_a_fault_shows_its_diagnosis_with_the_similar_case(curator):
    case = make_case(resolution="Re-seated the motor cable.", error_code="E-21")
    embedding_run()
    response = curator.post(NEW, FORM, follow=True)
    card = ProblemCard.objects.exclude(pk=case.pk).get()
    assert response.redirect_chain[-1][0] == f"/dispatch/cases/{card.pk}/"
    text = visible_text(response)
    assert "Layer 1: similar resolved case" in text
    assert f"Card #{case.pk}" in text and "Re-seated the motor cable." in text
    assert "not yet searchable by meaning" in text  # the pipeline has not run for it yet


def test_a_bad_report_comes_back_with_the_error_and_stores_nothing(curator):
    response = curator.post(NEW, {**FORM, "description": "   "})
    assert response.status_code == 200
    assert "DISPATCH_INVALID_CARD" in visible_text(response)
    assert not ProblemCard.objects.exists()


def test_the_list_filters_and_links_to_cards(curator):
    card = make_card()
    make_card(brand="Lumio", lock_model="LM5", description="App cannot connect.")
    response = curator.get("/dispatch/cases/?brand=kagiya")
    text = visible_text(response)
    assert "1 card matches the filters" in text
    assert f'href="/dispatch/cases/{card.pk}/"' in response.content.decode()


def test_resolving_on_the_page_needs_a_resolution(curator):
    card = make_card()
    response = curator.post(f"/dispatch/cases/{card.pk}/resolve/", {"resolution": ""})
    assert response.status_code == 422
    response = curator.post(
        f"/dispatch/cases/{card.pk}/resolve/", {"resolution": "Replaced the strike."}, follow=True
    )
    assert "Replaced the strike." in visible_text(response)
    assert ProblemCard.objects.get().status == CardStatus.RESOLVED


def test_an_agent_may_read_but_not_report_or_resolve(agent):
    card = make_card()
    assert agent.get(f"/dispatch/cases/{card.pk}/").status_code == 200
    assert agent.get(NEW).status_code == 403
    assert agent.post(f"/dispatch/cases/{card.pk}/resolve/", {"resolution": "x"}).status_code == 403
    assert agent.post(f"/dispatch/cases/{card.pk}/diagnose/").status_code == 403


def test_diagnosing_again_over_htmx_swaps_the_panel(curator):
    card = make_card()
    response = curator.post(f"/dispatch/cases/{card.pk}/diagnose/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="card diagnosis"')
    assert "Layer 3: escalate" in visible_text(response)


def test_the_navigation_links_to_cases(curator):
    html = curator.get("/").content.decode()
    assert 'href="/dispatch/cases/"' in html


def test_a_curator_disables_a_case_on_its_page(curator):
    card = make_case(resolution="Re-seated the motor cable.")
    response = curator.post(
        f"/dispatch/cases/{card.pk}/curate/",
        {"resolution": "Re-seated the motor cable firmly.", "parts_used": ""},
        follow=True,
    )
    assert "disabled as a case" in visible_text(response)
    card.refresh_from_db()
    assert not card.is_case_enabled and card.resolution == "Re-seated the motor cable firmly."
