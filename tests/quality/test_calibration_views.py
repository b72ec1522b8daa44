"""The calibration page: who may see and change thresholds, what it shows with and without enough
labelled points, and its forms' answers."""

import pytest

from core.models import ThresholdKind, ThresholdSetting
from tests.quality.test_calibration import seed_known_cases

pytestmark = pytest.mark.django_db

URL = "/quality/calibration/"
CHANGE = "/quality/calibration/change/"


@pytest.fixture(autouse=True)
def _offline(settings):
    settings.OPENAI_API_KEY = ""


def test_without_labelled_points_the_page_says_why_there_is_no_suggestion(curator):
    body = curator.get(URL).content.decode()
    assert body.count("No suggestion. Too few labelled points: 0 positive and 0 negative") == 2
    assert "<svg" in body and "Apply suggested threshold" not in body
    assert "No threshold has been changed" in body


def test_a_viewer_sees_the_calibration_but_no_button(agent, settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    body = agent.get(URL).content.decode()
    assert "0.700" in body and "Apply suggested threshold" not in body
    form = {"action": "reset", "kind": "case_similarity", "embedding_model": "local-hash-v1"}
    assert agent.post(CHANGE, form).status_code == 403


def test_a_dispatcher_applies_the_suggestion_and_sees_it_in_force(client, make_user, settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    client.force_login(make_user("dina", "dispatcher"))
    body = client.get(URL).content.decode()
    assert "Apply suggested threshold 0.700" in body
    form = {
        "action": "apply",
        "kind": ThresholdKind.CASE_SIMILARITY,
        "embedding_model": "local-hash-v1",
        "brand_key": "",
        "value": "0.7",
    }
    response = client.post(CHANGE, form, follow=True)
    assert response.redirect_chain[-1][0] == URL
    body = response.content.decode()
    assert "Threshold 0.700 applied" in body and "The suggestion is in force." in body
    assert ThresholdSetting.objects.get(is_active=True).set_by == "dina"


def test_a_stale_suggestion_is_refused_with_its_code(curator, settings):
    settings.KIOKU_CALIBRATION_MIN_POINTS = 5
    seed_known_cases()
    form = {
        "action": "apply",
        "kind": ThresholdKind.CASE_SIMILARITY,
        "embedding_model": "local-hash-v1",
        "value": "0.65",
    }
    response = curator.post(CHANGE, form)
    assert response.status_code == 409
    assert "CALIBRATION_STALE" in response.content.decode()
    assert not ThresholdSetting.objects.exists()


def test_a_user_who_may_only_look_cannot_apply(client, make_user, settings):
    from django.contrib.auth.models import Permission

    user = make_user("lena")
    user.user_permissions.add(Permission.objects.get(codename="view_thresholdsetting"))
    client.force_login(user)
    assert client.get(URL).status_code == 200
    form = {"action": "reset", "kind": "case_similarity", "embedding_model": "local-hash-v1"}
    assert client.post(CHANGE, form).status_code == 403


def test_a_malformed_form_is_answered_with_422(curator):
    response = curator.post(CHANGE, {"action": "apply", "kind": "nope", "embedding_model": "m"})
    assert response.status_code == 422
    assert "VALIDATION_ERROR" in response.content.decode()
