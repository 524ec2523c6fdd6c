"""The demo: a real API, a real worker, authenticated tasks, and what happened.

    python3 dev.py demo          (or: python -m example.demo, inside the venv)

1. Serves the example DRF + SimpleJWT API on 127.0.0.1 with waitress, with
   Django's default password hasher and 6-second access tokens.
2. Starts ``celery worker`` (prefork, 2 children) on kombu's filesystem
   transport: no broker server needed.
3. Runs authenticated tasks through ``self.api``, long enough for the tokens
   to be refreshed, then a few tasks written the seed article's way (a login
   per task) for comparison, and prints a summary.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from json import load
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER = "svc-demo"
PASSWORD = "demo-password-only-for-this-run"


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: timed out waiting for {what}")
        time.sleep(0.05)
    return value


def stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "_stats/", timeout=10) as r:
        return load(r)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="celery-svcjwt demo")
    parser.add_argument("--tasks", type=int, default=300, help="authenticated tasks to run (default 300)")
    parser.add_argument("--seed-tasks", type=int, default=10, help="seed-style tasks for comparison (default 10)")
    parser.add_argument("--access-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="celery-svcjwt-demo-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "EXAMPLE_SPOOL": str(work / "spool"),
        "EXAMPLE_API_ACCESS_SECONDS": str(args.access_seconds),
        "SVC_ACCT_USER": USER,
        "SVC_ACCT_PASS": PASSWORD,
    }
    env.pop("CELERY_BROKER_URL", None)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        print("1. Starting the example API (DRF + SimpleJWT, waitress, 127.0.0.1) ...")
        url_file = work / "url.txt"
        server_log = open(work / "server.log", "wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "example.serve", "--port", "0", "--url-file", str(url_file), "--user", USER],
                cwd=ROOT,
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
        )
        wait_for(url_file.exists, 60, "the API server")
        api = url_file.read_text()
        env["SVCJWT_API_URL"] = api
        os.environ.update({k: env[k] for k in ("EXAMPLE_SPOOL", "SVCJWT_API_URL", "SVC_ACCT_USER", "SVC_ACCT_PASS")})
        print(f"   API at {api} (access tokens live {args.access_seconds:g}s)")

        print("2. Starting `celery worker --pool prefork -c 2` on the filesystem broker ...")
        worker_log = work / "worker.log"
        with open(worker_log, "wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "example.proj.celery", "worker", "-l", "info"]
                    + ["--pool", "prefork", "-c", "2", "-n", "demo@localhost", "--without-gossip", "--without-mingle"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        wait_for(lambda: " ready." in worker_log.read_text(errors="replace"), 60, "the worker")
        wait_for(lambda: stats(api).get("/api/token/ 200", 0) >= 2, 30, "the pool children to log in")
        print("   worker ready; each of its 2 pool children logged in once, at worker_process_init")

        from example.proj.tasks import sync_item, sync_item_seed

        print(f"3. Running {args.tasks} authenticated tasks (self.api.get('api/items/<pk>/')) ...")
        out = []
        started = time.perf_counter()
        rounds = 3
        for i in range(rounds):  # spread over a little more than one token lifetime
            batch = [sync_item.delay(pk) for pk in range(i * args.tasks // rounds, (i + 1) * args.tasks // rounds)]
            out += [r.get(timeout=120, interval=0.01) for r in batch]
            if i < rounds - 1:
                time.sleep(args.access_seconds / 2)
        wall = time.perf_counter() - started - (rounds - 1) * args.access_seconds / 2
        after = stats(api)

        print(f"4. Running {args.seed_tasks} tasks the seed article's way (HTTP login on every task) ...")
        seed_started = time.perf_counter()
        seed = [sync_item_seed.delay(pk) for pk in range(args.seed_tasks)]
        seed_out = [r.get(timeout=300, interval=0.01) for r in seed]
        seed_wall = time.perf_counter() - seed_started

        per_pid: dict[int, dict[str, int]] = defaultdict(dict)
        for o in out:
            p = per_pid[o["pid"]]
            p["tasks"] = p.get("tasks", 0) + 1
            p["logins"] = max(p.get("logins", 0), o["logins"])
            p["refreshes"] = max(p.get("refreshes", 0), o["refreshes"])
        ok = Counter(o["item"]["seen_by"] == USER for o in out)[True]

        print()
        print("Summary")
        print("-------")
        print(f"tasks run                 {len(out)} ({ok} authenticated as {USER!r}, {len(out) - ok} failed)")
        print(
            f"time per task             {1000 * wall / len(out):.1f} ms  ({len(out) / wall:.0f} tasks/s, 2 processes)"
        )
        for pid, p in sorted(per_pid.items()):
            print(f"worker process {pid:<8}  {p['tasks']} tasks, {p['logins']} login, {p['refreshes']} refreshes")
        print(
            f"token endpoint calls      {after.get('/api/token/ 200', 0)} logins, "
            f"{after.get('/api/token/refresh/ 200', 0)} refreshes, "
            f"{after.get('/api/token/refresh/ 401', 0) + after.get('/api/items/1/ 401', 0)} rejected"
        )
        ours = 1000 * statistics.median(o["seconds"] for o in out)
        theirs = 1000 * statistics.median(o["seconds"] for o in seed_out)
        print(f"time inside a task        {ours:.1f} ms median (celery-svcjwt: one API call on a cached token)")
        print(
            f"seed approach             {theirs:.1f} ms median inside a task (HTTP login + call; "
            f"{1000 * seed_wall / args.seed_tasks:.0f} ms per task end to end)"
        )
        print(f"speed-up inside a task    {theirs / ours:.0f}x")
        print(f"logs                      {work}")
        return 0 if ok == len(out) == args.tasks else 1
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()


if __name__ == "__main__":
    sys.exit(main())
