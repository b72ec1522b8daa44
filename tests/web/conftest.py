"""A small library of everything the pages show, written by someone hostile: sources, chunks,
a chat session, a resolved case, an order and an answer whose text carries markup."""

from dataclasses import dataclass

import pytest

# Markup a document, a chat message or a model might carry. Rendered as markup it would run a
# script, load an image whose error handler runs one, or make htmx fetch and act on load; escaped,
# it is text. Every part sets window.__pwned or adds an element the browser tests look for.
HOSTILE = (
    '<script>window.__pwned = "script"</script>'
    '<img id="pwned-img" src="x" onerror="window.__pwned = \'img\'">'
    '<b id="pwned-hx" hx-get="/accounts/logout/" hx-trigger="load" '
    "hx-on:click=\"window.__pwned = 'hx-on'\">hostile bold</b>"
)
HOSTILE_MANUAL = f"""# KG-200 battery notes

Replace the batteries of the KG-200 lock when the keypad blinks red. {HOSTILE}

## Emergency key

The emergency key opens the KG-200 when the batteries are empty. {HOSTILE}
"""


@dataclass
class HostileSite:
    source_id: int
    chunk_id: int
    session_key: str
    card_id: int
    order_id: int
    answer_id: int
    set_id: int
    case_id: int
    expected_id: int
    run_id: int


@pytest.fixture
def hostile_site(settings) -> HostileSite:
    """Offline (local embeddings, extractive answers), so no provider is needed."""
    from knowledge.answer.answering import answer_ask
    from knowledge.embed.pipeline import embedding_run, pipeline_resume
    from quality.runs import eval_run_create, eval_run_execute
    from quality.services import eval_case_create, eval_set_create
    from tests.dispatch.factories import make_card, make_case, make_order
    from tests.knowledge.factories import make_source
    from tests.sessions_app.factories import make_session

    settings.OPENAI_API_KEY = ""
    pipeline_resume()
    source = make_source(text=HOSTILE_MANUAL, title=f"Battery notes {HOSTILE}", uri="kb://hostile")
    session = make_session(
        "web:hostile:1", [("mallory", False, f"My lock is broken {HOSTILE}")] * 3
    )
    case = make_case(resolution=f"Re-seated the cable {HOSTILE}", description=f"E-21 {HOSTILE}")
    order = make_order(card=make_card(description=f"Keypad dead {HOSTILE}"))
    embedding_run()
    answer = answer_ask(question="How do I replace the KG-200 batteries?")
    eval_set = eval_set_create(name=HOSTILE[:100], description=HOSTILE)
    eval_case = eval_case_create(
        eval_set=eval_set,
        question=f"How do I replace the batteries? {HOSTILE}",
        expected=[{"source_id": source.pk, "grade": 3}],
        expected_keywords=[f"key {HOSTILE}"[:100]],
    )
    run = eval_run_execute(run_id=eval_run_create(eval_set=eval_set, modes=["hybrid"]).pk)
    return HostileSite(
        source_id=source.pk,
        chunk_id=source.chunks.order_by("ordinal").first().pk,
        session_key=session.key,
        card_id=case.pk,
        order_id=order.pk,
        answer_id=answer.pk,
        set_id=eval_set.pk,
        case_id=eval_case.pk,
        expected_id=eval_case.expected.get().pk,
        run_id=run.pk,
    )
