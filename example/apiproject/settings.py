"""A small DRF + SimpleJWT API: the demo's server and the integration tests' real API.

Configured from the environment so that tests can start variants of it:

- EXAMPLE_API_DB: SQLite file (required; ``example.serve`` creates it)
- EXAMPLE_API_ACCESS_SECONDS / EXAMPLE_API_REFRESH_SECONDS: token lifetimes
- EXAMPLE_API_ROTATE=1: ROTATE_REFRESH_TOKENS; EXAMPLE_API_BLACKLIST=1: BLACKLIST_AFTER_ROTATION
  and the token_blacklist app
- EXAMPLE_API_HEADER_TYPES: comma-separated AUTH_HEADER_TYPES (default Bearer)
- EXAMPLE_API_FAST_HASHER=1: MD5 password hasher (tests); default is Django's PBKDF2
- EXAMPLE_API_USER_MODEL=email: a custom user model whose USERNAME_FIELD is ``email``
- EXAMPLE_API_CLOCK_OFFSET=<seconds>: the token clock runs ahead (+) or behind (-), as on a
  server whose clock is off (applied by ``example.serve``; see clock.py)
"""

import os
from datetime import timedelta


def _flag(name: str) -> bool:
    return os.environ.get(name, "") in ("1", "true", "yes")


SECRET_KEY = os.environ.get("EXAMPLE_API_SECRET_KEY", "example-only-not-a-secret-0123456789abcdef")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ROOT_URLCONF = "example.apiproject.urls"
WSGI_APPLICATION = "example.apiproject.wsgi.application"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework_simplejwt",
]
if os.environ.get("EXAMPLE_API_USER_MODEL") == "email":
    INSTALLED_APPS.append("example.accounts")
    AUTH_USER_MODEL = "accounts.EmailUser"
BLACKLIST = _flag("EXAMPLE_API_BLACKLIST")
if BLACKLIST:
    INSTALLED_APPS.append("rest_framework_simplejwt.token_blacklist")

MIDDLEWARE = [
    "example.apiproject.stats.CountRequests",
    "django.middleware.common.CommonMiddleware",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_API_DB", ":memory:"),
        "OPTIONS": {"timeout": 30},
    }
}

if _flag("EXAMPLE_API_FAST_HASHER"):
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=float(os.environ.get("EXAMPLE_API_ACCESS_SECONDS", "300"))),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=float(os.environ.get("EXAMPLE_API_REFRESH_SECONDS", "86400"))),
    "ROTATE_REFRESH_TOKENS": _flag("EXAMPLE_API_ROTATE"),
    "BLACKLIST_AFTER_ROTATION": BLACKLIST,
    "AUTH_HEADER_TYPES": tuple(os.environ.get("EXAMPLE_API_HEADER_TYPES", "Bearer").split(",")),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
