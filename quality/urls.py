from django.urls import path

from quality.views import evaluation
from quality.views.calibration import calibration

app_name = "quality"
urlpatterns = [
    path("", evaluation.evaluation_home, name="evaluation"),
    path("calibration/", calibration, name="calibration"),
]
