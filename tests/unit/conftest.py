"""Fixtures for the unit tests: a fake clock, real JWTs, a scripted login backend.

Nothing here touches the network, the machine's environment or a real clock.
"""

from __future__ import annotations

import logging
import threading
import types
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import celery
import jwt
import pytest
import responses

from celery_svcjwt import process
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.settings import Config, load_config

PASSWORD = "pw-Sup3r-S3cret-9f2c"
USERNAME = "svc-robot"
API_URL = "https://api.example.com/v1/"
#: Wall-clock time (seconds since the epoch) the fake servers believe it is.
SERVER_NOW = 1_700_000_000.0
#: A 32-byte HMAC key, so PyJWT does not warn about a short key.
SIGNING_KEY = "unit-test-signing-key-0123456789abcdef"

BASE_CONF = {
    "svcjwt_api_url": API_URL,
    "svcjwt_username": USERNAME,
    "svcjwt_password": PASSWORD,
}


# -- isolation --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No SVCJWT_*/SVC_ACCT_* variable, no configured Django, no cached manager leaks in."""
    import os

    for name in list(os.environ):
        if name.startswith(("SVCJWT_", "SVC_ACCT_")):
            monkeypatch.delenv(name)
    try:
        import django.conf
    except ImportError:
        pass
    else:
        monkeypatch.setattr(django.conf, "settings", types.SimpleNamespace(configured=False))
    process.reset()
    yield
    process.reset()


# -- time -------------------------------------------------------------------


class FakeClock:
    """A monotonic clock that only moves when told to.

    It also remembers which threads read it, so a test can wait until every
    thread has entered ``TokenManager.get`` (which reads the clock first).
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.readers: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            self.readers.add(threading.get_ident())
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def set(self, value: float) -> None:
        self.now = value


class FakeSleep:
    """Records every sleep and moves the fake clock forward by it instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_sleep(clock: FakeClock) -> FakeSleep:
    return FakeSleep(clock)


# -- tokens -----------------------------------------------------------------


