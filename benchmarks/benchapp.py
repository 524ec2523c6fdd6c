"""The benchmarks' worker app: the example project's app and tasks, plus the seed's alternate task and a floor.

Run by ``benchmarks/common.py`` as ``celery -A benchmarks.benchapp worker``.
The example app (``example/proj/celery.py``) reads its broker from the
environment (CELERY_BROKER_URL, EXAMPLE_SPOOL); this module only points it at
the benchmark's own queue (BENCH_QUEUE).  Every task returns the seconds it
spent on its own work (``time.perf_counter``), and its pid.

* ``example.proj.tasks.sync_item``: celery-svcjwt (``self.api``).
* ``example.proj.tasks.sync_item_seed``: the seed's first solution, an HTTP login on every run.
* :func:`seed_serializer`: the seed's alternate solution, TokenObtainPairSerializer on every run
  (needs DJANGO_SETTINGS_MODULE and EXAMPLE_API_DB in the worker).
* :func:`floor_call`: the floor, a fixed token on one module-level bare ``requests.Session``.
"""

from __future__ import annotations

import os
import time

import requests

from celery_svcjwt import AuthenticatedTask
from example.proj import tasks as _example_tasks  # noqa: F401 - registers sync_item and sync_item_seed
from example.proj.celery import app

if os.environ.get("BENCH_QUEUE"):
    app.conf.task_default_queue = os.environ["BENCH_QUEUE"]
if not os.environ.get("CELERY_BROKER_URL"):
    # as the integration tests do: poll the embedded broker's folder every 50 ms when idle
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, "polling_interval": 0.05}


@app.task
def noop(delay: float = 0.0) -> int:
    if delay:
        time.sleep(delay)
    return os.getpid()


@app.task
def seed_serializer(pk: int) -> dict[str, object]:
    """The seed's alternate solution: SimpleJWT's serializer in the worker, then the call, on every run.

    As the article writes it, with its two slips fixed so that it runs: the
    serializer is validated (``is_valid()``) before ``validated_data`` is read,
    and the header type is the API's (``Bearer``, SimpleJWT's default).
    """
    from django.contrib.auth import get_user_model
    from rest_framework_simplejwt.serializers import TokenObtainPairSerializer

    started = time.perf_counter()
    username = os.getenv("SVC_ACCT_USER", "")
    password = os.getenv("SVC_ACCT_PASS", "")
    endpoint = f"{os.environ['SVCJWT_API_URL']}api/items/{pk}/"
    svc_acct = {f"{get_user_model().USERNAME_FIELD}": username, "password": password}
    token_generator = TokenObtainPairSerializer(data=svc_acct)
    token_generator.is_valid(raise_exception=True)
    headers = {"Authorization": f"Bearer {token_generator.validated_data['access']}"}
    res = requests.get(url=endpoint, headers=headers, timeout=30)
    res.raise_for_status()
    return {"pid": os.getpid(), "seconds": time.perf_counter() - started}


class _Floor:
    pid = 0
    session: requests.Session | None = None


_floor = _Floor()


def _floor_session() -> requests.Session:
    """One bare session per process, with a token obtained once (never refreshed: a floor, not a client)."""
    if _floor.session is None or _floor.pid != os.getpid():
        base = os.environ["SVCJWT_API_URL"]
        session = requests.Session()
        login = session.post(
            f"{base}api/token/",
            json={"username": os.environ["SVC_ACCT_USER"], "password": os.environ["SVC_ACCT_PASS"]},
            timeout=60,
        )
        login.raise_for_status()
        session.headers["Authorization"] = f"Bearer {login.json()['access']}"
        _floor.session, _floor.pid = session, os.getpid()
    return _floor.session


@app.task
def floor_call(pk: int) -> dict[str, object]:
    """The floor: the same call as ``sync_item`` on a bare requests.Session holding a fixed token."""
    session = _floor_session()  # the one login is outside the timed part, as celery-svcjwt's is
    base = os.environ["SVCJWT_API_URL"]
    started = time.perf_counter()
    response = session.get(f"{base}api/items/{pk}/", timeout=10)
    response.raise_for_status()
    return {"pid": os.getpid(), "seconds": time.perf_counter() - started}


@app.task(base=AuthenticatedTask, bind=True)
def svcjwt_work(self: AuthenticatedTask, pk: int, hold: float = 0.0) -> dict[str, object]:
    """``sync_item``, then ``hold`` seconds of other work: keeps every pool child busy (token_load.py)."""
    started = time.perf_counter()
    response = self.api.get(f"api/items/{pk}/")
    response.raise_for_status()
    elapsed = time.perf_counter() - started
    if hold:
        time.sleep(hold)
    stats = self.api.manager.stats
    return {"pid": os.getpid(), "seconds": elapsed, "logins": stats.logins, "refreshes": stats.refreshes}


@app.task(base=AuthenticatedTask, bind=True)
def auth_noop(self: AuthenticatedTask, pk: int = 0) -> dict[str, object]:
    """An AuthenticatedTask that makes no call: Celery's cost per task with celery-svcjwt's base class."""
    return {"pid": os.getpid(), "seconds": 0.0}


@app.task
def plain_noop(pk: int = 0) -> dict[str, object]:
    """A plain task that makes no call: Celery's own cost per task."""
    return {"pid": os.getpid(), "seconds": 0.0}
