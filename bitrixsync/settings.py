"""Settings for bitrixsync, read from the environment (and an optional .env).

Every variable is documented in ``.env.example``. A bad value stops start-up
with an error naming the variable (see ``bitrixsync/env_config.py``).
"""

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ

from bitrixsync.env_config import (
    database_config,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    env_subset,
    redis_sentinels,
    redis_url,
)
from bitrixsync.production import env_rate, proxy_ssl_header, secret_key
from bitrixsync.stack_env import apply_stack_env
from crmbridge.bitrix.portal_settings import field_map, id_map, stage_maps_from_environment
from crmbridge.bitrix.webhook_url import validate_webhook_url

BASE_DIR = Path(__file__).resolve().parent.parent

# An optional .env file; real environment variables win over it.
_REAL_ENVIRONMENT = set(os.environ)
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
# While ./run.sh runs, .env.stack has its sandbox webhook URL, Redis, database and
# ports; it wins over .env, the real environment wins over both (bitrixsync/stack_env.py).
apply_stack_env(BASE_DIR, keep=_REAL_ENVIRONMENT)

DEBUG = env_bool("DEBUG", False)
# Unset SECRET_KEY: a development key with DEBUG on, otherwise start-up stops
# (image builds: DJANGO_BUILD_STEP=collectstatic). See bitrixsync/production.py.
SECRET_KEY = secret_key(env_str("SECRET_KEY", ""), debug=DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "orders",
    "crmbridge",
    # Development tools (bitrix_sandbox, run_stack): no models, no URLs; see devtools/__init__.py.
    "devtools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body: size and charset checks, one JSON error shape.
    "bitrixsync.api_guard.ApiGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "bitrixsync.throttling.AdminLoginThrottleMiddleware",
]

ROOT_URLCONF = "bitrixsync.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "bitrixsync" / "templates"],  # the API docs page without a CDN
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "bitrixsync.wsgi.application"

DATABASES = {"default": database_config("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
# Keep connections between requests / worker iterations (the worker calls
# close_old_connections() each iteration; with 0 it would reconnect every time).
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, relay) write to one SQLite file: wait for
    # the lock instead of failing at once.
    # WAL lets the web app read while the worker writes; synchronous=NORMAL is
    # safe with WAL (a power cut may lose the last commits, never corrupt).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        timeout=20,
        init_command="PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        # BEGIN IMMEDIATE: a transaction that reads and then writes (update_or_create)
        # would otherwise fail at once with "database is locked" when another process
        # wrote in between (WAL cannot upgrade a stale read snapshot; the timeout never applies).
        transaction_mode="IMMEDIATE",
    )
    # Tests start workers as separate processes: the test database must be a
    # file they can open (Django's default for SQLite is in memory). One file
    # per test run, so that parallel runs do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"bitrixsync-test-{os.getpid()}.sqlite3")}

AUTH_USER_MODEL = "accounts.User"
# The username or the e-mail signs in (the admin; DEV_ADMIN_EMAIL is what ./run.sh announces).
AUTHENTICATION_BACKENDS = ["accounts.backends.EmailOrUsernameBackend"]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# Collected static files (the admin's CSS) are served by WhiteNoise under
# gunicorn: the Docker image runs collectstatic. Without them (development,
# tests) runserver serves static files itself when DEBUG is on.
if STATIC_ROOT.is_dir():
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
        "whitenoise.middleware.WhiteNoiseMiddleware",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",  # django-rest-knox, hashed tokens
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "bitrixsync.api_errors.SafeJSONParser",  # deeply nested JSON: 400, not 500
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "bitrixsync.api_errors.exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "bitrixsync API",
    "DESCRIPTION": "Orders of manufacturing services, kept in sync with Bitrix24.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI and ReDoc from our own static files (drf-spectacular-sidecar): no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Security (issue 12; README "Security") -----------------------------------
