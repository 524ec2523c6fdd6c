"""Fixtures shared by the test suite: a real API server and real ``celery worker`` processes.

* ``api_server`` / ``api_server_factory``: the example DRF + SimpleJWT project
  (example/) served by waitress on 127.0.0.1, in its own process.
* ``worker_factory``: a ``celery worker`` subprocess (prefork, threads, solo)
  of tests/integration/workerapp.py on the filesystem broker, Redis or
  RabbitMQ.  When a worker stops, its DEBUG log is searched for the password
  and for anything shaped like a JWT: every integration test checks secrets.

Redis and RabbitMQ tests skip when the server is not running, unless
SVCJWT_REQUIRE_BROKERS=1 (set by .ci/run), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery staple 42"
USERNAME = "svc-worker"
JWT_RE = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")
TASKS = "tests.integration.workerapp"
BROKER_PORTS = {"redis": 6379, "amqp": 5672}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_secrets(text: str, where: str, password: str = PASSWORD) -> None:
    assert password not in text, f"the password appears in {where}"
    match = JWT_RE.search(text)
    assert match is None, f"a JWT appears in {where}: ...{text[max(0, match.start() - 80) : match.start()]}"


class ApiServer:
    """The example API in a subprocess; restartable on the same port with other settings."""

    def __init__(self, workdir: Path, env: dict[str, str], port: int = 0) -> None:
        self.workdir = workdir
        self.env = env
        self.port = port
        self.db = workdir / "db.sqlite3"
        self.user = USERNAME
        self.password = PASSWORD
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, **env: str) -> ApiServer:
        self.env.update(env)
        url_file = self.workdir / "url.txt"
        url_file.unlink(missing_ok=True)
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "example.serve", "--port", str(self.port), "--db", str(self.db)]
            + ["--user", self.user, "--password", self.password, "--url-file", str(url_file)],
            cwd=ROOT,
            env={**os.environ, "EXAMPLE_API_FAST_HASHER": "1", **self.env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the API server exited:\n{self.log()[-3000:]}")
            return url_file.exists()

        wait_for(ready, 60, "the API server to start")
        self.url = url_file.read_text()
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def restart(self, **env: str) -> ApiServer:
        self.stop()
        return self.start(**env)

    def log(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "_stats/", timeout=10) as r:
            return dict(json.load(r))

    def reset_stats(self) -> None:
        req = urllib.request.Request(self.url + "_stats/reset/", method="POST")
        urllib.request.urlopen(req, timeout=10).close()

    def django_env(self) -> dict[str, str]:
        """Environment for a worker that runs this API's Django project (same settings and database)."""
        return {
            "DJANGO_SETTINGS_MODULE": "example.apiproject.settings",
            "EXAMPLE_API_DB": str(self.db),
            "EXAMPLE_API_FAST_HASHER": "1",
            **self.env,
        }

    def logins(self) -> int:
        return self.stats().get("/api/token/ 200", 0)

    def refreshes(self) -> int:
        return self.stats().get("/api/token/refresh/ 200", 0)


@pytest.fixture(scope="session")
def api_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ApiServer]]:
    """Start an API server with EXAMPLE_API_* settings (lifetimes, rotation, blacklist, header types)."""
    servers: list[ApiServer] = []

    def start(port: int = 0, **env: str) -> ApiServer:
        server = ApiServer(tmp_path_factory.mktemp("api"), dict(env), port)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
        assert_no_secrets(server.log(), "the API server's log")


@pytest.fixture(scope="session")
def api_server(api_server_factory: Callable[..., ApiServer]) -> ApiServer:
    """The default API: 5-minute access tokens, no rotation."""
    return api_server_factory()


def broker_available(broker: str) -> bool:
    if broker == "filesystem":
        return True
    try:
        socket.create_connection(("127.0.0.1", BROKER_PORTS[broker]), timeout=1).close()
    except OSError:
        return False
    return True