class JwtFactory:
    """Makes real HS256 JWTs and remembers every one, so tests can look for leaks."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def __call__(
        self,
        *,
        lifetime: float | None = 300,
        iat: float | None = SERVER_NOW,
        exp: Any = None,
        token_type: str = "access",
        **claims: Any,
    ) -> str:
        payload: dict[str, Any] = {"token_type": token_type, **claims}
        if iat is not None:
            payload["iat"] = iat
        if exp is not None:
            payload["exp"] = exp
        elif lifetime is not None:
            payload["exp"] = (iat if iat is not None else SERVER_NOW) + lifetime
        token = jwt.encode(payload, SIGNING_KEY, algorithm="HS256")
        with self._lock:
            self.issued.append(token)
        return token

    def pair(self, access_lifetime: float = 300, refresh_lifetime: float = 86400, **claims: Any) -> dict[str, str]:
        """A TokenObtainPairView body."""
        return {
            "refresh": self(lifetime=refresh_lifetime, token_type="refresh", **claims),
            "access": self(lifetime=access_lifetime, **claims),
        }


@pytest.fixture
def make_jwt() -> JwtFactory:
    return JwtFactory()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture
def decode() -> Callable[[str], dict[str, Any]]:
    return claims_of


# -- a scripted login backend -----------------------------------------------


class FakeBackend:
    """A LoginBackend with scripted answers.

    Each script entry is a body (dict), an exception instance (raised), or a
    callable returning a body.  With an empty script it issues a fresh pair
    whose claims carry ``gen``, a generation number shared by the access and
    refresh token of one answer.
    """

    description = "fake token endpoint as 'svc-robot'"

    def __init__(
        self,
        make_jwt: JwtFactory,
        *,
        access_lifetime: float = 300,
        refresh_lifetime: float = 86400,
        rotate: bool = True,
        server_now: Callable[[], float] = lambda: SERVER_NOW,
    ) -> None:
        self.make_jwt = make_jwt
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.rotate = rotate
        self.server_now = server_now
        self.obtain_script: deque[Any] = deque()
        self.refresh_script: deque[Any] = deque()
        self.obtain_calls = 0
        self.refresh_calls: list[str] = []
        self.generation = 0
        self.closed = False
        #: Called (outside the backend's lock) at the start of every refresh.
        self.on_refresh: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def calls(self) -> int:
        return self.obtain_calls + len(self.refresh_calls)

    def issue(self, *, with_refresh: bool = True) -> dict[str, str]:
        with self._lock:
            self.generation += 1
            gen = self.generation
        now = self.server_now()
        body = {"access": self.make_jwt(iat=now, lifetime=self.access_lifetime, gen=gen)}
        if with_refresh:
            body["refresh"] = self.make_jwt(iat=now, lifetime=self.refresh_lifetime, token_type="refresh", gen=gen)
        return body

    def _answer(self, script: deque[Any], default: Callable[[], dict[str, str]]) -> dict[str, str]:
        with self._lock:
            item = script.popleft() if script else None
        if isinstance(item, BaseException):
            raise item
        if callable(item):
            item = item()
        return default() if item is None else item

    def obtain(self) -> dict[str, str]:
        with self._lock:
            self.obtain_calls += 1
        return self._answer(self.obtain_script, self.issue)

    def refresh(self, refresh_token: str) -> dict[str, str]:
        with self._lock:
            self.refresh_calls.append(refresh_token)
        if self.on_refresh is not None:
            self.on_refresh()
        return self._answer(self.refresh_script, lambda: self.issue(with_refresh=self.rotate))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def backend(make_jwt: JwtFactory) -> FakeBackend:
    return FakeBackend(make_jwt)


# -- configuration ------------------------------------------------------------


def make_app(**conf: Any) -> celery.Celery:
    app = celery.Celery("t", set_as_current=False)
    app.conf.update(conf)
    return app


@pytest.fixture
def app_factory() -> Callable[..., celery.Celery]:
    """``app_factory(**conf)``: a Celery app with exactly that configuration."""
    return make_app


@pytest.fixture
def make_config() -> Callable[..., Config]:
    """``make_config(**settings)``: a valid Config; keyword names are setting names (timeout=...)."""

    def build(**settings: Any) -> Config:
        conf = dict(BASE_CONF)
        conf.update({f"svcjwt_{k}": v for k, v in settings.items()})
        return load_config(make_app(**conf), environ={}, cli={})

    return build


@pytest.fixture
def config(make_config: Callable[..., Config]) -> Config:
    return make_config(login_attempts=3, backoff_max=60, refresh_margin=60)


@pytest.fixture
def manager(config: Config, backend: FakeBackend, clock: FakeClock, fake_sleep: FakeSleep) -> TokenManager:
    """A TokenManager over the FakeBackend; ``rand`` is 0.5 so backoffs are exact."""
    return TokenManager(config, backend, clock=clock, wall=lambda: SERVER_NOW, sleep=fake_sleep, rand=lambda: 0.5)


# -- secrets never logged -----------------------------------------------------


@pytest.fixture
def no_secrets_in_logs(caplog: pytest.LogCaptureFixture, make_jwt: JwtFactory) -> Iterator[None]:
    """Capture every log record at DEBUG; after the test, no password or token may appear in one."""
    caplog.set_level(logging.DEBUG)
    yield
    secrets = [PASSWORD, *make_jwt.issued]
    for record in caplog.records:
        texts = [record.getMessage(), caplog.handler.format(record)]
        for text in texts:
            for secret in secrets:
                assert secret not in text, f"a secret leaked into the log record {record.name}:{record.lineno}"


# -- HTTP ------------------------------------------------------------------------


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    """Every requests call in the test is answered by ``responses``; nothing reaches the network."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