# One body-size limit for every API endpoint, checked before parsing (413).
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# API tokens (django-rest-knox): stored as SHA-512 digests, sent as "Bearer <token>".
API_TOKEN_TTL_HOURS = env_int("API_TOKEN_TTL_HOURS", 168, minimum=0)
REST_KNOX = {
    "AUTH_HEADER_PREFIX": "Bearer",
    "TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS) if API_TOKEN_TTL_HOURS else None,
    "AUTO_REFRESH": False,
}
# Rate limits ("<count>/<second|minute|hour|day>"), counted in Redis (bitrixsync/throttling.py).
THROTTLE_RATES = {
    "login": env_rate("THROTTLE_LOGIN_RATE", "20/min"),  # POST /auth/token per client address
    "login_failures": env_rate("THROTTLE_LOGIN_FAILURES_RATE", "10/hour"),  # failed sign-ins per account
    "register": env_rate("THROTTLE_REGISTER_RATE", "10/hour"),  # POST /auth/register per client address
    "webhook_refused": env_rate("THROTTLE_WEBHOOK_REFUSED_RATE", "20/min"),  # refused inbound tokens per address
    "admin_login": env_rate("THROTTLE_ADMIN_LOGIN_RATE", "10/min"),  # POST /admin/login/ per client address
    "metrics_refused": env_rate("THROTTLE_METRICS_REFUSED_RATE", "20/min"),  # wrong /metrics tokens per address
}
# Proxies in front of the app that append to X-Forwarded-For: the client address of every
# per-address limit is the N-th from the right there; 0: REMOTE_ADDR (bitrixsync/client_address.py).
THROTTLE_NUM_PROXIES = env_int("THROTTLE_NUM_PROXIES", 0, minimum=0)
# Behind a TLS-terminating proxy: which request header says the request was HTTPS.
SECURE_PROXY_SSL_HEADER = proxy_ssl_header(env_str("SECURE_PROXY_SSL_HEADER", ""))
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
# The debug page and error reports hide every secret setting and environment variable.
DEFAULT_EXCEPTION_REPORTER_FILTER = "bitrixsync.error_reports.SecretsReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "bitrixsync.error_reports.SecretsExceptionReporter"

# --- Redis -----------------------------------------------------------------
REDIS_HOST = env_str("REDIS_HOST", "127.0.0.1")
REDIS_PORT = env_int("REDIS_PORT", 6379, minimum=1, maximum=65535)
REDIS_PASSWORD = env_str("REDIS_PASSWORD", "")
REDIS_URL = redis_url(host=REDIS_HOST, port=REDIS_PORT, password=REDIS_PASSWORD)
REDIS_STREAM_PREFIX = env_str("REDIS_STREAM_PREFIX", "bitrix:")
# Redis Sentinel: when REDIS_SENTINELS ("host:port,...") and REDIS_SENTINEL_MASTER are set,
# every client asks the sentinels where the master is (REDIS_URL then gives only the
# password, database number and TLS; see crmbridge/redis_io/connection.py).
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "")
REDIS_SENTINELS = redis_sentinels(
    "REDIS_SENTINELS", master_name=REDIS_SENTINEL_MASTER, master_variable="REDIS_SENTINEL_MASTER"
)
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")  # the sentinels' own (requirepass), if any
# Seconds a publish may wait for Redis before the operation is left in the
# outbox for the relay (the API request must stay fast when Redis is down).
REDIS_SOCKET_TIMEOUT = env_float("REDIS_SOCKET_TIMEOUT", 2.0, minimum=0.05)
# Publishing after a commit waits at most this long for Redis (capped by
# REDIS_SOCKET_TIMEOUT); after a failure the breaker skips direct publishing for
# BITRIX_PUBLISH_BREAKER_SECONDS and leaves operations to the outbox relay.
REDIS_PUBLISH_TIMEOUT = env_float("REDIS_PUBLISH_TIMEOUT", 0.5, minimum=0.01)
BITRIX_PUBLISH_BREAKER_SECONDS = env_float("BITRIX_PUBLISH_BREAKER_SECONDS", 5.0, minimum=0.0)

