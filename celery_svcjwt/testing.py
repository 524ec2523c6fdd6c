"""Test helpers: run tasks that use ``self.api`` with a fake service account and a mocked API.

::

    from celery_svcjwt.testing import mock_api

    def test_sync_item():
        with mock_api() as api:
            api.get("api/items/1/", json={"id": 1})      # relative to svcjwt_api_url
            assert sync_item.apply(args=(1,)).get() == {"id": 1}
            assert api.logins == 1

With pytest, the ``svcjwt_mock`` fixture (registered when celery-svcjwt is
installed) gives the same object.  While a mock is active:

* every ``self.api`` of every :class:`~celery_svcjwt.AuthenticatedTask` in this
  process, worker threads included, is a real
  :class:`~celery_svcjwt.session.ApiSession` over a real token manager whose
  token endpoint is a fake: it issues real-looking JWTs (signed with a dummy
  key) and needs no password, no ``SVC_ACCT_*`` and no ``svcjwt_*`` setting;
* every request made with :mod:`requests` in this process is answered by the
  mock, which is a ``responses.RequestsMock``; a request no mock matches
  raises :class:`UnmatchedRequest` and fails the test at the end of the mock
  even if the code under test swallowed the error.  Nothing reaches the network.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from functools import partialmethod
from typing import Any, TypeVar, cast
from unittest import mock as _patch
from urllib.parse import urlsplit

import jwt
import requests

try:
    import responses
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "celery_svcjwt.testing needs the 'responses' package: pip install 'celery-svcjwt[testing]'"
    ) from exc

from celery.signals import task_retry

from . import bootstep, process, status
from .endpoints import RefreshRejected
from .errors import AuthUnavailable, CredentialsRejected
from .manager import TokenManager
from .session import ApiSession
from .settings import DEFAULT_PROFILE, Config, load_config, resolve_url

__all__ = ["DEFAULT_API_URL", "ApiMock", "UnmatchedRequest", "mock_api"]

#: Base URL of the mocked API when neither ``api_url`` nor the app's ``svcjwt_api_url`` gives one.
DEFAULT_API_URL = "http://api.test/"
#: The fake account's password: never sent anywhere, only there to satisfy the settings checks.
FAKE_PASSWORD = "celery-svcjwt-testing-fake-password"
#: HS256 key of the fake tokens (32+ bytes, so PyJWT does not warn). Not a secret.
_SIGNING_KEY = "celery-svcjwt-testing-not-a-secret-key"
_SOURCE = "celery_svcjwt.testing.mock_api"
#: How responses' error for a request that matched no mock begins.
_RESPONSES_UNMATCHED = "Connection refused by Responses"

F = TypeVar("F", bound=Callable[..., Any])

_active_lock = threading.Lock()
_active: ApiMock | None = None


class UnmatchedRequest(requests.ConnectionError):
    """A request that no mock of :func:`mock_api` matches (nothing was sent)."""


class SimulatedClock:
    """The token managers' time: the real clocks plus an offset that tests move forward.

    ``sleep`` advances the offset instead of waiting, so the managers' backoff
    between tries costs no real time.
    """

    def __init__(self) -> None:
        self.offset = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self.offset += seconds


class _FakeAuthServer:
    """The fake token endpoint's state, shared by every token manager of one mock."""

    def __init__(self, clock: SimulatedClock, access_lifetime: float, refresh_lifetime: float, rotate: bool) -> None:
        self.clock = clock
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate = rotate
        self.lock = threading.Lock()
        self.logins = 0
        self.refreshes = 0
        self.failures = 0
        self.last_access: str | None = None
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        #: (token requests left to fail or None for "until ended", retry_after)
        self.outage: tuple[int | None, float] | None = None
        self.rejecting = False

    def _token(self, token_type: str, lifetime: float, iat: int) -> str:
        claims = {
            "token_type": token_type,
            "exp": iat + int(lifetime),
            "iat": iat,
            "jti": uuid.uuid4().hex,
            "user_id": "1",
        }
        return jwt.encode(claims, _SIGNING_KEY, algorithm="HS256")

    def issue(self, *, with_refresh: bool) -> dict[str, str]:
        """A SimpleJWT-shaped answer. Call with the lock held."""
        iat = int(self.clock.wall())
        body = {"access": self._token("access", self.access_lifetime, iat)}
        self.access_tokens.add(body["access"])
        self.last_access = body["access"]
        if with_refresh:
            body["refresh"] = self._token("refresh", self.refresh_lifetime, iat)
            self.refresh_tokens.add(body["refresh"])
        return body

    def fail_if_down(self, config: Config, what: str) -> None:
        """Raise what the real endpoint's client would during an outage. Call with the lock held."""
        if self.outage is None:
            return
        left, retry_after = self.outage
        if left is not None:
            left -= 1
            self.outage = (left, retry_after) if left > 0 else None
        self.failures += 1
        url = config.token_url if what == "token" else config.refresh_url
        raise AuthUnavailable(
            f"the {what} endpoint {url} answered HTTP 503 (Retry-After {retry_after:.0f}s) "
            "[simulated by mock_api().auth_outage()]",
            retry_after=retry_after,
        )


