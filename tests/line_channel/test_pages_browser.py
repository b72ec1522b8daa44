"""A dispatcher finds a card a customer reported on LINE on the board and reads the
conversation beside it, in a real browser."""

import pytest
from playwright.sync_api import expect

from dispatch.demo import demo_load as dispatch_demo_load
from knowledge.embed.pipeline import pipeline_resume
from line_channel.demo import CONVERSATION
from line_channel.demo import demo_load as line_demo_load

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_card_from_line_waits_on_the_board_with_its_conversation(
    logged_in_page, screenshot, settings
):
    settings.OPENAI_API_KEY = ""
    settings.LINE_CHANNEL_SECRET = settings.LINE_CHANNEL_ACCESS_TOKEN = ""
    pipeline_resume()
    dispatch_demo_load()
    line_demo_load()
    page = logged_in_page

    page.goto("/dispatch/orders/")
    waiting = page.locator("#column-waiting + article")
    expect(waiting).to_contain_text("escalated")
    expect(waiting).to_contain_text("LINE")
    waiting.locator("a").click()

    conversation = page.locator("#line-conversation")
    expect(conversation).to_contain_text(CONVERSATION[5])
    expect(conversation).to_contain_text("將由技師與您聯繫")
    expect(conversation).to_contain_text("the customer got layer 3")
    expect(page.locator(".with-conversation .card-facts")).to_be_visible()
    screenshot(page, "line_card_conversation")
