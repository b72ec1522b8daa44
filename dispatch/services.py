"""Writes to problem cards: report, edit, resolve (which makes the card case knowledge)."""

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from dispatch.errors import (
    DISPATCH_CONFLICT,
    DISPATCH_INVALID_CARD,
    DISPATCH_INVALID_TRANSITION,
    DISPATCH_RESOLUTION_REQUIRED,
    DispatchError,
)
from dispatch.models import CARD_TRANSITIONS, CardStatus, ProblemCard, Symptom, Technician
from knowledge.embed.base import ProviderError
from knowledge.embed.enqueue import embedding_enqueue
from knowledge.embed.pipeline import embedding_write_now
from knowledge.embed.spaces import VectorSpace, embedding_provider_for, space_record
from knowledge.ingest.ingestion import source_ingest_text
from knowledge.models import KnowledgeSource, SourceType, embedding_requeue_fields
from knowledge.services import source_update
from knowledge.text import normalize_text

logger = logging.getLogger(__name__)

# Longest accepted values (characters); the columns allow these, the API says so.
FIELD_LIMITS = {
    "customer_name": 200,
    "customer_phone": 40,
    "customer_line_user_id": 64,
    "address": 500,
    "service_area": 100,
    "brand": 100,
    "lock_model": 100,
    "error_code": 40,
    "description": 10_000,
    "resolution": 10_000,
    "root_cause": 5_000,
    "parts_used": 2_000,
}
REQUIRED = ("customer_name", "brand", "description")


@dataclass(frozen=True)
class CustomerIn:
    name: str
    phone: str = ""
    line_user_id: str = ""
    address: str = ""
    service_area: str = ""


def card_field_clean(field: str, value: Any) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise DispatchError(
            DISPATCH_INVALID_CARD, f"{field} must be text.", status=422, details={"field": field}
        )
    value = normalize_text(value).strip()
    limit = FIELD_LIMITS[field]
    if len(value) > limit:
        raise DispatchError(
            DISPATCH_INVALID_CARD,
            f"{field} is longer than {limit:,} characters.",
            status=422,
            details={"field": field, "limit": limit},
        )
    return value


def _card_fields(values: dict[str, Any]) -> dict[str, str]:
    """Validated, normalised text fields; `symptom` checked against its choices."""
    cleaned = {
        field: card_field_clean(field, value)
        for field, value in values.items()
        if field != "symptom"
    }
    if "symptom" in values:
        symptom = values["symptom"]
        if symptom not in Symptom.values:
            raise DispatchError(
                DISPATCH_INVALID_CARD,
                f"Unknown symptom {symptom!r}; use one of {', '.join(Symptom.values)}.",
                status=422,
                details={"field": "symptom"},
            )
        cleaned["symptom"] = symptom
    for field in REQUIRED:
        if field in cleaned and not cleaned[field]:
            raise DispatchError(
                DISPATCH_INVALID_CARD, f"{field} is required.", status=422, details={"field": field}
            )
    return cleaned


@transaction.atomic
def problem_card_create(
    *,
    customer: CustomerIn,
    brand: str,
    lock_model: str = "",
    symptom: str,
    error_code: str = "",
    description: str,
) -> ProblemCard:
    """Store a reported fault. Its vector is owed from the start: the shared pipeline embeds it
    (queued on commit), and the card is searchable by meaning once it has."""
    fields = _card_fields(
        {
            "customer_name": customer.name,
            "customer_phone": customer.phone,
            "customer_line_user_id": customer.line_user_id,
            "address": customer.address,
            "service_area": customer.service_area,
            "brand": brand,
            "lock_model": lock_model,
            "symptom": symptom,
            "error_code": error_code,
            "description": description,
        }
    )
    card = ProblemCard(**fields)
    card.normalize()
    card.save()
    embedding_enqueue()
    return card


def _locked(card_id: int, version: int | None) -> ProblemCard:
    """The card, locked for this transaction; a stale `version` is a lost race."""
    card = ProblemCard.objects.select_for_update().get(pk=card_id)
    if version is not None and card.version != version:
        raise DispatchError(
            DISPATCH_CONFLICT,
            f"Card #{card_id} changed since version {version} (now {card.version}): reload it.",
            status=409,
            details={"version": card.version},
        )
    return card


