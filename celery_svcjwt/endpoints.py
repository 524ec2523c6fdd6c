"""Talking to SimpleJWT's token endpoints over HTTP: one call, classified.

Each call either returns the decoded JSON body or raises an error that says
what to do: :class:`~celery_svcjwt.errors.AuthUnavailable` (try again later),
:class:`~celery_svcjwt.errors.CredentialsRejected` or
:class:`~celery_svcjwt.errors.ConfigurationError` (a person must act), or
:class:`RefreshRejected` (the refresh token is dead: log in again).  Retrying
and backing off are the token manager's job.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Protocol

import requests

from .errors import AuthUnavailable, ConfigurationError, CredentialsRejected, MalformedResponse, SvcJWTError
from .settings import Config, read_password_file
from .tokens import decode_json, parse_error_body, parse_retry_after

__all__ = ["HttpLogin", "LoginBackend", "RefreshCrashed", "RefreshRejected", "user_agent"]

logger = logging.getLogger(__name__)

#: Statuses worth trying again: the server is overloaded, restarting or throttling.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Longest Retry-After honoured, in seconds.
RETRY_AFTER_CAP = 3600.0


class RefreshRejected(SvcJWTError):
    """The refresh token is expired, invalid or blacklisted: log in again."""


class RefreshCrashed(AuthUnavailable):
    """The refresh endpoint failed with HTTP 500 on our refresh token: the next try logs in instead.

    SimpleJWT 5.5.1 answers 500 when the token's user has been deleted; refreshing
    again would fail the same way forever, while a login says what is wrong (no
    active account).  Still retryable: a 500 may also be a passing server fault.
    """


class LoginBackend(Protocol):
    """How a token manager obtains and refreshes tokens (HTTP now; in-process later)."""

    description: str

    def obtain(self) -> Mapping[str, Any]: ...

    def refresh(self, refresh_token: str) -> Mapping[str, Any]: ...

    def close(self) -> None: ...


def user_agent() -> str:
    from . import __version__

    return f"celery-svcjwt/{__version__} {requests.utils.default_user_agent()}"


class HttpLogin:
    """Obtains and refreshes tokens through SimpleJWT's HTTP views."""

    def __init__(self, config: Config, session: requests.Session | None = None) -> None:
        self.config = config
        self.description = f"{config.token_url} as {config.username!r}"
        self._session = session or requests.Session()
        self._session.headers["User-Agent"] = user_agent()

    def __repr__(self) -> str:
        return f"<HttpLogin {self.description}>"

    def obtain(self) -> Mapping[str, Any]:
        cfg = self.config
        password = current_password(cfg)
        body = {cfg.username_field: cfg.username, "password": password}
        response = self._post(cfg.token_url, body, "token")
        if response.status_code in (400, 401, 403):
            err = parse_error_body(response.content)
            said = redact(err.describe(), password).rstrip(".") or f"HTTP {response.status_code}"
            hint = "check svcjwt_username and the password (svcjwt_password, SVC_ACCT_PASS or svcjwt_password_file)"
            if response.status_code == 400 and err.fields:
                hint = (
                    f"check svcjwt_username_field (sent {cfg.username_field!r}) and that the password is set"
                    if any(f not in ("password", "non_field_errors") for f in err.fields)
                    else hint
                )
            raise CredentialsRejected(
                f"the token endpoint {cfg.token_url} rejected the service account {cfg.username!r}: {said}. To fix: {hint}"
            )
        return self._ok(response, "token", "svcjwt_token_url", password)

    def refresh(self, refresh_token: str) -> Mapping[str, Any]:
        response = self._post(self.config.refresh_url, {"refresh": refresh_token}, "refresh")
        if response.status_code in (400, 401, 403):
            err = parse_error_body(response.content)
            said = redact(err.code or err.detail or str(response.status_code), refresh_token)
            raise RefreshRejected(f"the refresh endpoint {self.config.refresh_url} rejected the refresh token ({said})")
        return self._ok(response, "refresh", "svcjwt_refresh_url", refresh_token)

    def close(self) -> None:
        self._session.close()

    def _post(self, url: str, body: Mapping[str, Any], what: str) -> requests.Response:
        try:
            return self._session.post(
                url, json=body, timeout=self.config.timeout, verify=self.config.verify, allow_redirects=False
            )
        except requests.exceptions.SSLError as exc:
            raise AuthUnavailable(
                f"TLS failed with the {what} endpoint {url} ({type(exc).__name__}): check svcjwt_verify "
                "(a CA bundle path) or the server's certificate"
            ) from None
        except requests.RequestException as exc:
            raise AuthUnavailable(f"cannot reach the {what} endpoint {url}: {_reason(exc)}") from None
        except UnicodeError as exc:  # a redirect's Location that is not UTF-8 (psf/requests#4926)
            raise MalformedResponse(
                f"the {what} endpoint {url} answered with a header that cannot be decoded ({type(exc).__name__})"
            ) from None

    def _ok(self, response: requests.Response, what: str, setting: str, secret: str | None) -> Mapping[str, Any]:
        url = response.url or ""
        status = response.status_code
        if status in TRANSIENT_STATUSES:
            wait = parse_retry_after(response.headers.get("Retry-After"), time.time(), RETRY_AFTER_CAP)
            unavailable = RefreshCrashed if what == "refresh" and status == 500 else AuthUnavailable
            raise unavailable(
                f"the {what} endpoint {url} answered HTTP {status}"
                + (f" (Retry-After {wait:.0f}s)" if wait is not None else ""),
                retry_after=wait or 0.0,
            )
        if 300 <= status < 400:
            target = redact(response.headers.get("Location", "?"), secret)
            raise ConfigurationError(
                f"the {what} endpoint {url} redirected (HTTP {status}) to {target!r}; credentials are never "
                f"sent after a redirect: set {setting} to the final URL (mind the trailing slash)"
            )
        if status == 404 or status == 405:
            raise ConfigurationError(
                f"the {what} endpoint {url} answered HTTP {status}: set {setting} to SimpleJWT's "
                f"{'TokenObtainPairView' if what == 'token' else 'TokenRefreshView'} URL"
            )
        if status != 200:
            kind = AuthUnavailable if status >= 500 else ConfigurationError
            raise kind(f"the {what} endpoint {url} answered HTTP {status}, which SimpleJWT never sends there")
        data = decode_json(response.content)
        if not isinstance(data, Mapping):
            raise MalformedResponse(f"the {what} endpoint {url} answered with JSON that is not an object")
        return data


def current_password(config: Config) -> str | None:
    """The password now: a password file is read again at every login, so a rotated
    secret (a Kubernetes Secret updated in place) is used without a restart."""
    if config.password_file:
        try:
            return read_password_file(config.password_file)
        except (OSError, ValueError):
            logger.warning("celery-svcjwt: cannot read svcjwt_password_file again; using the password read at start")
    return config.password


#: A JWT, or the start of one cut short ('{"' base64-encoded is "eyJ").
_JWT_LIKE = re.compile(r"eyJ[\w-]*(?:\.[\w-]*){0,2}")


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with every secret and anything shaped like a JWT replaced, for quoting what a server said.

    JWT-shaped text is masked too: a server quoting a token back may have cut it short.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _JWT_LIKE.sub("<token>", text)


def _reason(exc: requests.RequestException) -> str:
    """A short, secret-free reason: the exception's class and its innermost cause."""
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    inner: BaseException = exc
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    return f"{type(exc).__name__} ({type(inner).__name__})"
