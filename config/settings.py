"""Settings for the LLM governance platform.

One module for every environment: development and production differ only by environment
variables (see `.env.example`). Unset variables fall back to the embedded default: SQLite in
the project directory and Celery tasks executed in-process.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_int, env_list, env_str, load_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
# A local .env (written by `make run`, see config/devenv.py) fills in what the environment lacks.
load_env_file(Path(os.environ.get("ENV_FILE") or BASE_DIR / ".env"))

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET = "insecure-development-key-only-for-the-embedded-default"  # noqa: S105
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET)
# `manage.py verify_report` checks a report with no configuration at all (an auditor's
# laptop), so only that command may start without a SECRET_KEY; it never uses one.
_OFFLINE_COMMAND = sys.argv[1:2] == ["verify_report"] and Path(sys.argv[0]).name == "manage.py"
if not DEBUG and SECRET_KEY == _DEV_SECRET and not _OFFLINE_COMMAND:
    raise ImproperlyConfigured(
        "SECRET_KEY is not set. Set SECRET_KEY (production), or run `make run` once: it "
        "writes a local .env with development settings."
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "config.apps.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guardian",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "axes",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "governance",
    "lifecycle",
    "audits",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads the database: NUL in input is a 400; then no-store when signed in.
    "config.hardening.RefuseNulMiddleware",
    "config.hardening.PrivateCacheMiddleware",
    "audits.middleware.AuditContextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "config.middleware.IdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused by the lockout into the locked-out page (HTTP 429).
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
                "config.admin_site.administration",
            ],
        },
    },
]

# Database: DATABASE_URL (postgres://user:pass@host:5432/name) or the embedded SQLite file.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# PostgreSQL: each process keeps its connection for the next request (60 s by default) instead
# of opening one per request, which cost more than a simple page (docs/performance.md). A kept
# connection is checked before it is reused, so a restarted database server costs one quick
# check, not a failed request. 0 opens one per request; SQLite files open cheaply: 0.
_CONN_MAX_AGE = env_int("DATABASE_CONN_MAX_AGE", 0 if _SQLITE else 60, minimum=0)
DATABASES["default"]["CONN_MAX_AGE"] = _CONN_MAX_AGE
DATABASES["default"]["CONN_HEALTH_CHECKS"] = _CONN_MAX_AGE > 0
if _SQLITE:
    # WAL and a busy timeout let the dev server and an in-process task share the file.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;",
        "transaction_mode": "IMMEDIATE",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "governance.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: a locked-out login checks no password
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous object permissions
GUARDIAN_MONKEY_PATCH_USER = False
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(BASE_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Uploads: evidence files above this size are refused by the service with a clear message.
EVIDENCE_MAX_BYTES = env_int("EVIDENCE_MAX_BYTES", 50 * 1024 * 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 10 * 1024 * 1024, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024, minimum=1)

# Celery: Redis broker when configured, otherwise tasks run in-process (the embedded default).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", env_str("REDIS_URL", ""))
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", CELERY_BROKER_URL)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 1800, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60 if CELERY_TASK_TIME_LIMIT > 120 else None
# The visibility timeout must outlast the longest task, or Redis redelivers running tasks.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int(
        "CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 600, minimum=1
    )
}
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# REST API: personal tokens or the browser session (with CSRF); one request budget per token.
API_THROTTLE_RATE = env_str("API_THROTTLE_RATE", "1200/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["governance.api.authentication.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": API_THROTTLE_RATE},
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.ApiAutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "governance.api.base.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM governance API",
    "DESCRIPTION": "Register model and dataset versions, upload evaluations, read gate "
    "verdicts, sign gates. Authenticate with `Authorization: Bearer <token>` (docs/api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",  # assets served by the app: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "ItemStatusEnum": "lifecycle.models.ItemStatus",
        "RunStatusEnum": "lifecycle.models.RunStatus",
        "GateStateEnum": "lifecycle.models.GateState",
        "ResultScopeEnum": "lifecycle.models.ResultScope",
        "CriterionScopeEnum": "lifecycle.models.CriterionScope",
        "RoleEnum": "governance.roles.Role",
        "PhaseEnum": "lifecycle.phases.Phase",
        "ReportKindEnum": "audits.models.ReportKind",
        "ReportFormatEnum": "audits.models.ReportFormat",
        "ReportStatusEnum": "audits.models.ReportStatus",
        "KindEnum": "lifecycle.models.EvidenceKind",  # the name it had before reports
        "BatchStatusEnum": "lifecycle.monitoring.models.BatchStatus",
        "IncidentStatusEnum": "lifecycle.monitoring.models.IncidentStatus",
        "IncidentSourceEnum": "lifecycle.monitoring.models.IncidentSource",
        "FeedbackSourceEnum": "lifecycle.monitoring.models.FeedbackSource",
    },
}

# Audit trail: signed checkpoints go to a directory outside the database (ideally another
# host or append-only storage), signed with an Ed25519 private key that database administrators
# cannot read (`manage.py audit_keygen`; base64, PEM or a file path); verifying needs only the
# public key. Unset, a development key is derived from SECRET_KEY and `check --deploy` fails.
AUDIT_CHECKPOINT_DIR = Path(env_str("AUDIT_CHECKPOINT_DIR", str(BASE_DIR / "audit-checkpoints")))
AUDIT_CHECKPOINT_SIGNING_KEY = env_str("AUDIT_CHECKPOINT_SIGNING_KEY", "")
AUDIT_CHECKPOINT_PUBLIC_KEY = env_str("AUDIT_CHECKPOINT_PUBLIC_KEY", "")
# Legacy: the HMAC key of checkpoint lines written before Ed25519 (only verified, never written).
AUDIT_CHECKPOINT_KEY = env_str("AUDIT_CHECKPOINT_KEY", "checkpoints:" + SECRET_KEY)
AUDIT_CHECKPOINT_INTERVAL = env_int("AUDIT_CHECKPOINT_INTERVAL", 3600, minimum=60)
# Compliance reports: sealed with the installation's Ed25519 report key (base64, PEM or a file
# path; `manage.py audit_keygen --report` makes one). Unset, a development key is derived from
# SECRET_KEY and `check --deploy` fails. The public key is published at /reports/key/.
REPORT_SIGNING_KEY = env_str("REPORT_SIGNING_KEY", "")
# After a rotation: the public keys of earlier report keys (comma-separated), so that reports
# sealed with them still show as verified on their page.
REPORT_PREVIOUS_PUBLIC_KEYS = env_str("REPORT_PREVIOUS_PUBLIC_KEYS", "")
# A report still queued this many seconds after it was requested is queued again; one running
# this long has lost its job and is failed (it can be generated again).
REPORT_QUEUED_AFTER = env_int("REPORT_QUEUED_AFTER", 600, minimum=60)
REPORT_STALE_AFTER = env_int("REPORT_STALE_AFTER", 3600, minimum=60)
REPORT_SWEEP_INTERVAL = env_int("REPORT_SWEEP_INTERVAL", 300, minimum=10)
# Evaluations: upload limits, subgroup minimum, and how long a running job may go without a
# heartbeat before the sweeper treats its worker as lost and queues the run again.
EVALUATION_MAX_BYTES = env_int("EVALUATION_MAX_BYTES", 200 * 1024 * 1024, minimum=1)
EVALUATION_MAX_ROWS = env_int("EVALUATION_MAX_ROWS", 1_000_000, minimum=1)
EVALUATION_MIN_GROUP_SIZE = env_int("EVALUATION_MIN_GROUP_SIZE", 30, minimum=1)
EVALUATION_MIN_GROUP_POSITIVES = env_int("EVALUATION_MIN_GROUP_POSITIVES", 10, minimum=0)
EVALUATION_MIN_GROUP_NEGATIVES = env_int("EVALUATION_MIN_GROUP_NEGATIVES", 10, minimum=0)
EVALUATION_MAX_GROUP_VALUES = env_int("EVALUATION_MAX_GROUP_VALUES", 50, minimum=1)
EVALUATION_STALE_AFTER = env_int("EVALUATION_STALE_AFTER", 300, minimum=1)
EVALUATION_SWEEP_INTERVAL = env_int("EVALUATION_SWEEP_INTERVAL", 60, minimum=1)
# Monitoring (docs/monitoring.md): how often the scheduled checks run (batches whose analysis
# never came, overdue periodic reviews).
MONITORING_SWEEP_INTERVAL = env_int("MONITORING_SWEEP_INTERVAL", 300, minimum=1)

CELERY_BEAT_SCHEDULE = {
    "audit-checkpoints": {
        "task": "audits.write_checkpoints",
        "schedule": AUDIT_CHECKPOINT_INTERVAL,
    },
    "evaluation-sweeper": {
        "task": "lifecycle.sweep_evaluation_runs",
        "schedule": EVALUATION_SWEEP_INTERVAL,
    },
    "report-sweeper": {
        "task": "audits.sweep_reports",
        "schedule": REPORT_SWEEP_INTERVAL,
    },
    "monitoring-sweeper": {
        "task": "lifecycle.monitoring_sweep",
        "schedule": MONITORING_SWEEP_INTERVAL,
    },
}
# E-mail notifications (docs/notifications.md): Django's e-mail backends. Development prints
# messages on the console; production sends them through the SMTP relay configured here.
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)  # STARTTLS, usually port 587
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)  # implicit TLS, usually port 465
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured(
        "EMAIL_USE_TLS and EMAIL_USE_SSL exclude each other: set EMAIL_USE_TLS for STARTTLS "
        "(usually port 587) or EMAIL_USE_SSL for implicit TLS (usually port 465), not both."
    )
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)  # seconds per SMTP operation
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "LLM governance <governance@localhost>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
EMAIL_SUBJECT_PREFIX = env_str("EMAIL_SUBJECT_PREFIX", "[LLM governance] ")
# The address people open the site at, for the links in e-mails (no request to take it from).
# Unset: the dev server in DEBUG, otherwise https:// and the first concrete ALLOWED_HOSTS name.
_CONCRETE_HOSTS = [h for h in ALLOWED_HOSTS if h != "*" and not h.startswith(".")]
SITE_URL = env_str(
    "SITE_URL",
    "http://127.0.0.1:8000"
    if DEBUG
    else (f"https://{_CONCRETE_HOSTS[0]}" if _CONCRETE_HOSTS else ""),
).rstrip("/")
if SITE_URL and not SITE_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"SITE_URL must be an http(s) address such as https://governance.hospital.org; "
        f"got {SITE_URL!r}"
    )

# Authentication lockout (django-axes, governance/lockout.py): this many failed passwords for
# one account, or (a higher limit: many people may share one) from one address, lock it for the
# cool-off (seconds) at the login page, the admin login, signing and password change alike.
# SIGNING_LOCKOUT_* are the names of earlier releases, still read.
LOGIN_LOCKOUT_THRESHOLD = env_int(
    "LOGIN_LOCKOUT_THRESHOLD", env_int("SIGNING_LOCKOUT_THRESHOLD", 5, minimum=1), minimum=1
)
# Never below LOGIN_LOCKOUT_THRESHOLD (governance.lockout.address_failure_limit).
LOGIN_LOCKOUT_ADDRESS_THRESHOLD = env_int("LOGIN_LOCKOUT_ADDRESS_THRESHOLD", 50, minimum=1)
LOGIN_LOCKOUT_COOLOFF = env_int(
    "LOGIN_LOCKOUT_COOLOFF", env_int("SIGNING_LOCKOUT_COOLOFF", 900, minimum=60), minimum=60
)
AXES_HANDLER = "governance.lockout.LockoutHandler"  # axes' database handler, two limits
AXES_FAILURE_LIMIT = "governance.lockout.failure_limit"
AXES_COOLOFF_TIME = "governance.lockout.cool_off"
AXES_LOCKOUT_PARAMETERS = "governance.lockout.lockout_parameters"  # account, address: each alone
AXES_CLIENT_IP_CALLABLE = "audits.middleware.client_ip"  # the audit trail's proxy rule
AXES_LOCKOUT_CALLABLE = "governance.lockout.lockout_response"
# A success clears the failures of the account that succeeded only, not its address's
# (LockoutHandler.reset_user_attempts).
AXES_RESET_ON_SUCCESS = True
# A refused attempt during a lock is not counted again: the lock ends one cool-off after it began.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # logins are in the audit trail
AXES_ENABLE_ADMIN = False  # unlocking is `manage.py axes_reset_username` (docs/permissions.md)
AXES_VERBOSE = False

# How many reverse proxies of ours add to X-Forwarded-For (0: use REMOTE_ADDR only).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)

# Content-Security-Policy (django-csp) on every response: script, style, images and fonts from
# this site only; no inline script or style, no eval, no plugins, no framing, forms post here.
# A view that needs more says so with csp.decorators; the global policy is never widened.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# Security: strict in production (DEBUG off), relaxed only where the dev server needs it.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# HTTPS behind a TLS-terminating reverse proxy: the header our proxy sets to "https" (e.g.
# X-Forwarded-Proto). Unset, no such header is trusted: any client could send one to skip the
# HTTPS redirect, so only set it when a proxy always overwrites that header.
_PROXY_SSL_HEADER = env_str("SECURE_PROXY_SSL_HEADER", "")
if _PROXY_SSL_HEADER and not (
    _PROXY_SSL_HEADER.isascii() and _PROXY_SSL_HEADER.replace("-", "").isalnum()
):
    raise ImproperlyConfigured(
        "SECURE_PROXY_SSL_HEADER must be a header name such as X-Forwarded-Proto; "
        f"got {_PROXY_SSL_HEADER!r}"
    )
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https") if _PROXY_SSL_HEADER else None
)
# The OpenAPI schema (/api/schema/) and its documentation (/api/docs/) need a login (an API
# token or the browser session) unless this opens them to anyone.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", False)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
# Idle timeout: the session lasts this long after the user's last request
# (config.middleware.IdleTimeoutMiddleware renews it).
SESSION_COOKIE_AGE = env_int("SESSION_IDLE_TIMEOUT", 30 * 60, minimum=120)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # django-axes narrates every login at INFO, WeasyPrint every rendering step, fontTools
    # every font subset, pikepdf its start; their warnings (failures, lockouts, unusable
    # markup) are enough.
    "loggers": {
        "axes": {"level": "WARNING"},
        "weasyprint": {"level": "WARNING"},
        "fontTools": {"level": "WARNING"},
        "pikepdf": {"level": "WARNING"},
    },
}
