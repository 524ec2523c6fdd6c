"""celery_svcjwt.testing: the fake account, the API mock, the simulations, and how they plug in.

These tests drive the helpers directly; tests/example_usage/ uses them as a user would.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
import unittest

import celery
import jwt
import pytest
import requests
import responses
from celery.contrib.testing.worker import start_worker
from celery.signals import task_retry

import celery_svcjwt
from celery_svcjwt import AuthenticatedTask, bootstep, process, status
from celery_svcjwt.errors import AuthUnavailable, ConfigurationError, CredentialsRejected, ForeignOriginError
from celery_svcjwt.session import ApiSession
from celery_svcjwt.testing import DEFAULT_API_URL, ApiMock, UnmatchedRequest, mock_api

from .conftest import make_app

API = "https://api.example.com/v1/"


@pytest.fixture
def app():
    """An app with no celery-svcjwt setting at all."""
    return make_app(task_store_eager_result=True)


@pytest.fixture
def fetch(app):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.fetch")
    def fetch(self, path):
        response = self.api.get(path)
        response.raise_for_status()
        return response.json()

    return fetch


@pytest.fixture
def fetch_status(app):
    """Returns the status code instead of raising, to observe what the caller got."""

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.fetch_status")
    def fetch_status(self, path):
        return self.api.get(path).status_code

    return fetch_status


def claims(token):
    return jwt.decode(token, options={"verify_signature": False})


# -- the fake account ---------------------------------------------------------------------


def test_self_api_is_a_real_session_with_a_real_looking_jwt(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        assert fetch.apply(args=("items/1/",)).get() == {"id": 1}
        session = fetch._get_current_object().api
        assert isinstance(session, ApiSession)
        assert session is api.session(app)
        header = api.calls[0].request.headers["Authorization"]
        assert header == f"Bearer {api.access_token}"
        token = claims(api.access_token)
        assert token["token_type"] == "access"
        assert token["exp"] - token["iat"] == 300
        assert api.logins == 1 and api.refreshes == 0
        assert api.manager(app).config.username == "svc-test"


def test_no_setting_and_no_environment_variable_is_needed(app, fetch, monkeypatch):
    for name in ("SVC_ACCT_USER", "SVC_ACCT_PASS", "SVCJWT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError):
        process.session_for(app)  # the real path, without the mock
    process.reset()
    with mock_api(app) as api:
        api.get("x/", json=[])
        assert fetch.apply(args=("x/",)).get() == []
        assert api.calls[0].request.url == DEFAULT_API_URL + "x/"


def test_environment_variables_are_ignored(app, fetch, monkeypatch):
    """A developer's shell (SVCJWT_*) must not change what a test does."""
    monkeypatch.setenv("SVCJWT_API_URL", "https://real-api.example.org/")
    monkeypatch.setenv("SVCJWT_AUTH_HEADER_TYPE", "Token")
    with mock_api(app) as api:
        api.get("x/", json=1)
        assert fetch("x/") == 1
        request = api.calls[0].request
        assert request.url == DEFAULT_API_URL + "x/"
        assert request.headers["Authorization"].startswith("Bearer ")


def test_the_apps_own_settings_are_honoured(app, fetch):
    app.conf.update(svcjwt_api_url=API, svcjwt_auth_header_type="JWT", svcjwt_timeout=3.5)
    with mock_api(app) as api:
        assert api.api_url == API
        api.get("items/2/", json={"id": 2})
        assert fetch.apply(args=("items/2/",)).get() == {"id": 2}
        assert api.calls[0].request.url == API + "items/2/"
        assert api.calls[0].request.headers["Authorization"] == f"JWT {api.access_token}"
        config = api.manager(app).config
        assert config.timeout == 3.5
        assert config.sources["username"] == "celery_svcjwt.testing.mock_api"


def test_explicit_api_url_wins_over_the_apps(app, fetch):
    app.conf.svcjwt_api_url = API
    with mock_api(app, api_url="https://other.example.net/base") as api:
        assert api.api_url == "https://other.example.net/base/"
        api.get("/items/", json=[])
        assert fetch.apply(args=("items/",)).get() == []


def test_without_an_app_the_current_apps_api_url_is_used(fetch):
    current = make_app(svcjwt_api_url="https://current.example.com/api/")
    previous = celery.current_app._get_current_object()
    current.set_current()
    try:
        with mock_api() as api:
            assert api.api_url == "https://current.example.com/api/"
    finally:
        previous.set_current()


