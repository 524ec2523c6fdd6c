"""ApiSession (``self.api``): base URL, one origin only, the token, one retry after a 401."""

from __future__ import annotations

import io
import logging
import pickle

import pytest
import requests
import responses

from celery_svcjwt.errors import AuthUnavailable, ForeignOriginError
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.session import ApiSession

from .conftest import PASSWORD, SERVER_NOW, USERNAME, claims_of

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")

ITEM = "https://api.example.com/v1/items/1/"
EXPIRED = {"detail": "Given token not valid for any token type", "code": "token_not_valid"}
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="api"'}


@pytest.fixture
def api(config, manager):
    return ApiSession(config, manager)


def auth_of(call):
    return call.request.headers.get("Authorization")


def gen_of(call):
    return claims_of(auth_of(call).split(" ", 1)[1])["gen"]


# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "items/1/",
        "/items/1/",
        ITEM,
        "https://API.example.com/v1/items/1/",
        b"items/1/",
    ],
)
def test_urls_resolve_under_the_api_url(rsps, api, url):
    rsps.get(ITEM, json={"id": 1})
    assert api.get(url).json() == {"id": 1}
    assert rsps.calls[0].request.url.lower() == ITEM


def test_query_parameters_are_kept(rsps, api):
    rsps.get("https://api.example.com/v1/items/", json=[])
    api.get("items/", params={"page": 2})
    assert rsps.calls[0].request.url == "https://api.example.com/v1/items/?page=2"


@pytest.mark.parametrize(
    "url",
    [
        "https://other.example.com/v1/items/1/",  # another host
        "https://api.example.com:8443/v1/items/1/",  # another port
        "http://api.example.com/v1/items/1/",  # another scheme
        "https://api.example.com.evil.test/v1/",  # a lookalike host
    ],
)
def test_another_origin_is_refused_before_anything_is_sent(rsps, api, backend, url):
    rsps.get(url, json={})
    with pytest.raises(ForeignOriginError) as info:
        api.get(url)
    assert "svcjwt_api_url" in str(info.value)
    assert len(rsps.calls) == 0
    assert backend.obtain_calls == 0  # no login either


def test_scheme_relative_url_is_refused(rsps, api, backend):
    with pytest.raises(ValueError, match="scheme-relative"):
        api.get("//other.example.com/x")
    assert len(rsps.calls) == 0
    assert backend.obtain_calls == 0


def test_foreign_origin_error_is_a_value_error():
    assert issubclass(ForeignOriginError, ValueError)


# -- the token and the defaults --------------------------------------------------------------


def test_authorization_header_carries_the_access_token(rsps, api, manager):
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert auth_of(rsps.calls[0]) == f"Bearer {manager.tokens.access}"


def test_authorization_header_uses_the_configured_type(rsps, make_config, manager):
    api = ApiSession(make_config(auth_header_type="JWT"), manager)
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert auth_of(rsps.calls[0]) == f"JWT {manager.tokens.access}"


def test_one_login_for_many_requests(rsps, api, backend):
    rsps.get(ITEM, json={})
    for _ in range(5):
        api.get("items/1/")
    assert backend.obtain_calls == 1
    assert len({auth_of(c) for c in rsps.calls}) == 1


def test_default_timeout_is_applied(rsps, api):
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert rsps.calls[0].request.req_kwargs["timeout"] == 10.0


def test_explicit_timeout_wins(rsps, api):
    rsps.get(ITEM, json={})
    api.get("items/1/", timeout=(1, 2))
    assert rsps.calls[0].request.req_kwargs["timeout"] == (1, 2)


