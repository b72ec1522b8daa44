import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# gunicorn runs no system checks: refuse to serve with a missing or published SECRET_KEY
# (kioku.E004), as migrate and the worker do, instead of signing sessions with it.
from core.checks import security_checks_enforce  # noqa: E402  (needs the apps loaded above)

security_checks_enforce()
