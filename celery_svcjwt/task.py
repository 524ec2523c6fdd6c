"""``AuthenticatedTask``: a Task base class that gives every task ``self.api``."""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.utils.time import get_exponential_backoff_interval

from . import process
from .errors import AuthUnavailable
from .session import ApiSession
from .settings import DEFAULT_PROFILE

__all__ = ["AuthenticatedTask"]


class AuthenticatedTask(Task):  # type: ignore[type-arg,misc]
    """Base class for tasks that call the API as the service account.

    ``self.api`` is this process's authenticated session. A run that meets an
    auth outage (:class:`~celery_svcjwt.errors.AuthUnavailable`) is retried
    with Celery's retry, with backoff, at most ``svcjwt_task_max_retries``
    times; wrong credentials fail the run at once.
    """

    #: Which API/account this task uses (``svcjwt_profiles``).
    svcjwt_profile: str = DEFAULT_PROFILE
    #: Set to False to handle AuthUnavailable yourself.
    svcjwt_retry_on_outage: bool = True

    def _svcjwt_app(self) -> Any:
        return self._get_app()  # type: ignore[attr-defined]

    @property
    def api(self) -> ApiSession:
        """This process's authenticated session for :attr:`svcjwt_profile` (created on first use)."""
        return process.session_for(self._svcjwt_app(), self.svcjwt_profile)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except AuthUnavailable as exc:
            if not self.svcjwt_retry_on_outage:
                raise
            self._retry_after_outage(exc)
            raise

    def _retry_after_outage(self, exc: AuthUnavailable) -> None:
        request = self.request
        if request.called_directly:
            return
        config = process.manager_for(self._svcjwt_app(), self.svcjwt_profile).config
        if request.retries >= config.task_max_retries:
            return
        countdown = max(
            exc.retry_after,
            get_exponential_backoff_interval(
                factor=2, retries=request.retries, maximum=int(config.task_retry_backoff_max), full_jitter=True
            ),
        )
        had_override = "override_max_retries" in self.__dict__
        try:
            raise self.retry(exc=exc, countdown=countdown, max_retries=config.task_max_retries)
        finally:
            if not had_override:
                self.__dict__.pop("override_max_retries", None)
