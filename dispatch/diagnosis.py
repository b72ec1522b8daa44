"""The three-layer diagnosis of a problem card.

1. **Similar resolved cases**: one SQL statement ranks resolved cards by cosine similarity to the
   card's vector in the active embedding space (HNSW), adds resolved cards with the same error
   code on the same model (strong evidence even in other words), joins their resolution and the
   technician who fixed them, keeps those at or above the threshold of the embedding model in
   use (`KIOKU_CASE_MIN_SIMILARITY`, or `…_OFFLINE` for the local provider, whose similarities
   run lower; or the value calibrated for the model and the card's brand, `case_threshold`),
   prefers the same model, then the same brand, then cases whose earlier orders confirmed them
   (their outcome boost, knowledge/feedback.py), and returns at most 3.
2. **Manuals**: no case passes → ask over the manuals, SOPs and FAQs of the brand (knowledge's
   ask: its relevance rule, its citations, its online/offline answer).
3. **Escalate**: nothing relevant → the card stays open, with the reason and the technicians
   matching suggests.

Every decision is stored (`DiagnosisRecord`) with what was searched and the best similarity.
"""

from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import connection, transaction

from core.models import ThresholdKind
from core.statements import fetch_after_settings
from core.thresholds import threshold_value
from dispatch.matching import technicians_rank
from dispatch.models import (
    CardStatus,
    DiagnosisRecord,
    ProblemCard,
    Technician,
    resolved_case_sql,
)
from dispatch.services import card_status_check
from knowledge.answer.answering import answer_ask
from knowledge.answer.base import AskError
from knowledge.embed.base import ProviderError
from knowledge.embed.spaces import (
    VectorSpace,
    embedding_provider_for,
    halfvec_literal,
    space_state,
)
from knowledge.models import AnswerOutcome, KnowledgeSource, SourceType
from knowledge.offline import is_local_model
from knowledge.search.vector import ef_search_for

MAX_CASES = 3
# Rank bonus of a case on the same model / brand over a more similar one elsewhere, and of an
# exact error-code match on the same model.
SAME_MODEL_BONUS = 0.05
SAME_BRAND_BONUS = 0.02
SAME_CODE_BONUS = 0.1
MANUAL_TYPES = [SourceType.MANUAL, SourceType.SOP, SourceType.FAQ]


@dataclass
class CaseMatch:
    card_id: int
    brand: str
    lock_model: str
    symptom: str
    error_code: str
    description: str
    resolution: str
    root_cause: str
    parts_used: str
    technician_id: int | None
    technician_name: str | None
    similarity: float | None
    same_brand: bool
    same_model: bool
    same_code: bool
    score: float
    feedback_boost: float = 0.0


@dataclass
class Diagnosis:
    layer: int  # 1 similar case, 2 manuals, 3 escalated
    reason: str
    embedding_model: str
    threshold: float | None
    best_similarity: float | None
    cases: list[CaseMatch] = field(default_factory=list)
    passages: list[dict] = field(default_factory=list)
    answer: str = ""
    answer_id: int | None = None
    technicians: list[dict] = field(default_factory=list)
    searched: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def case_default_similarity(model: str) -> float:
    """The settings' threshold for an embedding model (measured in BENCHMARKS.md: each local
    model's similarities run on their own scale, lower than OpenAI's)."""
    if is_local_model(model):
        return settings.KIOKU_CASE_MIN_SIMILARITY_OFFLINE[model]
    return settings.KIOKU_CASE_MIN_SIMILARITY


def case_threshold(model: str, *, brand_key: str = "") -> float:
    """The similarity a resolved case must reach for a card of `brand_key`, per embedding model:
    a calibrated value set for the brand or for every brand (core.thresholds), else the
    default."""
    return threshold_value(
        kind=ThresholdKind.CASE_SIMILARITY,
        model=model,
        brand_key=brand_key,
        default=case_default_similarity(model),
    )


def problem_card_diagnose(*, card_id: int) -> Diagnosis:
    """Run the three layers for one card, store the decision on the card and in its history."""
    card = ProblemCard.objects.get(pk=card_id)
    space = space_state().active
    threshold = case_threshold(space.model, brand_key=card.brand_key)
    diagnosis = Diagnosis(
        layer=3,
        reason="",
        embedding_model=space.model,
        threshold=threshold,
        best_similarity=None,
    )
    vector, vector_problem = _card_vector(card, space)
    if vector is not None:
        diagnosis.cases, diagnosis.best_similarity = similar_cases(
            card=card, vector=vector, space=space, threshold=threshold
        )
    diagnosis.searched["cases"] = vector_problem or f"resolved cases in {space}"
    if diagnosis.cases:
        diagnosis.layer = 1
        best = diagnosis.cases[0]
        diagnosis.reason = (
            f"{len(diagnosis.cases)} similar resolved case(s); the best is card #{best.card_id}"
            + (" with the same error code on the same model" if best.same_code else "")
            + (f" at similarity {best.similarity:.3f}" if best.similarity is not None else "")
            + f" (threshold {threshold:.2f})."
        )
    else:
        _manuals_layer(card, diagnosis)
    if diagnosis.layer == 3:
        diagnosis.technicians = [
            asdict(candidate)
            for candidate in technicians_rank(
                brand_key=card.brand_key, symptom=card.symptom, service_area=card.service_area
            )
        ]
    _record(card, diagnosis)
    return diagnosis


