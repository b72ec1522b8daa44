"""The evaluation pages: sets, cases, runs and their metrics."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.pages import permission_required


@permission_required("quality.view_evalrun")
def evaluation_home(request: HttpRequest) -> HttpResponse:
    return render(request, "quality/evaluation.html", {})
