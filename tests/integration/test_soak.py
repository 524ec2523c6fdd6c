"""Soak: a real prefork worker runs thousands of authenticated tasks with 2-second access tokens.

Rotation and blacklisting are on, so a refresh token used twice would be
refused.  Checked: zero failed tasks, zero lost (every task's answer comes
back once, and the API saw each call once), one login per process, refreshes
per process within what the token lifetime implies, and the resident memory
of each pool process from /proc (its growth is reported).

The CI run sends 1,000 tasks; the long run (``-m slow``, in the
``reliability`` nox session) sends 10,000 (SVCJWT_SOAK_TASKS to change it).
With SVCJWT_RELIABILITY_FIGURES set, the figures go to that JSON file.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict, deque
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.faults.harness import Fleet, events, record_figures, rss_kib, send

pytestmark = pytest.mark.integration

ACCESS_SECONDS = 2
#: SimpleJWT's claims are whole seconds: a token surely lives one second less than its lifetime.
USABLE = ACCESS_SECONDS - 1
#: A refresh comes at half the usable lifetime at the earliest.
MIN_REFRESH_INTERVAL = USABLE / 2
PROCESSES = 2
IN_FLIGHT = 200


@pytest.fixture(scope="module")
def soak_api(api_server_factory):
    return api_server_factory(
        EXAMPLE_API_ACCESS_SECONDS=str(ACCESS_SECONDS), EXAMPLE_API_ROTATE="1", EXAMPLE_API_BLACKLIST="1"
    )


def soak(fleet: Fleet, api, total: int) -> dict[str, Any]:
    api.reset_stats()
    booted = time.monotonic()  # the refresh bound counts from here: the children log in at start
    worker = fleet.start(api.url, pool="prefork", concurrency=PROCESSES)
    wait_for(lambda: api.logins() >= PROCESSES, 30, "both pool children to log in")

    pending: deque[tuple[int, Any]] = deque()
    answers: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    per_pid: dict[int, dict[str, int]] = defaultdict(lambda: {"tasks": 0, "logins": 0, "refreshes": 0})
    rss: dict[int, list[tuple[int, int]]] = defaultdict(list)  # pid -> [(tasks done, KiB)]
    checkpoints = {total * k // 10 for k in range(1, 11)}
    started = time.monotonic()
    sent = 0
    while sent < total or pending:
        while sent < total and len(pending) < IN_FLIGHT:
            pending.append((sent, send(worker, "echo", sent)))
            sent += 1
        n, result = pending.popleft()
        try:
            out = worker.outcome(result, 120)
        except Exception as exc:  # counted, then the test fails
            failures.append(f"task {n}: {type(exc).__name__}: {exc}")
            continue
        if out["n"] in answers:
            failures.append(f"task {n}: answer {out['n']} came twice")
        answers[out["n"]] = out
        seen = per_pid[out["pid"]]
        seen["tasks"] += 1
        seen["logins"] = max(seen["logins"], out["logins"])
        seen["refreshes"] = max(seen["refreshes"], out["refreshes"])
        done = len(answers)
        if done in checkpoints:
            for pid in per_pid:
                kib = rss_kib(pid)
                if kib is not None:
                    rss[pid].append((done, kib))
    elapsed = time.monotonic() - started
    stats = api.stats()
    fleet.retire(worker)

    processes = []
    for pid, counts in sorted(per_pid.items()):
        series = rss.get(pid, [])
        # From the first checkpoint (10 % of the tasks: imports and caches warmed up) to the last.
        start_kib = series[0][1] if series else None
        end_kib = series[-1][1] if series else None
        processes.append(
            {
                "pid": pid,
                **counts,
                "rss_kib": [kib for _, kib in series],
                "rss_growth_kib": end_kib - start_kib if series else None,
            }
        )
    return {
        "tasks": total,
        "seconds": round(elapsed, 1),
        "tasks_per_second": round(total / elapsed),
        "access_token_seconds": ACCESS_SECONDS,
        "rotation_and_blacklist": True,
        "failed": len(failures),
        "failures": failures[:5],
        "lost": total - len(answers),
        "retried": len(events(worker)),
        "processes": processes,
        "refresh_bound_per_process": int((time.monotonic() - booted) / MIN_REFRESH_INTERVAL) + 1,
        "server": {
            "logins": stats.get("/api/token/ 200", 0),
            "refreshes": stats.get("/api/token/refresh/ 200", 0),
            "refreshes_refused": stats.get("/api/token/refresh/ 401", 0),
            "api_calls_ok": stats.get("/api/echo/ 200", 0),
            "api_401": stats.get("/api/echo/ 401", 0),
        },
        "retries_401": sum(a["history"].count(401) for a in answers.values()),
    }


def check(figures: dict[str, Any]) -> None:
    total = figures["tasks"]
    server = figures["server"]
    assert figures["failed"] == 0, figures["failures"]
    assert figures["lost"] == 0
    assert figures["retried"] == 0
    assert server["api_calls_ok"] == total  # each task's call reached the API exactly once
    assert server["refreshes_refused"] == 0  # a rotated-away refresh token was never sent again
    # A token that expired on its way through a loaded server (a 401) is renewed and replayed: rare.
    assert server["api_401"] == figures["retries_401"] <= total // 100
    processes = figures["processes"]
    assert 1 <= len(processes) <= PROCESSES
    assert server["logins"] == PROCESSES  # one login per pool process, ever
    assert server["refreshes"] == sum(p["refreshes"] for p in processes)  # the processes' own counts agree
    for p in processes:
        assert p["logins"] == 1, p
        assert 1 <= p["refreshes"] <= figures["refresh_bound_per_process"] + figures["retries_401"], p


def check_memory(figures: dict[str, Any], limit_kib: int) -> None:
    for p in figures["processes"]:
        if p["rss_growth_kib"] is not None:
            assert p["rss_growth_kib"] <= limit_kib, p


def test_soak_ci(fleet, soak_api):
    figures = soak(fleet, soak_api, 1000)
    record_figures("soak_ci", figures)
    check(figures)
    check_memory(figures, limit_kib=4096)


@pytest.mark.slow
def test_soak_long(fleet, soak_api):
    total = int(os.environ.get("SVCJWT_SOAK_TASKS", "10000"))
    figures = soak(fleet, soak_api, total)
    record_figures("soak", figures)
    check(figures)
    check_memory(figures, limit_kib=4096)
