from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from config.api import api
from core import views as core_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("knowledge/", include("knowledge.urls")),
    path("sessions/", include("sessions_app.urls")),
    path("dispatch/", include("dispatch.urls")),
    path("quality/", include("quality.urls")),
    path("integrations/", include("line_channel.urls")),
    path("", include("core.urls")),
]

# Errors outside any view (a middleware's query) get the same 503 for a database out of reach.
handler500 = "core.views.server_error"
