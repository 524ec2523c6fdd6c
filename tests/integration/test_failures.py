"""Failures: 401 from the API, auth server down at boot, wrong password, missing settings."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from celery_svcjwt import CredentialsRejected
from tests.conftest import ROOT, TASKS, USERNAME, free_port, wait_for

pytestmark = pytest.mark.integration


def test_401_from_api_renews_once_and_replays(api_server_factory, worker_factory):
    api = api_server_factory()
    worker = worker_factory(pool="solo", concurrency=1, api=api)
    assert worker.run("whoami")["logins"] == 1

    # The API's signing key changes: the worker's access and refresh tokens are both dead now.
    api.restart(EXAMPLE_API_SECRET_KEY="a-brand-new-signing-key-for-the-api-0123456789")

    result = worker.run("call", "POST", "api/echo/", json={"n": 1})
    assert result["status"] == 200
    assert result["body"]["data"] == {"n": 1}  # the body was replayed intact
    assert result["history"] == [401]
    assert result["retries_401"] == 1
    assert result["logins"] == 2  # refresh rejected (token_not_valid) -> logged in again
    stats = api.stats()
    assert stats["/api/echo/ 401"] == 1
    assert stats["/api/token/refresh/ 401"] == 1
    assert stats["/api/token/ 200"] == 1


def test_auth_server_down_at_boot_then_up(api_server_factory, worker_factory):
    port = free_port()
    # A black hole first: connections are accepted but never answered.
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", port))
    hole.listen(64)
    env = {
        "SVCJWT_API_URL": f"http://127.0.0.1:{port}/",
        "SVCJWT_TIMEOUT": "3",
        "SVCJWT_LOGIN_ATTEMPTS": "1",
        "SVCJWT_BACKOFF_MAX": "1",
        "SVCJWT_TASK_RETRY_BACKOFF_MAX": "1",
        "SVCJWT_TASK_MAX_RETRIES": "100",
    }
    worker = worker_factory(pool="prefork", concurrency=2, env=env)
    results = [worker.send("whoami") for _ in range(10)]

    # The children started although login hung, and the tasks are being retried, not failed.
    wait_for(lambda: worker.log().count("Retry in") >= 4, 60, "tasks to be retried")
    hole.close()
    wait_for(lambda: "AuthUnavailable" in worker.log(), 30, "a refused connection to be seen")
    api = api_server_factory(port=port)

    out = [worker.outcome(r, 90) for r in results]
    assert [o["username"] for o in out] == [USERNAME] * 10
    assert "Timed out waiting for UP message" not in worker.log()
    assert "Process 'ForkPoolWorker" not in worker.log() or "exited with 'signal 9" not in worker.log()
    assert api.logins() <= 2  # once up, one login per process: no storm
    for r in results:
        assert r.state == "SUCCESS"


def test_wrong_password_fails_at_once_and_backs_off(api_server, worker_factory):
    api_server.reset_stats()
    wrong = "not-the-password-0987"
    worker = worker_factory(pool="prefork", concurrency=2, env={"SVC_ACCT_PASS": wrong})
    results = [worker.send("whoami") for _ in range(30)]

    for r in results:
        with pytest.raises(CredentialsRejected) as info:
            worker.outcome(r, 60)
        message = str(info.value)
        assert USERNAME in message
        assert f"{api_server.url}api/token/" in message
        assert wrong not in message
        assert r.state == "FAILURE"  # not retried: a person must fix the credentials
    # Backoff: far fewer calls than tasks reached the token endpoint.
    assert api_server.stats().get("/api/token/ 401", 0) <= 8
    assert wrong not in worker.log()


def set_account(api, action: str) -> None:
    """Deactivate or delete the service account in the API's database, as an admin would."""
    code = (
        "import django; django.setup(); from django.contrib.auth import get_user_model; "
        f"users = get_user_model().objects.filter(username={api.user!r}); "
        + ("users.update(is_active=False)" if action == "deactivate" else "users.delete()")
    )
    subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **api.django_env()}, check=True, timeout=60
    )


def answers(api) -> dict[str, int]:
    """Every request the API answered since its stats were reset, by path and status."""
    return {key: n for key, n in api.stats().items() if " " in key}


