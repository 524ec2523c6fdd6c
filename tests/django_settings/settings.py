"""Settings of the Django project the system-check tests run in a subprocess.

This project serves the API (api.example.com is in ALLOWED_HOSTS) and routes
SimpleJWT's views at the default paths; tests change it with
``override_settings`` (see run_checks.py).
"""

SECRET_KEY = "django-checks-test-only-not-a-secret-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["api.example.com", "localhost", "127.0.0.1"]
ROOT_URLCONF = "tests.django_settings.urls"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "rest_framework",
    "rest_framework_simplejwt",
    "celery_svcjwt",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework_simplejwt.authentication.JWTAuthentication"],
}
SIMPLE_JWT = {"AUTH_HEADER_TYPES": ("Bearer", "JWT")}

CELERY_SVCJWT_API_URL = "https://api.example.com/"
