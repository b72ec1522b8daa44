"""The dispatch API: problem cards, their diagnosis and resolution (`/api/v1/problem-cards`);
technicians; service orders with their flow, candidates, lines, settlement and invoice
(`/api/v1/service-orders`); quote items."""

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import File, Query, Router, Status
from ninja.decorators import decorate_view
from ninja.files import UploadedFile

from core.auth import read_auth, write_auth
from core.pagination import Page, limit_param, offset_param, page_of
from core.schemas import JsonDate, errors
from core.uploads import upload_limited
from dispatch import queries
from dispatch.billing import order_invoice, order_line_add, order_line_remove, order_settle
from dispatch.diagnosis import Diagnosis, problem_card_diagnose, problem_card_similar
from dispatch.errors import dispatch_not_found
from dispatch.matching import Candidate, order_candidates
from dispatch.models import (
    CardStatus,
    Invoice,
    OrderStatus,
    ProblemCard,
    ProblemCardPhoto,
    QuoteItem,
    ServiceOrder,
    Settlement,
    Technician,
)
from dispatch.orders import Actor, order_assign, order_create, order_transition
from dispatch.photos import photo_size_check, problem_card_photo_add
from dispatch.schemas import (
    AssignIn,
    CandidateOut,
    DiagnosisOut,
    InvoiceIn,
    InvoiceOut,
    OrderLineIn,
    ProblemCardIn,
    ProblemCardOut,
    ProblemCardPage,
    ProblemCardPatchIn,
    ProblemCardPhotoOut,
    QuoteItemOut,
    ResolveIn,
    ServiceOrderDetailOut,
    ServiceOrderIn,
    ServiceOrderPage,
    SettleIn,
    SettlementOut,
    SkillIn,
    SopDraftOut,
    TechnicianIn,
    TechnicianOut,
    TechnicianPage,
    TechnicianPatchIn,
    TransitionIn,
)
from dispatch.services import (
    CustomerIn,
    problem_card_create,
    problem_card_resolve,
    problem_card_update,
)
from dispatch.sop import sop_draft_create
from dispatch.technicians import SkillIn as SkillService
from dispatch.technicians import technician_create, technician_update
from knowledge.models import KnowledgeSource

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
    limit: int = limit_param(50, 200),
    offset: int = offset_param(),
) -> Page:
    cards = queries.problem_card_list(status=status, brand=brand, error_code=error_code, query=q)
    return page_of(cards, limit=limit, offset=offset)


@router.get(
    "/problem-cards/{card_id}", response=ProblemCardOut, auth=read_auth, summary="Get a card"
)
def problem_card_get(request: HttpRequest, card_id: int) -> ProblemCard:
    return _card(card_id)


@router.patch(
    "/problem-cards/{card_id}",
    response={200: ProblemCardOut, **errors(409)},
    auth=write_auth,
    summary="Edit a card",
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
    response={200: ProblemCardOut, **errors(409)},
    auth=write_auth,
    summary="Record what fixed it: the card becomes case knowledge",
)
def problem_card_resolve_post(
    request: HttpRequest, card_id: int, payload: ResolveIn
) -> ProblemCard:
    _card(card_id)
    technician = None
    if payload.technician_id:
        technician = Technician.objects.filter(pk=payload.technician_id).first()
        if technician is None:
            raise dispatch_not_found("technician", payload.technician_id, field="technician_id")
    problem_card_resolve(
        card_id=card_id,
        resolution=payload.resolution,
        root_cause=payload.root_cause,
        parts_used=payload.parts_used,
        resolved_by=technician,
        version=payload.version,
    )
    return _card(card_id)


@router.post(
    "/problem-cards/{card_id}/photos",
    response={201: ProblemCardPhotoOut, **errors(415)},
    auth=write_auth,
    summary="Add a photo (JPEG, PNG, GIF or WebP, decided from the bytes; KIOKU_MAX_PHOTO_BYTES)",
)
@decorate_view(upload_limited(photo_size_check))
def problem_card_photo_post(
    request: HttpRequest, card_id: int, file: File[UploadedFile]
) -> Status[ProblemCardPhoto]:
    _card(card_id)
    photo = problem_card_photo_add(card_id=card_id, data=file.read(), filename=file.name)
    return Status(201, photo)


# --- Technicians ---------------------------------------------------------------------------------


