"""The LINE demo: a customer's report run through the real event handling, kept unsent."""

import pytest

from dispatch.demo import demo_load as dispatch_demo_load
from dispatch.queries import cards_awaiting_technician
from knowledge.embed.pipeline import pipeline_resume
from line_channel.demo import CONVERSATION, DEMO_USER, demo_is_loaded, demo_load
from line_channel.models import LineIntake, LineReply
from line_channel.queries import line_conversation

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_report_files_a_card_with_its_conversation(settings):
    settings.OPENAI_API_KEY = ""
    settings.LINE_CHANNEL_SECRET = settings.LINE_CHANNEL_ACCESS_TOKEN = ""
    pipeline_resume()
    dispatch_demo_load()
    assert not demo_is_loaded()

    assert "7 messages" in demo_load()

    assert demo_is_loaded()
    intake = LineIntake.objects.get(user_id=DEMO_USER)
    # Nothing in the demo manuals or resolved cases covers a dented case: a technician calls.
    assert (intake.status, intake.language, intake.diagnosis_layer) == ("completed", "zh", 3)
    card = intake.card
    assert (card.customer_line_user_id, card.brand, card.symptom) == (DEMO_USER, "Kagiya", "damage")
    assert card.description == CONVERSATION[5]
    conversation = line_conversation(user_id=DEMO_USER, card_id=card.pk)
    said = [m.content for m in conversation.messages if not m.is_bot]
    assert said == CONVERSATION
    assert sum(m.is_bot for m in conversation.messages) == len(CONVERSATION)
    # The channel is off: nothing was sent, every reply is kept with the reason.
    assert LineReply.objects.count() == len(CONVERSATION)
    assert set(LineReply.objects.values_list("status", "last_error")) == {
        ("pending", "Not sent: LINE_CHANNEL_ACCESS_TOKEN is not set.")
    }
    assert card in cards_awaiting_technician()
