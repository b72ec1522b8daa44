"""Demo data: an evaluation set over the demo corpus and cases (English, Japanese, Chinese; error
codes, paraphrases, cross-language questions and questions nothing answers), plus a few resolved
demo cards, and a first run queued for the worker, visible after `./scripts/run`.

The demo cases name the dispatch demo's resolved cards as `demo-case:<n>` (the n-th entry of
dispatch/demo_data/cases.json), not by id: ids depend on what the database held before."""

import json
from collections.abc import Iterator
from pathlib import Path

from quality.models import CaseOrigin, EvalSet
from quality.runs import eval_run_queue
from quality.services import eval_case_from_card, eval_set_create, eval_set_import_jsonl

DEMO_CASES = Path(__file__).resolve().parent / "demo_data" / "eval_cases.jsonl"
DEMO_SET_NAME = "Demo: locks EN/JA/ZH"
DEMO_CARD_CASES = 6  # resolved demo cards added as cases (their text → their case source)
DEMO_CASE_PREFIX = "demo-case:"


def demo_is_loaded() -> bool:
    return EvalSet.objects.exists()


def demo_case_sources() -> dict[str, "object"]:
    """`demo-case:<n>` → the case source of the dispatch demo's n-th resolved card, for the cards
    this database holds (found by their demo description)."""
    from dispatch.demo import DEMO_DATA
    from dispatch.models import ProblemCard
    from dispatch.services import case_uri
    from knowledge.models import KnowledgeSource

    entries = json.loads((DEMO_DATA / "cases.json").read_text(encoding="utf-8"))
    sources = {}
    for number, entry in enumerate(entries, 1):
        card = (
            ProblemCard.objects.resolved_cases()
            .filter(description=entry["description"])
            .order_by("-id")
            .first()
        )
        source = card and KnowledgeSource.objects.filter(uri=case_uri(card)).first()
        if source:
            sources[f"{DEMO_CASE_PREFIX}{number}"] = source
    return sources


def demo_case_lines(*, skipped: list[str]) -> Iterator[str]:
    """The demo set's lines with `demo-case:<n>` turned into this database's case sources. A case
    whose card is missing (the dispatch demo was not loaded here) is left out and its question
    added to `skipped`, so the summary says so."""
    sources = demo_case_sources()
    with DEMO_CASES.open(encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                continue
            case = json.loads(line)
            refs = [ref["source_uri"] for ref in case["expected"]]
            demo_refs = [ref for ref in refs if ref.startswith(DEMO_CASE_PREFIX)]
            if any(ref not in sources for ref in demo_refs):
                skipped.append(case["question"])
                continue
            for ref in case["expected"]:
                if ref["source_uri"] in sources:
                    source = sources[ref["source_uri"]]
                    ref["source_uri"], ref["source_title"] = source.uri, source.title
            yield json.dumps(case, ensure_ascii=False)


def demo_load() -> str:
    from dispatch.models import ProblemCard

    eval_set = eval_set_create(
        name=DEMO_SET_NAME,
        description="Questions over the demo manuals, FAQs, SOPs and cases, with the passages "
        "a good search returns. Evaluated every day.",
    )
    eval_set.is_scheduled = True
    eval_set.save(update_fields=["is_scheduled"])
    skipped: list[str] = []
    imported = eval_set_import_jsonl(
        eval_set=eval_set, lines=demo_case_lines(skipped=skipped), origin=CaseOrigin.DEMO
    )
    cards = ProblemCard.objects.resolved_cases().order_by("id")[:DEMO_CARD_CASES]
    for card in cards:
        eval_case_from_card(card_id=card.pk, eval_set=eval_set, created_by="demo")
    # Queued after the commit; the worker waits for the demo's embeddings before it runs.
    run = eval_run_queue(eval_set=eval_set, triggered_by="demo data")
    left_out = f" ({len(skipped)} left out: their demo card is not here)" if skipped else ""
    return f"1 evaluation set, {imported.created + len(cards)} cases{left_out}, run {run.pk} queued"