def _technician(technician_id: int) -> Technician:
    return get_object_or_404(queries.technicians(), pk=technician_id)


@router.get(
    "/technicians",
    response=TechnicianPage,
    auth=read_auth,
    tags=["technicians"],
    summary="List technicians",
)
def technician_get_list(
    request: HttpRequest,
    area: str | None = Query(None, max_length=100),
    brand: str | None = Query(None, max_length=100),
    is_active: bool | None = None,
    limit: int = limit_param(50, 200),
    offset: int = offset_param(),
) -> Page:
    technicians = queries.technician_list(area=area, brand=brand, is_active=is_active)
    return page_of(technicians, limit=limit, offset=offset)


@router.post(
    "/technicians",
    response={201: TechnicianOut},
    auth=write_auth,
    tags=["technicians"],
    summary="Add a technician with skills and service areas",
)
def technician_post(request: HttpRequest, payload: TechnicianIn) -> Status[Technician]:
    fields = payload.dict(exclude={"skills"})
    technician = technician_create(**fields, skills=_skills_in(payload.skills))
    return Status(201, _technician(technician.pk))


@router.get(
    "/technicians/{technician_id}",
    response=TechnicianOut,
    auth=read_auth,
    tags=["technicians"],
    summary="Get a technician",
)
def technician_get(request: HttpRequest, technician_id: int) -> Technician:
    return _technician(technician_id)


@router.patch(
    "/technicians/{technician_id}",
    response=TechnicianOut,
    auth=write_auth,
    tags=["technicians"],
    summary="Edit a technician (skills, when given, replace all)",
)
def technician_patch(
    request: HttpRequest, technician_id: int, payload: TechnicianPatchIn
) -> Technician:
    changes = payload.dict(exclude_unset=True, exclude={"skills"})
    skills = _skills_in(payload.skills) if payload.skills is not None else None
    technician_update(technician_id=_technician(technician_id).pk, skills=skills, **changes)
    return _technician(technician_id)


def _skills_in(skills: list[SkillIn]) -> list[SkillService]:
    return [SkillService(brand=s.brand, symptom=s.symptom, level=s.level) for s in skills]


# --- Service orders --------------------------------------------------------------------------------


def _order(order_id: int) -> ServiceOrder:
    return get_object_or_404(queries.service_order_detail(), pk=order_id)


def _actor(request: HttpRequest) -> Actor:
    return Actor.of_api_key(request.auth)


