"""Reads shared by the dispatch API, pages, admin and the home dashboard."""

from django.db.models import Count, Q

from core.queries import DispatchFigures, StatusCount
from dispatch.models import CardStatus, OrderStatus, ProblemCard, ServiceOrder

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
