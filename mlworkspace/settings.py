"""Settings for the ML Model Development Workspace, read from environment variables.

See `.env.example` for every variable. Defaults give a working single-machine workspace
(SQLite in ./data, DEBUG on); production sets SECRET_KEY, DEBUG=0, ALLOWED_HOSTS and a
PostgreSQL DATABASE_URL.
"""

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path

import dj_database_url
from django.utils.csp import CSP

from mlworkspace import queues

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data"))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def secret_key_file(path: Path) -> str:
    """The secret key kept in ``path``, generated there (mode 0600) on first use.

    `make run` serves with DEBUG off and needs a stable key (sessions, password resets and
    signed values survive a restart) without anyone having to invent one: the first start
    writes a random key to the data directory, readable by its owner only; later starts
    read it. The key is written to a private temporary file and then hard-linked into place,
    so processes starting at once never read a half-written file and all agree on one key."""
    if not path.exists():
        from django.core.management.utils import get_random_secret_key

        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(get_random_secret_key() + "\n")
            os.link(tmp, path)  # atomic; fails if another process got there first
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()


# DEBUG is on unless DEBUG=0 (`make run` sets it off, `make dev` and the tests keep it on).
DEBUG = env_bool("DEBUG", True)
# SECRET_KEY from the environment; else a fixed development key in DEBUG (so tests and
# `make dev` never touch a key file) and, with DEBUG off, DATA_DIR/secret_key (see above).
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    "dev-insecure-change-me" if DEBUG else secret_key_file(DATA_DIR / "secret_key")
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_tasks_db",
    "mlworkspace",
    "recipes",
    "models_registry",
    "runs",
    "monitoring",
    "audit",
    "assistant",
    "notifications",
    "experiments",
    "mlflow_api",
    "workspace",
]

MIDDLEWARE = [
    # Counts every response, including the ones the middleware below answers itself.
    "mlworkspace.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT (collectstatic) in the web process, with far-future
    # cache headers for the hashed names; in DEBUG runserver's finders serve them as before.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",  # the actor and IP of audit events
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mlworkspace.urls"
WSGI_APPLICATION = "mlworkspace.wsgi.application"

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
                # {{ csp_nonce }} / {% csp_nonce_attr %} for the few inline <style>s.
                "django.template.context_processors.csp",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------
# DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/mlworkspace; default a SQLite file.
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'workspace.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + immediate transactions let the web server and the worker processes share the
    # file: readers never block the writer and writers queue instead of failing with
    # "database is locked" half-way through a transaction.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
    }
    # Tests use a file (not :memory:) so the worker processes they start share it; conftest.py
    # gives each pytest process its own file.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-workspace.sqlite3")}