@router.post(
    "/service-orders",
    response={201: ServiceOrderDetailOut, **errors(404, 409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Open an order for a card (the card becomes dispatched)",
)
def service_order_post(request: HttpRequest, payload: ServiceOrderIn) -> Status[ServiceOrder]:
    order = order_create(
        card_id=payload.problem_card_id,
        address=payload.address,
        scheduled_start=payload.scheduled_start,
        scheduled_end=payload.scheduled_end,
        latitude=payload.latitude,
        longitude=payload.longitude,
        actor=_actor(request),
    )
    return Status(201, _order(order.pk))


# `?date=2026-12-24`: orders scheduled to start that day (in the server's time zone).
SCHEDULED_DATE = Query(None, alias="date", description="The scheduled start's date.")


@router.get(
    "/service-orders",
    response=ServiceOrderPage,
    auth=read_auth,
    tags=["service orders"],
    summary="List orders by status, technician or scheduled date",
)
def service_order_get_list(
    request: HttpRequest,
    status: OrderStatus | None = None,
    technician_id: int | None = None,
    day: JsonDate | None = SCHEDULED_DATE,
    problem_card_id: int | None = None,
    limit: int = limit_param(50, 200),
    offset: int = offset_param(),
) -> Page:
    orders = queries.service_order_list(
        status=status, technician_id=technician_id, day=day, card_id=problem_card_id
    )
    return page_of(orders, limit=limit, offset=offset)


@router.get(
    "/service-orders/{order_id}",
    response=ServiceOrderDetailOut,
    auth=read_auth,
    tags=["service orders"],
    summary="Get an order with its lines, totals, audit log, settlement and invoice",
)
def service_order_get(request: HttpRequest, order_id: int) -> ServiceOrder:
    return _order(order_id)


@router.post(
    "/service-orders/{order_id}/assign",
    response={200: ServiceOrderDetailOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Assign (or reassign) a technician; a stale version is a 409",
)
def service_order_assign(request: HttpRequest, order_id: int, payload: AssignIn) -> ServiceOrder:
    order_assign(
        order_id=_order(order_id).pk,
        technician_id=payload.technician_id,
        version=payload.version,
        eta=payload.eta,
        note=payload.note,
        actor=_actor(request),
    )
    return _order(order_id)


@router.post(
    "/service-orders/{order_id}/transition",
    response={200: ServiceOrderDetailOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Move the order along created → assigned → en_route → on_site → completed, or cancel",
)
def service_order_transition(
    request: HttpRequest, order_id: int, payload: TransitionIn
) -> ServiceOrder:
    order_transition(
        order_id=_order(order_id).pk,
        to=payload.to,
        version=payload.version,
        note=payload.note,
        technician_id=payload.technician_id,
        eta=payload.eta,
        work_done=payload.work_done,
        parts_used=payload.parts_used,
        diagnosis_matched=payload.diagnosis_matched,
        actor=_actor(request),
    )
    return _order(order_id)


@router.get(
    "/service-orders/{order_id}/candidates",
    response=list[CandidateOut],
    auth=read_auth,
    tags=["service orders"],
    summary="Technicians for the order, best first, with the reasons",
)
def service_order_candidates(
    request: HttpRequest, order_id: int, limit: int = limit_param(5, 50)
) -> list[Candidate]:
    return order_candidates(order=_order(order_id), limit=limit)


@router.post(
    "/service-orders/{order_id}/lines",
    response={201: ServiceOrderDetailOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Quote a standard item on an open order",
)
def service_order_line_post(
    request: HttpRequest, order_id: int, payload: OrderLineIn
) -> Status[ServiceOrder]:
    order_line_add(
        order_id=_order(order_id).pk,
        item_code=payload.item_code,
        quantity=payload.quantity,
        actor=_actor(request),
    )
    return Status(201, _order(order_id))


@router.delete(
    "/service-orders/{order_id}/lines/{line_id}",
    response={200: ServiceOrderDetailOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Take a line off an open order",
)
def service_order_line_delete(request: HttpRequest, order_id: int, line_id: int) -> ServiceOrder:
    order_line_remove(order_id=_order(order_id).pk, line_id=line_id, actor=_actor(request))
    return _order(order_id)


@router.post(
    "/service-orders/{order_id}/settle",
    response={201: SettlementOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Settle the technician of a completed order (a share or a fixed fee), once",
)
def service_order_settle(
    request: HttpRequest, order_id: int, payload: SettleIn
) -> Status[Settlement]:
    settlement = order_settle(
        order_id=_order(order_id).pk,
        share_percent=payload.share_percent,
        fee=payload.fee,
        actor=_actor(request),
    )
    return Status(201, settlement)


@router.post(
    "/service-orders/{order_id}/invoice",
    response={201: InvoiceOut, **errors(409)},
    auth=write_auth,
    tags=["service orders"],
    summary="Invoice a completed order, once",
)
def service_order_invoice(
    request: HttpRequest, order_id: int, payload: InvoiceIn
) -> Status[Invoice]:
    invoice = order_invoice(
        order_id=_order(order_id).pk,
        buyer_name=payload.buyer_name,
        buyer_tax_id=payload.buyer_tax_id,
        issued_on=payload.issued_on,
        actor=_actor(request),
    )
    return Status(201, invoice)


@router.get(
    "/quote-items",
    response=list[QuoteItemOut],
    auth=read_auth,
    tags=["service orders"],
    summary="Standard quote items (active ones unless asked)",
)
def quote_item_get_list(request: HttpRequest, include_inactive: bool = False) -> list[QuoteItem]:
    return list(queries.quote_item_list(include_inactive=include_inactive))


@router.post(
    "/problem-cards/{card_id}/sop-draft",
    response={201: SopDraftOut, **errors(409, 502)},
    auth=write_auth,
    summary="Draft an SOP from a resolved card and its similar cases (a disabled `sop` source)",
)
def problem_card_sop_draft_post(request: HttpRequest, card_id: int) -> Status[KnowledgeSource]:
    source = sop_draft_create(card_id=_card(card_id).pk, by=Actor.of_api_key(request.auth).label)
    return Status(201, source)
