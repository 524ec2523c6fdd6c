"""Tasks for the reliability tests, loaded into workers with ``celery worker -I tests.faults.tasks``.

They live on the integration tests' app (tests/integration/workerapp.py).
When SVCJWT_TEST_EVENTS names a file, every retry and failure of a task is
appended to it as one JSON line (exception type and message: what the task
saw), from whichever pool process ran it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from typing import Any

import requests
from celery.signals import task_failure, task_retry

from celery_svcjwt import AuthenticatedTask
from tests.integration.workerapp import app

NAME = __name__

#: Network failures of the task's own API calls, retried by Celery's autoretry.
NETWORK_ERRORS = (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout)


def facts(task: Any) -> dict[str, Any]:
    stats = task.api.manager.stats
    return {
        "pid": os.getpid(),
        "logins": stats.logins,
        "refreshes": stats.refreshes,
        "retries_401": stats.retries_401,
        "retries": task.request.retries,
    }


@app.task(base=AuthenticatedTask, bind=True)
def echo(self: Any, n: int) -> dict[str, Any]:
    """POST {"n": n} to the API's echo view; the answer proves the task ran with a valid token."""
    return _echo(self, n)


@app.task(
    base=AuthenticatedTask,
    bind=True,
    autoretry_for=NETWORK_ERRORS,
    retry_backoff=False,
    default_retry_delay=0.3,
    max_retries=50,
)
def echo_retrying(self: Any, n: int) -> dict[str, Any]:
    """echo, for a user who retries the task's own network errors with Celery's autoretry_for."""
    return _echo(self, n)


def _echo(task: Any, n: int) -> dict[str, Any]:
    response = task.api.post("api/echo/", json={"n": n})
    response.raise_for_status()
    return {"n": response.json()["data"]["n"], "history": [r.status_code for r in response.history], **facts(task)}


@app.task(base=AuthenticatedTask, bind=True)
def hammer(self: Any, seconds: float, path: str = "api/ping/") -> dict[str, Any]:
    """Call the API as fast as possible for ``seconds``; what came back, by status."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        statuses[self.api.get(path).status_code] += 1
    return {"statuses": dict(statuses), "thread": threading.get_ident(), **facts(self)}


@app.task(base=AuthenticatedTask, bind=True)
def strict_get(self: Any, url: str) -> Any:
    """GET through self.api and raise_for_status(): a failing API call becomes the task's exception."""
    response = self.api.get(url)
    response.raise_for_status()
    return response.json()


@app.task(base=AuthenticatedTask, bind=True)
def reprs(self: Any) -> dict[str, str]:
    """The repr of everything a task can reach, as a debugger, a log line or an error tracker prints it."""
    api = self.api
    manager = api.manager
    objects = {
        "api": api,
        "api_vars": vars(api),
        "auth": api.auth,
        "auth_vars": vars(api.auth),
        "manager": manager,
        "manager_vars": vars(manager),
        "tokens": manager.tokens,
        "config": manager.config,
        "backend": manager.backend,
        "backend_vars": vars(manager.backend),
        "stats": manager.stats,
    }
    out = {name: repr(value) for name, value in objects.items()}
    out["status"] = json.dumps(manager.status(), default=str)
    return out


def _event(kind: str, task_id: str | None, name: str | None, exc: BaseException | None) -> None:
    path = os.environ.get("SVCJWT_TEST_EVENTS")
    if not path:
        return
    line = json.dumps(
        {
            "event": kind,
            "id": task_id,
            "task": (name or "").rsplit(".", 1)[-1],
            "exc": type(exc).__name__ if exc is not None else None,
            "message": str(exc)[:500] if exc is not None else None,
            "pid": os.getpid(),
            "at": time.time(),
        }
    )
    with open(path, "a") as f:  # one short line per write: O_APPEND keeps lines whole across processes
        f.write(line + "\n")


@task_retry.connect(weak=False)
def _on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
    exc = getattr(reason, "exc", None) or reason  # celery.exceptions.Retry carries the exception
    exc = exc if isinstance(exc, BaseException) else None
    _event("retry", getattr(request, "id", None), getattr(sender, "name", None), exc)


@task_failure.connect(weak=False)
def _on_failure(sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any) -> None:
    _event("failure", task_id, getattr(sender, "name", None), exception)
