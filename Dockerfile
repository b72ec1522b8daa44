# syntax=docker/dockerfile:1
# Kioku image: one image for the web server (default CMD), the django-q2 worker
# (`python manage.py qcluster`) and one-shot commands (`python manage.py migrate`).
FROM python:3.11-slim

ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=config.settings \
    KIOKU_DATA_DIR=/app/.data \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# Same uv version as the one that wrote uv.lock, so `--frozen` reads it exactly as locally.
RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml or uv.lock change.
# --frozen installs exactly what uv.lock says (and fails instead of re-resolving);
# --no-install-project because Kioku is an application, not a package.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project

COPY . .

# collectstatic needs no database; the unreachable DATABASE_URL makes sure nothing tries one
# (without it the settings would select the embedded PostgreSQL backend and make a local secret
# key in the image). This SECRET_KEY lives for this step only and is published: the kioku.E004
# check refuses it at run time, where the deployment passes its own.
RUN SECRET_KEY=collectstatic-only \
    DATABASE_URL=postgres://build:build@127.0.0.1:1/build \
    python manage.py collectstatic --noinput

# Code, venv and static files stay owned by root (read-only for the app); only the data
# folder (used by the embedded PostgreSQL when DATABASE_URL is unset) is writable.
RUN groupadd --system --gid 10001 kioku \
    && useradd --system --uid 10001 --gid kioku --create-home --home-dir /home/kioku \
       --shell /usr/sbin/nologin kioku \
    && mkdir -p /app/.data \
    && chown kioku:kioku /app/.data
USER kioku

EXPOSE 8000

# /healthz answers 503 (urlopen raises, exit 1) when the database, pgvector or queue is not ok.
# The worker has no HTTP server: docker-compose.yml disables this check for it.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
