from django.urls import path

from quality.views import evaluation

app_name = "quality"
urlpatterns = [
    path("", evaluation.evaluation_home, name="evaluation"),
]
