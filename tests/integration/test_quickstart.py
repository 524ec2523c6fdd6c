"""The quickstart (docs/quickstart.rst), followed step by step as a new user would.

Its files are tests/quickstart/, which the page includes verbatim: a Django
project whose DRF + SimpleJWT API is served by ``manage.py runserver``, and a
worker without Django.  Each test runs the page's commands in a copy of them
and looks for the log lines the page shows.  They use Redis, as the page does
(each on a queue of its own).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import JWT_RE, ROOT, free_port, require_broker, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.redis]

PROJECTS = ROOT / "tests" / "quickstart"
PASSWORD = "quickstart password 0123"
BROKER = "redis://127.0.0.1:6379/8"


class Shell:
    """Runs the page's commands in one folder, with the environment of a fresh terminal."""

    def __init__(self, cwd: Path, **env: str) -> None:
        self.cwd = cwd
        clean = {
            k: v for k, v in os.environ.items() if not k.startswith(("SVCJWT_", "SVC_ACCT_", "DJANGO_", "CELERY_"))
        }
        self.env = {**clean, **env}
        self.background: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(self, *argv: str) -> str:
        proc = subprocess.run(
            [sys.executable, *argv], cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout}{proc.stderr}"
        return proc.stdout

    def start(self, name: str, *argv: str) -> Path:
        log = self.cwd / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *argv],
                cwd=self.cwd,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.background.append((proc, log))
        return log

    def read(self, log: Path) -> str:
        for proc, path in self.background:
            if path == log and proc.poll() is not None:
                raise AssertionError(f"{log.name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        return log.read_text(errors="replace")

    def stop(self) -> None:
        for proc, _ in self.background:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.background:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    require_broker("redis")
    shutil.copytree(PROJECTS, tmp_path / "projects", ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    s = Shell(tmp_path / "projects")
    yield s
    s.stop()
    for _, log in s.background:
        text = log.read_text(errors="replace")
        assert PASSWORD not in text, f"the password appears in {log.name}"
        assert JWT_RE.search(text) is None, f"a token appears in {log.name}"


def serve_the_api(shell: Shell) -> str:
    """Steps 2 and 6 of the page: migrate, create the service account, runserver."""
    project = shell.cwd / "django"
    api = Shell(project, **shell.env)
    api.background = shell.background
    api.run("manage.py", "migrate")
    api.run(
        "manage.py",
        "shell",
        "-c",
        f"from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user('svc-worker', password={PASSWORD!r})",
    )
    port = free_port()
    log = api.start("runserver", "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload")
    wait_for(lambda: "Quit the server with" in api.read(log), 60, "runserver to start")
    return f"http://127.0.0.1:{port}/"


def test_the_django_quickstart(shell):
    url = serve_the_api(shell)
    queue = f"quickstart-{uuid.uuid4().hex[:8]}"
    project = Shell(
        shell.cwd / "django",
        **shell.env,
        SVC_ACCT_USER="svc-worker",
        SVC_ACCT_PASS=PASSWORD,
        API_URL=url,
        CELERY_BROKER_URL=BROKER,
    )
    project.background = shell.background

    log = project.start("worker", "-m", "celery", "-A", "proj", "worker", "-l", "info", "-c", "2", "-Q", queue)
    wait_for(lambda: project.read(log).count(f"logged in as 'svc-worker' at {url}") == 2, 60, "both children to log in")
    assert f"celery-svcjwt: tasks call {url} as 'svc-worker' (login http, header Bearer)" in project.read(log)

    project.run(
        "manage.py",
        "shell",
        "-c",
        f"from items.tasks import sync_item; [sync_item.apply_async((i,), queue={queue!r}) for i in (1, 2, 3)]",
    )

    succeeded = r"Task items\.tasks\.sync_item\[[\w-]+\] succeeded in [\d.]+s: (.*)"
    done = wait_for(lambda: len(re.findall(succeeded, project.read(log))) == 3, 60, "the three tasks to succeed")
    assert done and "{'id': 1, 'seen_by': 'svc-worker'}" in re.findall(succeeded, project.read(log))
    assert project.read(log).count("logged in as") == 2  # no further login for the tasks
    # The API really required the token: the same URL without one is refused.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url + "api/items/1/", timeout=10)
    assert refused.value.code == 401
    # `manage.py check` runs celery-svcjwt's system checks (listed in INSTALLED_APPS) and finds nothing.
    assert "no issues" in project.run("manage.py", "check")


def test_a_worker_without_django(shell, tmp_path):
    url = serve_the_api(shell)
    secret = tmp_path / "svc-acct-password"
    secret.write_text(PASSWORD + "\n")
    queue = f"quickstart-{uuid.uuid4().hex[:8]}"
    worker = Shell(shell.cwd / "nodjango", **shell.env, SVC_ACCT_USER="svc-worker", SVCJWT_PASSWORD_FILE=str(secret))
    worker.background = shell.background

    # The page's command line, pointed at this API (the command line wins over app.conf).
    argv = ["-m", "celery", "-A", "proj", "-b", BROKER, "worker", "-l", "info", "-c", "2", "-Q", queue]
    log = worker.start("worker", *argv, "--svcjwt-api-url", url, "--svcjwt-timeout", "5")
    wait_for(lambda: worker.read(log).count(f"logged in as 'svc-worker' at {url}") == 2, 60, "both children to log in")

    worker.run(
        "-c",
        f"from proj import app, sync_item; app.conf.broker_url = {BROKER!r}; sync_item.apply_async((7,), queue={queue!r})",
    )

    succeeded = r"Task proj\.sync_item\[[\w-]+\] succeeded in [\d.]+s: (.*)"
    done = wait_for(lambda: re.findall(succeeded, worker.read(log)), 60, "the task to succeed")
    assert done == ["{'id': 7, 'seen_by': 'svc-worker'}"]
