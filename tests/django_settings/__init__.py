"""A tiny Django project for tests/unit/test_django_checks.py, always run in a subprocess."""