def test_configured_timeout_and_headers(rsps, make_config, manager, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    api = ApiSession(make_config(timeout=2.5, verify=False), manager)
    rsps.post(ITEM, json={})
    api.post("items/1/", json={"a": 1})
    call = rsps.calls[0]
    assert call.request.req_kwargs["timeout"] == 2.5
    assert call.request.req_kwargs["verify"] is False
    assert call.request.headers["User-Agent"].startswith("celery-svcjwt/")


@pytest.mark.parametrize("verify", [False, "bundle"])
def test_configured_verify_wins_over_requests_ca_bundle(rsps, make_config, manager, monkeypatch, tmp_path, verify):
    """svcjwt_verify must not be overridden by REQUESTS_CA_BUNDLE (requests applies the environment
    over Session.verify, psf/requests#3829; HttpLogin passes verify per request and is not affected)."""
    if verify == "bundle":
        verify = str(tmp_path / "internal-ca.pem")
        (tmp_path / "internal-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    api = ApiSession(make_config(verify=verify), manager)
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert rsps.calls[0].request.req_kwargs["verify"] == verify


ENV_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTPS_PROXY": "http://proxy.internal:3128"},
        {"HTTPS_PROXY": "http://proxy.internal:3128", "NO_PROXY": "api.example.com"},
        {"https_proxy": "http://proxy.internal:3128", "no_proxy": ".example.com"},
        {"REQUESTS_CA_BUNDLE": "/etc/ssl/internal-ca.pem"},
        {"CURL_CA_BUNDLE": "/etc/ssl/curl-ca.pem"},
    ],
)
@pytest.mark.parametrize("url", [ITEM, "https://elsewhere.example.org/x"])
def test_the_environment_is_applied_as_requests_applies_it(clean_env, config, manager, env, url):
    """The session reads proxies and CA bundle once; what it merges must equal requests' own
    per-request reading, for the API's origin and for any other URL (a redirect's target)."""
    for name, value in env.items():
        clean_env.setenv(name, value)
    api = ApiSession(config, manager)
    assert api.merge_environment_settings(url, {}, None, True, None) == requests.Session().merge_environment_settings(
        url, {}, None, True, None
    )


def test_the_proxy_reaches_the_request(rsps, clean_env, config, manager):
    clean_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    api = ApiSession(config, manager)
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert rsps.calls[0].request.req_kwargs["proxies"] == {"https": "http://proxy.internal:3128"}


def test_the_ca_bundle_from_the_environment_applies_when_verify_is_on(rsps, clean_env, config, manager):
    clean_env.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/internal-ca.pem")
    api = ApiSession(config, manager)
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert config.verify is True
    assert rsps.calls[0].request.req_kwargs["verify"] == "/etc/ssl/internal-ca.pem"


def test_trust_env_off_ignores_the_environment(rsps, clean_env, config, manager):
    clean_env.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    api = ApiSession(config, manager)
    api.trust_env = False
    rsps.get(ITEM, json={})
    api.get("items/1/")
    assert rsps.calls[0].request.req_kwargs["proxies"] == {}


def test_auth_failure_surfaces_before_the_request(rsps, api, backend):
    backend.obtain_script.extend([AuthUnavailable("HTTP 503")] * 3)
    rsps.get(ITEM, json={})
    with pytest.raises(AuthUnavailable):
        api.get("items/1/")
    assert len(rsps.calls) == 0


# -- 401 ---------------------------------------------------------------------------------------


def test_401_renews_the_token_once_and_retries(rsps, api, backend, manager):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    response = api.get("items/1/")
    assert response.status_code == 200
    assert response.json() == {"id": 1}
    assert len(rsps.calls) == 2
    assert [gen_of(c) for c in rsps.calls] == [1, 2]
    assert len(backend.refresh_calls) == 1
    assert manager.stats.retries_401 == 1
    assert [r.status_code for r in response.history] == [401]
    assert rsps.calls[1].request.req_kwargs["timeout"] == 10.0


