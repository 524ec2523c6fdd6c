"""Shared by the benchmark scripts: the real API server, real ``celery worker`` processes, statistics.

Nothing here imports pytest: the benchmarks start their own subprocesses and
stop every one of them (``try``/``finally``), and only talk to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
USERNAME = "svc-bench"
PASSWORD = "bench-password-only-for-this-run"
REDIS_URL = "redis://127.0.0.1:6379/11"
APP = "benchmarks.benchapp"
#: Prefix of the per-request steps a bare session pays on every call and self.api skips.
SKIPPED = "skipped: "


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # run_all.py's time limit: unwind, so every finally stops its processes


signal.signal(signal.SIGTERM, _exit_on_sigterm)

if str(ROOT) not in sys.path:  # example.fsbroker, celery_svcjwt from a checkout
    sys.path.insert(0, str(ROOT))


# -- command line and results ------------------------------------------------------


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="a short run (fewer repetitions and tasks)")
    p.add_argument("--out", default=None, help="where to write the JSON results")
    return p


def write_results(name: str, data: dict[str, Any], out: str | None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "machine": machine(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False))
    os.replace(tmp, path)
    print(f"wrote {path}", flush=True)
    return path


def machine() -> dict[str, Any]:
    import celery
    import requests

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "celery": celery.__version__,
        "requests": requests.__version__,
    }
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import django

        info["django"] = django.get_version()
    except ImportError:
        pass
    return info


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- statistics ----------------------------------------------------------------------


def summary(values: Iterable[float]) -> dict[str, float]:
    """Median, quartiles, min and max (and the count) of ``values``."""
    data = sorted(values)
    if not data:
        return {"n": 0}
    if len(data) >= 2:
        q1, _, q3 = statistics.quantiles(data, n=4, method="inclusive")
    else:
        q1 = q3 = data[0]
    return {
        "n": len(data),
        "median": statistics.median(data),
        "q1": q1,
        "q3": q3,
        "min": data[0],
        "max": data[-1],
        "mean": statistics.fmean(data),
    }


def rotated(items: Sequence[Any], k: int) -> list[Any]:
    """``items`` rotated by ``k``: each repetition starts with another variant (cancels drift)."""
    k %= len(items)
    return list(items[k:]) + list(items[:k])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def redis_available() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
    except OSError:
        return False
    return True


# -- processes -----------------------------------------------------------------------


def base_env(**extra: str) -> dict[str, str]:
    """The environment of every subprocess: the default password hasher, loopback only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXAMPLE_API_", "SVCJWT_", "CELERY_"))}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """Stop a process this module started (and, if it ignores SIGTERM, its own process group)."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group we created with start_new_session
        except ProcessLookupError:
            pass
        proc.wait(10)


