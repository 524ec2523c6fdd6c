"""Exceptions raised by celery-svcjwt.

Every exception carries only its message in ``args`` so that Celery can
serialize it into a result backend and rebuild it on the other side; no
message ever contains a password or a token.
"""

from __future__ import annotations

__all__ = [
    "AuthUnavailable",
    "ConfigurationError",
    "CredentialsRejected",
    "ForeignOriginError",
    "MalformedResponse",
    "SvcJWTError",
]


class SvcJWTError(Exception):
    """Base class of every error celery-svcjwt raises."""


class ConfigurationError(SvcJWTError):
    """A setting is missing or invalid; the message says which and how to set it."""


class AuthUnavailable(SvcJWTError):
    """The token endpoint could not be reached or failed (retryable).

    ``retry_after`` is how many seconds the process waits before it calls the
    endpoint again; :class:`~celery_svcjwt.AuthenticatedTask` retries the task
    no sooner than that.
    """

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[type, tuple[str, float]]:
        return (type(self), (str(self), self.retry_after))


class MalformedResponse(AuthUnavailable):
    """The token endpoint answered with something that is not a SimpleJWT token response."""


class CredentialsRejected(SvcJWTError):
    """The token endpoint refused the service account (not retryable)."""


class ForeignOriginError(SvcJWTError, ValueError):
    """A request through ``self.api`` named a URL outside the configured API's origin."""
