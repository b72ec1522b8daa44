"""Cases pages (report a fault and see its three-layer diagnosis, list cards, read one card with
its diagnosis history, resolve it) and the Dispatch board (orders by status, today's load per
technician, one order with its steps, lines, totals and invoice)."""

from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from core.errors import ApiError
from core.pages import permission_required, wants_fragment
from core.replicas import replica_reads
from dispatch import queries
from dispatch.billing import order_invoice, order_line_add, order_totals
from dispatch.diagnosis import problem_card_diagnose
from dispatch.forms import (
    CardFilterForm,
    CaseCurateForm,
    InvoiceForm,
    OrderLineForm,
    OrderNewForm,
    OrderStepForm,
    PhotoForm,
    ProblemCardForm,
    ResolveForm,
)
from dispatch.matching import order_candidates
from dispatch.models import ORDER_TRANSITIONS, OrderStatus, ProblemCardPhoto
from dispatch.orders import Actor, order_create, order_transition
from dispatch.photos import photo_size_check, problem_card_photo_add
from dispatch.services import (
    CustomerIn,
    problem_card_case_curate,
    problem_card_create,
    problem_card_resolve,
)
from dispatch.sop import sop_draft_create
from line_channel.queries import line_conversation

CARDS_PER_PAGE = 50


@require_GET
@permission_required("dispatch.view_problemcard")
@vary_on_headers("HX-Request")
@replica_reads
def case_list(request: HttpRequest) -> HttpResponse:
    filters = CardFilterForm(request.GET)
    filters.is_valid()  # invalid values are ignored: cleaned_data holds only the valid ones
    wanted = filters.cleaned_data
    cards = queries.problem_card_list(
        status=wanted.get("status") or None,
        brand=wanted.get("brand") or None,
        query=wanted.get("q") or None,
    )
    context = {
        "filters": filters,
        "is_filtered": any(wanted.values()),
        "page_obj": Paginator(cards, CARDS_PER_PAGE).get_page(request.GET.get("page")),
    }
    if wants_fragment(request):
        return render(request, "dispatch/_case_table.html", context)
    return render(request, "dispatch/case_list.html", context)


@require_http_methods(["GET", "POST"])
@permission_required("dispatch.add_problemcard")
def case_new(request: HttpRequest) -> HttpResponse:
    form = ProblemCardForm(request.POST or None)
    error = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            card = problem_card_create(
                customer=CustomerIn(
                    name=data["customer_name"],
                    phone=data["customer_phone"],
                    address=data["address"],
                    service_area=data["service_area"],
                ),
                brand=data["brand"],
                lock_model=data["lock_model"],
                symptom=data["symptom"],
                error_code=data["error_code"],
                description=data["description"],
            )
        except ApiError as exc:
            error = exc
        else:
            if data["diagnose"]:
                problem_card_diagnose(card_id=card.pk)
            return redirect("dispatch:case-detail", card_id=card.pk)
    return render(request, "dispatch/case_new.html", {"form": form, "error": error})


def _detail_context(card_id: int) -> dict:
    card = get_object_or_404(queries.problem_cards(), pk=card_id)
    return {
        "card": card,
        "history": card.diagnoses.all()[:10],
        "resolve_form": ResolveForm(),
        "curate_form": CaseCurateForm(
            initial={
                "resolution": card.resolution,
                "root_cause": card.root_cause,
                "parts_used": card.parts_used,
                "is_case_enabled": card.is_case_enabled,
            }
        ),
        "photo_form": PhotoForm(),
        "line": (
            line_conversation(user_id=card.customer_line_user_id, card_id=card.pk)
            if card.customer_line_user_id
            else None
        ),
    }


@require_GET
@permission_required("dispatch.view_problemcard")
def case_detail(request: HttpRequest, card_id: int) -> HttpResponse:
    return render(request, "dispatch/case_detail.html", _detail_context(card_id))


