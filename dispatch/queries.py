"""Reads shared by the dispatch API, pages, admin and the home dashboard."""

from datetime import date

from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    Min,
    Prefetch,
    Q,
    QuerySet,
    When,
)

from core.queries import DispatchFigures, StatusCount
from dispatch.models import (
    CardStatus,
    OrderEvent,
    OrderLine,
    OrderStatus,
    ProblemCard,
    QuoteItem,
    ServiceOrder,
    Technician,
    TechnicianSkill,
    normalize_error_code,
    normalize_key,
)
from knowledge.embed.spaces import space_state

# Cards someone still has to act on.
OPEN_CARD_STATUSES = (CardStatus.OPEN, CardStatus.DIAGNOSED, CardStatus.DISPATCHED)


def dashboard_figures() -> DispatchFigures:
    """Open problem cards, and service orders by status in the order of their flow (two
    queries)."""
    open_cards = ProblemCard.objects.filter(status__in=OPEN_CARD_STATUSES).count()
    counts = ServiceOrder.objects.aggregate(
        **{status.value: Count("pk", filter=Q(status=status)) for status in OrderStatus}
    )
    return DispatchFigures(
        open_problem_cards=open_cards,
        orders_by_status=[
            StatusCount(status.value, status.label, counts[status.value]) for status in OrderStatus
        ],
    )


def problem_cards() -> QuerySet[ProblemCard]:
    """Cards with `has_vector`: whether the card can be found by meaning now (its vector is in
    the active embedding space, the one diagnosis and search read)."""
    space = space_state().active
    holds = Q(**{f"{space.column}__isnull": False, space.model_column: space.model})
    return ProblemCard.objects.annotate(
        has_vector=ExpressionWrapper(holds, output_field=BooleanField())
    ).prefetch_related("photos")


def problem_card_list(
    *,
    status: str | None = None,
    brand: str | None = None,
    error_code: str | None = None,
    query: str | None = None,
) -> QuerySet[ProblemCard]:
    """Newest first; brand and error code match however they were typed."""
    cards = problem_cards()
    if status:
        cards = cards.filter(status=status)
    if brand:
        cards = cards.filter(brand_key=normalize_key(brand))
    if error_code:
        cards = cards.filter(error_code=normalize_error_code(error_code))
    if query:
        cards = cards.filter(
            Q(description__icontains=query)
            | Q(customer_name__icontains=query)
            | Q(lock_model__icontains=query)
            | Q(resolution__icontains=query)
        )
    return cards.order_by("-created_at", "-id")


# --- Technicians, service orders, quote items ------------------------------------------------


def technicians() -> QuerySet[Technician]:
    """Technicians with their skills (one more query for all of them)."""
    return Technician.objects.prefetch_related(
        Prefetch("skills", queryset=TechnicianSkill.objects.order_by("brand_key", "symptom"))
    )


def technician_list(
    *, area: str | None = None, brand: str | None = None, is_active: bool | None = None
) -> QuerySet[Technician]:
    """By name; `brand` keeps those with a skill for it, however it was typed."""
    rows = technicians()
    if area:
        rows = rows.filter(service_areas__contains=[area])
    if brand:
        rows = rows.filter(skills__brand_key=normalize_key(brand)).distinct()
    if is_active is not None:
        rows = rows.filter(is_active=is_active)
    return rows.order_by("name", "id")


def service_orders() -> QuerySet[ServiceOrder]:
    return ServiceOrder.objects.select_related("technician")


def service_order_list(
    *,
    status: str | None = None,
    technician_id: int | None = None,
    day: date | None = None,
    card_id: int | None = None,
) -> QuerySet[ServiceOrder]:
    """Newest first; `day` is the scheduled start's date in the current time zone."""
    orders = service_orders()
    if status:
        orders = orders.filter(status=status)
    if technician_id is not None:
        orders = orders.filter(technician_id=technician_id)
    if day is not None:
        orders = orders.filter(scheduled_start__date=day)
    if card_id is not None:
        orders = orders.filter(card_id=card_id)
    return orders.order_by("-created_at", "-id")


def service_order_detail() -> QuerySet[ServiceOrder]:
    """Orders with everything their page shows: lines (with items), the audit log, settlement
    and invoice (fixed number of queries per order)."""
    return (
        service_orders()
        .select_related("card", "settlement", "invoice")
        .prefetch_related(
            Prefetch("lines", queryset=OrderLine.objects.select_related("item").order_by("id")),
            Prefetch("events", queryset=OrderEvent.objects.order_by("created_at", "id")),
        )
    )


def quote_item_list(*, include_inactive: bool = False) -> QuerySet[QuoteItem]:
    items = QuoteItem.objects.order_by("code")
    return items if include_inactive else items.filter(is_active=True)


def technician_loads_today() -> list[dict]:
    """Each active technician's orders that take a slot today (the rule matching uses) against
    their daily capacity."""
    from django.utils import timezone

    from dispatch.matching import busy_orders

    rows = (
        Technician.objects.filter(is_active=True)
        .annotate(load=Count("orders", filter=busy_orders(timezone.localdate())))
        .order_by("name")
    )
    return [
        {
            "technician": technician,
            "load": technician.load,
            "capacity": technician.daily_capacity,
            "is_full": technician.load >= technician.daily_capacity,
        }
        for technician in rows
    ]


def cards_awaiting_technician(*, limit: int = 50) -> QuerySet[ProblemCard]:
    """Cards still open or diagnosed with no order being worked on or done: the board's first
    column. Escalated cards (diagnosis layer 3) first, then the oldest. (A CASE, not the bare
    comparison: an undiagnosed card's NULL would sort before the escalated ones.)"""
    busy = ServiceOrder.objects.exclude(status=OrderStatus.CANCELLED).values("card_id")
    return (
        ProblemCard.objects.filter(status__in=(CardStatus.OPEN, CardStatus.DIAGNOSED))
        .exclude(pk__in=busy)
        .annotate(escalated=Case(When(diagnosis__layer=3, then=True), default=False))
        .order_by("-escalated", "created_at")[:limit]
    )


def brands_reported(*, limit: int = 10) -> list[str]:
    """The brands customers report most, as first written (a customer picks one instead of
    typing it)."""
    rows = (
        ProblemCard.objects.values("brand_key")
        .annotate(cards=Count("pk"), brand=Min("brand"))
        .order_by("-cards", "brand_key")[:limit]
    )
    return [row["brand"] for row in rows]
