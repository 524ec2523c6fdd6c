"""The shop's tasks, tested with the ``svcjwt_mock`` fixture.

No conftest registers the fixture: installing celery-svcjwt does (a pytest11 entry point).
"""

import pytest
import requests

from celery_svcjwt import AuthUnavailable

from .shop.celery import app
from .shop.tasks import catalog, fetch_item, restock

API = "https://inventory.example.com/v2/"  # the app's svcjwt_api_url


def test_fetch_item(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})

    assert fetch_item.apply(args=(1,)).get() == {"id": 1, "name": "bolt"}

    (call,) = svcjwt_mock.calls
    assert call.request.url == API + "items/1/"
    assert call.request.headers["Authorization"] == f"Bearer {svcjwt_mock.access_token}"
    assert svcjwt_mock.logins == 1


def test_a_direct_call_works_too(svcjwt_mock):
    svcjwt_mock.get("items/2/", json={"id": 2, "name": "nut"})
    assert fetch_item(2) == {"id": 2, "name": "nut"}


@pytest.fixture
def eager():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_delay_under_task_always_eager(svcjwt_mock, eager):
    svcjwt_mock.post("items/3/restock/", json={"stock": 12})

    assert restock.delay(3, 10).get() == 12

    assert svcjwt_mock.calls[0].request.body == b'{"quantity": 10}'


def test_one_login_for_many_tasks(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})
    for _ in range(5):
        fetch_item.apply(args=(1,))
    assert svcjwt_mock.logins == 1
    assert len(svcjwt_mock.calls) == 5


def test_pagination_follows_absolute_links(svcjwt_mock):
    svcjwt_mock.get("items/", json={"results": [{"name": "bolt"}], "next": API + "items/?page=2"})
    svcjwt_mock.get("items/?page=2", json={"results": [{"name": "nut"}], "next": None})

    assert catalog.apply().get() == ["bolt", "nut"]


def test_a_server_error_fails_the_task(svcjwt_mock):
    svcjwt_mock.get("items/4/", status=500)

    result = fetch_item.apply(args=(4,))

    assert result.failed()
    assert isinstance(result.result, requests.HTTPError)


# -- what the real token manager would do ---------------------------------------------------------


def test_an_expired_token_is_refreshed(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})
    fetch_item.apply(args=(1,))

    svcjwt_mock.expire_token()
    fetch_item.apply(args=(1,))

    assert (svcjwt_mock.logins, svcjwt_mock.refreshes) == (1, 1)
    first, second = (c.request.headers["Authorization"] for c in svcjwt_mock.calls)
    assert first != second


def test_a_401_then_success(svcjwt_mock):
    svcjwt_mock.get("items/1/", status=401, json={"code": "token_not_valid"})
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})

    assert fetch_item.apply(args=(1,)).get() == {"id": 1, "name": "bolt"}

    assert [c.response.status_code for c in svcjwt_mock.calls] == [401, 200]
    assert svcjwt_mock.refreshes == 1


def test_the_api_refuses_the_token_once(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})
    svcjwt_mock.reject_next_request_with_401()

    assert fetch_item.apply(args=(1,)).get() == {"id": 1, "name": "bolt"}
    assert svcjwt_mock.refreshes == 1


def test_an_auth_outage_delays_the_task(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1, "name": "bolt"})
    svcjwt_mock.auth_outage(retry_after=30)

    result = fetch_item.apply(args=(1,))

    assert result.get() == {"id": 1, "name": "bolt"}  # apply() ran the retry, after the countdown
    assert (svcjwt_mock.failures, svcjwt_mock.logins) == (1, 1)


def test_a_long_auth_outage_fails_the_task_after_its_retries(svcjwt_mock):
    svcjwt_mock.auth_outage(retry_after=30, times=None)

    result = fetch_item.apply(args=(1,))

    assert result.failed()
    assert isinstance(result.result, AuthUnavailable)
    assert svcjwt_mock.failures == 1 + app.conf.svcjwt_task_max_retries


def test_rejected_credentials_are_reported(svcjwt_mock):
    svcjwt_mock.reject_credentials()

    assert catalog.apply().get() == {"error": "the inventory API refused the service account"}
    assert len(svcjwt_mock.calls) == 0  # nothing reached the API


@pytest.mark.svcjwt(api_url="https://staging.example.com/", assert_all_requests_are_fired=True)
def test_options_from_a_marker(svcjwt_mock):
    assert svcjwt_mock.api_url == "https://staging.example.com/"
    svcjwt_mock.get("items/1/", json={"id": 1})
    assert fetch_item(1) == {"id": 1}