class _FakeLogin:
    """A :class:`~celery_svcjwt.endpoints.LoginBackend` answered by a :class:`_FakeAuthServer`."""

    def __init__(self, server: _FakeAuthServer, config: Config) -> None:
        self.server = server
        self.config = config
        self.description = f"the fake token endpoint of mock_api() as {config.username!r}"

    def __repr__(self) -> str:
        return f"<_FakeLogin {self.description}>"

    def obtain(self) -> Mapping[str, Any]:
        server = self.server
        with server.lock:
            server.fail_if_down(self.config, "token")
            if server.rejecting:
                server.failures += 1
                raise CredentialsRejected(
                    f"the token endpoint {self.config.token_url} rejected the service account "
                    f"{self.config.username!r}: No active account found with the given credentials "
                    "[simulated by mock_api().reject_credentials()]"
                )
            server.logins += 1
            return server.issue(with_refresh=True)

    def refresh(self, refresh_token: str) -> Mapping[str, Any]:
        server = self.server
        with server.lock:
            server.fail_if_down(self.config, "refresh")
            if server.rejecting or refresh_token not in server.refresh_tokens:
                server.failures += 1
                raise RefreshRejected(
                    f"the refresh endpoint {self.config.refresh_url} rejected the refresh token (token_not_valid)"
                )
            server.refreshes += 1
            if server.rotate:
                server.refresh_tokens.discard(refresh_token)
            return server.issue(with_refresh=server.rotate)

    def close(self) -> None:
        pass


class _ConfView:
    """``app.conf`` as the fake account sees it: the app's settings, with the account's forced in."""

    def __init__(self, conf: Any, forced: Mapping[str, Any], profile: str) -> None:
        self._conf = conf
        self._forced = forced
        self._profile = profile

    def _real(self, key: str, default: Any = None) -> Any:
        try:
            return self._conf.get(key, default)
        except (AttributeError, KeyError):
            return default

    def get(self, key: str, default: Any = None) -> Any:
        if key == "svcjwt_cli":
            return {}
        if key == "svcjwt_profiles":
            profiles = dict(self._real(key) or {})
            if self._profile != DEFAULT_PROFILE:
                profiles[self._profile] = {**(profiles.get(self._profile) or {}), **self._forced}
            return profiles
        name = key[len("svcjwt_") :] if key.startswith("svcjwt_") else ""
        if self._profile == DEFAULT_PROFILE and name in self._forced:
            return self._forced[name]
        return self._real(key, default)


class _ConfHolder:
    def __init__(self, conf: _ConfView) -> None:
        self.conf = conf


def _real_app(app: Any) -> Any:
    """The app behind a proxy such as ``celery.current_app``."""
    getter = getattr(app, "_get_current_object", None)
    return getter() if callable(getter) else app