else:
    DATABASES["default"].setdefault("TEST", {})

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Django's recommended set (the settings `startproject` writes): not like the username,
# at least 8 characters, not a common password, not all digits.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/model-development/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
FIXTURE_DIRS = [BASE_DIR / "fixtures"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.min.js from inside the installed plotly wheel (no CDN).
    "mlworkspace.staticfiles.PlotlyFinder",
]
# With DEBUG off (`make run`) static files are collected with content-hashed names and
# pre-compressed (gzip) by WhiteNoise's storage, so they can be cached forever; in DEBUG
# (`make dev`, the tests) the plain storage serves them straight from the finders.
# Stored files (datasets, artifacts, predictions) go through the "default" storage
# (mlworkspace/storage.py): the local MEDIA_ROOT unless AWS_STORAGE_BUCKET_NAME names an
# S3-compatible bucket (django-storages, with its own setting names: AWS_S3_ENDPOINT_URL for
# MinIO/Ceph/GCS, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_S3_REGION_NAME). Then nothing
# is written under MEDIA_ROOT: processes download what they read into WORK_DIR.
AWS_STORAGE_BUCKET_NAME = os.environ.get("AWS_STORAGE_BUCKET_NAME", "")
AWS_S3_ENDPOINT_URL = os.environ.get("AWS_S3_ENDPOINT_URL") or None
AWS_S3_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID") or None
AWS_S3_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY") or None
AWS_S3_REGION_NAME = os.environ.get("AWS_S3_REGION_NAME") or None
AWS_DEFAULT_ACL = None  # the bucket's own policy (private); files are served only through the API
AWS_S3_FILE_OVERWRITE = True  # a stored name is an id: writing it again replaces it
# Downloads from an S3 store redirect to a pre-signed URL (the bytes do not pass through the
# web server) instead of streaming a checked copy; always after the permission check.
FILE_DOWNLOADS_PRESIGNED = env_bool("FILE_DOWNLOADS_PRESIGNED", False)
AWS_QUERYSTRING_EXPIRE = int(os.environ.get("AWS_QUERYSTRING_EXPIRE", 600))
STORAGES = {
    "default": {
        "BACKEND": "storages.backends.s3.S3Storage"
        if AWS_STORAGE_BUCKET_NAME
        else "django.core.files.storage.FileSystemStorage"
    },
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# In DEBUG WhiteNoise looks files up through the finders on each request (no collectstatic,
# edits show at once); otherwise it serves STATIC_ROOT, indexed once at start.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media"))
MEDIA_URL = "/media/"

# Request bodies: manifests are JSON (2 MB); dataset uploads stream to disk.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("MAX_JSON_BODY_BYTES", 2 * 1024 * 1024))
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
# 4 GiB: a 50M-row × 14-column Parquet file is about 1.7 GB.
DATASET_MAX_BYTES = int(os.environ.get("DATASET_MAX_BYTES", 4 * 1024**3))
# A small file can hold a huge table (a Parquet column of zeros compresses ~10,000:1): an
# upload's rows and columns are read from the Parquet footer or the CSV's first line (at most
# DATASET_HEADER_MAX_BYTES) and counted line breaks before anything is loaded; over a limit
# is a 413 naming the numbers. Uploads bigger than DATASET_INLINE_PROFILE_BYTES (or Parquet
# files of more than DATASET_INLINE_PROFILE_ROWS rows) are profiled by a worker task, not in
# the web request: the dataset is `processing` until then. DATASET_MAX_CELLS bounds rows ×
# columns (2,000M cells: 50M rows × 40 columns). No reader of a large dataset holds it whole:
# the profile reads it in chunks and checks a sample (DATASET_CHECK_SAMPLE_ROWS); train, eval,
# backtest and tune runs read a sample (TRAIN_MAX_ROWS); monitoring checks and score runs
# stream (CHECK_STREAM_ROWS, SCORE_STREAM_ROWS); the dataset page's check against a recipe
# reads evenly spread row groups (DATASET_WEB_CHECK_ROWS) and a model comparison on a dataset
# a uniform sample (COMPARE_MAX_ROWS); a retrain joins several datasets chunk by chunk into one
# Parquet file; a forecasting score run's file not ordered by series is partitioned on disk.
# POST /models/{id}/outcomes joins labels to a scored batch's predictions chunk by chunk.
DATASET_MAX_ROWS = int(os.environ.get("DATASET_MAX_ROWS", 50_000_000))
DATASET_MAX_COLUMNS = int(os.environ.get("DATASET_MAX_COLUMNS", 2_000))
DATASET_MAX_CELLS = int(os.environ.get("DATASET_MAX_CELLS", 2_000_000_000))
# The dataset page's "check against a recipe" runs in the web process: it reads at most this
# many rows (every row of a smaller dataset; of a Parquet file whole row groups spread evenly
# over it, of a CSV the first rows), and null ratios, ranges and history of every row come from
# the dataset's profile (runs.data.read_spread, runs.dataset_views._check).
DATASET_WEB_CHECK_ROWS = int(os.environ.get("DATASET_WEB_CHECK_ROWS", 200_000))
DATASET_HEADER_MAX_BYTES = int(os.environ.get("DATASET_HEADER_MAX_BYTES", 1024 * 1024))
DATASET_INLINE_PROFILE_BYTES = int(os.environ.get("DATASET_INLINE_PROFILE_BYTES", 10 * 1024 * 1024))
DATASET_INLINE_PROFILE_ROWS = int(os.environ.get("DATASET_INLINE_PROFILE_ROWS", 500_000))
# Uploads bigger than FILE_UPLOAD_MAX_MEMORY_SIZE stream to a temporary file here (not /tmp),
# so the worker's housekeeping can remove what a killed web server left behind.
FILE_UPLOAD_TEMP_DIR = Path(os.environ.get("FILE_UPLOAD_TEMP_DIR", DATA_DIR / "upload-tmp"))
FILE_UPLOAD_TEMP_DIR.mkdir(parents=True, exist_ok=True)
# Local scratch space of this machine's processes: a run's downloaded inputs and the artifacts
# it writes before they are stored, a download's checked copy. Never shared between machines.
WORK_DIR = Path(os.environ.get("WORK_DIR", DATA_DIR / "work"))
# A train, eval, backtest or tune run on a dataset of more rows reads a uniform sample of about
# this many (whole series for forecasting; runs.data.read_sample), chunk by chunk, and says so in
# its log: the worker's memory holds the sample, not the file. Score runs read every row.
TRAIN_MAX_ROWS = int(os.environ.get("TRAIN_MAX_ROWS", 2_000_000))
# An existing Dask cluster's scheduler (e.g. "tcp://10.0.0.5:8786"): a train run of a LightGBM
# family whose training stage says `distributed: "dask"` trains there on every row of its dataset
# (runs.distributed), not on a TRAIN_MAX_ROWS sample. Empty (the default): such a run is refused.
# Set it for the web servers (the 400 at run start) and the workers (who connect).
DASK_SCHEDULER_ADDRESS = os.environ.get("DASK_SCHEDULER_ADDRESS", "").strip()
# An upload of more rows is profiled by a worker chunk by chunk (every row) and checked against
# its recipe on a uniform sample of this many rows (runs.services.datasets).
DATASET_CHECK_SAMPLE_ROWS = int(os.environ.get("DATASET_CHECK_SAMPLE_ROWS", 1_000_000))
PREDICT_MAX_ROWS = int(os.environ.get("PREDICT_MAX_ROWS", 10_000))
# POST /models/{id}/predict with "explain": true explains at most this many rows per request
# (runs.explain.explain_rows costs far more per row than a prediction).
PREDICT_EXPLAIN_MAX_ROWS = int(os.environ.get("PREDICT_EXPLAIN_MAX_ROWS", 100))
# Upper bounds on a train run's explain stage sizes, whatever its manifest asks (a JSON object
# of recipes.explain_config.RANGES keys, e.g. {"sample_size": 200, "repeats": 3}): cheaper
# explanations on a small machine. None by default; the test suite sets small ones.
EXPLAIN_CAPS = json.loads(os.environ.get("EXPLAIN_CAPS") or "{}")
# A monitoring check explains a sample of its batch for attribution drift
# (monitoring.attribution.chunked_means): CHECK_EXPLAIN_FIRST_ROWS rows, then chunks twice as
# large while less than CHECK_EXPLAIN_SECONDS have passed.
CHECK_EXPLAIN_SECONDS = float(os.environ.get("CHECK_EXPLAIN_SECONDS", 2.0))
CHECK_EXPLAIN_FIRST_ROWS = int(os.environ.get("CHECK_EXPLAIN_FIRST_ROWS", 10))
# POST /models/{id}/outcomes: labels joined to a scored batch's predictions, per request.
OUTCOMES_MAX_ROWS = int(os.environ.get("OUTCOMES_MAX_ROWS", 100_000))
# A monitoring check of a dataset of more than CHECK_STREAM_ROWS rows reads it in chunks of
# CHECK_CHUNK_ROWS rows (only the columns drift and freshness need), so a worker's memory holds
# a chunk, not the table: feature drift and freshness cover every row; prediction drift and
# performance the first CHECK_SAMPLE_ROWS rows (monitoring.services.checks).
CHECK_STREAM_ROWS = int(os.environ.get("CHECK_STREAM_ROWS", 2_000_000))
CHECK_CHUNK_ROWS = int(os.environ.get("CHECK_CHUNK_ROWS", 500_000))
CHECK_SAMPLE_ROWS = int(os.environ.get("CHECK_SAMPLE_ROWS", 200_000))
# A model comparison on a dataset of more rows evaluates every model on a uniform sample of
# about this many (whole series for forecasting; runs.data.read_sample), and its result says
# so (monitoring.services.comparison): memory holds the sample, not the file — the API and the
# page compare in the web request, a retrain in its worker.
COMPARE_MAX_ROWS = int(os.environ.get("COMPARE_MAX_ROWS", 1_000_000))
# A score run of a dataset of more than SCORE_STREAM_ROWS rows reads it SCORE_STREAM_CHUNK_ROWS
# rows at a time and appends each chunk's predictions to its files, so a worker's memory holds a
# chunk, not the batch (runs.score_stream; a forecasting file not ordered by series is first
# partitioned on disk into buckets of whole series, and the run's log says so).
SCORE_STREAM_ROWS = int(os.environ.get("SCORE_STREAM_ROWS", 1_000_000))
SCORE_STREAM_CHUNK_ROWS = int(os.environ.get("SCORE_STREAM_CHUNK_ROWS", 500_000))

# --- API ------------------------------------------------------------------------------
# How deeply any JSON document (request body, manifest) may nest: deeper is a 400 naming where
# (parsing and walking it would recurse past Python's limit).
JSON_MAX_DEPTH = int(os.environ.get("JSON_MAX_DEPTH", 64))
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["mlworkspace.permissions.ModelPermissions"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    # DRF's JSON parser after a non-recursive depth check (JSON_MAX_DEPTH); forms and uploads as before.
    "DEFAULT_PARSER_CLASSES": [
        "mlworkspace.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        # The browsable API, with a CSP that lets DRF's templates keep their style attributes.
        "mlworkspace.renderers.CSPBrowsableAPIRenderer",
    ],
    "DEFAULT_PAGINATION_CLASS": "mlworkspace.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "mlworkspace.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ML Model Development Workspace API",
    "DESCRIPTION": "Recipes, versions, models, runs, datasets, monitoring and chat.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Several choice sets share a field name ("status" of recipes, runs and models; a recipe's
    # "level" and "model_family" as stored and as accepted on input): name each one, so the
    # schema has stable enum names and `manage.py spectacular --fail-on-warn` passes.
    "ENUM_NAME_OVERRIDES": {
        "RecipeStatusEnum": "recipes.models.RecipeStatus",
        "RunStatusEnum": "runs.models.RunStatus",
        "RunTypeEnum": "runs.models.RunType",
        "RunTypeInputEnum": "runs.models.STARTABLE_RUN_TYPES",
        "ModelStatusEnum": "models_registry.models.ModelStatus",
        "LevelEnum": "recipes.models.Level",
        "LevelInputEnum": "recipes.catalog.LEVELS",
        "ModelFamilyEnum": "recipes.models.Family",
        "ModelFamilyInputEnum": "recipes.catalog.FAMILIES",
        "DeliveryStatusEnum": "notifications.models.DeliveryStatus",
        "WebhookScopeEnum": "notifications.models.Scope",
    },
}

# --- Background work ------------------------------------------------------------------
# Queues by kind of work (mlworkspace/queues.py); a worker serves WORKER_QUEUES ("*": all,
# or e.g. "training,scoring"), or what `manage.py worker --queues` says.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": list(queues.ALL)}}
WORKER_QUEUES = os.environ.get("WORKER_QUEUES", "*")
# How many tasks one `manage.py worker` executes at once: that many worker processes under it
# (runs.management.commands.worker; `--concurrency`).
WORKER_CONCURRENCY = int(os.environ.get("WORKER_CONCURRENCY", 1))
# Threads each run's numeric libraries may use; parallelism comes from worker processes.
RUN_THREADS = int(os.environ.get("RUN_THREADS", 1))
# A score run predicts its chunks on SCORE_THREADS threads (LightGBM releases the GIL): its
# predict is most of its time, and 2 puts a 1M-row batch within 20 s on 2 cores (bench/ §5).
SCORE_THREADS = int(os.environ.get("SCORE_THREADS", 2))
# POST /models/{id}/predict predicts a batch of 20,000 rows or more on up to PREDICT_THREADS
# threads (chunks of at least runs.artifacts.PREDICT_PARALLEL_MIN_ROWS rows).
PREDICT_THREADS = int(os.environ.get("PREDICT_THREADS", 2))
# A running run whose heartbeat is older than this is failed by the reaper ("worker lost").
# A worker beats each running run every RUN_HEARTBEAT_SECONDS (its log flushes beat too); every
# worker's reaper looks every RUN_REAP_SECONDS, so a killed worker's run is failed — its stages
# and task row closed — within RUN_STALE_AFTER_SECONDS + RUN_REAP_SECONDS (25 s by default).
RUN_HEARTBEAT_SECONDS = float(os.environ.get("RUN_HEARTBEAT_SECONDS", 2))
RUN_STALE_AFTER_SECONDS = float(os.environ.get("RUN_STALE_AFTER_SECONDS", 20))
RUN_REAP_SECONDS = float(os.environ.get("RUN_REAP_SECONDS", 5))
# How often the worker's housekeeping runs due monitoring checks and sweeps orphans: files
# older than HOUSEKEEPING_ORPHAN_AGE_SECONDS in the store's datasets/ with no dataset row and in
# FILE_UPLOAD_TEMP_DIR (what a killed web server leaves), scratch folders in WORK_DIR of
# runs no longer running (what a killed worker leaves). A dataset still `processing` after DATASET_PROFILE_TIMEOUT_SECONDS is invalid.
WORKER_HOUSEKEEPING_SECONDS = float(os.environ.get("WORKER_HOUSEKEEPING_SECONDS", 30))
HOUSEKEEPING_ORPHAN_AGE_SECONDS = float(os.environ.get("HOUSEKEEPING_ORPHAN_AGE_SECONDS", 3600))
DATASET_PROFILE_TIMEOUT_SECONDS = float(os.environ.get("DATASET_PROFILE_TIMEOUT_SECONDS", 1800))

# --- Notifications: webhooks and e-mail ------------------------------------------------
# A webhook attempt waits at most WEBHOOK_TIMEOUT_SECONDS for the receiver; a failed one is
# retried after WEBHOOK_BACKOFF_SECONDS, then twice as long each time (1, 2, 4, ... minutes),
# until WEBHOOK_MAX_ATTEMPTS attempts, then the delivery is failed (notifications.delivery).
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", 5))
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", 8))
WEBHOOK_BACKOFF_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_SECONDS", 60))
# Webhooks reach public addresses only: a URL whose host is (or, at each attempt, resolves to) a
# loopback, private, link-local, multicast, reserved or unspecified address is refused, so a
# webhook cannot be pointed at the workspace's own network (the database, cloud metadata at
# 169.254.169.254). WEBHOOK_ALLOW_PRIVATE lifts that for every host (a receiver inside one's own
# network, development); WEBHOOK_ALLOWED_HOSTS for the exact host names listed (comma-separated)
# (notifications.addresses).
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")
# E-mail (the notification subscriptions) goes through Django's default mailer. Django 6.1
# configures mailers with MAILERS (the EMAIL_* settings are deprecated); the variables keep
# their familiar names: EMAIL_BACKEND (default: SMTP, with EMAIL_HOST, EMAIL_PORT,
# EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS and EMAIL_TIMEOUT; `make run` and
# `make dev` set the console backend, i.e. e-mails print in the workers' output). The tests get
# the locmem outbox.
_email_backend = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
_smtp_options = {
    "host": os.environ.get("EMAIL_HOST", "localhost"),
    "port": int(os.environ.get("EMAIL_PORT", 25)),
    "username": os.environ.get("EMAIL_HOST_USER") or None,
    "password": os.environ.get("EMAIL_HOST_PASSWORD") or None,
    "use_tls": env_bool("EMAIL_USE_TLS", False),
    "timeout": float(os.environ.get("EMAIL_TIMEOUT", 10)),
}
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        "OPTIONS": _smtp_options if _email_backend.endswith(".smtp.EmailBackend") else {},
    }
}
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "ML Workspace <workspace@localhost>")

