"""Property-based tests of everything that reads what a server sends, over real ``requests`` calls.

tests/unit/test_tokens.py covers the pure parsers (token bodies, JWT claims,
error bodies, Retry-After values).  Here arbitrary answers - any status, any
headers, any body, including bodies that quote the password or the refresh
token back - go through the code that receives them:

* ``HttpLogin.obtain`` / ``HttpLogin.refresh`` classify every answer into a
  body or one of the library's own exceptions, whose message holds no secret;
* ``TokenManager.get`` over such answers raises only the library's exceptions
  and logs no secret, at any level;
* ``ApiSession`` given any first answer from the API returns a response (after
  at most one renewal and one replay) or raises only the library's exceptions.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import celery
import jwt
import pytest
import requests
import responses
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celery_svcjwt.endpoints import HttpLogin, RefreshRejected
from celery_svcjwt.errors import AuthUnavailable, ConfigurationError, MalformedResponse, SvcJWTError
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.session import ApiSession
from celery_svcjwt.settings import load_config

from .conftest import API_URL, PASSWORD, SERVER_NOW, SIGNING_KEY, USERNAME

TOKEN_URL = API_URL + "api/token/"
REFRESH_URL = API_URL + "api/token/refresh/"
ITEM_URL = API_URL + "items/1/"
#: The refresh token the client sends; a hostile server may quote it back.
SENT_REFRESH = jwt.encode(
    {"token_type": "refresh", "iat": SERVER_NOW, "exp": SERVER_NOW + 86400, "jti": "r" * 32}, SIGNING_KEY
)
SECRETS = (PASSWORD, SENT_REFRESH)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_config(**extra: Any):
    app = celery.Celery("props", set_as_current=False)
    app.conf.update(
        svcjwt_api_url=API_URL,
        svcjwt_username=USERNAME,
        svcjwt_password=PASSWORD,
        svcjwt_login_attempts=2,
        **{f"svcjwt_{k}": v for k, v in extra.items()},
    )
    return load_config(app, environ={}, cli={})


def token(lifetime: float = 300, **claims: Any) -> str:
    return jwt.encode({"token_type": "access", "iat": SERVER_NOW, "exp": SERVER_NOW + lifetime, **claims}, SIGNING_KEY)


# -- what a server may answer ------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
#: Strings a server might echo: the secrets themselves, pieces of them, or anything.
echoes = st.sampled_from([PASSWORD, SENT_REFRESH, f"'{PASSWORD}' is wrong", f"token {SENT_REFRESH} is blacklisted"])
drf_errors = st.fixed_dictionaries(
    {},
    optional={
        "detail": echoes | st.text(max_size=300),
        "code": echoes | st.sampled_from(["token_not_valid", "user_inactive", "authentication_failed"]),
        "password": st.lists(echoes | st.text(max_size=20), max_size=2),
        "username": st.lists(echoes | st.text(max_size=20), max_size=2),
        "non_field_errors": st.lists(echoes, max_size=2),
        "messages": st.lists(json_values, max_size=2),
    },
)
token_like = st.one_of(
    st.builds(token, lifetime=st.floats(-10, 1e6, allow_nan=False)),
    st.just(SENT_REFRESH),
    st.text(max_size=40),
    json_values,
)
token_answers = st.fixed_dictionaries({}, optional={"access": token_like, "refresh": token_like})
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    drf_errors.map(lambda v: json.dumps(v).encode()),
    token_answers.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", b"[" * 3000, b""]),
)
# Header values as a server may send them (latin-1, no line breaks: what HTTP can carry).
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40)
retry_after = st.one_of(
    header_text,
    st.integers(0, 10**12).map(str),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": retry_after,
        "WWW-Authenticate": st.sampled_from(['Bearer realm="api"', "JWT", "Basic", ""]) | header_text,
        "Content-Type": st.sampled_from(["application/json", "text/html", "text/plain"]) | header_text,
        "Location": st.sampled_from(["https://elsewhere.example/", "/api/token", PASSWORD]) | header_text,
    },
)
statuses = st.one_of(
    st.sampled_from([200, 301, 302, 307, 308, 400, 401, 403, 404, 405, 429, 500, 502, 503]), st.integers(200, 599)
)


def assert_secret_free(text: str, where: str, secrets: tuple[str, ...] = SECRETS) -> None:
    for secret in secrets:
        assert secret not in text, f"a secret appears in {where}: {text[:300]!r}"
    # Not even a long piece of the refresh token (a server may quote it cut short).
    assert SENT_REFRESH[:60] not in text, f"a piece of the refresh token appears in {where}"


@contextmanager
def answering(url: str, status: int, hdrs: Mapping[str, str], body: bytes) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(url, status=status, headers=dict(hdrs), body=body)
        yield mock


# -- HttpLogin: one answer, classified --------------------------------------------------------------


@PROPERTY
@given(status=statuses, hdrs=headers, body=bodies)
@example(status=401, hdrs={}, body=json.dumps({"detail": SENT_REFRESH, "code": "token_not_valid"}).encode())
@example(status=302, hdrs={"Location": f"https://elsewhere.example/?t={SENT_REFRESH}"}, body=b"")
@example(status=301, hdrs={"Location": "/caf\xe9/"}, body=b"")  # not UTF-8: requests raises UnicodeDecodeError
def test_refresh_answers_are_classified_without_leaking(status, hdrs, body):
    login = HttpLogin(make_config())
    with answering(REFRESH_URL, status, hdrs, body):
        try:
            out = login.refresh(SENT_REFRESH)
        except SvcJWTError as exc:
            # The refresh endpoint was sent the refresh token, never the password: only the token can come back.
            assert_secret_free(str(exc), f"{type(exc).__name__} after HTTP {status}", (SENT_REFRESH,))
            assert_secret_free(repr(exc), "the exception's repr", (SENT_REFRESH,))
            if isinstance(exc, AuthUnavailable):
                assert 0.0 <= exc.retry_after <= 3600.0
            if status in (400, 401, 403):
                assert isinstance(exc, RefreshRejected)
        else:
            assert status == 200 and isinstance(out, Mapping)


@PROPERTY
@given(status=statuses, hdrs=headers, body=bodies)
@example(status=302, hdrs={"Location": f"https://elsewhere.example/?p={PASSWORD}"}, body=b"")
@example(status=400, hdrs={}, body=json.dumps({PASSWORD: ["x"], "detail": PASSWORD[:-1]}).encode())
def test_login_answers_are_classified_without_leaking(status, hdrs, body):
    login = HttpLogin(make_config())
    with answering(TOKEN_URL, status, hdrs, body):
        try:
            out = login.obtain()
        except SvcJWTError as exc:
            assert_secret_free(str(exc), f"{type(exc).__name__} after HTTP {status}")
            if isinstance(exc, AuthUnavailable):
                assert 0.0 <= exc.retry_after <= 3600.0
            if status in (400, 401, 403):
                assert USERNAME in str(exc) and TOKEN_URL in str(exc)  # names the account and the URL
        else:
            assert status == 200 and isinstance(out, Mapping)


# -- TokenManager: arbitrary answers never crash it, never leak -------------------------------------------


class NoSleep:
    def __init__(self) -> None:
        self.now = 1000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@PROPERTY
@given(
    login=st.tuples(statuses, headers, bodies),
    refresh=st.tuples(statuses, headers, bodies),
    later=st.floats(0, 1e6, allow_nan=False),
)
def test_manager_over_arbitrary_answers_raises_only_its_own_errors(login, refresh, later):
    time = NoSleep()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    logger = logging.getLogger("celery_svcjwt")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    manager = TokenManager(
        make_config(), HttpLogin(make_config()), clock=time.clock, wall=lambda: SERVER_NOW, sleep=time.sleep
    )
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            mock.post(TOKEN_URL, status=login[0], headers=dict(login[1]), body=login[2])
            mock.post(REFRESH_URL, status=refresh[0], headers=dict(refresh[1]), body=refresh[2])
            for step in (0.0, later):
                time.now += step
                try:
                    tokens = manager.get()
                except SvcJWTError as exc:
                    assert_secret_free(str(exc), type(exc).__name__)
                else:
                    assert tokens.access_expires_at > time.now
                assert_secret_free(repr(manager), "the manager's repr")
                assert_secret_free(json.dumps(manager.status()), "the manager's status")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    for record in records:
        assert_secret_free(record.getMessage(), f"the log record {record.name}:{record.lineno}")
        assert record.exc_info is None or assert_secret_free(
            logging.Formatter().formatException(record.exc_info), "a logged traceback"
        )


# -- ApiSession: any first answer from the API ----------------------------------------------------------------


@PROPERTY
@given(status=statuses, hdrs=headers, body=bodies, second=st.sampled_from([200, 401, 500]))
def test_api_session_returns_a_response_or_a_library_error(status, hdrs, body, second):
    config = make_config()
    manager = TokenManager(config, HttpLogin(config), sleep=lambda s: None)
    session = ApiSession(config, manager)
    hdrs = {k: v for k, v in hdrs.items() if k != "Location"}  # redirects are tested in test_session.py
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        pair = {"access": token(), "refresh": SENT_REFRESH}
        mock.post(TOKEN_URL, json=pair)
        mock.post(REFRESH_URL, json={"access": token(jti="second")})
        mock.get(ITEM_URL, status=status, headers=hdrs, body=body)
        mock.get(ITEM_URL, status=second, json={})
        try:
            response = session.get("items/1/")
        except SvcJWTError as exc:
            assert_secret_free(str(exc), type(exc).__name__)
            return
        except requests.RequestException as exc:  # a body requests itself cannot read
            assert_secret_free(str(exc), type(exc).__name__)
            return
        api_calls = [c for c in mock.calls if c.request.url == ITEM_URL]
        token_calls = [c for c in mock.calls if c.request.url in (TOKEN_URL, REFRESH_URL)]
        assert len(api_calls) <= 2  # one replay at most
        assert len(token_calls) <= 2  # one login, at most one renewal
        if len(api_calls) == 2:
            assert status == 401 and response.history and response.history[0].status_code == 401
        else:
            assert response.status_code == status
        for call in api_calls:
            assert call.request.headers["Authorization"].startswith("Bearer ")


@pytest.mark.parametrize("field", ["detail", "code"])
def test_a_refresh_endpoint_quoting_the_refresh_token_does_not_put_it_in_the_error(field):
    """A server (or a proxy before it) that echoes the refresh token in its 401 must not leak it."""
    login = HttpLogin(make_config())
    body = json.dumps({field: f"token {SENT_REFRESH} is blacklisted"}).encode()
    with answering(REFRESH_URL, 401, {}, body):
        with pytest.raises(RefreshRejected) as info:
            login.refresh(SENT_REFRESH)
    assert_secret_free(str(info.value), "RefreshRejected")


@pytest.mark.parametrize("url", [TOKEN_URL, REFRESH_URL])
def test_a_redirect_quoting_a_secret_in_its_location_does_not_put_it_in_the_error(url):
    """Each endpoint can only echo what it was sent: the password to the token URL, the refresh token to the other."""
    login = HttpLogin(make_config())
    sent = PASSWORD if url == TOKEN_URL else SENT_REFRESH
    with answering(url, 302, {"Location": f"https://elsewhere.example/?p={sent}"}, b""):
        with pytest.raises(ConfigurationError) as info:
            login.obtain() if url == TOKEN_URL else login.refresh(SENT_REFRESH)
    assert "https://elsewhere.example/" in str(info.value)  # still says where it was sent
    assert_secret_free(str(info.value), "ConfigurationError", (sent,))


@pytest.mark.parametrize("url", [TOKEN_URL, REFRESH_URL])
def test_a_redirect_to_a_location_that_is_not_utf8_is_a_malformed_response(url):
    """requests raises UnicodeDecodeError on such a Location (psf/requests#4926), even with allow_redirects=False."""
    login = HttpLogin(make_config())
    with answering(url, 301, {"Location": "/caf\xe9/"}, b""):
        with pytest.raises(MalformedResponse, match="cannot be decoded"):
            login.obtain() if url == TOKEN_URL else login.refresh(SENT_REFRESH)