# --- Bitrix24 ----------------------------------------------------------------
BITRIX_ENABLED = env_bool("BITRIX_ENABLED", True)
BITRIX_WORKER_ENABLED = env_bool("BITRIX_WORKER_ENABLED", True)
BITRIX_WEBHOOK_URL = validate_webhook_url(env_str("BITRIX_WEBHOOK_URL", ""), name="BITRIX_WEBHOOK_URL")
# Names this system in ORIGINATOR_ID; ORIGIN_ID is "<entity>-<local id>".
BITRIX_ORIGINATOR_ID = env_str("BITRIX_ORIGINATOR_ID", "bitrixsync")
BITRIX_HTTP_CONNECT_TIMEOUT = env_float("BITRIX_HTTP_CONNECT_TIMEOUT", 3.05, minimum=0.1)
BITRIX_HTTP_READ_TIMEOUT = env_float("BITRIX_HTTP_READ_TIMEOUT", 30.0, minimum=0.1)
# The portal's leaky bucket: standard plans 2/s with 50 burst, Enterprise 5/s with 250.
BITRIX_RATE_LIMIT_PER_SECOND = env_float("BITRIX_RATE_LIMIT_PER_SECOND", 2.0, minimum=0.01)
BITRIX_RATE_LIMIT_BURST = env_int("BITRIX_RATE_LIMIT_BURST", 50, minimum=1)
# Order status -> deal STAGE_ID; "status=STAGE" pairs separated by commas.
BITRIX_STAGE_MAP = env_str(
    "BITRIX_STAGE_MAP",
    "new=NEW,confirmed=PREPARATION,in_production=EXECUTING,shipped=FINAL_INVOICE,done=WON,cancelled=LOSE",
)
# Mapping to the portal (issue 20; README "Mapping to your portal"): service -> pipeline,
# a stage map per pipeline, service -> catalogue product, attributes -> custom fields.
BITRIX_DEAL_CATEGORY_MAP = id_map("BITRIX_DEAL_CATEGORY_MAP", env_str("BITRIX_DEAL_CATEGORY_MAP", ""), minimum=0)
BITRIX_DEAL_CATEGORY_DEFAULT = env_int("BITRIX_DEAL_CATEGORY_DEFAULT", 0, minimum=0)
# BITRIX_STAGE_MAP_<N>: pipeline N's map (default: BITRIX_STAGE_MAP with the C<N>: prefix).
BITRIX_STAGE_MAPS = stage_maps_from_environment(os.environ)
BITRIX_PRODUCT_MAP = id_map("BITRIX_PRODUCT_MAP", env_str("BITRIX_PRODUCT_MAP", ""), minimum=1)
BITRIX_DEAL_FIELDS = field_map("BITRIX_DEAL_FIELDS", env_str("BITRIX_DEAL_FIELDS", ""))
BITRIX_CONTACT_FIELDS = field_map("BITRIX_CONTACT_FIELDS", env_str("BITRIX_CONTACT_FIELDS", ""))
# Token the portal sends as auth[application_token] with outbound events.
BITRIX_INBOUND_TOKEN = env_str("BITRIX_INBOUND_TOKEN", "")
# Token for GET /metrics (staff sessions also work); empty = staff only.
BITRIX_METRICS_TOKEN = env_str("BITRIX_METRICS_TOKEN", "")
# Link to a record in the portal's UI; derived from the webhook URL when empty.
BITRIX_PORTAL_URL = env_str("BITRIX_PORTAL_URL", "")

