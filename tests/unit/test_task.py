"""AuthenticatedTask: ``self.api``, retry on an auth outage, fail at once on rejected credentials."""

from __future__ import annotations

import pytest

from celery_svcjwt import AuthenticatedTask, process
from celery_svcjwt.errors import AuthUnavailable, CredentialsRejected
from celery_svcjwt.session import ApiSession

from .conftest import BASE_CONF, make_app

TOKEN_URL = "https://api.example.com/v1/api/token/"
ITEM = "https://api.example.com/v1/items/1/"


@pytest.fixture
def app():
    return make_app(**BASE_CONF, svcjwt_login_attempts=1, svcjwt_task_max_retries=3)


@pytest.fixture
def runs():
    return []


@pytest.fixture
def failing(app, runs):
    """A task that raises the given error ``times`` times, then returns 'done'."""

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.failing")
    def failing(self, times, error):
        runs.append(self.request.retries)
        if len(runs) <= times:
            raise error
        return "done"

    return failing


@pytest.fixture
def retry_calls(monkeypatch):
    """Spy on Task.retry of a task class: the keyword arguments of every call."""
    calls = []

    def spy_on(task):
        cls = type(task._get_current_object())
        real = cls.retry

        def retry(self, *args, **kwargs):
            calls.append(kwargs)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "retry", retry)
        return calls

    return spy_on


def test_outage_is_retried_with_a_countdown_of_at_least_retry_after(failing, runs, retry_calls):
    calls = retry_calls(failing)
    result = failing.apply(args=(2, AuthUnavailable("HTTP 503", retry_after=30)))
    assert result.get() == "done"
    assert runs == [0, 1, 2]
    assert len(calls) == 2
    for kwargs in calls:
        assert kwargs["countdown"] >= 30
        assert kwargs["max_retries"] == 3
        assert isinstance(kwargs["exc"], AuthUnavailable)


def test_outage_gives_up_after_task_max_retries(failing, runs, retry_calls):
    calls = retry_calls(failing)
    result = failing.apply(args=(99, AuthUnavailable("HTTP 503", retry_after=1)))
    assert result.failed()
    assert isinstance(result.result, AuthUnavailable)
    assert runs == [0, 1, 2, 3]
    assert len(calls) == 3


def test_countdown_backs_off_within_task_retry_backoff_max(app, failing, runs, retry_calls):
    app.conf.svcjwt_task_retry_backoff_max = 5
    app.conf.svcjwt_task_max_retries = 8
    calls = retry_calls(failing)
    failing.apply(args=(8, AuthUnavailable("HTTP 503", retry_after=0)))
    assert len(calls) == 8
    assert all(0 <= kw["countdown"] <= 5 for kw in calls)


def test_retry_leaves_no_max_retries_override_behind(failing, retry_calls):
    retry_calls(failing)
    failing.apply(args=(1, AuthUnavailable("HTTP 503")))
    assert "override_max_retries" not in failing._get_current_object().__dict__


def test_direct_call_raises_auth_unavailable_unchanged(failing, runs, retry_calls):
    calls = retry_calls(failing)
    error = AuthUnavailable("HTTP 503", retry_after=12)
    with pytest.raises(AuthUnavailable) as info:
        failing(1, error)
    assert info.value is error
    assert info.value.retry_after == 12
    assert runs == [0]
    assert calls == []


def test_rejected_credentials_are_not_retried(failing, runs, retry_calls):
    calls = retry_calls(failing)
    result = failing.apply(args=(1, CredentialsRejected("rejected the service account")))
    assert result.failed()
    assert isinstance(result.result, CredentialsRejected)
    assert runs == [0]
    assert calls == []


def test_retry_on_outage_can_be_turned_off(app, runs, retry_calls):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.own", svcjwt_retry_on_outage=False)
    def own(self):
        runs.append(self.request.retries)
        raise AuthUnavailable("HTTP 503")

    calls = retry_calls(own)
    assert isinstance(own.apply().result, AuthUnavailable)
    assert runs == [0]
    assert calls == []


# -- self.api ------------------------------------------------------------------------------


@pytest.fixture
def fetch(app):
    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.fetch")
    def fetch(self, path):
        return self.api.get(path).json()

    return fetch


def test_self_api_calls_the_api_as_the_service_account(rsps, fetch, make_jwt):
    pair = make_jwt.pair()
    rsps.post(TOKEN_URL, json=pair)
    rsps.get(ITEM, json={"id": 1})
    assert fetch.apply(args=("items/1/",)).get() == {"id": 1}
    assert fetch.apply(args=("/items/1/",)).get() == {"id": 1}
    token_calls = [c for c in rsps.calls if c.request.url == TOKEN_URL]
    api_calls = [c for c in rsps.calls if c.request.url == ITEM]
    assert len(token_calls) == 1  # one login for the process
    assert [c.request.headers["Authorization"] for c in api_calls] == [f"Bearer {pair['access']}"] * 2


def test_self_api_is_this_process_session(app, fetch):
    task = fetch._get_current_object()
    assert isinstance(task.api, ApiSession)
    assert task.api is task.api
    assert task.api is process.session_for(app)
    process.reset()
    assert task.api is not None and task.api is process.session_for(app)


def test_self_api_follows_the_task_profile(app):
    app.conf.svcjwt_profiles = {
        "billing": {"api_url": "https://billing.example.com/", "username": "b", "password": "p"}
    }

    @app.task(base=AuthenticatedTask, bind=True, shared=False, name="t.billing", svcjwt_profile="billing")
    def billing(self):
        return self.api.base_url

    assert billing.apply().get() == "https://billing.example.com/"


def test_token_endpoint_outage_retries_the_task_and_gates_the_endpoint(rsps, app, fetch, retry_calls):
    calls = retry_calls(fetch)
    rsps.post(TOKEN_URL, status=503, headers={"Retry-After": "30"})
    result = fetch.apply(args=("items/1/",))
    assert isinstance(result.result, AuthUnavailable)
    assert len(calls) == 3
    assert calls[0]["countdown"] >= 30
    assert all(kw["countdown"] >= 29 for kw in calls)  # the gate's remaining wait
    assert len(rsps.calls) == 1  # the retries met the gate, not the endpoint


def test_wrong_password_fails_the_task_at_once(rsps, fetch, retry_calls):
    calls = retry_calls(fetch)
    rsps.post(TOKEN_URL, status=401, json={"detail": "No active account found with the given credentials"})
    result = fetch.apply(args=("items/1/",))
    assert isinstance(result.result, CredentialsRejected)
    assert calls == []
    assert len(rsps.calls) == 1