def test_401_password_changed_logs_in_again_instead_of_refreshing(rsps, api, backend, manager):
    # SimpleJWT's CHECK_REVOKE_TOKEN: a refresh would mint another token with the old password hash.
    changed = {"detail": "The user's password has been changed.", "code": "password_changed"}
    rsps.get(ITEM, status=401, json=changed, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    assert api.get("items/1/").status_code == 200
    assert len(backend.refresh_calls) == 0
    assert manager.stats.logins == 2


@pytest.mark.parametrize("code", ["user_not_found", "user_inactive"])
def test_401_for_a_deleted_or_inactive_account_logs_in_again(rsps, api, backend, manager, code):
    # A refresh cannot cure these (SimpleJWT 5.5.1 even answers 500 for a deleted user);
    # a login either works or raises CredentialsRejected naming the account.
    rsps.get(ITEM, status=401, json={"detail": "User not found", "code": code}, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    assert api.get("items/1/").status_code == 200
    assert len(backend.refresh_calls) == 0
    assert manager.stats.logins == 2


def test_second_401_is_returned_as_is(rsps, api, backend):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, json={"never": "reached"})
    response = api.get("items/1/")
    assert response.status_code == 401
    assert len(rsps.calls) == 2
    assert len(backend.refresh_calls) == 1


def test_401_on_a_json_post_replays_the_same_body(rsps, api):
    rsps.post(ITEM, status=401, json=EXPIRED)
    rsps.post(ITEM, json={})
    assert api.post("items/1/", json={"name": "x"}).status_code == 200
    assert [c.request.body for c in rsps.calls] == [b'{"name": "x"}', b'{"name": "x"}']


def test_401_with_a_generator_body_is_returned_as_is(rsps, api, backend):
    rsps.post(ITEM, status=401, json=EXPIRED)
    rsps.post(ITEM, json={})
    response = api.post("items/1/", data=(chunk for chunk in [b"a", b"b"]))
    assert response.status_code == 401
    assert len(rsps.calls) == 1
    assert backend.refresh_calls == []


@pytest.mark.parametrize("skip", [0, 2])
def test_401_with_a_file_body_replays_it_from_where_it_started(rsps, api, skip, monkeypatch):
    # responses reads a file body into bytes before the hook sees it; keep the file, as a real
    # adapter does, so that the callback consumes it and the retry must seek back.
    monkeypatch.setattr(responses.RequestsMock, "_read_filelike_body", lambda self, body: body)
    received = []

    def answer(request):
        received.append(request.body.read())
        return (401, {}, "{}") if len(received) == 1 else (200, {}, "{}")

    rsps.add_callback("PUT", ITEM, callback=answer)
    body = io.BytesIO(b"XXpayload"[2 - skip :])
    body.read(skip)
    assert api.put("items/1/", data=body).status_code == 200
    assert received == [b"payload", b"payload"]


def test_401_naming_another_scheme_is_not_retried_and_logged_once(rsps, api, backend, caplog):
    rsps.get(ITEM, status=401, json={"detail": "Authentication credentials were not provided."},
             headers={"WWW-Authenticate": 'JWT realm="api"'})  # fmt: skip
    rsps.get(ITEM, status=401, headers={"WWW-Authenticate": 'JWT realm="api"'})
    assert api.get("items/1/").status_code == 401
    assert len(rsps.calls) == 1
    assert backend.refresh_calls == []
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert "svcjwt_auth_header_type" in message
    assert "'JWT'" in message and "'Bearer'" in message
    api.get("items/1/")
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_401_challenge_scheme_is_compared_without_case(rsps, api):
    rsps.get(ITEM, status=401, headers={"WWW-Authenticate": 'bearer realm="api"'})
    rsps.get(ITEM, json={})
    assert api.get("items/1/").status_code == 200
    assert len(rsps.calls) == 2


def test_401_without_a_challenge_is_retried(rsps, api):
    rsps.get(ITEM, status=401, json=EXPIRED)
    rsps.get(ITEM, json={})
    assert api.get("items/1/").status_code == 200


def test_other_statuses_are_not_retried(rsps, api, backend):
    rsps.get(ITEM, status=403, json={"detail": "You do not have permission."})
    assert api.get("items/1/").status_code == 403
    assert len(rsps.calls) == 1
    assert backend.refresh_calls == []


def test_renewal_failure_after_a_401_is_raised(rsps, api, backend):
    rsps.get(ITEM, status=401, json=EXPIRED)
    backend.refresh_script.extend([AuthUnavailable("HTTP 503")] * 3)
    with pytest.raises(AuthUnavailable):
        api.get("items/1/")
    assert len(rsps.calls) == 1


# -- redirects ------------------------------------------------------------------------------


def test_redirect_to_another_origin_drops_the_token(rsps, api):
    rsps.get(ITEM, status=302, headers={"Location": "https://files.example.net/blob/1"})
    rsps.get("https://files.example.net/blob/1", body=b"data")
    response = api.get("items/1/")
    assert response.content == b"data"
    assert len(rsps.calls) == 2
    assert auth_of(rsps.calls[0]).startswith("Bearer ")
    assert auth_of(rsps.calls[1]) is None


def test_401_after_a_redirect_elsewhere_is_not_retried(rsps, api, backend):
    rsps.get(ITEM, status=302, headers={"Location": "https://files.example.net/blob/1"})
    rsps.get("https://files.example.net/blob/1", status=401)
    assert api.get("items/1/").status_code == 401
    assert len(rsps.calls) == 2
    assert backend.refresh_calls == []


def test_redirect_within_the_origin_keeps_the_token(rsps, api):
    rsps.get(ITEM, status=301, headers={"Location": "/v1/items/one/"})
    rsps.get("https://api.example.com/v1/items/one/", json={})
    api.get("items/1/")
    assert auth_of(rsps.calls[1]) == auth_of(rsps.calls[0])
    assert auth_of(rsps.calls[1]) is not None


def test_redirect_from_http_to_https_on_the_same_host_drops_the_token(rsps, make_config, manager):
    """requests keeps the header for http:80 -> https:443; a change of origin must not."""
    api = ApiSession(make_config(api_url="http://localhost/v1/"), manager)
    rsps.get("http://localhost/v1/x/", status=302, headers={"Location": "https://localhost/v1/x/"})
    rsps.get("https://localhost/v1/x/", json={})
    api.get("x/")
    assert auth_of(rsps.calls[0]) is not None
    assert auth_of(rsps.calls[1]) is None


# -- the rest --------------------------------------------------------------------------------


def test_repr_holds_no_token(rsps, api, manager):
    rsps.get(ITEM, json={})
    api.get("items/1/")
    text = repr(api) + repr(api.auth)
    assert manager.tokens.access not in text
    assert PASSWORD not in text
    assert repr(api) == f"<ApiSession https://api.example.com/v1/ as {USERNAME!r}>"


def test_session_is_bound_to_the_config(api, config):
    assert (api.base_url, api.origin, api.timeout, api.verify) == (
        "https://api.example.com/v1/",
        "https://api.example.com:443",
        10.0,
        True,
    )


def test_a_manager_of_its_own(rsps, config, backend, clock):
    """Two sessions over one manager share one login."""
    manager = TokenManager(config, backend, clock=clock, wall=lambda: SERVER_NOW)
    rsps.get(ITEM, json={})
    ApiSession(config, manager).get("items/1/")
    ApiSession(config, manager).get("items/1/")
    assert backend.obtain_calls == 1


def test_401_then_a_redirect_within_the_origin_carries_the_new_token(rsps, api):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, status=302, headers={"Location": "/v1/items/one/"})
    rsps.get("https://api.example.com/v1/items/one/", json={"id": 1})
    response = api.get("items/1/")
    assert response.status_code == 200
    assert [gen_of(c) for c in rsps.calls] == [1, 2, 2]  # the hop after the renewal: the new token