# Worker defaults (the specification's worker_config) and its robustness knobs.
BITRIX_WORKER = {
    "max_retries": env_int("BITRIX_WORKER_MAX_RETRIES", 5, minimum=0),
    "batch_size": env_int("BITRIX_WORKER_BATCH_SIZE", 10, minimum=1, maximum=1000),
    # Under a backlog a read is topped up to this many messages (crmbridge.worker.config).
    "max_chunk": env_int("BITRIX_WORKER_MAX_CHUNK", 1000, minimum=1, maximum=10000),
    "poll_interval": env_float("BITRIX_WORKER_POLL_INTERVAL", 1.0, minimum=0.01),
    # Entries idle this long in a dead consumer's pending list are taken over.
    "claim_idle_seconds": env_float("BITRIX_WORKER_CLAIM_IDLE", 60.0, minimum=1.0),
    # Backoff for retry-later errors: base * 2**retry with jitter, capped.
    "retry_base_seconds": env_float("BITRIX_WORKER_RETRY_BASE", 1.0, minimum=0.0),
    "retry_max_seconds": env_float("BITRIX_WORKER_RETRY_MAX", 30.0, minimum=0.0),
    # While paused by a configuration error, probe the portal this often.
    "pause_probe_seconds": env_float("BITRIX_WORKER_PAUSE_PROBE", 30.0, minimum=0.1),
    "heartbeat_seconds": env_float("BITRIX_WORKER_HEARTBEAT", 5.0, minimum=0.5),
    # A record synced less than this ago waits before its next update (bursts of edits coalesce).
    "record_interval_seconds": env_float("BITRIX_WORKER_RECORD_INTERVAL", 1.0, minimum=0.0),
    # ... and the wait doubles while the record stays hot, up to this (crmbridge.worker.record_pacing).
    "record_interval_max_seconds": env_float("BITRIX_WORKER_RECORD_INTERVAL_MAX", 10.0, minimum=0.0),
}
# Stream retention: acknowledged entries older than this are trimmed.
BITRIX_STREAM_RETENTION_SECONDS = env_int("BITRIX_STREAM_RETENTION_SECONDS", 86400, minimum=0)
# Reconciliation (issue 13): every BITRIX_RECONCILE_INTERVAL seconds a worker queues again the
# records waiting longer than BITRIX_RECONCILE_AFTER seconds with no live message (Redis lost it).
BITRIX_RECONCILE_INTERVAL = env_float("BITRIX_RECONCILE_INTERVAL", 60.0, minimum=1.0)
BITRIX_RECONCILE_AFTER = env_float("BITRIX_RECONCILE_AFTER", 300.0, minimum=1.0)
# Publish-time coalescing (crmbridge.publishing.coalescing): a change for a record that already has an
# unacknowledged message adds no stream entry. false: one entry per change (as before).
BITRIX_PUBLISH_COALESCE = env_bool("BITRIX_PUBLISH_COALESCE", True)
# Inbound events: a portal ts more than this far ahead of our clock orders by our clock instead.
BITRIX_INBOUND_MAX_CLOCK_SKEW_SECONDS = env_int("BITRIX_INBOUND_MAX_CLOCK_SKEW_SECONDS", 300, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secrets": {"()": "crmbridge.bitrix.webhook_url.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(levelname)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO").upper()},
    "loggers": {
        # runserver's access lines. Django's default gives django.server its own handler and
        # propagate=False; naming the logger here drops that handler, so let it reach the root.
        "django.server": {"level": "INFO", "propagate": True},
        # Drop Django's default handlers of "django" (a console one with DEBUG, mail_admins): with
        # them every "Bad Request" was printed twice, once there and once by the root's console.
        "django": {"handlers": []},
        "urllib3": {"level": "WARNING"},
    },
}

# --- Inbound Bitrix events (crmbridge.inbound, issue 8) ----------------------
# Apply ONCRMCONTACT* events to users (first/last name, phone). Off by default:
# our users edit their own profile, and the contact is a copy of it.
BITRIX_INBOUND_CONTACT_UPDATES = env_bool("BITRIX_INBOUND_CONTACT_UPDATES", False)

# --- Existing customers (issue 20) ----------------------------------------------
# Before creating a contact, look for the customer in the portal (crm.duplicate.findbycomm):
# by e-mail, then by phone. "email,phone" (default), "email", "phone" or "off".
BITRIX_CONTACT_MATCH = env_subset("BITRIX_CONTACT_MATCH", "email,phone", ("email", "phone"))
