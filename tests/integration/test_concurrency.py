"""64 threads crossing token expiry together: one refresh per expiry window, never two.

Against the real API with rotation and blacklisting on: two threads refreshing
with the same refresh token would get a 401 token_not_valid for the second,
so "zero refused refreshes" proves the refreshes never overlapped.  The
plain-thread variants with a fake clock and backend are in
tests/unit/test_manager.py; these use real HTTP.

* the threads pool: ``celery worker --pool threads -c 64`` running 64 tasks at
  once, each calling the API in a loop across several expiries;
* plain threads: 64 threads of the test process sharing one real ApiSession.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

import pytest
from celery import Celery

from celery_svcjwt.endpoints import HttpLogin
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.session import ApiSession
from celery_svcjwt.settings import load_config
from tests.conftest import PASSWORD, USERNAME, assert_no_secrets
from tests.faults.harness import send

pytestmark = pytest.mark.integration

THREADS = 64
ACCESS_SECONDS = 4
USABLE = ACCESS_SECONDS - 1  # whole-second claims
RUN_SECONDS = 7.0
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module")
def rotating_api(api_server_factory):
    return api_server_factory(
        EXAMPLE_API_ACCESS_SECONDS=str(ACCESS_SECONDS),
        EXAMPLE_API_ROTATE="1",
        EXAMPLE_API_BLACKLIST="1",
    )


def windows(seconds: float) -> int:
    """Refresh windows a process can cross in ``seconds``: one every half usable lifetime at most."""
    return int(seconds / (USABLE / 2)) + 1


def check_server(api, seconds: float, refreshes_reported: int, retries_401: int) -> dict:
    stats = api.stats()
    figures = {
        "threads": THREADS,
        "access_token_seconds": ACCESS_SECONDS,
        "seconds": round(seconds, 1),
        "api_calls": stats.get("/api/ping/ 200", 0),
        "api_401": stats.get("/api/ping/ 401", 0),
        "logins": stats.get("/api/token/ 200", 0),
        "refreshes": stats.get("/api/token/refresh/ 200", 0),
        "refreshes_refused": stats.get("/api/token/refresh/ 401", 0),
        "refresh_windows_at_most": windows(seconds),
        "renewals_after_401": retries_401,
    }
    assert figures["logins"] == 1, figures
    assert figures["refreshes_refused"] == 0, figures  # no two threads ever refreshed with the same token
    assert figures["refreshes"] == refreshes_reported, figures  # the server saw exactly the process's refreshes
    # One refresh per window; a token that expired on its way through an overloaded server (a 401)
    # is renewed once for all the threads that saw it: that renewal is the only extra refresh allowed.
    assert seconds / ACCESS_SECONDS - 1 <= figures["refreshes"] <= figures["refresh_windows_at_most"] + retries_401, (
        figures
    )
    # No storm: a token that expires in flight (on a server slowed by the blacklist's database
    # writes) fails at most the requests in flight with it, one per thread, and all the threads
    # that saw it share a single renewal.
    assert figures["renewals_after_401"] <= figures["refresh_windows_at_most"], figures
    assert figures["api_401"] <= THREADS * max(1, figures["renewals_after_401"]), figures
    assert figures["api_calls"] > THREADS * 5, figures
    return figures


def test_threads_pool_64_tasks_cross_expiry_together(fleet, rotating_api):
    rotating_api.reset_stats()
    started = time.monotonic()
    worker = fleet.start(rotating_api.url, pool="threads", concurrency=THREADS)
    results = [send(worker, "hammer", RUN_SECONDS) for _ in range(THREADS)]
    out = [worker.outcome(r, 120) for r in results]
    elapsed = time.monotonic() - started

    assert len({o["pid"] for o in out}) == 1
    assert len({o["thread"] for o in out}) == THREADS  # all 64 ran at the same time
    assert {o["logins"] for o in out} == {1}
    statuses = Counter()
    for o in out:
        statuses.update({int(k): v for k, v in o["statuses"].items()})
    assert set(statuses) == {200}
    reported = max(o["refreshes"] for o in out)
    renewed = max(o["retries_401"] for o in out)
    FIGURES["threads_pool"] = check_server(rotating_api, elapsed, reported, renewed)
    fleet.retire(worker)


def test_64_plain_threads_share_one_real_session(rotating_api, caplog):
    caplog.set_level(logging.DEBUG)
    rotating_api.reset_stats()
    app = Celery("concurrency", set_as_current=False)
    app.conf.update(svcjwt_api_url=rotating_api.url, svcjwt_username=USERNAME, svcjwt_password=PASSWORD)
    config = load_config(app, environ={}, cli={})
    manager = TokenManager(config, HttpLogin(config))
    session = ApiSession(config, manager, pool_size=THREADS)
    barrier = threading.Barrier(THREADS)
    statuses: Counter[int] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    issued: set[str] = set()

    def run() -> None:
        barrier.wait(30)
        deadline = time.monotonic() + RUN_SECONDS
        local: Counter[int] = Counter()
        try:
            while time.monotonic() < deadline:
                local[session.get("api/ping/").status_code] += 1
                tokens = manager.tokens
                if tokens is not None:
                    with lock:
                        issued.update(t for t in (tokens.access, tokens.refresh) if t)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)
        with lock:
            statuses.update(local)

    started = time.monotonic()
    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RUN_SECONDS + 60)
    elapsed = time.monotonic() - started
    session.close()
    manager.backend.close()

    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert set(statuses) == {200}
    assert manager.stats.logins == 1
    FIGURES["plain_threads"] = check_server(rotating_api, elapsed, manager.stats.refreshes, manager.stats.retries_401)
    # Nothing logged at DEBUG holds the password or a token.
    text = "\n".join(caplog.handler.format(r) for r in caplog.records)
    assert_no_secrets(text, "the test process's log")
    for token in issued:
        assert token not in text