def test_the_session_keeps_scoping_requests_to_the_apis_origin(app):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.leak")
    def leak(self):
        return self.api.get("https://elsewhere.example.org/steal")

    with mock_api(app, api_url=API) as api:
        with pytest.raises(ForeignOriginError):
            leak()
        assert len(api.calls) == 0


def test_one_login_for_many_threads(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        errors = []

        def run():
            try:
                fetch("items/1/")
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert api.logins == 1
        assert len(api.calls) == 8


def test_profiles(app):
    app.conf.svcjwt_profiles = {"billing": {"api_url": "https://billing.example.com/"}}

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.bill", svcjwt_profile="billing")
    def bill(self):
        return self.api.get("invoices/").json()

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.undefined_profile", svcjwt_profile="reports")
    def report(self):
        return self.api.get("reports/").json()

    with mock_api(app, api_url=None) as api:  # every profile
        assert api.url("invoices/", profile="billing") == "https://billing.example.com/invoices/"
        api.get(api.url("invoices/", profile="billing"), json=["i1"])
        api.get("reports/", json=["r1"])  # a profile without its own api_url uses the mock's
        assert bill() == ["i1"]
        assert report() == ["r1"]
    process.reset()
    with mock_api(app, profile="billing") as api:  # only that profile
        assert api.api_url == "https://billing.example.com/"
        api.get("invoices/", json=["i2"])
        assert bill() == ["i2"]
        with pytest.raises(ConfigurationError):
            report()  # not covered: the real configuration path runs, and the profile is undefined


def test_a_mock_for_one_app_leaves_other_apps_alone(app, fetch):
    other = make_app()
    with mock_api(other):
        with pytest.raises(ConfigurationError):
            fetch("x/")


# -- relative URLs and the responses API ------------------------------------------------------


def test_relative_urls_match_as_self_api_resolves_them(app):
    with mock_api(app, api_url="https://api.example.com/v1") as api:
        assert api.api_url == "https://api.example.com/v1/"
        assert api.url("items/1/") == api.url("/items/1/") == "https://api.example.com/v1/items/1/"
        api.get("items/1/", json={"id": 1})
        api.post("/items/", status=201)
        api.add(responses.PUT, "items/1/", status=204)
        api.add(responses.Response(responses.PATCH, "items/1/", status=200))  # made absolute at once
        api.add_callback(responses.DELETE, "/items/1/", callback=lambda request: (204, {}, ""))
        api.get("https://elsewhere.example.org/x", json={})
        api.get(re.compile(r"https://api\.example\.com/v1/re/\d+/"), json={})
        api.get("items/?page=2", json={"page": 2})
        registered = {(r.method, r.url if isinstance(r.url, str) else "regex") for r in api.registered()}
        assert registered == {
            ("GET", "items/1/"),
            ("POST", "items/"),
            ("PUT", "items/1/"),
            ("PATCH", "https://api.example.com/v1/items/1/"),
            ("DELETE", "items/1/"),
            ("GET", "https://elsewhere.example.org/x"),
            ("GET", "regex"),
            ("GET", "items/?page=2"),
        }
        session = api.session(app)
        assert session.get("items/1/").json() == {"id": 1}
        assert session.get("/items/1/").json() == {"id": 1}
        assert session.post("items/").status_code == 201
        assert session.put("items/1/").status_code == 204
        assert session.patch("items/1/").status_code == 200
        assert session.delete("items/1/").status_code == 204
        assert session.get("re/42/").status_code == 200
        assert session.get("items/", params={"page": 2}).json() == {"page": 2}
        assert requests.get("https://elsewhere.example.org/x", timeout=1).json() == {}
        with pytest.raises(UnmatchedRequest):
            session.get("items/?page=3")  # the query string is part of the mock
        assert api.unmatched == ["GET https://api.example.com/v1/items/?page=3"]
        api.replace(responses.GET, "/items/1/", json={"replaced": True})
        api.upsert(responses.GET, "items/9/", json={"new": True})
        api.remove(responses.POST, "items/")
        assert session.get("items/1/").json() == {"replaced": True}
        assert session.get("items/9/").json() == {"new": True}
        assert api.assert_call_count("items/1/", 6)  # every method, as in responses
        assert api.assert_call_count("https://api.example.com/v1/items/9/", 1)
        with pytest.raises(AssertionError):
            api.assert_call_count("items/9/", 2)
        with pytest.raises(ValueError, match="scheme-relative"):
            api.get("//api.example.com/x")
        api._unmatched.clear()  # the unmatched request above was on purpose


def test_relative_urls_follow_each_apps_own_api_url():
    """Whatever the current app is, a relative mock matches under the base URL of the task's app."""
    shop = make_app(svcjwt_api_url="https://shop.example.com/api/")
    blog = make_app(svcjwt_api_url="https://blog.example.com/")
    bare = make_app()
    tasks = {}
    for app in (shop, blog, bare):

        @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.status")
        def status_of(self):
            return self.api.get("status/").json()

        tasks[app.main, id(app)] = status_of
    with mock_api() as api:
        api.get("status/", json="up")
        assert [task() for task in tasks.values()] == ["up"] * 3
        assert [c.request.url for c in api.calls] == [
            "https://shop.example.com/api/status/",
            "https://blog.example.com/status/",
            DEFAULT_API_URL + "status/",
        ]
        assert api.url("status/", app=shop) == "https://shop.example.com/api/status/"


def test_calls_stay_readable_after_the_mock_ends(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        fetch("items/1/")
    assert [c.request.url for c in api.calls] == [API + "items/1/"]


# -- requests no mock matches ------------------------------------------------------------------


def test_an_unmatched_request_raises_a_clear_connection_error(app, fetch):
    mock = mock_api(app, api_url=API)
    with pytest.raises(AssertionError, match=r"1 request\(s\) matched no mock") as at_exit:
        with mock as api:
            api.get("items/1/", json={})
            with pytest.raises(UnmatchedRequest) as info:
                fetch("items/2/")
            assert isinstance(info.value, requests.ConnectionError)
            message = str(info.value)
            assert f"no mock matches GET {API}items/2/" in message
            assert "nothing was sent over the network" in message
            assert 'mock.get("items/2/", json=...)' in message
            assert "- GET items/1/ URL does not match" in message  # what is mocked
    assert f"- GET {API}items/2/" in str(at_exit.value)


def test_an_unmatched_request_fails_the_test_even_when_the_code_swallows_it(app):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.swallow")
    def swallow(self):
        try:
            self.api.get("missing/")
        except requests.RequestException:
            return "handled"

    with pytest.raises(AssertionError, match="missing/"):
        with mock_api(app, api_url=API):
            assert swallow() == "handled"


def test_a_connection_error_a_mock_raises_on_purpose_is_not_unmatched(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("down/", body=requests.ConnectionError("connection reset"))
        with pytest.raises(requests.ConnectionError) as info:
            fetch("down/")
        assert not isinstance(info.value, UnmatchedRequest)
        assert api.unmatched == []


def test_nothing_reaches_the_network(app):
    """A real listening socket on loopback sees no connection while the mock is active."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        mock = mock_api(app, api_url=url)
        with pytest.raises(AssertionError), mock:
            with pytest.raises(UnmatchedRequest):
                requests.get(url + "anything", timeout=1)  # not even self.api: every requests call
            with pytest.raises(UnmatchedRequest):
                mock.session(app).get("items/")
        with pytest.raises(socket.timeout):
            server.accept()


def test_an_exception_in_the_block_is_not_masked(app, fetch):
    with pytest.raises(ZeroDivisionError) as info:
        with mock_api(app, api_url=API, assert_all_requests_are_fired=True) as api:
            api.get("never/", json={})
            with pytest.raises(UnmatchedRequest):
                fetch("missing/")
            1 / 0  # noqa: B018
    if sys.version_info >= (3, 11):
        assert any("missing/" in note for note in info.value.__notes__)


def test_assert_all_requests_are_fired(app):
    with pytest.raises(AssertionError, match="Not all requests have been executed"):
        with mock_api(app, api_url=API, assert_all_requests_are_fired=True) as api:
            api.get("unused/", json={})
    with mock_api(app, api_url=API) as api:  # off by default
        api.get("unused/", json={})


# -- life cycle --------------------------------------------------------------------------------


def test_everything_is_restored_after_the_mock(app, fetch):
    send = requests.adapters.HTTPAdapter.send
    load = bootstep.load_config
    receivers = len(task_retry.receivers)
    with mock_api(app) as api:
        api.get("x/", json=1)
        fetch("x/")
        assert requests.adapters.HTTPAdapter.send is not send
        assert bootstep.load_config is not load
        assert len(task_retry.receivers) == receivers + 1
    assert requests.adapters.HTTPAdapter.send is send
    assert bootstep.load_config is load
    assert len(task_retry.receivers) == receivers
    assert process._overrides == []
    with pytest.raises(ConfigurationError):
        fetch("x/")  # the real path again


def test_mocks_do_not_nest(app):
    with mock_api(app):
        with pytest.raises(RuntimeError, match="another mock_api"):
            with mock_api(app):
                pass  # pragma: no cover
    with mock_api(app):  # the first one released its claim
        pass


def test_start_and_stop_for_setup_and_cleanup(app, fetch):
    api = mock_api(app, api_url=API)
    api.start()
    try:
        api.get("items/1/", json={"id": 1})
        assert fetch("items/1/") == {"id": 1}
    finally:
        api.stop()
    api.stop()  # idempotent


def test_as_a_decorator_each_call_gets_a_fresh_mock(app, fetch):
    seen = []

    @mock_api(app, api_url=API)
    def check(pk, api):
        assert isinstance(api, ApiMock)
        assert len(api.registered()) == 0
        api.get(f"items/{pk}/", json={"id": pk})
        assert fetch(f"items/{pk}/") == {"id": pk}
        seen.append(api)

    check(1)
    check(2)
    assert len({id(m) for m in seen}) == 2
    import inspect

    assert list(inspect.signature(check).parameters) == ["pk"]  # pytest does not look for a fixture 'api'


def test_as_a_class_decorator_on_a_unittest_testcase(app, fetch):
    @mock_api(app, api_url=API)
    class Tests(unittest.TestCase):
        def test_fetch(self, api):
            api.get("items/1/", json={"id": 1})
            self.assertEqual(fetch("items/1/"), {"id": 1})
            self.assertEqual(api.logins, 1)

        def helper(self):
            return "not wrapped"

    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(Tests).run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    assert result.testsRun == 1
    assert Tests("test_fetch").helper() == "not wrapped"


def test_a_decorator_without_parentheses_is_refused():
    with pytest.raises(TypeError, match=r"@mock_api\(\)"):

        @mock_api  # type: ignore[arg-type]
        def check(api):
            pass  # pragma: no cover


# -- simulations ---------------------------------------------------------------------------------


def test_expire_token_makes_the_next_request_refresh(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        api.expire_token()  # nothing to expire yet
        fetch("items/1/")
        first = api.access_token
        api.expire_token()
        fetch("items/1/")
        assert (api.logins, api.refreshes) == (1, 1)
        assert api.access_token != first
        headers = [c.request.headers["Authorization"] for c in api.calls]
        assert headers == [f"Bearer {first}", f"Bearer {api.access_token}"]


def test_refresh_token_rotation(app, fetch):
    with mock_api(app, api_url=API, rotate_refresh_tokens=True) as api:
        api.get("items/1/", json={"id": 1})
        fetch("items/1/")
        before = api.manager(app).tokens.refresh
        api.expire_token()
        fetch("items/1/")
        assert api.manager(app).tokens.refresh != before
        assert api.refreshes == 1


def test_a_401_then_success_renews_and_replays_once(app, fetch):
    """The responses way: register the 401, then the answer."""
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", status=401, json={"detail": "Given token not valid", "code": "token_not_valid"})
        api.get("items/1/", json={"id": 1})
        assert fetch.apply(args=("items/1/",)).get() == {"id": 1}
        assert [c.response.status_code for c in api.calls] == [401, 200]
        first, second = (c.request.headers["Authorization"] for c in api.calls)
        assert first != second == f"Bearer {api.access_token}"
        assert (api.logins, api.refreshes) == (1, 1)
        assert api.manager(app).stats.retries_401 == 1


def test_reject_next_request_with_401(app, fetch, fetch_status):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        api.reject_next_request_with_401()
        assert fetch("items/1/") == {"id": 1}
        statuses = [c.response.status_code for c in api.calls]
        assert statuses == [401, 200]
        assert api.calls[0].response.json()["code"] == "token_not_valid"
        assert api.calls[0].response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
        assert (api.logins, api.refreshes) == (1, 1)
        api.reject_next_request_with_401(times=2)  # refused again after the renewal: the caller gets it
        assert fetch_status("items/1/") == 401
        assert api.refreshes == 2


def test_reject_next_request_with_401_spares_requests_without_the_token(app):
    with mock_api(app, api_url=API) as api:
        api.get("https://elsewhere.example.org/public", json={})
        api.reject_next_request_with_401()
        assert requests.get("https://elsewhere.example.org/public", timeout=1).status_code == 200


def test_auth_outage_is_retried_by_the_task_and_then_succeeds(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        fetch("items/1/")
        api.auth_outage(retry_after=30)
        started = time.monotonic()
        result = fetch.apply(args=("items/1/",))
        assert result.get() == {"id": 1}
        assert time.monotonic() - started < 2  # the countdown passed on the simulated clock only
        assert api.failures == 1
        assert (api.logins, api.refreshes) == (1, 1)


def test_auth_outage_before_the_first_login(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        api.auth_outage(retry_after=10)
        assert fetch.apply(args=("items/1/",)).get() == {"id": 1}
        assert (api.logins, api.failures) == (1, 1)


def test_a_long_outage_fails_the_task_after_its_retries(app, fetch):
    app.conf.svcjwt_task_max_retries = 3
    with mock_api(app, api_url=API) as api:
        api.auth_outage(retry_after=60, times=None)
        result = fetch.apply(args=("items/1/",))
        assert result.failed()
        assert isinstance(result.result, AuthUnavailable)
        assert api.failures == 4  # the first run and 3 retries, each after the backoff
        assert api.logins == 0
        with pytest.raises(AuthUnavailable):
            fetch("items/1/")  # a direct call is not retried
        api.end_outage()
        api.get("items/1/", json={"id": 1})
        assert fetch("items/1/") == {"id": 1}
        assert api.logins == 1


def test_a_short_outage_is_retried_inside_the_call_without_sleeping(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        api.auth_outage(retry_after=1, times=2)
        started = time.monotonic()
        assert fetch("items/1/") == {"id": 1}  # login_attempts = 3: the third try succeeds
        assert time.monotonic() - started < 1
        assert (api.failures, api.logins) == (2, 1)


def test_reject_credentials(app, fetch):
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        fetch("items/1/")
        api.reject_credentials()
        result = fetch.apply(args=("items/1/",))
        assert result.failed()
        assert isinstance(result.result, CredentialsRejected)
        assert "'svc-test'" in str(result.result)
        assert api.logins == 1
        api.accept_credentials()
        assert fetch("items/1/") == {"id": 1}
        assert api.logins == 2


def test_simulation_arguments_are_checked(app):
    with mock_api(app) as api, pytest.raises(ValueError):
        api.auth_outage(times=0)
    with pytest.raises(ValueError):
        api.advance(-1)


def test_an_eager_retry_moves_the_simulated_clock_by_its_countdown(app):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.again", max_retries=1)
    def again(self):
        if self.request.retries == 0:
            raise self.retry(countdown=120)
        return "ok"

    with mock_api(app) as api:
        before = api.clock.offset
        assert again.apply().get() == "ok"
        assert api.clock.offset - before == pytest.approx(120)


# -- task_always_eager and in-process workers --------------------------------------------------


def test_task_always_eager(app, fetch):
    app.conf.task_always_eager = True
    with mock_api(app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        assert fetch.delay("items/1/").get() == {"id": 1}


@pytest.fixture
def worker_app():
    app = celery.Celery("svcjwt_testing_worker", set_as_current=False)
    app.conf.update(broker_url="memory://", result_backend="cache+memory://", worker_hijack_root_logger=False)

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="w.fetch")
    def fetch(self, path):
        return {"body": self.api.get(path).json(), "thread": threading.get_ident()}

    return app


def test_an_in_process_worker_without_install(worker_app):
    """The override is process-wide: the worker's thread gets the fake account too.

    tests/example_usage/ runs a worker of an app that called install(), whose bootstep runs.
    """
    with mock_api(worker_app, api_url=API) as api:
        api.get("items/1/", json={"id": 1})
        with start_worker(worker_app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            result = worker_app.tasks["w.fetch"].delay("items/1/").get(timeout=10)
        assert result["body"] == {"id": 1}
        assert result["thread"] != threading.get_ident()  # really the worker's thread
        assert api.logins == 1


def test_the_bootstep_gets_the_fake_account_and_its_traces_are_undone(worker_app):
    celery_svcjwt.install(worker_app)
    with mock_api(worker_app, api_url=API):
        worker = worker_app.WorkController(pool="solo", concurrency=1, without_mingle=True, without_gossip=True)
        step = next(s for s in worker.blueprint.steps.values() if isinstance(s, bootstep.SvcJWTStep))
        assert step.config.username == "svc-test"
        assert step.config.api_url == API
        assert worker_app.conf.get(status.STATUS_DIR_KEY)
        step.shutdown(worker)
    assert worker_app.conf.get(status.STATUS_DIR_KEY) is None  # what the bootstep wrote into the conf is undone
    assert worker_app.conf.get(process.MAIN_PID_KEY) is None


def test_an_installed_app_without_the_mock_still_refuses_to_start_unconfigured(worker_app):
    celery_svcjwt.install(worker_app)
    with pytest.raises(ConfigurationError), start_worker(worker_app, pool="solo", perform_ping_check=False):
        pass  # pragma: no cover