def problem_card_similar(*, card_id: int) -> Diagnosis:
    """Layer 1 alone, for looking: the resolved cases like this card, nothing recorded."""
    card = ProblemCard.objects.get(pk=card_id)
    space = space_state().active
    threshold = case_threshold(space.model, brand_key=card.brand_key)
    diagnosis = Diagnosis(
        layer=1, reason="", embedding_model=space.model, threshold=threshold, best_similarity=None
    )
    vector, problem = _card_vector(card, space)
    if vector is not None:
        diagnosis.cases, diagnosis.best_similarity = similar_cases(
            card=card, vector=vector, space=space, threshold=threshold
        )
    diagnosis.searched["cases"] = problem or f"resolved cases in {space}"
    diagnosis.reason = f"{len(diagnosis.cases)} resolved case(s) at or above {threshold:.2f}."
    return diagnosis


def _card_vector(card: ProblemCard, space: VectorSpace) -> tuple[list[float] | None, str]:
    """The card's own vector in the active space, or one computed now when the pipeline has not
    reached it yet (not stored: the pipeline writes it); None with the reason when the provider
    cannot embed."""
    stored = card.stored_vector(space)
    if stored is not None:
        return stored, ""
    try:
        return list(embedding_provider_for(space).embed([card.search_text])[0]), ""
    except ProviderError as exc:
        return None, f"not searched: the card could not be embedded ({exc.message})"


def similar_cases(
    *,
    card: ProblemCard,
    vector: list[float],
    space: VectorSpace,
    threshold: float,
    limit: int = MAX_CASES,
    prefer_same_lock: bool = True,
    use_feedback: bool = True,
) -> tuple[list[CaseMatch], float | None]:
    """Layer 1 in one SQL statement (the HNSW search, the error-code matches, the join with the
    cases' details and technicians, the threshold and the ranking). Returns the cases that pass
    and the best similarity seen among the candidates (also when none passes).
    `use_feedback=False` ranks without the cases' outcome boosts (for evaluations)."""
    candidates = settings.KIOKU_CASE_CANDIDATES
    literal = halfvec_literal(vector)
    code_params = [card.error_code, card.error_code, card.model_key, card.model_key]
    params = [
        card.pk, space.model, literal, candidates,
        card.pk, *code_params, candidates,
        space.model, literal,
        card.brand_key, card.model_key, card.model_key, *code_params,
        threshold, limit + candidates,
    ]  # fmt: skip
    query_settings = {
        "hnsw.ef_search": str(ef_search_for(candidates)),
        "hnsw.iterative_scan": "relaxed_order",
    }
    with connection.cursor() as cursor:
        rows = fetch_after_settings(
            cursor, query_settings, _layer_one_sql(space, prefer_same_lock, use_feedback), params
        )
        columns = [column.name for column in cursor.description]
    return _case_matches([dict(zip(columns, row, strict=True)) for row in rows], threshold, limit)


def _layer_one_sql(space: VectorSpace, prefer_same_lock: bool, use_feedback: bool) -> str:
    """The statement: nearest resolved cards by the slot's HNSW index (its exact cast) and
    same-code-same-model cards, each at most KIOKU_CASE_CANDIDATES, scored together; the rows
    that pass the threshold (or share the code) first."""
    # The outcome boost goes into the rank score only: whether a case passes is its similarity
    # (or its code) against the threshold alone, so feedback reorders the cases that pass and
    # never lets a dissimilar case in nor keeps a similar one out.
    feedback_weight = float(settings.KIOKU_CASE_FEEDBACK_WEIGHT) if use_feedback else 0.0
    table = ProblemCard._meta.db_table
    technicians = Technician._meta.db_table
    distance = f"{space.cast('c')} <=> %s::halfvec({space.dimensions})"
    code_match = "(%s <> '' AND c.error_code = %s AND c.model_key = %s AND %s <> '')"
    bonus = (
        f"CASE WHEN same_model THEN {SAME_MODEL_BONUS} WHEN same_brand THEN {SAME_BRAND_BONUS}"
        " ELSE 0 END"
        if prefer_same_lock
        else "0"
    )
    return f"""
        WITH nearest AS MATERIALIZED (
            SELECT c.id FROM {table} c
            WHERE {resolved_case_sql("c")} AND c.id <> %s
              AND c.{space.model_column} = %s AND c.{space.column} IS NOT NULL
            ORDER BY {distance}
            LIMIT %s
        ), coded AS MATERIALIZED (
            SELECT c.id FROM {table} c
            WHERE {resolved_case_sql("c")} AND c.id <> %s AND {code_match}
            LIMIT %s
        ), scored AS (
            SELECT c.id, c.brand, c.lock_model, c.symptom, c.error_code, c.description,
                   c.resolution, c.root_cause, c.parts_used, t.id AS technician_id,
                   t.name AS technician_name, c.feedback_boost,
                   CASE WHEN c.{space.model_column} = %s AND c.{space.column} IS NOT NULL
                        THEN 1 - ({distance}) END AS similarity,
                   c.brand_key = %s AS same_brand,
                   (%s <> '' AND c.model_key = %s) AS same_model,
                   {code_match} AS same_code
            FROM (SELECT id FROM nearest UNION SELECT id FROM coded) found
            JOIN {table} c ON c.id = found.id
            LEFT JOIN {technicians} t ON t.id = c.resolved_by_id
        )
        SELECT *, COALESCE(similarity, 0) + {bonus}
                  + CASE WHEN same_code THEN {SAME_CODE_BONUS} ELSE 0 END
                  + {feedback_weight!r} * feedback_boost AS score,
               max(similarity) OVER () AS best_similarity
        FROM scored
        ORDER BY (similarity >= %s OR same_code) DESC, score DESC, id
        LIMIT %s
    """


