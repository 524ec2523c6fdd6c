"""``python -m celery_svcjwt check``: a real subprocess against the real example API."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, ROOT, USERNAME, assert_no_secrets, free_port

pytestmark = pytest.mark.integration

APP = "tests.integration.workerapp"


def run_check(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the check command as a deploy script would; every run is scanned for secrets."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SVCJWT_", "SVC_ACCT_", "DJANGO_"))}
    base.update({"PYTHONPATH": str(ROOT), "SVCJWT_TEST_SPOOL": str(tmp_path / "spool")})
    proc = subprocess.run(
        [sys.executable, "-m", "celery_svcjwt", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_no_secrets(proc.stdout + proc.stderr, "the check's output", env.get("SVC_ACCT_PASS") or PASSWORD)
    return proc


def account(api, **extra: str) -> dict[str, str]:
    return {"SVCJWT_API_URL": api.url, "SVC_ACCT_USER": api.user, "SVC_ACCT_PASS": api.password, **extra}


def test_check_logs_in_refreshes_calls_the_url_and_reports(tmp_path, api_server):
    api_server.reset_stats()

    proc = run_check(tmp_path, "check", "-A", APP, "--url", "api/whoami/", **account(api_server))

    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # every setting, with where its value came from
    assert "svcjwt_api_url" in out and "env SVCJWT_API_URL" in out
    assert f"'{USERNAME}'" in out and "env SVC_ACCT_USER" in out
    assert "(set, from env SVC_ACCT_PASS)" in out
    assert f"{api_server.url}api/token/refresh/" in out
    assert "Header: Authorization: Bearer <access token>" in out
    assert "[ok]   log in as" in out
    assert "access token lives 299s" in out  # 300 s, less the second SimpleJWT's whole-second iat may hide
    assert "[ok]   refresh at" in out and "not rotated" in out
    assert "clock skew" in out
    assert f"GET {api_server.url}api/whoami/: HTTP 200" in out
    assert out.rstrip().splitlines()[-1].startswith("OK: ")
    # it really went through the API: one login, one refresh, one call
    stats = api_server.stats()
    assert stats["/api/token/ 200"] == 1
    assert stats["/api/token/refresh/ 200"] == 1
    assert stats["/api/whoami/ 200"] == 1


def test_an_api_clock_ten_minutes_behind_is_reported_and_still_passes(tmp_path, api_server_factory):
    api = api_server_factory(EXAMPLE_API_CLOCK_OFFSET="-600")

    proc = run_check(tmp_path, "check", "-A", APP, **account(api))

    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr  # a warning, not a failure: expiry does not need NTP
    skew = next(line for line in out.splitlines() if "clock skew" in line)
    # this machine minus the API server: +600 s, plus under a second that the whole-second iat hides
    assert re.match(r"\[warn\] clock skew \+60[01]\.\ds ", skew.strip()), skew
    assert "fix the clock (NTP)" in out


def test_password_file_is_shown_as_set_with_its_path(tmp_path, api_server):
    secret = tmp_path / "password"
    secret.write_text(api_server.password + "\n")
    env = account(api_server, SVCJWT_PASSWORD_FILE=str(secret))
    del env["SVC_ACCT_PASS"]

    proc = run_check(tmp_path, "check", "-A", APP, **env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"(set, from file {secret})" in proc.stdout


def test_wrong_password_fails_with_what_to_fix(tmp_path, api_server):
    proc = run_check(tmp_path, "check", "-A", APP, **account(api_server, SVC_ACCT_PASS="not-the-password-0000"))

    assert proc.returncode == 1
    assert "[FAIL] log in as" in proc.stdout
    assert "CredentialsRejected" in proc.stdout
    assert "To fix: check svcjwt_username and the password" in proc.stdout
    assert "not-the-password-0000" not in proc.stdout + proc.stderr
    assert "[ok]   refresh" not in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1].startswith("FAILED: ")


def test_unreachable_api_fails_with_a_hint(tmp_path, api_server):
    env = account(api_server, SVCJWT_API_URL=f"http://127.0.0.1:{free_port()}/", SVCJWT_LOGIN_ATTEMPTS="1")

    proc = run_check(tmp_path, "check", "-A", APP, **env)

    assert proc.returncode == 1
    assert "AuthUnavailable: cannot reach the token endpoint" in proc.stdout
    assert "next try in" not in proc.stdout  # the worker's countdown means nothing here
    assert "To fix: check that the API is up and reachable" in proc.stdout


def test_missing_settings_fail_naming_each(tmp_path):
    proc = run_check(tmp_path, "check", "-A", APP)

    assert proc.returncode == 1
    assert "[FAIL] resolve the settings" in proc.stdout
    assert "svcjwt_api_url is not set" in proc.stdout
    assert "svcjwt_username is not set" in proc.stdout


def test_refresh_url_that_is_not_the_refresh_view_fails(tmp_path, api_server):
    proc = run_check(tmp_path, "check", "-A", APP, **account(api_server, SVCJWT_REFRESH_URL="api/token/"))

    assert proc.returncode == 1
    assert "[ok]   log in as" in proc.stdout
    assert "[FAIL] refresh at" in proc.stdout
    assert "svcjwt_refresh_url" in proc.stdout


def test_url_failures(tmp_path, api_server):
    proc = run_check(tmp_path, "check", "-A", APP, "--url", "api/no-such-thing/", **account(api_server))
    assert proc.returncode == 1
    assert "HTTP 404" in proc.stdout and "relative paths resolve against svcjwt_api_url" in proc.stdout

    proc = run_check(tmp_path, "check", "-A", APP, "--url", "https://elsewhere.example.com/x", **account(api_server))
    assert proc.returncode == 1
    assert "ForeignOriginError" in proc.stdout


def test_header_type_the_api_does_not_accept_and_rotation(tmp_path, api_server_factory):
    api = api_server_factory(EXAMPLE_API_HEADER_TYPES="JWT", EXAMPLE_API_ROTATE="1")

    proc = run_check(tmp_path, "check", "-A", APP, "--url", "api/whoami/", **account(api))
    assert proc.returncode == 1
    assert "refresh token rotated" in proc.stdout
    assert "HTTP 401" in proc.stdout
    assert "the API expects the 'JWT' scheme but svcjwt_auth_header_type is 'Bearer'" in proc.stdout

    proc = run_check(
        tmp_path, "check", "-A", APP, "--url", "api/whoami/", **account(api, SVCJWT_AUTH_HEADER_TYPE="JWT")
    )
    assert proc.returncode == 0, proc.stdout
    assert "Header: Authorization: JWT <access token>   (type from env SVCJWT_AUTH_HEADER_TYPE)" in proc.stdout


def test_usage_errors_exit_2(tmp_path):
    assert run_check(tmp_path).returncode == 2
    assert run_check(tmp_path, "check").returncode == 2
    proc = run_check(tmp_path, "check", "-A", "no_such_module_here")
    assert proc.returncode == 2
    assert "no module named 'no_such_module_here'" in proc.stderr
    proc = run_check(tmp_path, "check", "-A", "tests.integration:nothing")
    assert proc.returncode == 2
    assert "no Celery app" in proc.stderr
    assert run_check(tmp_path, "check", "-A", APP, "--no-such-option").returncode == 2


def test_app_option_before_the_command(tmp_path, api_server):
    proc = run_check(tmp_path, "-A", APP, "check", **account(api_server))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_worker_options_win_over_config_as_on_the_worker(tmp_path, api_server):
    api_server.reset_stats()
    env = account(api_server, SVCJWT_API_URL=f"http://127.0.0.1:{free_port()}/")  # nothing listens there

    proc = run_check(tmp_path, "check", "-A", APP, "--svcjwt-api-url", api_server.url, "--svcjwt-timeout", "7", **env)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{api_server.url}" in proc.stdout and "command line --svcjwt-api-url" in proc.stdout
    assert "command line --svcjwt-timeout" in proc.stdout
    assert api_server.stats()["/api/token/ 200"] == 1  # it logged in where the option pointed


def test_the_password_is_not_an_option(tmp_path):
    proc = run_check(tmp_path, "check", "-A", APP, "--svcjwt-password", "pw-typed-on-the-command-line")
    assert proc.returncode == 2  # not taken for --svcjwt-password-file, whose value a report would show
    assert "unrecognized arguments: --svcjwt-password " in proc.stderr
    assert "pw-typed-on-the-command-line" not in proc.stdout
    assert "--svcjwt-password-file" in run_check(tmp_path, "check", "--help").stdout