def require_broker(broker: str) -> None:
    if broker_available(broker):
        return
    message = f"{broker} is not running on 127.0.0.1:{BROKER_PORTS[broker]}"
    if os.environ.get("SVCJWT_REQUIRE_BROKERS") == "1":
        pytest.fail(message + " and SVCJWT_REQUIRE_BROKERS=1")
    pytest.skip(message)


class Worker:
    """A real ``celery worker`` process and a client app to send it tasks."""

    def __init__(self, workdir: Path, broker: str, env: dict[str, str], args: list[str]) -> None:
        from tests.integration.workerapp import make_app

        self.workdir = workdir
        self.log_path = workdir / "worker.log"
        self.queue = f"q-{uuid.uuid4().hex[:8]}"
        spool = str(workdir / "spool")
        self.app = make_app(broker, spool, self.queue)
        self.env = {
            **os.environ,
            "SVCJWT_TEST_BROKER": broker,
            "SVCJWT_TEST_SPOOL": spool,
            "SVCJWT_TEST_QUEUE": self.queue,
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.hostname = f"w{uuid.uuid4().hex[:8]}@localhost"

    def start(self, wait_ready: bool = True) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", TASKS, "worker", "-l", "debug", "-n", self.hostname]
            + ["--without-gossip", "--without-mingle", "--without-heartbeat", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_for(ready, 60, "the worker to be ready")

    def wait_exit(self, timeout: float = 60) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, task: str, *args: Any, **kwargs: Any) -> Any:
        return self.app.send_task(f"{TASKS}.{task}", args=args, kwargs=kwargs, queue=self.queue)

    def run(self, task: str, *args: Any, timeout: float = 60, **kwargs: Any) -> Any:
        return self.outcome(self.send(task, *args, **kwargs), timeout)

    def outcome(self, result: Any, timeout: float = 60) -> Any:
        """``result.get()``, failing at once (with the log's tail) if this worker dies meanwhile.

        A plain ``get(timeout=...)`` would wait out its whole timeout for every pending
        result of a dead worker.
        """

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"the worker exited with {self.proc.returncode} while task {result.id} was pending:\n"
                    + self.log()[-4000:]
                )
            return bool(result.ready())

        wait_for(ready, timeout, f"task {result.id}", interval=0.02)
        return result.get(timeout=10, interval=0.02)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def worker_factory(tmp_path: Path, api_server: ApiServer) -> Iterator[Callable[..., Worker]]:
    """Start a worker: ``worker_factory(pool="prefork", concurrency=2, broker="filesystem", api=..., env=..., args=...)``.

    The service account's settings point at ``api`` (default: the session's
    API server) unless ``env`` overrides them.
    """
    workers: list[Worker] = []

    def start(
        pool: str = "prefork",
        concurrency: int = 2,
        broker: str = "filesystem",
        api: ApiServer | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        wait_ready: bool = True,
    ) -> Worker:
        require_broker(broker)
        api = api or api_server
        account = {"SVCJWT_API_URL": api.url, "SVC_ACCT_USER": api.user, "SVC_ACCT_PASS": api.password}
        argv = ["--pool", pool, "-c", str(concurrency), *(args or [])]
        w = Worker(tmp_path / f"worker{len(workers)}", broker, {**account, **(env or {})}, argv)
        workers.append(w)
        return w.start(wait_ready=wait_ready)

    yield start
    for w in workers:
        w.stop()
    for w in workers:
        password = w.env.get("SVC_ACCT_PASS") or PASSWORD
        assert_no_secrets(w.log(), f"the log of worker {w.hostname}", password)
        for path in (w.workdir / "spool" / "results").glob("*"):
            assert_no_secrets(path.read_text(errors="replace"), f"the task result {path.name}", password)


@pytest.fixture(autouse=True)
def _results_may_be_awaited() -> None:
    """Let the test process wait for results even after an in-process worker ran in it.

    celery.contrib.testing's start_worker (used by the testing-helper tests) marks the whole
    process as a worker, after which AsyncResult.get() refuses to block.
    """
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(False)
