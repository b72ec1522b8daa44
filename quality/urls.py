from django.urls import path

from quality.views import evaluation, retrieval
from quality.views.calibration import calibration, calibration_change

app_name = "quality"
urlpatterns = [
    path("", evaluation.evaluation_home, name="evaluation"),
    path("sets/", evaluation.set_create, name="set-create"),
    path("sets/<int:set_id>/", evaluation.set_detail, name="set-detail"),
    path("sets/<int:set_id>/cases/", evaluation.case_create, name="case-create"),
    path("sets/<int:set_id>/import/", evaluation.set_import, name="set-import"),
    path("sets/<int:set_id>/export/", evaluation.set_export, name="set-export"),
    path("sets/<int:set_id>/runs/", evaluation.run_create, name="run-create"),
    path("cases/<int:case_id>/expect/", evaluation.case_expect, name="case-expect"),
    path(
        "cases/<int:case_id>/expected/<int:expected_id>/delete/",
        evaluation.case_unexpect,
        name="case-unexpect",
    ),
    path("cases/<int:case_id>/toggle/", evaluation.case_toggle, name="case-toggle"),
    path("cases/<int:case_id>/delete/", evaluation.case_delete, name="case-delete"),
    path(
        "cases/from-answer/<int:answer_id>/", evaluation.case_from_answer, name="case-from-answer"
    ),
    path("cases/from-gap/", evaluation.case_from_gap, name="case-from-gap"),
    path("cases/from-card/<int:card_id>/", evaluation.case_from_card, name="case-from-card"),
    path("runs/<int:run_id>/", evaluation.run_detail, name="run-detail"),
    path("runs/compare/", evaluation.run_compare, name="run-compare"),
    path("calibration/", calibration, name="calibration"),
    path("calibration/change/", calibration_change, name="calibration-change"),
    path("retrieval/", retrieval.retrieval_test_page, name="retrieval-test"),
    path("retrieval/run/", retrieval.retrieval_test_create, name="retrieval-test-run"),
    path("retrieval/cases/", retrieval.retrieval_case_add, name="retrieval-case-add"),
]
