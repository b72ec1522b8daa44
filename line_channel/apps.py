from django.apps import AppConfig


class LineChannelConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "line_channel"
    verbose_name = "LINE channel"
