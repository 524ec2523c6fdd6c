"""HttpLogin: one call to SimpleJWT's token views, classified into what to do next."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
import requests

from celery_svcjwt.endpoints import HttpLogin, RefreshCrashed, RefreshRejected
from celery_svcjwt.errors import AuthUnavailable, ConfigurationError, CredentialsRejected, MalformedResponse

from .conftest import PASSWORD, USERNAME

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")

TOKEN_URL = "https://api.example.com/v1/api/token/"
REFRESH_URL = "https://api.example.com/v1/api/token/refresh/"


@pytest.fixture
def login(config):
    return HttpLogin(config)


def sent_json(call):
    return json.loads(call.request.body)


# -- obtain ------------------------------------------------------------------------------


def test_obtain_returns_the_body(rsps, login, make_jwt):
    pair = make_jwt.pair()
    rsps.post(TOKEN_URL, json=pair)
    assert login.obtain() == pair
    assert len(rsps.calls) == 1
    call = rsps.calls[0]
    assert sent_json(call) == {"username": USERNAME, "password": PASSWORD}
    assert call.request.headers["Content-Type"] == "application/json"
    assert call.request.headers["User-Agent"].startswith("celery-svcjwt/")
    assert call.request.req_kwargs["timeout"] == 10.0


def test_obtain_sends_the_configured_username_field_timeout_and_verify(rsps, make_config, make_jwt):
    login = HttpLogin(make_config(username_field="email", timeout=2.5, verify=False))
    rsps.post(TOKEN_URL, json=make_jwt.pair())
    login.obtain()
    call = rsps.calls[0]
    assert sent_json(call) == {"email": USERNAME, "password": PASSWORD}
    assert call.request.req_kwargs["timeout"] == 2.5
    assert call.request.req_kwargs["verify"] is False


def test_configured_verify_wins_over_requests_ca_bundle(rsps, make_config, make_jwt, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    rsps.post(TOKEN_URL, json=make_jwt.pair())
    HttpLogin(make_config(verify=False)).obtain()
    assert rsps.calls[0].request.req_kwargs["verify"] is False


def test_obtain_uses_the_given_session(rsps, config, make_jwt):
    session = requests.Session()
    rsps.post(TOKEN_URL, json=make_jwt.pair())
    HttpLogin(config, session=session).obtain()
    assert session.headers["User-Agent"].startswith("celery-svcjwt/")


@pytest.mark.parametrize("status", [401, 403])
def test_wrong_password_is_credentials_rejected(rsps, login, status):
    rsps.post(
        TOKEN_URL,
        status=status,
        json={"detail": "No active account found with the given credentials"},
        headers={"WWW-Authenticate": 'Bearer realm="api"'},
    )
    with pytest.raises(CredentialsRejected) as info:
        login.obtain()
    message = str(info.value)
    assert TOKEN_URL in message
    assert repr(USERNAME) in message
    assert "No active account found with the given credentials" in message
    assert "check svcjwt_username and the password" in message
    assert PASSWORD not in message


def test_rejection_without_a_body_names_the_status(rsps, login):
    rsps.post(TOKEN_URL, status=401, body=b"")
    with pytest.raises(CredentialsRejected, match="HTTP 401"):
        login.obtain()


def test_missing_field_hints_at_the_username_field(rsps, login):
    rsps.post(TOKEN_URL, status=400, json={"email": ["This field is required."]})
    with pytest.raises(CredentialsRejected) as info:
        login.obtain()
    message = str(info.value)
    assert "svcjwt_username_field" in message
    assert "(sent 'username')" in message
    assert "email: This field is required." in message
    assert PASSWORD not in message


def test_missing_password_field_hints_at_the_password(rsps, login):
    rsps.post(TOKEN_URL, status=400, json={"password": ["This field is required."]})
    with pytest.raises(CredentialsRejected) as info:
        login.obtain()
    assert "svcjwt_username_field" not in str(info.value)
    assert "SVC_ACCT_PASS" in str(info.value)


def test_a_server_echoing_the_password_does_not_put_it_in_the_error(rsps, login):
    """errors.py promises no message ever contains a password, even if the server quotes it back."""
    rsps.post(TOKEN_URL, status=400, json={"password": [f"'{PASSWORD}' is too short."], "detail": PASSWORD})
    with pytest.raises(CredentialsRejected) as info:
        login.obtain()
    assert PASSWORD not in str(info.value)


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_transient_statuses_are_auth_unavailable_with_retry_after(rsps, login, status):
    rsps.post(TOKEN_URL, status=status, body="busy", headers={"Retry-After": "7"})
    with pytest.raises(AuthUnavailable) as info:
        login.obtain()
    assert type(info.value) is AuthUnavailable
    assert info.value.retry_after == 7.0
    assert f"HTTP {status}" in str(info.value)
    assert "Retry-After 7s" in str(info.value)


def test_retry_after_as_an_http_date(rsps, login):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    rsps.post(TOKEN_URL, status=503, headers={"Retry-After": when})
    with pytest.raises(AuthUnavailable) as info:
        login.obtain()
    assert 100 <= info.value.retry_after <= 120


def test_retry_after_is_capped_at_an_hour(rsps, login):
    rsps.post(TOKEN_URL, status=429, headers={"Retry-After": "86400"})
    with pytest.raises(AuthUnavailable) as info:
        login.obtain()
    assert info.value.retry_after == 3600.0


def test_transient_status_without_retry_after(rsps, login):
    rsps.post(TOKEN_URL, status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(AuthUnavailable) as info:
        login.obtain()
    assert info.value.retry_after == 0.0


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (requests.ConnectionError("refused"), "cannot reach the token endpoint"),
        (requests.ConnectTimeout("slow"), "timed out (ConnectTimeout)"),
        (requests.ReadTimeout("slow"), "timed out (ReadTimeout)"),
        (requests.exceptions.SSLError("bad cert"), "TLS failed"),
    ],
)
def test_network_failures_are_auth_unavailable(rsps, login, error, said):
    rsps.post(TOKEN_URL, body=error)
    with pytest.raises(AuthUnavailable) as info:
        login.obtain()
    assert said in str(info.value)
    assert TOKEN_URL in str(info.value)
    # raised "from None": the original exception, which holds the request and its body, is not chained
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__


def test_tls_failure_hints_at_verify(rsps, login):
    rsps.post(TOKEN_URL, body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(AuthUnavailable, match="svcjwt_verify"):
        login.obtain()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_a_configuration_error_and_is_not_followed(rsps, login, status):
    target = "https://api.example.com/v1/api/token"
    rsps.post(TOKEN_URL, status=status, headers={"Location": target})
    rsps.post(target, status=200, json={})
    with pytest.raises(ConfigurationError) as info:
        login.obtain()
    assert len(rsps.calls) == 1  # the password was sent once, to the configured URL only
    message = str(info.value)
    assert "svcjwt_token_url" in message
    assert repr(target) in message
    assert f"HTTP {status}" in message


@pytest.mark.parametrize("status", [404, 405])
def test_not_found_names_the_token_url_setting(rsps, login, status):
    rsps.post(TOKEN_URL, status=status, json={"detail": "Not found."})
    with pytest.raises(ConfigurationError) as info:
        login.obtain()
    assert "set svcjwt_token_url to SimpleJWT's TokenObtainPairView URL" in str(info.value)


def test_unexpected_client_status_is_a_configuration_error(rsps, login):
    rsps.post(TOKEN_URL, status=418)
    with pytest.raises(ConfigurationError, match="HTTP 418, which SimpleJWT never sends there"):
        login.obtain()


def test_unexpected_server_status_is_auth_unavailable(rsps, login):
    rsps.post(TOKEN_URL, status=501)
    with pytest.raises(AuthUnavailable, match="HTTP 501"):
        login.obtain()


def test_html_with_200_is_malformed(rsps, login):
    rsps.post(TOKEN_URL, status=200, body="<!DOCTYPE html><html><body>Sign in to the proxy</body></html>")
    with pytest.raises(MalformedResponse, match="an HTML page"):
        login.obtain()


def test_json_that_is_not_an_object_is_malformed(rsps, login):
    rsps.post(TOKEN_URL, status=200, json=["access", "refresh"])
    with pytest.raises(MalformedResponse, match="not an object"):
        login.obtain()


# -- refresh ------------------------------------------------------------------------------


def test_refresh_sends_the_refresh_token(rsps, login, make_jwt):
    refresh = make_jwt(token_type="refresh", lifetime=86400)
    body = {"access": make_jwt()}
    rsps.post(REFRESH_URL, json=body)
    assert login.refresh(refresh) == body
    assert sent_json(rsps.calls[0]) == {"refresh": refresh}
    assert rsps.calls[0].request.req_kwargs["timeout"] == 10.0


@pytest.mark.parametrize("status", [400, 401, 403])
def test_rejected_refresh_token_is_refresh_rejected(rsps, login, make_jwt, status):
    refresh = make_jwt(token_type="refresh", lifetime=86400)
    rsps.post(REFRESH_URL, status=status, json={"detail": "Token is invalid", "code": "token_not_valid"})
    with pytest.raises(RefreshRejected) as info:
        login.refresh(refresh)
    assert "token_not_valid" in str(info.value)
    assert REFRESH_URL in str(info.value)
    assert refresh not in str(info.value)


def test_refresh_endpoint_outage(rsps, login, make_jwt):
    rsps.post(REFRESH_URL, status=503, headers={"Retry-After": "3"})
    with pytest.raises(AuthUnavailable) as info:
        login.refresh(make_jwt(token_type="refresh"))
    assert info.value.retry_after == 3.0
    assert type(info.value) is AuthUnavailable  # overloaded: refresh again later, no password hash


def test_refresh_endpoint_500_is_refresh_crashed(rsps, login, make_jwt):
    # SimpleJWT 5.5.1 answers an HTML 500 when the refresh token's user was deleted.
    refresh = make_jwt(token_type="refresh")
    rsps.post(REFRESH_URL, status=500, body="<h1>Server Error (500)</h1>", content_type="text/html")
    with pytest.raises(RefreshCrashed) as info:
        login.refresh(refresh)
    assert isinstance(info.value, AuthUnavailable)  # still retryable for the task
    assert f"the refresh endpoint {REFRESH_URL} answered HTTP 500" in str(info.value)
    assert refresh not in str(info.value)


def test_refresh_not_found_names_the_refresh_url_setting(rsps, login, make_jwt):
    rsps.post(REFRESH_URL, status=404)
    with pytest.raises(ConfigurationError, match="set svcjwt_refresh_url to SimpleJWT's TokenRefreshView URL"):
        login.refresh(make_jwt(token_type="refresh"))


def test_refresh_redirect_is_not_followed(rsps, login, make_jwt):
    rsps.post(REFRESH_URL, status=302, headers={"Location": "https://elsewhere.example.com/"})
    with pytest.raises(ConfigurationError, match="svcjwt_refresh_url"):
        login.refresh(make_jwt(token_type="refresh"))
    assert len(rsps.calls) == 1


# -- the rest ------------------------------------------------------------------------------


def test_repr_and_description_name_the_account_not_the_password(login):
    assert login.description == f"{TOKEN_URL} as {USERNAME!r}"
    assert PASSWORD not in repr(login)


def test_close_closes_the_session(config):
    closed = []
    session = requests.Session()
    session.close = lambda: closed.append(True)
    HttpLogin(config, session=session).close()
    assert closed == [True]


def test_nothing_unmocked_is_called(rsps, login):
    """With no registered answer ``responses`` refuses the call: no test here reaches a network."""
    with pytest.raises(AuthUnavailable, match="ConnectionError"):
        login.obtain()
    assert len(rsps.calls) == 1