def _conf_api_url(app: Any, profile: str) -> str | None:
    """``svcjwt_api_url`` of ``profile`` in the app's Celery configuration (not the environment)."""
    try:
        conf = app.conf
        if profile == DEFAULT_PROFILE:
            value = conf.get("svcjwt_api_url")
        else:
            value = ((conf.get("svcjwt_profiles") or {}).get(profile) or {}).get("api_url")
    except (AttributeError, KeyError, TypeError):
        return None
    return str(value).rstrip("/") + "/" if value else None


class _Entry:
    def __init__(self, app: Any, manager: TokenManager, session: ApiSession) -> None:
        self.app = app  # keeps id(app) from being reused while the mock lives
        self.manager = manager
        self.session = session


class _Relative:
    """Mixin: a mock URL relative to the API matches it under the base URL of any covered session."""

    def __init__(self, mock: ApiMock, *args: Any, **kwargs: Any) -> None:
        self._svcjwt_mock = mock
        super().__init__(*args, **kwargs)

    def _url_matches(self, url: Any, other: str) -> bool:
        matches = super()._url_matches  # type: ignore[misc]
        if isinstance(url, str) and not urlsplit(url).scheme:
            return any(matches(resolve_url(base, url), other) for base in self._svcjwt_mock._bases())
        return bool(matches(url, other))


class _RelativeResponse(_Relative, responses.Response):
    pass


class _RelativeCallbackResponse(_Relative, responses.CallbackResponse):
    pass