@transaction.atomic
def problem_card_update(*, card_id: int, version: int | None = None, **changes: Any) -> ProblemCard:
    """Edit what was reported. A change to the text that is embedded drops the card's vectors and
    queues it again (search never compares against a vector of older words)."""
    allowed = set(FIELD_LIMITS) - {"resolution", "root_cause", "parts_used"} | {"symptom"}
    unknown = set(changes) - allowed
    if unknown:
        raise DispatchError(
            DISPATCH_INVALID_CARD,
            f"Cannot change {', '.join(sorted(unknown))} here.",
            status=422,
            details={"fields": sorted(unknown)},
        )
    card = _locked(card_id, version)
    for field, value in _card_fields(changes).items():
        setattr(card, field, value)
    before = card.search_text_hash
    card.normalize()
    update_fields = [*changes, "brand_key", "model_key", "search_text", "search_text_hash"]
    if card.search_text_hash != before:
        for field, value in {
            **embedding_requeue_fields(),
            "embedding": None,
            "embedding_model": "",
            "embedding_alt": None,
            "embedding_alt_model": "",
        }.items():
            setattr(card, field, value)
            update_fields.append(field)
        embedding_enqueue()
    card.version += 1
    card.save(update_fields=[*dict.fromkeys(update_fields), "version", "updated_at"])
    return card


def card_status_check(card: ProblemCard, to: str) -> None:
    """The one card status rule (CARD_TRANSITIONS)."""
    if to not in CARD_TRANSITIONS.get(card.status, ()):
        raise DispatchError(
            DISPATCH_INVALID_TRANSITION,
            f"A {card.get_status_display().lower()} card cannot become {to}.",
            status=409,
            details={"from": card.status, "to": to},
        )


# problem_card_resolve's default: prepare the vector itself.
UNPREPARED = object()


@dataclass(frozen=True)
class CaseVector:
    """A card's vector computed before its resolution is written (see case_vector_prepare)."""

    vector: list[float]
    space: VectorSpace
    text_hash: str


def case_vector_prepare(*, card_id: int) -> CaseVector | None:
    """A case never exists without its vector: the vector of a card the pipeline has not reached
    yet, computed now — call it outside any transaction, so no row lock or pooled connection is
    held while the provider answers; None when the card has it already, or when the provider
    cannot embed now (the card stays pending and the pipeline fills it)."""
    card = ProblemCard.objects.filter(pk=card_id).first()
    if card is None:
        return None
    # Recorded like the pipeline does on its first write, so the vector's space is pinned.
    space = space_record().writing
    if card.stored_vector(space) is not None:
        return None
    try:
        vector = embedding_provider_for(space).embed([card.search_text])[0]
    except ProviderError as exc:
        logger.warning("Card #%s resolved without its vector (%s); queued.", card_id, exc.message)
        return None
    return CaseVector(vector=list(vector), space=space, text_hash=card.search_text_hash)


def problem_card_resolve(
    *,
    card_id: int,
    resolution: str,
    root_cause: str = "",
    parts_used: str = "",
    resolved_by: Technician | None = None,
    version: int | None = None,
    prepared: CaseVector | None | object = UNPREPARED,
) -> ProblemCard:
    """Record what fixed the fault. The card becomes case knowledge: layer 1 of the diagnosis
    reads its own vector, and search and ask find it as a `case` source. A card the pipeline has
    not embedded yet is written together with its vector when the provider is up. A caller that
    resolves inside its own transaction passes the vector it prepared before opening it."""
    if prepared is UNPREPARED:
        prepared = case_vector_prepare(card_id=card_id)
    return _resolve(
        card_id=card_id,
        resolution=resolution,
        root_cause=root_cause,
        parts_used=parts_used,
        resolved_by=resolved_by,
        version=version,
        vector_now=prepared,
    )


