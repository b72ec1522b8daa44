"""Reads shared by the dispatch API, pages, admin and the home dashboard."""

from django.db.models import BooleanField, Count, ExpressionWrapper, Q, QuerySet

from core.queries import DispatchFigures, StatusCount
from dispatch.models import (
    CardStatus,
    OrderStatus,
    ProblemCard,
    ServiceOrder,
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
    )


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
