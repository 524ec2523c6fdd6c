"""``celery inspect svcjwt_status`` against real workers: per pool process, computed when asked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.conftest import JWT_RE, PASSWORD, ROOT, TASKS, USERNAME, wait_for

pytestmark = pytest.mark.integration


def svcjwt_status(worker) -> dict:
    """The worker's reply, asked in process through the control API."""
    replies = worker.app.control.inspect([worker.hostname], timeout=3)._request("svcjwt_status")
    assert replies, "the worker did not answer svcjwt_status"
    reply = replies[worker.hostname]
    text = json.dumps(reply)
    assert PASSWORD not in text and not JWT_RE.search(text), "svcjwt_status leaked a secret"
    return reply


def children(reply: dict) -> list[dict]:
    return [p for p in reply["processes"] if p["role"] == "pool child"]


def test_prefork_children_each_report_through_the_parent(worker_factory, api_server):
    api_server.reset_stats()
    worker = worker_factory(pool="prefork", concurrency=2)
    wait_for(lambda: api_server.logins() == 2, 30, "both pool children to log in")

    reply = wait_for(
        lambda: (r := svcjwt_status(worker)) and len([p for p in children(r) if p["profiles"]]) == 2 and r,
        30,
        "both children's reports",
    )

    assert reply["account"] == USERNAME
    assert reply["api_url"] == api_server.url
    assert reply["pool"] == "prefork"
    assert reply["logged_in"] is True
    assert reply["processes_logged_in"] == 2
    kids = children(reply)
    assert len(kids) == 2
    assert reply["pid"] not in {p["pid"] for p in kids}  # the parent never logs in
    now = time.time()
    for kid in kids:
        report = kid["profiles"]["default"]
        assert report["state"] == "logged in"
        assert report["logged_in"] is True
        assert report["account"] == USERNAME
        assert report["logins"] == 1
        assert report["refreshes"] == 0
        assert report["retries_401"] == 0
        assert report["failures"] == 0
        assert report["last_error"] is None
        expires = datetime.fromisoformat(report["token_expires_at"]).timestamp()
        assert now + 200 < expires < now + 301
        assert 200 < report["token_expires_in"] <= 300
    # the children that answer tasks are the ones reported
    out = [worker.send("whoami") for _ in range(20)]
    assert {worker.outcome(o, 60)["pid"] for o in out} <= {p["pid"] for p in kids}


def test_the_celery_inspect_command_line_knows_it(worker_factory, api_server):
    worker = worker_factory(pool="prefork", concurrency=2)
    wait_for(lambda: len([p for p in children(svcjwt_status(worker)) if p["profiles"]]) == 2, 30, "both reports")

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            TASKS,
            "inspect",
            "svcjwt_status",
            "-d",
            worker.hostname,
            "-j",
            "-t",
            "5",
        ],
        cwd=ROOT,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    reply = json.loads(proc.stdout)[worker.hostname]
    assert [p["profiles"]["default"]["logins"] for p in children(reply)] == [1, 1]
    assert PASSWORD not in proc.stdout and not JWT_RE.search(proc.stdout)

    listing = subprocess.run(
        [sys.executable, "-m", "celery", "-A", TASKS, "inspect", "--list"],
        cwd=ROOT,
        env=worker.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "svcjwt_status" in listing.stdout


@pytest.mark.parametrize(("pool", "concurrency"), [("solo", 1), ("threads", 4)])
def test_solo_and_threads_report_the_main_process_live(worker_factory, api_server, pool, concurrency):
    worker = worker_factory(pool=pool, concurrency=concurrency)

    before = svcjwt_status(worker)
    assert before["pool"] == pool
    assert before["logged_in"] is False
    [main] = before["processes"]
    assert main["role"] == "main process" and main["profiles"] == {} and "no report yet" in main["note"]

    worker.run("whoami")
    after = svcjwt_status(worker)
    [main] = after["processes"]
    assert main["pid"] == after["pid"]
    report = main["profiles"]["default"]
    assert report["logged_in"] is True
    assert report["logins"] == 1


def test_401_retries_and_expiry_are_reported(api_server_factory, worker_factory):
    api = api_server_factory()
    worker = worker_factory(pool="prefork", concurrency=1, api=api)
    assert worker.run("whoami")["logins"] == 1

    # The API's signing key changes: the next call gets a 401, renews and replays.
    api.restart(EXAMPLE_API_SECRET_KEY="another-signing-key-for-the-status-test-0123456789")
    result = worker.run("call", "GET", "api/whoami/")
    assert result["status"] == 200 and result["retries_401"] == 1

    [child] = children(svcjwt_status(worker))
    report = child["profiles"]["default"]
    assert report["retries_401"] == 1  # written to the child's status file on the retry_401 event
    assert report["logins"] == 2  # the old refresh token died with the key: logged in again
    assert report["logged_in"] is True

    # Once more, and this time the API issues 4-second tokens.
    api.restart(
        EXAMPLE_API_SECRET_KEY="a-third-signing-key-for-the-status-test-0123456789", EXAMPLE_API_ACCESS_SECONDS="4"
    )
    assert worker.run("call", "GET", "api/whoami/")["retries_401"] == 2

    # Nothing runs, so nothing refreshes and the file is not rewritten: "logged in" is decided
    # when the question is asked, here after the 4-second token has expired.
    time.sleep(4.5)
    [child] = children(svcjwt_status(worker))
    report = child["profiles"]["default"]
    assert report["retries_401"] == 2
    assert report["logged_in"] is False
    assert report["state"] == "token expired (renewed on next use)"
    assert report["token_expires_in"] is None
    stats = worker.app.control.inspect([worker.hostname], timeout=3).stats()[worker.hostname]["svcjwt"]
    assert stats["logged_in"] is False  # celery inspect stats tells the same
