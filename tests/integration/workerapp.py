"""The Celery app the integration tests run in real ``celery worker`` processes.

Configured from the environment by the ``worker`` fixture (tests/conftest.py):
SVCJWT_TEST_BROKER (filesystem, redis or amqp), SVCJWT_TEST_SPOOL (folder for
the filesystem broker and file result backend) and SVCJWT_TEST_QUEUE.  The
service account's settings come from SVCJWT_* / SVC_ACCT_* like a user's.
"""

from __future__ import annotations

import os
import time
from typing import Any

import requests
from celery import Celery

import celery_svcjwt
from celery_svcjwt import AuthenticatedTask

REDIS_URL = "redis://127.0.0.1:6379/7"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def make_app(broker: str, spool: str, queue: str) -> Celery:
    """An app for one test's worker; the test process builds the same one to send tasks."""
    app = Celery("svcjwt_tests")
    for sub in ("queue", "processed", "results", "control"):
        os.makedirs(os.path.join(spool, sub), exist_ok=True)
    file_backend = "file://" + os.path.join(spool, "results")
    urls = {
        "filesystem": ("filesystem://", file_backend),
        "redis": (REDIS_URL, REDIS_URL),
        "amqp": (AMQP_URL, file_backend),
    }
    broker_url, backend = urls[broker]
    app.conf.update(
        broker_url=broker_url,
        result_backend=backend,
        broker_transport="example.fsbroker:Transport" if broker == "filesystem" else None,
        broker_transport_options={
            "data_folder_in": os.path.join(spool, "queue"),
            "data_folder_out": os.path.join(spool, "queue"),
            "processed_folder": os.path.join(spool, "processed"),
            "store_processed": False,
            "control_folder": os.path.join(spool, "control"),
            "polling_interval": 0.05,
        },
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
        result_extended=True,
        # SVCJWT_TEST_RESULT_SERIALIZER=pickle in a worker's environment; the reading side sets it too
        result_serializer=os.environ.get("SVCJWT_TEST_RESULT_SERIALIZER", "json"),
        result_accept_content=["json", "pickle"],
    )
    return app


app = make_app(
    os.environ.get("SVCJWT_TEST_BROKER", "filesystem"),
    os.environ.get("SVCJWT_TEST_SPOOL", "/tmp/svcjwt-tests-spool"),
    os.environ.get("SVCJWT_TEST_QUEUE", "svcjwt-tests"),
)
if os.environ.get("SVCJWT_BILLING_API_URL"):
    app.conf.svcjwt_profiles = {"billing": {}}  # its settings come from SVCJWT_BILLING_* variables
celery_svcjwt.install(app)


def _process_facts(task: Any) -> dict[str, Any]:
    manager = task.api.manager
    stats = manager.stats
    tokens = manager.tokens
    return {
        "pid": os.getpid(),
        "logins": stats.logins,
        "refreshes": stats.refreshes,
        "retries_401": stats.retries_401,
        # Seconds until the token may no longer be used unrefreshed (None: not logged in).
        "must_refresh_in": tokens.mandatory_at(manager.config.refresh_margin) - time.monotonic() if tokens else None,
    }


@app.task(base=AuthenticatedTask, bind=True)
def whoami(self: Any) -> dict[str, Any]:
    """Who the API says we are, and this process's login counters."""
    response = self.api.get("api/whoami/")
    response.raise_for_status()
    return {"username": response.json()["username"], **_process_facts(self)}


@app.task(base=AuthenticatedTask, bind=True, svcjwt_profile="billing")
def whoami_billing(self: Any) -> dict[str, Any]:
    """whoami through the "billing" profile: another API and account."""
    response = self.api.get("api/whoami/")
    response.raise_for_status()
    return {"username": response.json()["username"], "api": self.api.base_url, **_process_facts(self)}


@app.task(base=AuthenticatedTask, bind=True)
def stream_and_upload(self: Any, size: int) -> dict[str, Any]:
    """A multipart upload, then a streamed read of the answer."""
    files = {"blob": ("blob.bin", b"x" * size)}
    with self.api.post("api/echo/", files=files, data={"note": "hi"}, stream=True) as response:
        chunks = list(response.iter_content(chunk_size=7))
    body = b"".join(chunks)
    return {"status": response.status_code, "chunks": len(chunks), "body": body.decode()}


@app.task(base=AuthenticatedTask, bind=True)
def call(self: Any, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    """Any request through self.api; returns the status and JSON body."""
    response = self.api.request(method, url, **kwargs)
    try:
        body = response.json()
    except ValueError:
        body = None
    return {
        "status": response.status_code,
        "body": body,
        "history": [r.status_code for r in response.history],
        **_process_facts(self),
    }


@app.task
def plain_get(url: str) -> dict[str, Any]:
    """A request that does not go through self.api (for comparison)."""
    return requests.get(url, timeout=5).json()
