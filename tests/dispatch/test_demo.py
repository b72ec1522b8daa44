"""The dispatch demo: technicians, quote items, resolved cases that diagnosis can use."""

import pytest

from dispatch.demo import OPEN_CARDS, QUOTE_ITEMS, TECHNICIANS, demo_is_loaded, demo_load
from dispatch.diagnosis import problem_card_diagnose
from dispatch.models import (
    CardStatus,
    Invoice,
    OrderStatus,
    ProblemCard,
    QuoteItem,
    ServiceOrder,
    Technician,
)
from knowledge.embed.pipeline import embedding_run, pipeline_resume
from knowledge.models import KnowledgeSource, SourceType

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_loads_cases_that_answer_a_new_card(settings):
    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    assert not demo_is_loaded()

    summary = demo_load()

    assert demo_is_loaded() and "30 resolved cases" in summary
    assert Technician.objects.count() == len(TECHNICIANS)
    assert QuoteItem.objects.count() == len(QUOTE_ITEMS)
    # The completed demo order resolved its card too: 31 cases.
    assert ProblemCard.objects.resolved_cases().count() == 31
    assert ProblemCard.objects.filter(status=CardStatus.OPEN).count() == len(OPEN_CARDS)
    assert KnowledgeSource.objects.filter(source_type=SourceType.CASE).count() == 31
    assert set(ServiceOrder.objects.values_list("status", flat=True)) == set(OrderStatus.values)
    assert Invoice.objects.count() == 1
    embedding_run()
    e21 = ProblemCard.objects.get(status=CardStatus.OPEN, error_code="E-21")
    result = problem_card_diagnose(card_id=e21.pk)
    assert result.layer == 1
    assert all(case.error_code == "E-21" for case in result.cases)
