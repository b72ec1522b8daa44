"""Demo data: an evaluation set over the demo corpus and cases (English, Japanese, Chinese; error
codes, paraphrases, cross-language questions and questions nothing answers), plus a few resolved
demo cards, and a first run queued for the worker, visible after `./scripts/run`."""

from pathlib import Path

from quality.models import CaseOrigin, EvalSet
from quality.runs import eval_run_queue
from quality.services import eval_case_from_card, eval_set_create, eval_set_import_jsonl

DEMO_CASES = Path(__file__).resolve().parent / "demo_data" / "eval_cases.jsonl"
DEMO_SET_NAME = "Demo: locks EN/JA/ZH"
DEMO_CARD_CASES = 6  # resolved demo cards added as cases (their text → their case source)


def demo_is_loaded() -> bool:
    return EvalSet.objects.exists()


def demo_load() -> str:
    from dispatch.models import ProblemCard

    eval_set = eval_set_create(
        name=DEMO_SET_NAME,
        description="Questions over the demo manuals, FAQs, SOPs and cases, with the passages "
        "a good search returns. Evaluated every night.",
    )
    eval_set.is_scheduled = True
    eval_set.save(update_fields=["is_scheduled"])
    with DEMO_CASES.open(encoding="utf-8") as lines:
        imported = eval_set_import_jsonl(eval_set=eval_set, lines=lines, origin=CaseOrigin.DEMO)
    cards = ProblemCard.objects.resolved_cases().order_by("id")[:DEMO_CARD_CASES]
    for card in cards:
        eval_case_from_card(card_id=card.pk, eval_set=eval_set, created_by="demo")
    # Queued after the commit; the worker waits for the demo's embeddings before it runs.
    run = eval_run_queue(eval_set=eval_set, triggered_by="demo data")
    return f"1 evaluation set, {imported.created + len(cards)} cases, run {run.pk} queued"
