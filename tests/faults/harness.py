"""Workers, secret scans and figures for the reliability tests (tests/integration/test_faults.py etc.).

``Fleet`` starts real ``celery worker`` subprocesses (tests/conftest.py's
``Worker``) with the reliability tasks loaded (``-I tests.faults.tasks``),
stops them in parallel (a worker on the filesystem broker takes seconds to
shut down), and at the end searches every log, task result and event file for
the password, for anything shaped like a JWT, and for each token the fault
proxy saw the API issue.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.conftest import JWT_RE, PASSWORD, Worker, assert_no_secrets

TASKS = "tests.faults.tasks"
#: Environment variable naming the JSON file the figures are written to (docs/reliability.rst).
FIGURES_ENV = "SVCJWT_RELIABILITY_FIGURES"


class Fleet:
    """The workers of one test module."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workers: list[Worker] = []

    def start(
        self,
        api_url: str,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        user: str = "svc-worker",
        password: str = PASSWORD,
        wait_ready: bool = True,
        broker: str = "filesystem",
    ) -> Worker:
        workdir = self.root / f"worker{len(self.workers)}"
        workdir.mkdir(parents=True)
        account = {
            "SVCJWT_API_URL": api_url,
            "SVC_ACCT_USER": user,
            "SVC_ACCT_PASS": password,
            "SVCJWT_TEST_EVENTS": str(workdir / "events.jsonl"),
        }
        argv = ["--pool", pool, "-c", str(concurrency), "-I", TASKS, *(args or [])]
        worker = Worker(workdir, broker, {**account, **(env or {})}, argv)
        self.workers.append(worker)
        return worker.start(wait_ready=wait_ready)

    def retire(self, worker: Worker) -> None:
        """Ask a worker to stop (warm shutdown) without waiting for it."""
        if worker.proc is not None and worker.proc.poll() is None:
            worker.proc.send_signal(signal.SIGTERM)

    def close(self, secrets: Iterable[str] = ()) -> None:
        """Stop every worker (in parallel, bounded) and scan what they left for secrets."""
        for worker in self.workers:
            self.retire(worker)
        deadline = time.monotonic() + 30
        for worker in self.workers:
            if worker.proc is None:
                continue
            try:
                worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker's own process group
                worker.proc.wait(10)
        exact = sorted(set(secrets))
        for worker in self.workers:
            scan_worker(worker, exact)


def scan_worker(worker: Worker, secrets: list[str]) -> None:
    """The worker's log, results and events hold no password, no JWT, none of ``secrets``."""
    password = worker.env.get("SVC_ACCT_PASS") or PASSWORD
    files = [worker.log_path, worker.workdir / "events.jsonl", *(worker.workdir / "spool" / "results").glob("*")]
    for path in files:
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        where = f"{path.name} of worker {worker.hostname}"
        assert_no_secrets(text, where, password)
        assert_no_exact_secrets(text, secrets, where)


def assert_no_exact_secrets(text: str, secrets: Iterable[str], where: str) -> None:
    for secret in secrets:
        if len(secret) >= 8:
            assert secret not in text, f"an issued token appears in {where}"


def send(worker: Worker, task: str, *args: Any, **kwargs: Any) -> Any:
    """Send one of tests/faults/tasks.py's tasks to ``worker``."""
    return worker.app.send_task(f"{TASKS}.{task}", args=args, kwargs=kwargs, queue=worker.queue)


def events(worker: Worker) -> list[dict[str, Any]]:
    """Retries and failures the worker's tasks met (tests/faults/tasks.py writes them)."""
    path = worker.workdir / "events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def seen(worker: Worker) -> dict[str, int]:
    """What the tasks saw: exception type -> how many retries or failures it caused."""
    out: dict[str, int] = {}
    for e in events(worker):
        key = f"{e['exc']} ({e['event']})"
        out[key] = out.get(key, 0) + 1
    return out


def rss_kib(pid: int) -> int | None:
    """Resident set size of a live process, from /proc (Linux), in KiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) if match else None


def record_figures(section: str, data: Any) -> None:
    """Merge ``data`` under ``section`` into the figures file, when SVCJWT_RELIABILITY_FIGURES names one."""
    target = os.environ.get(FIGURES_ENV)
    if not target:
        return
    path = Path(target)
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current[section] = data
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


__all__ = [
    "FIGURES_ENV",
    "JWT_RE",
    "Fleet",
    "assert_no_exact_secrets",
    "events",
    "record_figures",
    "rss_kib",
    "scan_worker",
    "seen",
    "send",
]
