"""Settings of a Django project whose Celery tasks call another team's API."""

SECRET_KEY = "example-only-not-a-secret"
USE_TZ = True
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "inventory"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# This project's own API uses the JWT header type; celery-svcjwt follows it.
SIMPLE_JWT = {"AUTH_HEADER_TYPES": ("JWT",)}

CELERY_BROKER_URL = "memory://"
CELERY_TASK_ALWAYS_EAGER = True  # these tests run tasks in the test's process
CELERY_SVCJWT_API_URL = "https://inventory.example.com/v2/"
# The account (SVC_ACCT_USER / SVC_ACCT_PASS) comes from the environment in production.