class ApiMock(responses.RequestsMock):
    """A ``responses.RequestsMock`` that also stands in for the service account.

    Create it with :func:`mock_api`.  Every method of ``responses`` works
    (``add``, ``get``, ``post``, ``put``, ``patch``, ``delete``, ``head``,
    ``options``, ``add_callback``, ``replace``, ``upsert``, ``remove``,
    ``calls``, ``assert_call_count``, ``matchers``...).  A URL without a
    scheme is relative to the API: ``api.get("api/items/1/")`` mocks what
    ``self.api.get("api/items/1/")`` requests, whatever the base URL of the
    session that sends it (the app's ``svcjwt_api_url``, the ``api_url``
    given to :func:`mock_api`, or :data:`DEFAULT_API_URL`).
    """

    def __init__(
        self,
        app: Any = None,
        profile: str | None = None,
        *,
        api_url: str | None = None,
        username: str = "svc-test",
        assert_all_requests_are_fired: bool = False,
        access_lifetime: float = 300.0,
        refresh_lifetime: float = 86400.0,
        rotate_refresh_tokens: bool = False,
        registry: Any = None,
    ) -> None:
        if app is not None and not hasattr(app, "conf"):
            raise TypeError(
                f"mock_api(app=...) takes a Celery app, got {app!r}; as a decorator, write @mock_api() with parentheses"
            )
        kwargs: dict[str, Any] = {"assert_all_requests_are_fired": assert_all_requests_are_fired}
        if registry is not None:
            kwargs["registry"] = registry
        super().__init__(**kwargs)
        self._options: dict[str, Any] = {
            "app": app,
            "profile": profile,
            "api_url": api_url,
            "username": username,
            "assert_all_requests_are_fired": assert_all_requests_are_fired,
            "access_lifetime": access_lifetime,
            "refresh_lifetime": refresh_lifetime,
            "rotate_refresh_tokens": rotate_refresh_tokens,
            "registry": registry,
        }
        self._app = _real_app(app) if app is not None else None
        self.profile = profile
        self.username = username
        self._explicit_api_url = api_url.rstrip("/") + "/" if api_url else None
        self.clock = SimulatedClock()
        self._server = _FakeAuthServer(self.clock, access_lifetime, refresh_lifetime, rotate_refresh_tokens)
        self._entries: dict[tuple[int, str], _Entry] = {}
        self._lock = threading.Lock()
        self._started = False
        self._unmatched: list[str] = []
        self._pending_401 = 0
        self._bootstep_patch: Any = None
        #: (app, previous values) of the apps whose worker bootstep ran during this mock.
        self._worker_apps: list[tuple[Any, dict[str, Any]]] = []

    def __repr__(self) -> str:
        state = "active" if self._started else "inactive"
        apps = "every app" if self._app is None else f"app {self._app.main!r}"
        profiles = "every profile" if self.profile is None else f"profile {self.profile!r}"
        return f"<ApiMock for {apps}, {profiles}, as {self.username!r} ({state})>"

    # -- where the API is ------------------------------------------------------

    def _base_for(self, app: Any, profile: str) -> str:
        """The base URL of ``self.api`` of ``profile`` of ``app`` under this mock."""
        return self._explicit_api_url or _conf_api_url(app, profile) or DEFAULT_API_URL

    @property
    def api_url(self) -> str:
        """The base URL of ``self.api`` for this mock's app (default: the current Celery app).

        ``api_url`` if given, else the app's ``svcjwt_api_url`` for this mock's
        profile, else :data:`DEFAULT_API_URL`.
        """
        app = self._app if self._app is not None else _current_app()
        return self._base_for(app, self.profile or DEFAULT_PROFILE)

    def url(self, path: str = "", *, app: Any = None, profile: str | None = None) -> str:
        """The absolute URL ``self.api`` requests for ``path`` (of ``app`` and ``profile``; defaults as :attr:`api_url`)."""
        app = _real_app(app) if app is not None else (self._app if self._app is not None else _current_app())
        return resolve_url(self._base_for(app, profile or self.profile or DEFAULT_PROFILE), path)

    def _bases(self) -> set[str]:
        """The base URLs a relative mock URL can stand for: every covered session's, and the defaults."""
        with self._lock:
            bases = {entry.session.base_url for entry in self._entries.values()}
        bases.add(self._explicit_api_url or DEFAULT_API_URL)
        bases.add(self.api_url)
        return bases

    def _relative(self, url: Any) -> str | None:
        """``url`` as a relative mock URL (no leading slash), or None when it is absolute or a pattern."""
        if not isinstance(url, str) or urlsplit(url).scheme:
            return None
        if url.startswith("//"):
            raise ValueError(f"scheme-relative URL {url!r} is ambiguous: give a path or an absolute URL")
        return url.lstrip("/")

    def _shown(self, url: str) -> str:
        """``url`` relative to the longest base it is under, as a user would mock it."""
        for base in sorted(self._bases(), key=len, reverse=True):
            if url.startswith(base):
                return url[len(base) :]
        return url

    # -- responses' API, with URLs relative to the API ---------------------------

    def add(
        self,
        method: Any = None,
        url: Any = None,
        body: Any = "",
        adding_headers: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> responses.BaseResponse:
        if isinstance(method, responses.BaseResponse):  # a Response object: made absolute now
            relative = self._relative(method.url)
            if relative is not None:
                method.url = resolve_url(self.api_url, relative)
            return super().add(method)
        relative = self._relative(url)
        if relative is None:
            return super().add(method, url, body, adding_headers, *args, **kwargs)
        if adding_headers is not None:
            kwargs.setdefault("headers", adding_headers)
        return super().add(_RelativeResponse(self, method=method, url=relative, body=body, **kwargs))

    delete = partialmethod(add, responses.DELETE)
    get = partialmethod(add, responses.GET)
    head = partialmethod(add, responses.HEAD)
    options = partialmethod(add, responses.OPTIONS)
    patch = partialmethod(add, responses.PATCH)
    post = partialmethod(add, responses.POST)
    put = partialmethod(add, responses.PUT)

    def add_callback(
        self,
        method: str,
        url: Any,
        callback: Any,
        match_querystring: Any = None,
        content_type: str | None = "text/plain",
        match: Any = (),
    ) -> responses.BaseResponse:
        relative = self._relative(url)
        return super().add(
            _RelativeCallbackResponse(
                self,
                url=url if relative is None else relative,
                method=method,
                callback=callback,
                content_type=content_type,
                match_querystring=match_querystring,
                match=match,
            )
        )

    def replace(
        self, method_or_response: Any = None, url: Any = None, body: Any = "", *args: Any, **kwargs: Any
    ) -> responses.BaseResponse:
        relative = self._relative(url)
        if relative is None or isinstance(method_or_response, responses.BaseResponse):
            return super().replace(method_or_response, url, body, *args, **kwargs)
        return super().replace(_RelativeResponse(self, method=method_or_response, url=relative, body=body, **kwargs))

    def remove(self, method_or_response: Any = None, url: Any = None) -> list[responses.BaseResponse]:
        relative = self._relative(url)
        return super().remove(method_or_response, url if relative is None else relative)

    def assert_call_count(self, url: str, count: int) -> bool:
        relative = self._relative(url)
        if relative is None:
            return super().assert_call_count(url, count)
        urls = {resolve_url(base, relative) for base in self._bases()}
        called = sum(1 for call in self.calls if call.request.url in urls)
        if called != count:
            raise AssertionError(f"Expected URL '{url}' to be called {count} times. Called {called} times.")
        return True

    # -- the fake account ----------------------------------------------------------

    @property
    def logins(self) -> int:
        """How many times a token manager logged in to the fake token endpoint."""
        return self._server.logins

    @property
    def refreshes(self) -> int:
        """How many times a token manager refreshed its access token."""
        return self._server.refreshes

    @property
    def failures(self) -> int:
        """How many token requests failed (outage, rejected credentials, dead refresh token)."""
        return self._server.failures

    @property
    def access_token(self) -> str | None:
        """The access token issued last (what ``self.api`` sends), or None before the first login."""
        return self._server.last_access

    def session(self, app: Any = None, profile: str | None = None) -> ApiSession:
        """The ``self.api`` session of ``app`` (default: this mock's app, else the current app)."""
        app = _real_app(app) if app is not None else (self._app if self._app is not None else _current_app())
        return process.session_for(app, profile or self.profile or DEFAULT_PROFILE)

    def manager(self, app: Any = None, profile: str | None = None) -> TokenManager:
        """The token manager behind :meth:`session`."""
        return self.session(app, profile).manager

    def _managers(self) -> list[TokenManager]:
        with self._lock:
            return [entry.manager for entry in self._entries.values()]

    # -- simulations -------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the token managers' clock forward (the real clocks keep running too)."""
        self.clock.advance(seconds)

    def expire_token(self) -> None:
        """Let the access tokens expire now: the next ``self.api`` request refreshes (``refreshes`` + 1).

        Before the first login there is nothing to expire.
        """
        now = self.clock.monotonic()
        expiries = [m.tokens.access_expires_at for m in self._managers() if m.tokens is not None]
        if expiries and max(expiries) >= now:
            self.clock.advance(max(expiries) - now + 0.001)

    def reject_next_request_with_401(self, times: int = 1) -> None:
        """The API refuses the access token of the next ``times`` requests sent with one.

        It answers as SimpleJWT does (401, ``token_not_valid``); ``self.api``
        renews the token and replays the request once, so with ``times=1`` the
        caller gets the answer mocked for the URL, and with ``times=2`` the 401.
        """
        with self._lock:
            self._pending_401 += times

    def auth_outage(self, retry_after: float = 30.0, times: int | None = 1, *, expire_token: bool = True) -> None:
        """The token endpoint fails (HTTP 503) for the next ``times`` token requests (None: until :meth:`end_outage`).

        With ``expire_token`` (the default) the current tokens expire now, so
        the next ``self.api`` request needs the endpoint.  The manager raises
        :class:`~celery_svcjwt.AuthUnavailable` and AuthenticatedTask retries
        the task, as in production; under ``apply()`` Celery runs a retry at
        once, and the mock moves the managers' clock by the retry's countdown,
        so the retry finds the endpoint as a worker would after that wait.  As
        in production, a short ``retry_after`` (5 s or less) is first retried
        inside the call, ``svcjwt_login_attempts`` times in all.
        """
        if times is not None and times < 1:
            raise ValueError("times must be 1 or more, or None")
        with self._server.lock:
            self._server.outage = (times, float(retry_after))
        if expire_token:
            self.expire_token()

    def end_outage(self) -> None:
        """The token endpoint answers again; the managers' backoff time passes, so the next request renews."""
        with self._server.lock:
            self._server.outage = None
        self._wait_out_backoff()

    def reject_credentials(self) -> None:
        """The token endpoint refuses the account (a changed password, a disabled user) until :meth:`accept_credentials`.

        The tokens the managers hold are dropped and refreshing fails too, so
        the next ``self.api`` request raises
        :class:`~celery_svcjwt.CredentialsRejected`, which AuthenticatedTask
        does not retry.
        """
        with self._server.lock:
            self._server.rejecting = True
        for manager in self._managers():
            manager.forget()

    def accept_credentials(self) -> None:
        """Undo :meth:`reject_credentials`; the managers' backoff time passes."""
        with self._server.lock:
            self._server.rejecting = False
        self._wait_out_backoff()

    def _wait_out_backoff(self) -> None:
        now = self.clock.monotonic()
        gates = [float(getattr(m, "_gate_until", 0.0)) for m in self._managers()]
        if gates and max(gates) > now:
            self.clock.advance(max(gates) - now + 0.001)

    # -- the registry hook -----------------------------------------------------------------

    def _covers(self, app: Any, profile: str) -> bool:
        if self._app is not None and _real_app(app) is not self._app:
            return False
        return self.profile is None or profile == self.profile

    def _lookup(self, app: Any, profile: str) -> tuple[TokenManager, ApiSession] | None:
        if not self._covers(app, profile):
            return None
        key = (id(app), profile)
        entry = self._entries.get(key)
        if entry is None:
            with self._lock:
                entry = self._entries.get(key)
                if entry is None:
                    entry = self._build(app, profile)
                    self._entries[key] = entry
        return entry.manager, entry.session

    def config(self, app: Any, profile: str = DEFAULT_PROFILE) -> Config:
        """The settings the fake account runs with for ``profile`` of ``app``.

        The app's Celery configuration (and Django's ``SIMPLE_JWT``) is
        honoured, environment variables are not; the URL, account and
        transport are the mock's.
        """
        base = self._base_for(app, profile)
        forced = {
            "api_url": base,
            "username": self.username,
            "password": FAKE_PASSWORD,
            "password_file": None,
            "login_mode": "http",
            "transport": "http",
            "allow_insecure_http": True,
        }
        conf = app.conf if app is not None else {}
        config = load_config(_ConfHolder(_ConfView(conf, forced, profile)), profile, environ={}, cli={})
        return config.replace(sources={**config.sources, **dict.fromkeys(forced, _SOURCE)})

    def _build(self, app: Any, profile: str) -> _Entry:
        config = self.config(app, profile)
        manager = process.build_manager(app, config)
        real_backend = manager.backend
        manager.backend = _FakeLogin(self._server, config)
        try:
            real_backend.close()
        except Exception:  # noqa: S110 - closing an unused client; nothing to report
            pass
        manager._clock = self.clock.monotonic
        manager._wall = self.clock.wall
        manager._sleep = self.clock.sleep
        threads = (app.conf.get(process.POOL_THREADS_KEY) if app is not None else None) or 10
        return _Entry(app, manager, ApiSession(config, manager, pool_size=int(threads)))

    def _bootstep_load_config(self, app: Any, profile: str = DEFAULT_PROFILE, **kwargs: Any) -> Config:
        """``load_config`` as the worker bootstep sees it while the mock is active."""
        if not self._covers(app, profile):
            return load_config(app, profile, **kwargs)
        keys = (process.MAIN_PID_KEY, process.POOL_THREADS_KEY, status.STATUS_DIR_KEY)
        with self._lock:
            self._worker_apps.append((app, {key: app.conf.get(key) for key in keys}))
        return self.config(app, profile)

    def _on_task_retry(self, sender: Any = None, reason: Any = None, **_: Any) -> None:
        """Under ``apply()`` a retry runs at once: let the countdown pass on the managers' clock."""
        if reason is None or not getattr(reason, "is_eager", False):
            return
        if sender is not None and self._app is not None and _real_app(sender.app) is not self._app:
            return
        when = getattr(reason, "when", None)
        if isinstance(when, datetime.datetime):
            now = datetime.datetime.now(when.tzinfo) if when.tzinfo else datetime.datetime.now()
            delay = (when - now).total_seconds()
        elif isinstance(when, (int, float)):
            delay = float(when)
        else:
            return
        if delay > 0:
            self.clock.advance(delay)

    # -- requests ---------------------------------------------------------------------------

    def _on_request(self, adapter: Any, request: Any, *, retries: Any = None, **kwargs: Any) -> Any:
        if self._pending_401 and self._take_401(request):
            return self._unauthorized(adapter, request)
        try:
            return super()._on_request(adapter, request, retries=retries, **kwargs)
        except requests.ConnectionError as exc:
            text = str(exc)
            if isinstance(exc, UnmatchedRequest) or not text.startswith(_RESPONSES_UNMATCHED):
                raise  # a ConnectionError a mock was told to raise
            line = f"{request.method} {request.url}"
            with self._lock:
                self._unmatched.append(line)
            raise UnmatchedRequest(self._unmatched_message(request, text), request=request) from None

    def _take_401(self, request: Any) -> bool:
        token = str(request.headers.get("Authorization", "")).rpartition(" ")[2]
        if token not in self._server.access_tokens:
            return False
        with self._lock:
            if self._pending_401 <= 0:
                return False
            self._pending_401 -= 1
            return True

    def _unauthorized(self, adapter: Any, request: Any) -> Any:
        scheme = str(request.headers.get("Authorization", "Bearer")).partition(" ")[0]
        fake = responses.Response(
            method=request.method,
            url=request.url,
            status=401,
            json={
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{"token_class": "AccessToken", "token_type": "access", "message": "Token is invalid"}],
            },
            headers={"WWW-Authenticate": f'{scheme} realm="api"'},
        )
        response = adapter.build_response(request, fake.get_response(request))
        self.calls.add(request, response)
        return response

    def _unmatched_message(self, request: Any, responses_text: str) -> str:
        url = str(request.url)
        shown = self._shown(url)
        registered = responses_text.partition("Available matches:\n")[2].strip()
        return (
            f"celery-svcjwt mock_api: no mock matches {request.method} {url} (nothing was sent over the network).\n"
            f'Mock it, for example: mock.{str(request.method).lower()}("{shown}", json=...)\n'
            + (f"Mocked:\n{registered}" if registered else "Nothing is mocked yet.")
        )

    @property
    def unmatched(self) -> list[str]:
        """``METHOD URL`` of every request no mock matched so far."""
        with self._lock:
            return list(self._unmatched)

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Activate the mock (``with`` and the decorator call this); see :meth:`stop`."""
        global _active
        if self._started:
            return
        with _active_lock:
            if _active is not None:
                raise RuntimeError(
                    f"celery-svcjwt: another mock_api() is active ({_active!r}); one mock covers every app and "
                    "profile of the process: use that one (the svcjwt_mock fixture, a 'svcjwt' marker for options)"
                )
            _active = self
        try:
            super().start()
            process.push_override(self._lookup)
            self._bootstep_patch = _patch.patch.object(bootstep, "load_config", self._bootstep_load_config)
            self._bootstep_patch.start()
            task_retry.connect(self._on_task_retry, weak=False)
            self._started = True
        except BaseException:
            self._teardown()
            raise

    def stop(self, allow_assert: bool = True) -> None:
        """Deactivate the mock; then, unless ``allow_assert`` is false, fail on unmatched or unused mocks."""
        if not self._started:
            return
        self._started = False
        self._teardown()
        if allow_assert and self.unmatched:
            raise AssertionError(
                f"celery-svcjwt mock_api: {len(self.unmatched)} request(s) matched no mock (each raised "
                "UnmatchedRequest, a requests.ConnectionError, where it was sent):\n"
                + "\n".join(f"- {line}" for line in self.unmatched)
            )
        super().stop(allow_assert=allow_assert)  # responses' assert_all_requests_are_fired

    def _teardown(self) -> None:
        global _active
        task_retry.disconnect(self._on_task_retry)
        if self._bootstep_patch is not None:
            self._bootstep_patch.stop()
            self._bootstep_patch = None
        process.pop_override(self._lookup)
        super().stop(allow_assert=False)  # unpatch requests
        with self._lock:
            entries = list(self._entries.values())
            worker_apps, self._worker_apps = self._worker_apps, []
        for entry in entries:
            entry.session.close()
        for app, previous in reversed(worker_apps):  # what test workers' bootsteps left in the apps' conf
            for key, value in previous.items():
                app.conf[key] = value
        with _active_lock:
            if _active is self:
                _active = None

    def __enter__(self) -> ApiMock:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        unmatched = self.unmatched
        self.stop(allow_assert=exc_type is None)
        if exc is not None and unmatched and hasattr(exc, "add_note"):
            exc.add_note("celery-svcjwt mock_api: requests no mock matched:\n" + "\n".join(unmatched))

    # -- as a decorator ---------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Decorate a test function (or every ``test*`` method of a class): each call runs in a fresh mock,
        passed as the last positional argument, as :func:`unittest.mock.patch` does."""
        if isinstance(func, type):
            for name, attr in list(vars(func).items()):
                if name.startswith("test") and inspect.isfunction(attr):
                    setattr(func, name, self(attr))
            return func
        options = dict(self._options)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with ApiMock(**options) as mock:
                return func(*args, mock, **kwargs)

        try:  # hide the injected argument from pytest's fixture lookup
            signature = inspect.signature(func)
            params = list(signature.parameters.values())
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if positional:
                params.remove(positional[-1])
                wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        except (TypeError, ValueError):
            pass
        return cast(F, wrapper)


