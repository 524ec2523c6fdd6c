"""``celery -A proj inspect svcjwt_status``: each worker's account state, per pool process.

The command runs in the worker's main process.  Under prefork that process
never logs in: the pool children do, and each writes its state into a status
file (see :mod:`celery_svcjwt.status`) that this command reads back.  Under
solo, threads, gevent and eventlet the main process runs the tasks, and the
command reads its token managers directly.

The files are written only when something happens (login, refresh, failure,
401 retry), so whatever depends on the time - logged in or not, how long a
backoff lasts - is worked out here, when the question is asked.  Nothing in
the answer is a token or a password.

Registered when :func:`celery_svcjwt.install` runs: since Celery 5.4 the
``celery inspect`` command line knows only the commands whose module the
``-A`` app imports.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from typing import Any

from celery.worker.control import inspect_command

from . import process, status

__all__ = ["svcjwt_status", "worker_status"]

#: What a process reports when it has no token and no error yet.
NO_REPORT = "no report yet: not logged in (a prefork child logs in when it starts, others on first use)"


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as an ISO 8601 UTC time, to the second."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def is_logged_in(report: dict[str, Any], now: float) -> bool:
    """Whether the token of a (possibly old) status report is still valid at ``now``."""
    expires = report.get("token_expires_at")
    return expires is not None and float(expires) > now


def refreshed(processes: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """Recompute ``logged_in`` of status-file reports for ``now`` (in place; returns them)."""
    now = time.time() if now is None else now
    for proc in processes:
        for report in proc.get("profiles", {}).values():
            report["logged_in"] = is_logged_in(report, now)
    return processes


def describe(report: dict[str, Any], now: float, written_at: float) -> dict[str, Any]:
    """One profile's state in one process, for the reply: times as ISO strings, computed for ``now``."""
    logged_in = is_logged_in(report, now)
    expires = report.get("token_expires_at")
    backoff = max(0.0, written_at + float(report.get("backing_off_for") or 0.0) - now)
    if backoff > 0:
        state = f"backing off for {backoff:.0f}s after an error"
    elif logged_in:
        state = "logged in"
    elif expires is not None:
        state = "token expired (renewed on next use)"
    elif report.get("last_error"):
        state = "not logged in: last attempt failed"
    else:
        state = "not logged in"
    return {
        "state": state,
        "logged_in": logged_in,
        "account": report.get("account"),
        "api_url": report.get("api_url"),
        "token_expires_at": iso(expires),
        "token_expires_in": round(float(expires) - now, 1) if logged_in and expires is not None else None,
        "logins": report.get("logins", 0),
        "refreshes": report.get("refreshes", 0),
        "retries_401": report.get("retries_401", 0),
        "failures": report.get("failures", 0),
        "last_error": report.get("last_error"),
        "last_error_at": iso(report.get("last_error_at")),
        "backing_off_for": round(backoff, 1),
        "reported_at": iso(written_at),
    }


def _written_at(folder: str, pid: int, default: float) -> float:
    try:
        return os.stat(os.path.join(folder, f"{pid}.json")).st_mtime
    except OSError:
        return default


def _live_reports(app: Any) -> dict[str, dict[str, Any]]:
    """This process's own token managers for ``app`` (solo, threads, gevent, eventlet)."""
    state = process._current()
    return {profile: m.status() for (app_id, profile), m in list(state.managers.items()) if app_id == id(app)}


def worker_status(
    app: Any,
    folder: str,
    *,
    pool: str = "prefork",
    pool_pids: list[int] | None = None,
    config: Any = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The ``svcjwt_status`` reply of the worker whose main process is this one.

    ``pool_pids``: the prefork pool's children, so that a child that has not
    reported yet still appears; ``config``: the bootstep's resolved settings.
    """
    now = time.time() if now is None else now
    main_pid = os.getpid()
    processes: list[dict[str, Any]] = []
    seen: set[int] = set()
    in_main = pool != "prefork"
    if in_main:
        live = _live_reports(app)
        processes.append(
            {
                "pid": main_pid,
                "role": "main process",
                "profiles": {name: describe(r, now, now) for name, r in sorted(live.items())},
                **({} if live else {"note": NO_REPORT}),
            }
        )
        seen.add(main_pid)
    for data in status.collect(folder):
        pid = int(data.get("pid", 0))
        if pid in seen:
            continue
        seen.add(pid)
        written = _written_at(folder, pid, now)
        processes.append(
            {
                "pid": pid,
                "role": "main process" if pid == main_pid else "pool child",
                "profiles": {
                    name: describe(r, now, written) for name, r in sorted(dict(data.get("profiles") or {}).items())
                },
            }
        )
    for pid in pool_pids or ():
        if pid not in seen:
            seen.add(pid)
            processes.append({"pid": pid, "role": "pool child", "profiles": {}, "note": NO_REPORT})
    processes.sort(key=lambda p: (p["role"] != "main process", p["pid"]))

    runners = [p for p in processes if p["role"] == "pool child"] if not in_main else processes[:1]
    logged_in = [p for p in runners if any(r["logged_in"] for r in p["profiles"].values())]
    expiries = sorted(
        r["token_expires_at"]
        for p in runners
        for r in p["profiles"].values()
        if r["token_expires_at"] and r["logged_in"]
    )
    return {
        "account": getattr(config, "username", None),
        "api_url": getattr(config, "api_url", None),
        "pool": pool,
        "pid": main_pid,
        "logged_in": bool(logged_in),
        "processes_logged_in": len(logged_in),
        "processes": processes,
        "earliest_token_expiry": expiries[0] if expiries else None,
        "checked_at": iso(now),
    }


def _pool_facts(state: Any) -> tuple[str, list[int] | None, Any]:
    """(pool name, prefork children's pids, the bootstep's Config) from the worker, best effort."""
    from .bootstep import SvcJWTStep

    worker = getattr(getattr(state, "consumer", None), "controller", None)
    pool_obj = getattr(worker, "pool", None)
    module = type(pool_obj).__module__ if pool_obj is not None else ""
    name = module.rsplit(".", 1)[-1] if module.startswith("celery.concurrency.") else "prefork"
    if name == "thread":
        name = "threads"
    pids: list[int] | None = None
    if name == "prefork" and pool_obj is not None:
        try:
            pids = [int(p) for p in pool_obj.info.get("processes", [])]
        except Exception:  # the pool is starting or stopping: report what the files say
            pids = None
    config = next((s.config for s in getattr(worker, "steps", []) if isinstance(s, SvcJWTStep)), None)
    return name, pids, config


@inspect_command()  # type: ignore[untyped-decorator]
def svcjwt_status(state: Any, **kwargs: Any) -> dict[str, Any]:
    """celery-svcjwt: per pool process, logged in or not, account, token expiry, counters, last error."""
    app = state.app
    folder = app.conf.get(status.STATUS_DIR_KEY)
    if not folder:
        return {"error": "celery-svcjwt's bootstep is not running in this worker (was install(app) called?)"}
    pool, pids, config = _pool_facts(state)
    return worker_status(app, folder, pool=pool, pool_pids=pids, config=config)
