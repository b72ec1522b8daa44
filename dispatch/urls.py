from django.urls import path

from dispatch import views

app_name = "dispatch"
urlpatterns = [
    path("cases/", views.case_list, name="case-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:card_id>/", views.case_detail, name="case-detail"),
    path("cases/<int:card_id>/diagnose/", views.case_diagnose, name="case-diagnose"),
    path("cases/<int:card_id>/resolve/", views.case_resolve, name="case-resolve"),
    path("cases/<int:card_id>/photos/", views.case_photo_add, name="case-photo-add"),
    path("photos/<int:photo_id>/", views.photo, name="photo"),
]