@require_POST
@permission_required("dispatch.change_problemcard")
def case_diagnose(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    problem_card_diagnose(card_id=card_id)
    context = _detail_context(card_id)
    if wants_fragment(request):
        return render(request, "dispatch/_diagnosis.html", context)
    return redirect("dispatch:case-detail", card_id=card_id)


@require_POST
@permission_required("dispatch.change_problemcard")
def case_resolve(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    form = ResolveForm(request.POST)
    error = None
    if form.is_valid():
        try:
            problem_card_resolve(card_id=card_id, **form.cleaned_data)
        except ApiError as exc:
            error = exc
        else:
            return redirect("dispatch:case-detail", card_id=card_id)
    context = {**_detail_context(card_id), "resolve_form": form, "resolve_error": error}
    return render(request, "dispatch/case_detail.html", context, status=422)


@require_POST
@permission_required("knowledge.add_knowledgesource")
def case_sop_draft(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    try:
        source = sop_draft_create(card_id=card_id, by=request.user.get_username())
    except ApiError as exc:
        context = {**_detail_context(card_id), "sop_error": exc}
        if wants_fragment(request):
            # Said with 200: HTMX does not swap in an error status, and the message is the answer.
            return render(request, "dispatch/_sop_draft.html", context)
        return render(request, "dispatch/case_detail.html", context, status=exc.status)
    if wants_fragment(request):
        return render(request, "dispatch/_sop_draft.html", {"sop_source": source})
    return redirect("knowledge:source-detail", source_id=source.pk)


@require_POST
@permission_required("dispatch.add_problemcardphoto")
def case_photo_add(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    form = PhotoForm(request.POST, request.FILES)
    error = None
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            photo_size_check(upload.size)
            problem_card_photo_add(card_id=card_id, data=upload.read(), filename=upload.name)
        except ApiError as exc:
            error = exc
        else:
            return redirect("dispatch:case-detail", card_id=card_id)
    context = {**_detail_context(card_id), "photo_form": form, "photo_error": error}
    return render(
        request, "dispatch/case_detail.html", context, status=error.status if error else 422
    )


@require_GET
@permission_required("dispatch.view_problemcardphoto")
def photo(request: HttpRequest, photo_id: int) -> FileResponse:
    """A card's photo, for users who may view photos only: photos are customer data, so no
    public URL (MEDIA_URL) serves them. The content type is the one decided from the bytes on
    upload."""
    found = get_object_or_404(ProblemCardPhoto, pk=photo_id)
    try:
        handle = found.image.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The photo's file is missing.") from exc
    response = FileResponse(handle, content_type=found.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_POST
@permission_required("dispatch.curate_problemcard")
def case_curate(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    form = CaseCurateForm(request.POST)
    error = None
    if form.is_valid():
        try:
            problem_card_case_curate(card_id=card_id, **form.cleaned_data)
        except ApiError as exc:
            error = exc
        else:
            return redirect("dispatch:case-detail", card_id=card_id)
    context = {**_detail_context(card_id), "curate_form": form, "curate_error": error}
    return render(request, "dispatch/case_detail.html", context, status=422)


# --- Dispatch: the board and one order ----------------------------------------------------------

BOARD_COLUMNS = (
    OrderStatus.CREATED,
    OrderStatus.ASSIGNED,
    OrderStatus.EN_ROUTE,
    OrderStatus.ON_SITE,
    OrderStatus.COMPLETED,
)
BOARD_COMPLETED_SHOWN = 20  # the latest completed orders; older ones are on the API


@require_GET
@permission_required("dispatch.view_serviceorder")
@vary_on_headers("HX-Request")
@replica_reads
def order_list(request: HttpRequest) -> HttpResponse:
    """The board: cards waiting for a technician (escalated first), open orders in a column per
    status, the latest completed ones, and each technician's load today."""
    columns = []
    for status in BOARD_COLUMNS:
        orders = queries.service_order_list(status=status).select_related("card")
        if status == OrderStatus.COMPLETED:
            orders = orders[:BOARD_COMPLETED_SHOWN]
        columns.append({"status": status, "label": status.label, "orders": list(orders)})
    context = {
        "waiting": queries.cards_awaiting_technician(),
        "columns": columns,
        "loads": queries.technician_loads_today(),
    }
    if wants_fragment(request):
        return render(request, "dispatch/_board.html", context)
    return render(request, "dispatch/order_list.html", context)


def _order_context(order_id: int) -> dict:
    order = get_object_or_404(queries.service_order_detail().select_related("card"), pk=order_id)
    return {
        "order": order,
        "totals": order_totals(order=order),
        "next_steps": ORDER_TRANSITIONS[order.status],
        "candidates": order_candidates(order=order)
        if order.status in (OrderStatus.CREATED, OrderStatus.ASSIGNED)
        else [],
        "quote_items": queries.quote_item_list(),
        "line_form": OrderLineForm(),
        "invoice_form": InvoiceForm(initial={"buyer_name": order.card.customer_name}),
    }


@require_GET
@permission_required("dispatch.view_serviceorder")
def order_detail(request: HttpRequest, order_id: int) -> HttpResponse:
    return render(request, "dispatch/order_detail.html", _order_context(order_id))


def _order_page(request: HttpRequest, order_id: int, error: ApiError | None) -> HttpResponse:
    """After an order action: back to the order, or the order page with the refusal."""
    if error is None:
        return redirect("dispatch:order-detail", order_id=order_id)
    context = {**_order_context(order_id), "error": error}
    return render(request, "dispatch/order_detail.html", context, status=error.status)


@require_POST
@permission_required("dispatch.add_serviceorder")
def order_new(request: HttpRequest, card_id: int) -> HttpResponse:
    form = OrderNewForm(request.POST)
    try:
        if not form.is_valid():
            raise ApiError("VALIDATION_ERROR", form.errors.as_text(), status=422)
        order = order_create(
            card_id=card_id, actor=Actor.of_user(request.user), **form.cleaned_data
        )
    except ApiError as exc:
        context = {**_detail_context(card_id), "order_error": exc}
        return render(request, "dispatch/case_detail.html", context, status=exc.status)
    return redirect("dispatch:order-detail", order_id=order.pk)


@require_POST
@permission_required("dispatch.change_order_status")
def order_step(request: HttpRequest, order_id: int) -> HttpResponse:
    form = OrderStepForm(request.POST)
    if not form.is_valid():
        error = ApiError("VALIDATION_ERROR", form.errors.as_text(), status=422)
        return _order_page(request, order_id, error)
    data = form.cleaned_data
    try:
        order_transition(
            order_id=order_id,
            to=data["to"],
            version=data["version"],
            actor=Actor.of_user(request.user),
            note=data["note"],
            technician_id=data["technician_id"],
            eta=data["eta"],
            work_done=data["work_done"],
            parts_used=data["parts_used"],
            diagnosis_matched=data["diagnosis_matched"],
        )
    except ApiError as exc:
        return _order_page(request, order_id, exc)
    return _order_page(request, order_id, None)


@require_POST
@permission_required("dispatch.add_orderline")
def order_line_new(request: HttpRequest, order_id: int) -> HttpResponse:
    form = OrderLineForm(request.POST)
    error = None
    if form.is_valid():
        try:
            order_line_add(
                order_id=order_id, actor=Actor.of_user(request.user), **form.cleaned_data
            )
        except ApiError as exc:
            error = exc
    else:
        error = ApiError("VALIDATION_ERROR", form.errors.as_text(), status=422)
    return _order_page(request, order_id, error)


@require_POST
@permission_required("dispatch.add_invoice")
def order_invoice_new(request: HttpRequest, order_id: int) -> HttpResponse:
    form = InvoiceForm(request.POST)
    error = None
    if form.is_valid():
        try:
            order_invoice(order_id=order_id, actor=Actor.of_user(request.user), **form.cleaned_data)
        except ApiError as exc:
            error = exc
    else:
        error = ApiError("VALIDATION_ERROR", form.errors.as_text(), status=422)
    return _order_page(request, order_id, error)
