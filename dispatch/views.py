"""Cases pages: report a fault and see its three-layer diagnosis, list cards, read one card with
its diagnosis history, and resolve it (which makes it case knowledge)."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers

from core.errors import ApiError
from core.pages import staff_required, wants_fragment
from dispatch import queries
from dispatch.diagnosis import problem_card_diagnose
from dispatch.forms import CardFilterForm, PhotoForm, ProblemCardForm, ResolveForm
from dispatch.models import ProblemCardPhoto
from dispatch.photos import photo_size_check, problem_card_photo_add
from dispatch.services import CustomerIn, problem_card_create, problem_card_resolve

CARDS_PER_PAGE = 50


@require_GET
@login_required
@vary_on_headers("HX-Request")
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
@staff_required
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
        "photo_form": PhotoForm(),
    }


@require_GET
@login_required
def case_detail(request: HttpRequest, card_id: int) -> HttpResponse:
    return render(request, "dispatch/case_detail.html", _detail_context(card_id))


@require_POST
@staff_required
def case_diagnose(request: HttpRequest, card_id: int) -> HttpResponse:
    get_object_or_404(queries.problem_cards(), pk=card_id)
    problem_card_diagnose(card_id=card_id)
    context = _detail_context(card_id)
    if wants_fragment(request):
        return render(request, "dispatch/_diagnosis.html", context)
    return redirect("dispatch:case-detail", card_id=card_id)


@require_POST
@staff_required
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
@staff_required
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
@login_required
def photo(request: HttpRequest, photo_id: int) -> FileResponse:
    """A card's photo, for logged-in users only: photos are customer data, so no public URL
    (MEDIA_URL) serves them. The content type is the one decided from the bytes on upload."""
    found = get_object_or_404(ProblemCardPhoto, pk=photo_id)
    try:
        handle = found.image.open("rb")
    except FileNotFoundError as exc:
        raise Http404("The photo's file is missing.") from exc
    response = FileResponse(handle, content_type=found.content_type)
    response["Cache-Control"] = "private, max-age=3600"
    return response
