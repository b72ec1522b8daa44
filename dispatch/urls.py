from django.urls import path

from dispatch import views

app_name = "dispatch"
urlpatterns = [
    path("cases/", views.case_list, name="case-list"),
    path("cases/new/", views.case_new, name="case-new"),
    path("cases/<int:card_id>/", views.case_detail, name="case-detail"),
    path("cases/<int:card_id>/diagnose/", views.case_diagnose, name="case-diagnose"),
    path("cases/<int:card_id>/resolve/", views.case_resolve, name="case-resolve"),
    path("cases/<int:card_id>/curate/", views.case_curate, name="case-curate"),
    path("cases/<int:card_id>/order/", views.order_new, name="order-new"),
    path("orders/", views.order_list, name="order-list"),
    path("orders/<int:order_id>/", views.order_detail, name="order-detail"),
    path("orders/<int:order_id>/step/", views.order_step, name="order-step"),
    path("orders/<int:order_id>/lines/", views.order_line_new, name="order-line-new"),
    path("orders/<int:order_id>/invoice/", views.order_invoice_new, name="order-invoice-new"),
    path("cases/<int:card_id>/sop-draft/", views.case_sop_draft, name="case-sop-draft"),
    path("cases/<int:card_id>/photos/", views.case_photo_add, name="case-photo-add"),
    path("photos/<int:photo_id>/", views.photo, name="photo"),
]
