"""Django app: add ``"celery_svcjwt"`` to ``INSTALLED_APPS`` to get its system checks.

Optional: the worker does not need it.  It registers the checks of
:mod:`celery_svcjwt.django_checks`, which ``manage.py check`` (and every
management command that runs checks) reports with ids ``celery_svcjwt.E001``
and so on.  It defines no models.
"""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["SvcJWTConfig"]


class SvcJWTConfig(AppConfig):
    """The app config Django picks for ``"celery_svcjwt"`` in ``INSTALLED_APPS``."""

    name = "celery_svcjwt"
    label = "celery_svcjwt"
    verbose_name = "celery-svcjwt"

    def ready(self) -> None:
        from . import django_checks  # noqa: F401 - registers the system checks
