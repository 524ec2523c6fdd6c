"""celery_svcjwt.control: the svcjwt_status reply, worked out when asked (no worker here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from celery_svcjwt import control, process
from celery_svcjwt.control import describe, worker_status

from .conftest import BASE_CONF, make_app

NOW = 1_700_000_000.0


def report(**changes):
    base = {
        "account": "svc-robot",
        "api_url": "https://api.example.com/v1/",
        "logged_in": True,
        "token_expires_at": NOW + 100,
        "logins": 1,
        "refreshes": 2,
        "failures": 0,
        "retries_401": 0,
        "last_error": None,
        "last_error_at": None,
        "backing_off_for": 0.0,
    }
    return {**base, **changes}


def test_logged_in_and_backoff_are_computed_for_now():
    assert describe(report(), NOW, NOW)["state"] == "logged in"
    assert describe(report(), NOW, NOW)["token_expires_in"] == 100.0
    assert describe(report(), NOW, NOW)["token_expires_at"] == "2023-11-14T22:15:00+00:00"
    later = describe(report(), NOW + 101, NOW)  # the file said "logged in"; the token has expired since
    assert later["logged_in"] is False
    assert later["state"] == "token expired (renewed on next use)"
    assert later["token_expires_in"] is None
    failing = report(logged_in=False, token_expires_at=None, last_error="AuthUnavailable: x", backing_off_for=30)
    assert describe(failing, NOW + 10, NOW)["state"] == "backing off for 20s after an error"
    assert describe(failing, NOW + 40, NOW)["state"] == "not logged in: last attempt failed"


def test_pool_children_come_from_the_files_and_unreported_ones_are_listed(tmp_path):
    child = os.getppid()  # a live pid that is not ours
    (tmp_path / f"{child}.json").write_text(json.dumps({"pid": child, "profiles": {"default": report()}}))
    os.utime(tmp_path / f"{child}.json", (NOW, NOW))

    reply = worker_status(make_app(), str(tmp_path), pool="prefork", pool_pids=[child, 999_999_999], now=NOW + 1)

    assert reply["pool"] == "prefork" and reply["pid"] == os.getpid()
    assert reply["logged_in"] is True and reply["processes_logged_in"] == 1
    reported, silent = reply["processes"]
    assert reported["pid"] == child and reported["role"] == "pool child"
    assert reported["profiles"]["default"]["refreshes"] == 2
    assert reported["profiles"]["default"]["reported_at"] == "2023-11-14T22:13:20+00:00"
    assert silent == {"pid": 999_999_999, "role": "pool child", "profiles": {}, "note": control.NO_REPORT}


def test_solo_reads_its_own_manager_live(tmp_path, rsps, make_jwt):
    app = make_app(**BASE_CONF)
    reply = worker_status(app, str(tmp_path), pool="solo")
    [main] = reply["processes"]
    assert main["role"] == "main process" and main["profiles"] == {}
    assert reply["logged_in"] is False

    rsps.post(BASE_CONF["svcjwt_api_url"] + "api/token/", json=make_jwt.pair())
    process.manager_for(app).get()
    reply = worker_status(app, str(tmp_path), pool="solo")
    [main] = reply["processes"]
    assert main["profiles"]["default"]["logins"] == 1
    assert reply["logged_in"] is True and reply["account"] is None  # no bootstep config passed


def test_the_command_is_registered_by_install():
    code = (
        "from celery.worker.control import Panel\n"
        "assert 'svcjwt_status' not in Panel.meta\n"
        "import celery, celery_svcjwt; celery_svcjwt.install(celery.Celery('x', set_as_current=False))\n"
        "print(Panel.meta['svcjwt_status'].type)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "inspect"