def _current_app() -> Any:
    from celery import current_app

    return _real_app(current_app)


def mock_api(
    app: Any = None,
    profile: str | None = None,
    *,
    api_url: str | None = None,
    username: str = "svc-test",
    assert_all_requests_are_fired: bool = False,
    access_lifetime: float = 300.0,
    refresh_lifetime: float = 86400.0,
    rotate_refresh_tokens: bool = False,
    registry: Any = None,
) -> ApiMock:
    """A fake service account and a mocked API, as a context manager or a decorator.

    :param app: the Celery app whose tasks get the fake account; ``None``: every app.
    :param profile: the profile (``svcjwt_profile``) faked; ``None``: every profile.
    :param api_url: base URL of the mocked API. Default: the app's ``svcjwt_api_url``
        (of the current Celery app when ``app`` is None), else :data:`DEFAULT_API_URL`.
    :param username: the fake account's username.
    :param assert_all_requests_are_fired: fail at the end if a mocked URL was never requested.
    :param access_lifetime: lifetime in seconds of the fake access tokens (SimpleJWT's default).
    :param refresh_lifetime: lifetime in seconds of the fake refresh tokens.
    :param rotate_refresh_tokens: answer refreshes with a new refresh token (``ROTATE_REFRESH_TOKENS``).
    :param registry: a ``responses`` registry class, such as ``responses.registries.OrderedRegistry``.
    """
    return ApiMock(
        app,
        profile,
        api_url=api_url,
        username=username,
        assert_all_requests_are_fired=assert_all_requests_are_fired,
        access_lifetime=access_lifetime,
        refresh_lifetime=refresh_lifetime,
        rotate_refresh_tokens=rotate_refresh_tokens,
        registry=registry,
    )