# -- what a finished request leaves behind ------------------------------------------------------


def secrets_of(manager):
    return [manager.tokens.access.encode(), manager.tokens.refresh.encode()]


def test_a_response_and_its_history_hold_no_token(rsps, api, manager):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, status=302, headers={"Location": "/v1/items/one/"})
    rsps.get("https://api.example.com/v1/items/one/", status=500)
    response = api.get("items/1/")
    with pytest.raises(requests.HTTPError) as info:
        response.raise_for_status()

    kept = [response.request, *(hop.request for hop in response.history)]
    assert [r.url for r in kept] == ["https://api.example.com/v1/items/one/", ITEM]
    assert [r.headers["Authorization"] for r in kept] == ["Bearer [token removed]"] * 2
    # Pickled (a result backend with the pickle serializer): it pickles now, and holds no token.
    blob = pickle.dumps(info.value)
    for secret in secrets_of(manager):
        assert secret not in blob
    assert pickle.loads(blob).response.status_code == 500
    # What was sent is untouched: the mock recorded the real headers.
    assert all(auth_of(c).startswith("Bearer eyJ") for c in rsps.calls)


def test_a_retried_response_keeps_the_401_without_its_token(rsps, api, manager):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    response = api.get("items/1/")
    assert [r.status_code for r in response.history] == [401]
    assert response.history[0].request.headers["Authorization"] == "Bearer [token removed]"
    assert response.request.headers["Authorization"] == "Bearer [token removed]"
    blob = pickle.dumps(response)
    for secret in secrets_of(manager):
        assert secret not in blob


def test_a_requests_exception_holds_no_token(rsps, api, manager):
    rsps.get(ITEM, body=requests.ConnectionError("connection reset"))
    with pytest.raises(requests.ConnectionError) as info:
        api.get("items/1/")
    assert info.value.request.headers["Authorization"] == "Bearer [token removed]"
    blob = pickle.dumps(info.value)
    for secret in secrets_of(manager):
        assert secret not in blob


def test_the_session_still_works_after_scrubbing(rsps, api, backend):
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    rsps.get(ITEM, status=401, json=EXPIRED, headers=CHALLENGE)
    rsps.get(ITEM, json={"id": 1})
    assert api.get("items/1/").status_code == 200
    assert api.get("items/1/").status_code == 200  # the second 401 renews and retries again
    assert len(backend.refresh_calls) == 2
