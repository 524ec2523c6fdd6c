"""Run as ``python -m tests.faults.forkcheck <api url>``: what a forked or spawned child inherits.

The parent builds ``self.api``'s session through celery_svcjwt.process, logs
in and makes a request; then, while it holds its manager's lock and the
registry's lock (as if a login were under way in another thread), it forks.
The child must get a new session, a new manager, no token, free locks, an
empty connection pool, and log in and connect on its own.  A spawned child
(multiprocessing's "spawn") is checked the same way.  Everything found is
printed as one JSON object; no token or password is ever printed (only
whether two tokens are equal).  Bounded: the child has an alarm, the parent
waits a bounded time.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from typing import Any

from celery import Celery

from celery_svcjwt import process

USER = os.environ.get("SVC_ACCT_USER", "svc-worker")
PASSWORD = os.environ.get("SVC_ACCT_PASS", "")


def make_app(url: str) -> Celery:
    app = Celery("forkcheck", set_as_current=False)
    app.conf.update(svcjwt_api_url=url, svcjwt_username=USER, svcjwt_password=PASSWORD, svcjwt_timeout=5)
    return app


def pools(session: Any) -> int:
    """Connection pools the session's adapters hold (0 for a session that never connected)."""
    return sum(len(adapter.poolmanager.pools) for adapter in session.adapters.values())


def fresh_state(app: Celery, parent: dict[str, Any] | None) -> dict[str, Any]:
    session = process.session_for(app)
    manager = session.manager
    lock_free = manager._lock.acquire(blocking=False)
    if lock_free:
        manager._lock.release()
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "tokens_before_first_request": manager.tokens is not None,
        "lock_free": lock_free,
        "pools_before_first_request": pools(session),
    }
    if parent is not None:
        report["same_session"] = id(session) == parent["session_id"]
        report["same_manager"] = id(manager) == parent["manager_id"]
        report["same_lock"] = id(manager._lock) == parent["lock_id"]
    response = session.get("api/whoami/")
    report["status"] = response.status_code
    report["logins"] = manager.stats.logins
    report["own_token"] = parent is None or manager.tokens.access != parent["access"]  # type: ignore[union-attr]
    return report


def spawned(url: str, queue: Any) -> None:
    app = make_app(url)
    queue.put(fresh_state(app, None))


def main(url: str) -> dict[str, Any]:
    app = make_app(url)
    session = process.session_for(app)
    manager = session.manager
    first = session.get("api/whoami/")
    assert manager.tokens is not None
    parent = {
        "session_id": id(session),
        "manager_id": id(manager),
        "lock_id": id(manager._lock),
        "access": manager.tokens.access,
    }
    out: dict[str, Any] = {"parent_pid": os.getpid(), "parent_status": first.status_code}

    read_fd, write_fd = os.pipe()
    manager._lock.acquire()  # a login "under way" in the parent when it forks
    process._state.lock.acquire()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        signal.alarm(20)  # never outlive the test
        try:
            report = fresh_state(app, parent)
        except BaseException as exc:  # reported to the parent
            report = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_fd, json.dumps(report).encode())
        os.close(write_fd)
        os._exit(0)
    os.close(write_fd)
    manager._lock.release()
    process._state.lock.release()
    deadline = time.monotonic() + 30
    while True:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)  # our own child
            os.waitpid(pid, 0)
            raise SystemExit("the forked child hung")
        time.sleep(0.02)
    chunks = []
    while chunk := os.read(read_fd, 65536):
        chunks.append(chunk)
    os.close(read_fd)
    out["forked"] = json.loads(b"".join(chunks) or b"{}")

    # The parent goes on with its own session, manager and token.
    again = process.session_for(app)
    out["parent_same_session_after_fork"] = again is session
    out["parent_status_after_fork"] = again.get("api/whoami/").status_code
    out["parent_logins"] = manager.stats.logins

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=spawned, args=(url, queue))
    child.start()
    out["spawned"] = queue.get(timeout=60)
    child.join(30)
    if child.is_alive():
        child.kill()
        child.join(10)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