class ApiServer:
    """The example DRF + SimpleJWT API under waitress, with Django's default (PBKDF2) hasher."""

    def __init__(self, workdir: Path, access_seconds: float = 300, threads: int = 8, **env: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.db = workdir / "db.sqlite3"
        self.access_seconds = access_seconds
        self.threads = threads
        self.env = {"EXAMPLE_API_ACCESS_SECONDS": str(access_seconds), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> ApiServer:
        url_file = self.workdir / "url.txt"
        url_file.unlink(missing_ok=True)
        with open(self.workdir / "server.log", "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "example.serve", "--port", "0", "--db", str(self.db)]
                + ["--user", USERNAME, "--password", PASSWORD, "--url-file", str(url_file)]
                + ["--threads", str(self.threads)],
                cwd=ROOT,
                env=base_env(**self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the API server exited:\n{self.log()[-3000:]}")
            return url_file.exists()

        wait_for(ready, 90, "the API server")
        self.url = url_file.read_text().strip()
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stats(self) -> dict[str, int]:
        with urllib.request.urlopen(self.url + "_stats/", timeout=10) as r:
            return dict(json.load(r))

    def reset_stats(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "_stats/reset/", method="POST"), timeout=10).close()

    def django_env(self) -> dict[str, str]:
        """For a process that runs this API's Django project (same settings, same database)."""
        return {
            "DJANGO_SETTINGS_MODULE": "example.apiproject.settings",
            "EXAMPLE_API_DB": str(self.db),
            **self.env,
        }

    def account_env(self) -> dict[str, str]:
        return {"SVCJWT_API_URL": self.url, "SVC_ACCT_USER": USERNAME, "SVC_ACCT_PASS": PASSWORD}

    def login(self) -> dict[str, str]:
        """One token pair, over HTTP."""
        import requests

        r = requests.post(self.url + "api/token/", json={"username": USERNAME, "password": PASSWORD}, timeout=60)
        r.raise_for_status()
        return dict(r.json())


def client_app(broker: str, spool: Path, queue: str) -> Any:
    """A Celery app that sends to the worker of :class:`Worker` (same broker, queue and backend)."""
    from celery import Celery

    for sub in ("queue", "processed", "results", "control"):
        (spool / sub).mkdir(parents=True, exist_ok=True)
    app = Celery(f"bench-client-{queue}", set_as_current=False)
    if broker == "redis":
        app.conf.update(broker_url=REDIS_URL, result_backend=REDIS_URL)
    else:
        app.conf.update(
            broker_url="filesystem://",
            broker_transport="example.fsbroker:Transport",
            broker_transport_options=fs_transport_options(spool),
            result_backend="file://" + str(spool / "results"),
        )
    app.conf.update(task_default_queue=queue, broker_connection_retry_on_startup=True)
    return app


def fs_transport_options(spool: Path) -> dict[str, Any]:
    return {
        "data_folder_in": str(spool / "queue"),
        "data_folder_out": str(spool / "queue"),
        "processed_folder": str(spool / "processed"),
        "store_processed": False,
        "control_folder": str(spool / "control"),
    }


class Worker:
    """``celery -A benchmarks.benchapp worker --pool prefork -c N`` on one broker and its own queue."""

    def __init__(
        self,
        workdir: Path,
        broker: str,
        api: ApiServer,
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        django: bool = True,
    ) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.broker = broker
        self.queue = f"bench-{uuid.uuid4().hex[:10]}"
        self.spool = workdir / "spool"
        self.app = client_app(broker, self.spool, self.queue)
        self.hostname = f"bench-{uuid.uuid4().hex[:8]}@localhost"
        extra = {**api.account_env(), "EXAMPLE_SPOOL": str(self.spool), "BENCH_QUEUE": self.queue}
        if broker == "redis":
            extra.update(CELERY_BROKER_URL=REDIS_URL, CELERY_RESULT_BACKEND=REDIS_URL)
        if django:  # the seed's setting: a Django project whose worker has Django configured
            extra.update(api.django_env())
        self.env = base_env(**extra, **(env or {}))
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "worker.log"
        self.sent: list[Any] = []

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Worker:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", APP, "worker", "-l", "warning", "-n", self.hostname]
                + ["--pool", "prefork", "-c", str(self.concurrency)]
                + ["--without-gossip", "--without-mingle", "--without-heartbeat"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        """Ready when a trivial task comes back from every pool child."""

        def alive() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            return True

        alive()
        first = self.send("benchmarks.benchapp.noop")
        deadline = time.monotonic() + timeout
        while True:
            alive()
            try:
                first.get(timeout=1, interval=0.02)
                break
            except Exception as exc:  # celery's TimeoutError
                if "TimeoutError" not in type(exc).__name__ or time.monotonic() > deadline:
                    raise
        # every child answers: children wait a little so that each gets one
        pids = set()
        for _ in range(10):
            batch = [self.send("benchmarks.benchapp.noop", 0.05) for _ in range(2 * self.concurrency)]
            pids |= {r.get(timeout=60, interval=0.01) for r in batch}
            if len(pids) >= self.concurrency:
                break

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, name: str, *args: Any) -> Any:
        result = self.app.send_task(name, args=args, queue=self.queue)
        self.sent.append(result)
        return result

    def children(self) -> list[Any]:
        import psutil

        if self.proc is None:
            return []
        return psutil.Process(self.proc.pid).children()

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
        if self.broker == "redis":
            self._clean_redis()

    def _clean_redis(self) -> None:
        """Delete what this worker left in Redis db 11: its results and its queue's keys."""
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            keys = [f"celery-task-meta-{r.id}" for r in self.sent]
            keys += list(client.scan_iter(match=f"*{self.queue}*"))  # the queue and kombu's bindings of it
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
            client.close()
        except Exception as exc:  # cleaning up is best effort
            log(f"could not clean Redis: {exc}")


def run_batch(worker: Worker, name: str, args_list: Sequence[tuple[Any, ...]], timeout: float = 600) -> dict[str, Any]:
    """Send a batch of tasks at once; wait for all; in-task seconds and end-to-end throughput."""
    started = time.perf_counter()
    results = [worker.send(name, *args) for args in args_list]
    values = [r.get(timeout=timeout, interval=0.005) for r in results]
    wall = time.perf_counter() - started
    return {
        "n": len(values),
        "wall": wall,
        "tasks_per_s": len(values) / wall,
        "in_task": [v["seconds"] for v in values],
        "pids": sorted({v["pid"] for v in values}),
        "values": values,
    }


def run_mixed(
    worker: Worker, calls: Sequence[tuple[str, tuple[Any, ...]]], timeout: float = 600
) -> dict[str, list[float]]:
    """Send interleaved tasks of several kinds in one batch: in-task seconds by task name, paired in time."""
    results = [(name, worker.send(name, *args)) for name, args in calls]
    out: dict[str, list[float]] = {}
    for name, r in results:
        out.setdefault(name, []).append(r.get(timeout=timeout, interval=0.005)["seconds"])
    return out


_tempdirs: list[Path] = []


def tempdir(prefix: str) -> Path:
    """A new folder for servers' databases, workers' spools and logs; removed at exit unless BENCH_KEEP=1."""
    path = Path(tempfile.mkdtemp(prefix=f"svcjwt-bench-{prefix}-"))
    _tempdirs.append(path)
    return path


@atexit.register
def _remove_tempdirs() -> None:
    if os.environ.get("BENCH_KEEP") == "1":
        return
    for path in _tempdirs:
        shutil.rmtree(path, ignore_errors=True)
