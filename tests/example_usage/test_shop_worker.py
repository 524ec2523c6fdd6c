"""The shop's tasks run by a worker in this process (a thread), as celery.contrib.testing starts it."""

from celery.contrib.testing.worker import start_worker

from .shop.celery import app
from .shop.tasks import fetch_item

pytest_plugins = ("celery.contrib.pytest",)


def test_fetch_item_through_a_worker(svcjwt_mock):
    """The app called install(): the worker's bootstep runs, with the fake account's settings."""
    svcjwt_mock.get("items/7/", json={"id": 7, "name": "washer"})

    with start_worker(app, pool="solo", perform_ping_check=False):
        assert fetch_item.delay(7).get(timeout=10) == {"id": 7, "name": "washer"}

    assert svcjwt_mock.logins == 1


def test_with_celery_worker_fixture(svcjwt_mock, celery_app, celery_worker):
    """celery.contrib.pytest's own app and worker (no install()): the mock covers every app."""
    from celery_svcjwt import AuthenticatedTask

    @celery_app.task(base=AuthenticatedTask, bind=True, shared=False)
    def ping_api(self):
        return self.api.get("ping/").json()

    celery_worker.reload()
    svcjwt_mock.get("ping/", json={"pong": True})

    assert ping_api.delay().get(timeout=10) == {"pong": True}
