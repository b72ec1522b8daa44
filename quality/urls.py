from django.urls import path

from quality.views import evaluation, retrieval

app_name = "quality"
urlpatterns = [
    path("", evaluation.evaluation_home, name="evaluation"),
    path("retrieval/", retrieval.retrieval_test_page, name="retrieval-test"),
    path("retrieval/run/", retrieval.retrieval_test_create, name="retrieval-test-run"),
    path("retrieval/cases/", retrieval.retrieval_case_add, name="retrieval-case-add"),
]
