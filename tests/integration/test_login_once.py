"""One login per worker process, across hundreds of tasks, on every pool and broker."""

from __future__ import annotations

from collections import Counter

import celery
import pytest

from tests.conftest import USERNAME, wait_for

pytestmark = pytest.mark.integration


def run_many(worker, n: int) -> list[dict]:
    results = [worker.send("whoami") for _ in range(n)]
    return [worker.outcome(r, 120) for r in results]


@pytest.mark.parametrize(
    ("pool", "concurrency"),
    [("prefork", 2), ("threads", 8), ("solo", 1), ("gevent", 50), ("eventlet", 50)],
)
def test_one_login_per_process(worker_factory, api_server, pool, concurrency):
    api_server.reset_stats()
    worker = worker_factory(pool=pool, concurrency=concurrency)

    out = run_many(worker, 300)

    assert {o["username"] for o in out} == {USERNAME}
    per_process = Counter(o["pid"] for o in out)
    assert len(per_process) <= concurrency if pool == "prefork" else len(per_process) == 1
    # each process logged in exactly once, however many tasks it ran
    assert {o["logins"] for o in out} == {1}
    assert api_server.logins() == len(per_process)
    assert api_server.stats().get("/api/whoami/ 200") == 300


def test_prefork_children_log_in_at_process_init_and_the_parent_never(worker_factory, api_server):
    api_server.reset_stats()
    worker = worker_factory(pool="prefork", concurrency=2)

    # Both children log in at worker_process_init, before any task is sent.
    wait_for(lambda: api_server.logins() == 2, 30, "both pool children to log in")
    stats = wait_for(lambda: worker.app.control.inspect([worker.hostname], timeout=2).stats(), 30, "inspect stats")
    svc = stats[worker.hostname]["svcjwt"]
    main_pid = stats[worker.hostname]["pid"]

    assert svc["account"] == USERNAME
    assert svc["logged_in"] is True
    assert svc["processes_logged_in"] == 2
    assert svc["token_expires_at"] > 0
    pids = [p["pid"] for p in svc["processes"]]
    assert main_pid not in pids
    assert all(p["profiles"]["default"]["logins"] == 1 for p in svc["processes"])
    out = run_many(worker, 50)
    assert {o["pid"] for o in out} <= set(pids)
    assert api_server.logins() == 2


def test_solo_logs_in_on_first_use(worker_factory, api_server):
    api_server.reset_stats()
    worker = worker_factory(pool="solo", concurrency=1)
    assert api_server.logins() == 0

    assert worker.run("whoami")["logins"] == 1
    assert api_server.logins() == 1


@pytest.mark.parametrize("broker", ["redis", "amqp"])
def test_real_brokers(worker_factory, api_server, broker):
    api_server.reset_stats()
    worker = worker_factory(pool="prefork", concurrency=2, broker=broker)

    out = run_many(worker, 200)

    assert {o["logins"] for o in out} == {1}
    assert api_server.logins() == 2


@pytest.mark.skipif(celery.VERSION < (5, 7), reason="--pool-start-method arrived in Celery 5.7")
def test_spawned_children_start_clean(worker_factory, api_server):
    api_server.reset_stats()
    worker = worker_factory(pool="prefork", concurrency=2, args=["--pool-start-method", "spawn"])

    wait_for(lambda: api_server.logins() == 2, 60, "both spawned children to log in")
    out = run_many(worker, 40)
    assert {o["logins"] for o in out} == {1}
    assert api_server.logins() == 2
