import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

# No ASGI server runs system checks: refuse to serve with a missing or published SECRET_KEY
# (kioku.E004), as migrate and the worker do, instead of signing sessions with it.
from core.checks import security_checks_enforce  # noqa: E402  (needs the apps loaded above)

security_checks_enforce()