def assert_account_refused(worker, api, result) -> None:
    with pytest.raises(CredentialsRejected) as info:
        worker.outcome(result, 60)
    assert USERNAME in str(info.value) and f"{api.url}api/token/" in str(info.value)
    assert result.state == "FAILURE"  # not retried: a person must restore the account
    assert "Retry in" not in worker.log()


@pytest.mark.parametrize("action", ["deactivate", "delete"])
def test_an_account_removed_while_its_token_is_valid_fails_clearly(api_server_factory, worker_factory, action):
    api = api_server_factory()
    worker = worker_factory(pool="solo", concurrency=1, api=api)
    assert worker.run("whoami")["logins"] == 1
    set_account(api, action)
    api.reset_stats()

    # The API refuses the still-valid token (user_inactive, user_not_found): a refresh cannot
    # cure that, so the worker logs in again, and the login names the account.
    assert_account_refused(worker, api, worker.send("whoami"))
    assert answers(api) == {"/api/whoami/ 401": 1, "/api/token/ 401": 1}


def test_a_deleted_account_whose_token_is_due_fails_clearly(api_server_factory, worker_factory):
    api = api_server_factory(EXAMPLE_API_ACCESS_SECONDS="3")
    worker = worker_factory(pool="solo", concurrency=1, api=api)
    facts = worker.run("whoami")
    due = time.monotonic() + facts["must_refresh_in"]
    set_account(api, "delete")
    api.reset_stats()
    wait_for(lambda: time.monotonic() > due + 0.2, 10, "the access token to be due for refresh")

    # SimpleJWT 5.5.1 answers the refresh with HTTP 500 for a deleted user; the worker then
    # logs in instead of refreshing again, and the login names the account.
    assert_account_refused(worker, api, worker.send("whoami"))
    assert answers(api) == {"/api/token/refresh/ 500": 1, "/api/token/ 401": 1}


def test_missing_settings_fail_at_start_with_one_clear_message(worker_factory):
    worker = worker_factory(env={"SVCJWT_API_URL": "", "SVC_ACCT_PASS": ""}, wait_ready=False)

    assert worker.wait_exit(60) == 1
    log = worker.log()
    assert "celery-svcjwt is not configured correctly" in log
    assert "svcjwt_api_url is not set" in log and "SVCJWT_API_URL" in log and "--svcjwt-api-url" in log
    assert "svcjwt_password is not set" in log and "SVC_ACCT_PASS" in log
    assert "Traceback" not in log


def test_command_line_option_wins_over_environment(api_server, worker_factory):
    worker = worker_factory(
        pool="solo",
        env={"SVCJWT_API_URL": "http://127.0.0.1:9/"},  # nothing listens there
        args=["--svcjwt-api-url", api_server.url],
    )
    assert worker.run("whoami")["username"] == USERNAME


def test_retry_gives_up_after_the_configured_count(worker_factory):
    port = free_port()  # nothing listens: connection refused
    env = {
        "SVCJWT_API_URL": f"http://127.0.0.1:{port}/",
        "SVCJWT_TASK_MAX_RETRIES": "2",
        "SVCJWT_TASK_RETRY_BACKOFF_MAX": "1",
        "SVCJWT_BACKOFF_MAX": "1",
    }
    worker = worker_factory(pool="solo", env=env)
    result = worker.send("whoami")
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        worker.outcome(result, 60)
    assert type(info.value).__name__ == "AuthUnavailable"
    assert result.state == "FAILURE"
    assert worker.log().count("Retry in") == 2
    assert time.monotonic() - started < 60
    # Giving up failed that one task only: the worker goes on running others.
    with pytest.raises(Exception) as other:
        worker.send("plain_get", f"http://127.0.0.1:{port}/").get(timeout=30, interval=0.05)
    assert type(other.value).__name__ == "ConnectionError"


def test_worker_help_lists_every_option_but_the_password():
    from celery_svcjwt.settings import SETTINGS

    proc = subprocess.run(
        [sys.executable, "-m", "celery", "-A", TASKS, "worker", "--help"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    options = set(re.findall(r"--svcjwt-[a-z-]+", proc.stdout))
    assert options == {s.option for s in SETTINGS if s.option}
    assert "--svcjwt-password-file" in options and "--svcjwt-password " not in proc.stdout
    assert "celery-svcjwt: Base URL of the API" in proc.stdout