# --- Chat assistant -------------------------------------------------------------------
LLM_BASE_URL = os.environ.get("LLM_BASE_URL", "")
LLM_MODEL = os.environ.get("LLM_MODEL", "")
LLM_API_KEY = os.environ.get("LLM_API_KEY", "")
LLM_TIMEOUT_SECONDS = float(os.environ.get("LLM_TIMEOUT_SECONDS", 8))
CHAT_MAX_MESSAGE_CHARS = int(os.environ.get("CHAT_MAX_MESSAGE_CHARS", 4000))

# --- Security -------------------------------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# A session lasts a working day (8 h by default), not Django's two weeks: the workspace
# holds client data and shared machines are common. Login rotates the session key.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", 8 * 3600))
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# HTTPS=1 (served over TLS, usually behind a proxy that terminates it) switches on all of
# the HTTPS-only protections at once: redirect http -> https, HSTS for a year (with
# subdomains and preload, HSTS_PRELOAD=0 to leave preload out) and cookies sent over TLS
# only. Gunicorn marks a request secure when a trusted proxy (FORWARDED_ALLOW_IPS, default
# 127.0.0.1) sends X-Forwarded-Proto: https, so Django needs no SECURE_PROXY_SSL_HEADER.
# HTTPS=0 (the default) serves plain http, e.g. on 127.0.0.1: `check --deploy` then lists
# exactly these four settings (W004, W008, W012, W016).
HTTPS = env_bool("HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 365 * 24 * 3600 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS and env_bool("HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
# /healthz answers load balancers, which probe over plain http inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

# Content-Security-Policy on every response (Django's built-in middleware). Scripts and
# stylesheets come from this origin only, plus elements carrying the per-request nonce;
# no 'unsafe-inline', no 'unsafe-eval', no inline event handlers or style attributes.
# The pages put their data in JSON <script type="application/json"> blocks (not executed,
# so not subject to script-src) and static/js/ reads them. Plotly adds its CSS rules
# through the CSSOM into <style id="plotly.js-style-global"> that base.html creates with
# the nonce; Swagger UI and the admin carry the nonce on their inline parts. The DRF
# browsable API's templates use style="" attributes: mlworkspace.renderers allows
# style attributes (only) on those developer pages.
# The two style="" values plotly.js writes with setAttribute (not through the CSSOM, which
# CSP does not govern): an empty style on colorbar rects, and its probe for pixelated image
# rendering (heatmaps). Allowed by hash ('unsafe-hashes' = these exact attribute values, no
# other inline style); tests/browser/test_csp.py fails if a plotly upgrade writes others.
PLOTLY_STYLE_ATTRIBUTES = [
    "",
    "".join(
        f"image-rendering: {value}; "
        for value in (
            "optimizeSpeed",
            "-moz-crisp-edges",
            "-o-crisp-edges",
            "-webkit-optimize-contrast",
            "optimize-contrast",
            "crisp-edges",
            "pixelated",
        )
    ),
]
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "style-src-attr": [
        CSP.UNSAFE_HASHES,
        *(
            f"'sha256-{base64.b64encode(hashlib.sha256(value.encode()).digest()).decode()}'"
            for value in PLOTLY_STYLE_ATTRIBUTES
        ),
    ],
    # data: images: Plotly's and Swagger UI's bundled icons.
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Operations: /healthz and /metrics --------------------------------------------------
# A worker beats every WORKER_BEAT_SECONDS (mlworkspace.health.WorkerHeartbeat); /healthz
# is unhealthy (503) when the newest beat is older than HEALTH_WORKER_STALE_SECONDS, or
# there is none (HEALTH_REQUIRE_WORKER=0 for a web-only deployment), or the database
# cannot be reached.
WORKER_BEAT_SECONDS = float(os.environ.get("WORKER_BEAT_SECONDS", 10))
HEALTH_WORKER_STALE_SECONDS = float(os.environ.get("HEALTH_WORKER_STALE_SECONDS", 60))
HEALTH_REQUIRE_WORKER = env_bool("HEALTH_REQUIRE_WORKER", True)
# /metrics answers only a request with "Authorization: Bearer $METRICS_TOKEN"; without a
# token configured it is 404 (off).
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")

# One console handler, on the root logger: every record is printed once. Django's default
# config also gives the "django" logger a console handler of its own (in DEBUG), so records
# of django.request and django.tasks (the worker's task lines) were printed twice; here
# "django" only propagates. (Django's mail_admins handler goes with it: ADMINS is not set.)
# Configuring "django" resets its child loggers, so "django.server" (runserver's request
# lines) is declared again as Django declares it: its own handler and format, no propagation.
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "console": {
            "format": "[{asctime}] {levelname} {name}: {message}",
            "datefmt": "%d/%b/%Y %H:%M:%S",
            "style": "{",
        },
        "django.server": {
            "()": "django.utils.log.ServerFormatter",
            "format": "[{server_time}] {message}",
            "style": "{",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "console"},
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {"handlers": [], "level": LOG_LEVEL, "propagate": True},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}