@transaction.atomic
def _resolve(
    *,
    card_id: int,
    resolution: str,
    root_cause: str,
    parts_used: str,
    resolved_by: Technician | None,
    version: int | None,
    vector_now: CaseVector | None,
) -> ProblemCard:
    fields = _card_fields(
        {"resolution": resolution, "root_cause": root_cause, "parts_used": parts_used}
    )
    if not fields["resolution"]:
        raise DispatchError(
            DISPATCH_RESOLUTION_REQUIRED,
            "Say what fixed it: a resolution is required to resolve a card.",
            status=422,
            details={"field": "resolution"},
        )
    card = _locked(card_id, version)
    card_status_check(card, CardStatus.RESOLVED)
    card.resolution = fields["resolution"]
    card.root_cause = fields["root_cause"]
    card.parts_used = fields["parts_used"]
    card.resolved_by = resolved_by
    card.resolved_at = timezone.now()
    card.status = CardStatus.RESOLVED
    card.version += 1
    card.save()
    if vector_now is not None:
        embedding_write_now(
            model=ProblemCard,
            row_id=card.pk,
            text_hash=vector_now.text_hash,
            vector=vector_now.vector,
            space=vector_now.space,
        )
    _case_source_write(card)
    card.refresh_from_db()
    return card


@transaction.atomic
def problem_card_case_curate(
    *,
    card_id: int,
    is_case_enabled: bool | None = None,
    resolution: str | None = None,
    root_cause: str | None = None,
    parts_used: str | None = None,
) -> ProblemCard:
    """A curator's hand on a resolved case: disable a misleading one (diagnosis, search and ask
    stop using it: the card's flag and its `case` source), enable it again, or fix what the
    resolution says (the case source is rewritten)."""
    card = _locked(card_id, None)
    if card.status not in (CardStatus.RESOLVED, CardStatus.CLOSED):
        raise DispatchError(
            DISPATCH_INVALID_TRANSITION,
            f"Card #{card_id} is not a resolved case: resolve it first.",
            status=409,
            details={"status": card.status},
        )
    texts = {
        field: value
        for field, value in (
            ("resolution", resolution),
            ("root_cause", root_cause),
            ("parts_used", parts_used),
        )
        if value is not None
    }
    for field, value in _card_fields(texts).items():
        setattr(card, field, value)
    if not card.resolution:
        raise DispatchError(
            DISPATCH_RESOLUTION_REQUIRED,
            "A case keeps its resolution: disable the case instead of emptying it.",
            status=422,
            details={"field": "resolution"},
        )
    if is_case_enabled is not None:
        card.is_case_enabled = is_case_enabled
    card.version += 1
    card.save()
    if texts:
        _case_source_write(card)
    source = KnowledgeSource.objects.filter(uri=case_uri(card)).first()
    if source is not None and source.enabled != card.is_case_enabled:
        source_update(source=source, enabled=card.is_case_enabled)
    return card


def case_uri(card: ProblemCard) -> str:
    return f"dispatch://problem-cards/{card.pk}"


def case_document(card: ProblemCard) -> str:
    """A resolved card as a knowledge document (Markdown): what happened, what fixed it."""
    lines = [f"# {card.brand} {card.lock_model} — {card.get_symptom_display()}".replace("  ", " ")]
    if card.error_code:
        lines.append(f"\nError code: {card.error_code}")
    lines += ["\n## Problem\n", card.description, "\n## Resolution\n", card.resolution]
    if card.root_cause:
        lines += ["\n## Root cause\n", card.root_cause]
    if card.parts_used:
        lines += ["\n## Parts used\n", card.parts_used]
    return "\n".join(lines)


def _case_source_write(card: ProblemCard) -> None:
    """The card's `case` source, created or updated in place (one per card, by URI)."""
    source_ingest_text(
        text=case_document(card),
        text_format="markdown",
        source_type=SourceType.CASE,
        title=f"Case #{card.pk}: {card.brand} {card.lock_model} · {card.get_symptom_display()}",
        uri=case_uri(card),
        metadata={
            "brand": card.brand,
            "models": [card.lock_model] if card.lock_model else [],
            "error_code": card.error_code,
            "problem_card_id": card.pk,
        },
    )
