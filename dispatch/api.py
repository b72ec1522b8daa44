"""The dispatch API: problem cards, their diagnosis and resolution (`/api/v1/problem-cards`)."""

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Query, Router, Status

from core.auth import read_auth, write_auth
from core.pagination import Page, page_of
from dispatch import queries
from dispatch.diagnosis import Diagnosis, problem_card_diagnose, problem_card_similar
from dispatch.models import CardStatus, ProblemCard, Technician
from dispatch.schemas import (
    DiagnosisOut,
    ProblemCardIn,
    ProblemCardOut,
    ProblemCardPage,
    ProblemCardPatchIn,
    ResolveIn,
)
from dispatch.services import (
    CustomerIn,
    problem_card_create,
    problem_card_resolve,
    problem_card_update,
)

router = Router(tags=["problem cards"])


def _card(card_id: int) -> ProblemCard:
    return get_object_or_404(queries.problem_cards(), pk=card_id)


@router.post(
    "/problem-cards",
    response={201: ProblemCardOut},
    auth=write_auth,
    summary="Report a fault (and diagnose it right away)",
)
def problem_card_post(request: HttpRequest, payload: ProblemCardIn) -> Status[ProblemCard]:
    card = problem_card_create(
        customer=CustomerIn(**payload.customer.dict()),
        brand=payload.brand,
        lock_model=payload.model,
        symptom=payload.symptom,
        error_code=payload.error_code,
        description=payload.description,
    )
    if payload.diagnose:
        problem_card_diagnose(card_id=card.pk)
    return Status(201, _card(card.pk))


@router.get("/problem-cards", response=ProblemCardPage, auth=read_auth, summary="List cards")
def problem_card_get_list(
    request: HttpRequest,
    status: CardStatus | None = None,
    brand: str | None = Query(None, max_length=100),
    error_code: str | None = Query(None, max_length=40),
    q: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0),
) -> Page:
    cards = queries.problem_card_list(status=status, brand=brand, error_code=error_code, query=q)
    return page_of(cards, limit=limit, offset=offset)


@router.get(
    "/problem-cards/{card_id}", response=ProblemCardOut, auth=read_auth, summary="Get a card"
)
def problem_card_get(request: HttpRequest, card_id: int) -> ProblemCard:
    return _card(card_id)


@router.patch(
    "/problem-cards/{card_id}", response=ProblemCardOut, auth=write_auth, summary="Edit a card"
)
def problem_card_patch(
    request: HttpRequest, card_id: int, payload: ProblemCardPatchIn
) -> ProblemCard:
    changes = payload.dict(exclude_unset=True)
    version = changes.pop("version", None)
    if "model" in changes:
        changes["lock_model"] = changes.pop("model")
    _card(card_id)
    problem_card_update(card_id=card_id, version=version, **changes)
    return _card(card_id)


@router.post(
    "/problem-cards/{card_id}/diagnose",
    response=DiagnosisOut,
    auth=write_auth,
    summary="Run the three-layer diagnosis",
)
def problem_card_diagnose_post(request: HttpRequest, card_id: int) -> Diagnosis:
    return problem_card_diagnose(card_id=_card(card_id).pk)


@router.get(
    "/problem-cards/{card_id}/similar",
    response=DiagnosisOut,
    auth=read_auth,
    summary="Similar resolved cases (layer 1 only; nothing is recorded)",
)
def problem_card_similar_get(request: HttpRequest, card_id: int) -> Diagnosis:
    return problem_card_similar(card_id=_card(card_id).pk)


@router.post(
    "/problem-cards/{card_id}/resolve",
    response=ProblemCardOut,
    auth=write_auth,
    summary="Record what fixed it: the card becomes case knowledge",
)
def problem_card_resolve_post(
    request: HttpRequest, card_id: int, payload: ResolveIn
) -> ProblemCard:
    _card(card_id)
    technician = (
        get_object_or_404(Technician, pk=payload.technician_id) if payload.technician_id else None
    )
    problem_card_resolve(
        card_id=card_id,
        resolution=payload.resolution,
        root_cause=payload.root_cause,
        parts_used=payload.parts_used,
        resolved_by=technician,
        version=payload.version,
    )
    return _card(card_id)
