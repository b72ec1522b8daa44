from django.urls import path

from quality.views import evaluation
from quality.views.calibration import calibration, calibration_change

app_name = "quality"
urlpatterns = [
    path("", evaluation.evaluation_home, name="evaluation"),
    path("calibration/", calibration, name="calibration"),
    path("calibration/change/", calibration_change, name="calibration-change"),
]
