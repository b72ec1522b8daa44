from django.urls import path

from sessions_app import views

app_name = "sessions_app"
urlpatterns = [
    path("", views.session_list, name="session-list"),
    path("<str:key>/", views.session_detail, name="session-detail"),
    path("<str:key>/archive/", views.session_archive_now, name="session-archive"),
    path("<str:key>/delete/", views.session_remove, name="session-delete"),
]
