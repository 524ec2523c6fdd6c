"""Fork and spawn: a child reuses nothing of its parent's (socket, lock or token); recycled children log in once.

* tests/faults/forkcheck.py runs in a plain Python subprocess: the parent logs
  in, then forks while holding its locks; a spawned child is checked too.  The
  fault proxy in front of the API tells which connection (client port) each
  request came on and counts the logins.
* A prefork worker with ``--max-tasks-per-child 5``: every new child logs in
  once, at start; the logins at the API equal the children that ever lived.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import PASSWORD, ROOT, USERNAME, assert_no_secrets, wait_for
from tests.faults.harness import assert_no_exact_secrets, send
from tests.faults.proxy import TOKEN_PATH, FaultProxy

pytestmark = pytest.mark.integration

FIGURES: dict[str, dict] = {}


@pytest.fixture
def proxy(api_server, proxies) -> FaultProxy:
    p = FaultProxy(api_server.url).start()
    proxies.append(p)
    return p


def ports(proxy: FaultProxy, path: str) -> list[int]:
    with proxy._lock:
        return [r.client_port for r in proxy.records if r.path == path]


def test_forked_and_spawned_children_start_clean(proxy):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCJWT_", "SVC_ACCT_"))}
    env.update({"PYTHONPATH": str(ROOT), "SVC_ACCT_USER": USERNAME, "SVC_ACCT_PASS": PASSWORD})
    proc = subprocess.run(
        [sys.executable, "-m", "tests.faults.forkcheck", proxy.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for stream in (proc.stdout, proc.stderr):
        assert_no_secrets(stream, "the fork check's output")
        assert_no_exact_secrets(stream, proxy.issued, "the fork check's output")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    forked, spawned = out["forked"], out["spawned"]

    assert "error" not in forked, forked
    # Nothing of the parent's: a new session and manager, no token, a free lock, no connection.
    assert forked["same_session"] is False
    assert forked["same_manager"] is False
    assert forked["same_lock"] is False
    assert forked["lock_free"] is True  # the parent held its lock when it forked
    assert forked["tokens_before_first_request"] is False
    assert forked["pools_before_first_request"] == 0
    assert forked["status"] == 200 and forked["logins"] == 1 and forked["own_token"] is True
    assert spawned["tokens_before_first_request"] is False and spawned["pools_before_first_request"] == 0
    assert spawned["status"] == 200 and spawned["logins"] == 1
    # The parent kept its own session and token: one login in all, before and after the fork.
    assert out["parent_same_session_after_fork"] is True
    assert out["parent_status_after_fork"] == 200 and out["parent_logins"] == 1

    # Three processes, three logins, and three connections to the API: the parent's was never shared.
    assert proxy.count([TOKEN_PATH]) == 3
    whoami = ports(proxy, "/api/whoami/")
    assert len(whoami) == 4  # parent, forked child, parent again, spawned child
    parent_before, child, parent_after, spawned_port = whoami
    assert parent_after == parent_before  # the parent's pooled connection, still its own
    assert len({parent_before, child, spawned_port}) == 3
    FIGURES["fork_and_spawn"] = {
        "logins": proxy.count([TOKEN_PATH]),
        "processes": 3,
        "distinct_connections": len(set(whoami)),
        "child_reused_parent_token": not forked["own_token"],
    }


def test_max_tasks_per_child_recycling_logs_each_new_child_in_once(fleet, proxy):
    worker = fleet.start(proxy.url, pool="prefork", concurrency=2, args=["--max-tasks-per-child", "5"])
    out = []
    for start in range(0, 60, 10):  # batches, so that recycled children get tasks too
        batch = [send(worker, "echo", n) for n in range(start, start + 10)]
        out.extend(worker.outcome(r, 60) for r in batch)

    assert sorted(o["n"] for o in out) == list(range(60))
    assert {o["logins"] for o in out} == {1}  # no process ever logged in twice
    seen = {o["pid"] for o in out}
    assert len(seen) >= 60 // 5 // 2  # children were recycled

    def living() -> set[int]:
        stats = worker.app.control.inspect([worker.hostname], timeout=2).stats() or {}
        return set(stats.get(worker.hostname, {}).get("pool", {}).get("processes", []))

    def settled() -> set[int] | None:
        """The children that ever lived, once the pool is stable and each of them has logged in."""
        before = living()
        time.sleep(0.5)
        now = living()
        ever = seen | now
        if before == now and len(now) == 2 and proxy.count([TOKEN_PATH]) == len(ever):
            return ever
        return None

    # Every child that ever lived logged in exactly once, at start (the newest ones before any task).
    children = wait_for(settled, 60, "one login per child")
    assert proxy.count([TOKEN_PATH]) == len(children)
    assert "Timed out waiting for UP message" not in worker.log()
    FIGURES["max_tasks_per_child_5"] = {
        "tasks": len(out),
        "children_seen": len(seen),
        "children_ever": len(children),
        "logins": proxy.count([TOKEN_PATH]),
    }
    fleet.retire(worker)
