"""Celery-style signals for metrics and audit: login, refresh, failure, 401 retry.

Connect receivers as you would to Celery's own signals::

    from celery_svcjwt import signals

    @signals.token_obtained.connect
    def on_login(sender, account, lifetime, **kwargs):
        ...

Each signal is sent in the worker process where the event happened (a
prefork pool child, usually), with ``sender`` set to the profile name
(``"default"`` unless the task names another), so
``token_obtained.connect(receiver, sender="billing")`` hears one profile only.
The keyword arguments are facts, never a token or a password:

every signal
    ``account`` (the username), ``api_url``, ``profile``, ``pid``, and the
    process's running counts ``logins``, ``refreshes``, ``failures`` and
    ``retries_401``.
:data:`token_obtained` (a login with the password) and :data:`token_refreshed`
    ``lifetime`` (seconds the new access token lives), ``expires_at`` (its
    expiry, seconds since the epoch) and ``skew`` (this process's clock minus
    the API server's, in seconds, or ``None`` if the token has no ``iat``).
:data:`auth_failed`
    ``error`` (the message, as in :doc:`errors`), ``error_type`` (the
    exception's class name), ``retryable`` (True for an outage, False for
    rejected credentials or a configuration problem) and ``backoff`` (seconds
    before the process calls the token endpoint again).
:data:`request_retried_401`
    nothing more: the API answered 401 to a token that had not expired, and
    the process renews it and replays the request.

Receivers run inside the token manager's lock, on the thread that logs in or
refreshes: keep them quick (increment a counter, write a log line).  An
exception in a receiver is logged and ignored; it never fails a task.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from celery.utils.dispatch import Signal

from .errors import AuthUnavailable

if TYPE_CHECKING:
    from .manager import TokenManager

__all__ = ["auth_failed", "request_retried_401", "token_obtained", "token_refreshed"]

_COMMON = {"account", "api_url", "profile", "pid", "logins", "refreshes", "failures", "retries_401"}
_TOKEN = {"lifetime", "expires_at", "skew"}

#: Sent after the process logged in with the password and got a new token pair.
token_obtained = Signal(name="token_obtained", providing_args=sorted(_COMMON | _TOKEN))
#: Sent after the process refreshed its access token through the refresh endpoint.
token_refreshed = Signal(name="token_refreshed", providing_args=sorted(_COMMON | _TOKEN))
#: Sent when a login or refresh failed for good (after the in-call retries); the process backs off.
auth_failed = Signal(
    name="auth_failed", providing_args=sorted(_COMMON | {"error", "error_type", "retryable", "backoff"})
)
#: Sent when the API refused a token before its expiry (HTTP 401) and the process renews it to replay the request.
request_retried_401 = Signal(name="request_retried_401", providing_args=sorted(_COMMON))

_BY_EVENT = {
    "login": token_obtained,
    "refresh": token_refreshed,
    "failure": auth_failed,
    "retry_401": request_retried_401,
}


def facts(event: str, manager: TokenManager) -> dict[str, Any]:
    """The keyword arguments sent with ``event``'s signal: no token, no password."""
    config = manager.config
    stats = manager.stats
    kwargs: dict[str, Any] = {
        "account": config.username,
        "api_url": config.api_url,
        "profile": config.profile,
        "pid": os.getpid(),
        "logins": stats.logins,
        "refreshes": stats.refreshes,
        "failures": stats.failures,
        "retries_401": stats.retries_401,
    }
    if event in ("login", "refresh"):
        tokens = manager.tokens
        status = manager.status()
        kwargs["lifetime"] = tokens.lifetime if tokens is not None else None
        kwargs["expires_at"] = status["token_expires_at"]
        kwargs["skew"] = tokens.skew if tokens is not None else None
    elif event == "failure":
        error_type, _, message = (stats.last_error or "").partition(": ")
        error = manager._gate_error
        kwargs["error"] = message or None
        kwargs["error_type"] = error_type or None
        kwargs["retryable"] = isinstance(error, AuthUnavailable)
        kwargs["backoff"] = manager.status()["backing_off_for"]
    return kwargs


def send(event: str, manager: TokenManager) -> None:
    """A token-manager listener: send the signal of ``event`` (added by ``process.build_manager``)."""
    signal = _BY_EVENT.get(event)
    if signal is None or not signal.receivers:
        return
    signal.send(sender=config_sender(manager), **facts(event, manager))


def config_sender(manager: TokenManager) -> str:
    """The ``sender`` of every signal: the profile name."""
    return manager.config.profile