def _case_matches(
    rows: list[dict], threshold: float, limit: int
) -> tuple[list[CaseMatch], float | None]:
    """The passing rows as cases (at most `limit`), and the best similarity of all rows."""
    best = rows[0]["best_similarity"] if rows else None
    cases = []
    for values in rows:
        similarity = values["similarity"]
        passes = (similarity is not None and similarity >= threshold) or values["same_code"]
        if passes and len(cases) < limit:
            cases.append(
                CaseMatch(
                    card_id=values["id"],
                    **{k: values[k] for k in CASE_COLUMNS},
                    similarity=similarity,
                    score=values["score"],
                )
            )
    return cases, best


CASE_COLUMNS = (
    "brand",
    "lock_model",
    "symptom",
    "error_code",
    "description",
    "resolution",
    "root_cause",
    "parts_used",
    "technician_id",
    "technician_name",
    "same_brand",
    "same_model",
    "same_code",
    "feedback_boost",
)


def _brand_in_manuals(brand_key: str) -> str | None:
    """The brand as the manuals' metadata spells it (`Kagiya` for `kagiya`, `KAGIYA`)."""
    from dispatch.models import normalize_key

    for brand in (
        KnowledgeSource.objects.filter(source_type__in=MANUAL_TYPES)
        .exclude(metadata__brand=None)
        .values_list("metadata__brand", flat=True)
        .distinct()
    ):
        if isinstance(brand, str) and normalize_key(brand) == brand_key:
            return brand
    return None


def _manuals_layer(card: ProblemCard, diagnosis: Diagnosis) -> None:
    """Layer 2: ask the brand's manuals, SOPs and FAQs; layer 3 when nothing relevant is found."""
    brand = _brand_in_manuals(card.brand_key)
    filters: dict = {"source_type": MANUAL_TYPES}
    if brand:
        filters["metadata"] = {"brand": brand}
    diagnosis.searched["manuals"] = (
        f"manuals, SOPs and FAQs of {brand}" if brand else "all manuals, SOPs and FAQs"
    )
    no_case = "No resolved case reached the threshold" + (
        f" (best similarity {diagnosis.best_similarity:.3f} < {diagnosis.threshold:.2f})"
        if diagnosis.best_similarity is not None
        else ""
    )
    try:
        answer = answer_ask(question=card.search_text, filters=filters, channel="dispatch")
    except AskError as exc:
        diagnosis.reason = f"{no_case}; the manuals could not be asked ({exc.code}: {exc.message})."
        return
    diagnosis.answer_id = answer.pk
    if answer.outcome != AnswerOutcome.ANSWERED:
        diagnosis.reason = f"{no_case}, and the manuals hold nothing relevant: escalate."
        return
    diagnosis.layer = 2
    diagnosis.answer = answer.answer
    diagnosis.passages = [
        {
            "number": source.rank,
            "chunk_id": source.chunk_id,
            "source_title": source.source_title,
            "score": source.score,
            "cited": source.cited,
        }
        for source in answer.sources.all()
    ]
    diagnosis.reason = (
        f"{no_case}; the answer comes from the manuals ({len(diagnosis.passages)} passages)."
    )


@transaction.atomic
def _record(card: ProblemCard, diagnosis: Diagnosis) -> None:
    result = diagnosis.as_dict()
    DiagnosisRecord.objects.create(
        card=card,
        layer=diagnosis.layer,
        reason=diagnosis.reason,
        embedding_model=diagnosis.embedding_model,
        best_similarity=diagnosis.best_similarity,
        threshold=diagnosis.threshold,
        result=result,
    )
    locked = ProblemCard.objects.select_for_update().get(pk=card.pk)
    locked.diagnosis = result
    fields = ["diagnosis", "updated_at"]
    if diagnosis.layer in (1, 2) and locked.status == CardStatus.OPEN:
        card_status_check(locked, CardStatus.DIAGNOSED)
        locked.status = CardStatus.DIAGNOSED
        fields.append("status")
    locked.save(update_fields=fields)
