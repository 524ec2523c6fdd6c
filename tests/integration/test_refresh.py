"""Refresh before expiry with short-lived tokens, with and without rotation + blacklist."""

from __future__ import annotations

import re
import time
from collections import defaultdict

import pytest

pytestmark = pytest.mark.integration

ACCESS_SECONDS = 3.0


def keep_busy(worker, seconds: float, batch: int = 20) -> list[dict]:
    """Send batches of tasks for ``seconds`` of wall time, waiting for each batch."""
    out: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        results = [worker.send("whoami") for _ in range(batch)]
        out.extend(worker.outcome(r, 60) for r in results)
    return out


def last_counts(out: list[dict]) -> dict[int, dict]:
    by_pid: dict[int, dict] = defaultdict(dict)
    for o in out:
        seen = by_pid[o["pid"]]
        seen["logins"] = max(seen.get("logins", 0), o["logins"])
        seen["refreshes"] = max(seen.get("refreshes", 0), o["refreshes"])
    return by_pid


@pytest.mark.parametrize("rotate", [False, True], ids=["no-rotation", "rotation+blacklist"])
@pytest.mark.parametrize(("pool", "concurrency"), [("prefork", 2), ("threads", 16), ("gevent", 50)])
def test_short_lived_tokens_refresh_and_no_task_fails(api_server_factory, worker_factory, rotate, pool, concurrency):
    flags = {"EXAMPLE_API_ROTATE": "1", "EXAMPLE_API_BLACKLIST": "1"} if rotate else {}
    api = api_server_factory(EXAMPLE_API_ACCESS_SECONDS=str(ACCESS_SECONDS), **flags)
    worker = worker_factory(pool=pool, concurrency=concurrency, api=api)

    started = time.monotonic()
    out = keep_busy(worker, seconds=3 * ACCESS_SECONDS)
    elapsed = time.monotonic() - started + 2  # + the time before the first task

    stats = api.stats()
    assert stats.get("/api/whoami/ 200") == len(out)  # every task succeeded with a valid token
    assert stats.get("/api/whoami/ 401", 0) == 0  # never sent an expired token
    assert stats.get("/api/token/refresh/ 401", 0) == 0  # a rotated-away token was never reused
    counts = last_counts(out)
    for pid, c in counts.items():
        assert c["logins"] == 1, f"process {pid} logged in {c['logins']} times"
        assert c["refreshes"] >= 2, f"process {pid} refreshed {c['refreshes']} times"
        # No refresh storm: a refresh comes at half the usable lifetime at the earliest
        # (usable = ACCESS_SECONDS - 1 s lost to SimpleJWT's whole-second claims).
        assert c["refreshes"] <= elapsed / ((ACCESS_SECONDS - 1) / 2) + 1
    assert api.logins() == len(counts)


@pytest.mark.parametrize("offset", [-3600, 3600], ids=["api-clock-behind", "api-clock-ahead"])
def test_clock_skew_between_worker_and_api_breaks_nothing(api_server_factory, worker_factory, offset):
    # The API's token clock is an hour off the worker's: judged by the worker's clock its tokens
    # were issued long ago (or in the future).  Expiry is counted from each token's own lifetime
    # on the worker's clock, so refreshes still come on time, with rotation + blacklist.
    api = api_server_factory(
        EXAMPLE_API_ACCESS_SECONDS=str(ACCESS_SECONDS),
        EXAMPLE_API_ROTATE="1",
        EXAMPLE_API_BLACKLIST="1",
        EXAMPLE_API_CLOCK_OFFSET=str(offset),
    )
    worker = worker_factory(pool="threads", concurrency=4, api=api)

    out = keep_busy(worker, seconds=3 * ACCESS_SECONDS)

    stats = api.stats()
    assert stats.get("/api/whoami/ 200") == len(out)
    assert stats.get("/api/whoami/ 401", 0) == 0
    assert stats.get("/api/token/refresh/ 401", 0) == 0
    [counts] = last_counts(out).values()  # one process (threads pool)
    assert counts["logins"] == 1 and counts["refreshes"] >= 2
    # The worker noticed, and said so once (not at every refresh) without failing anything.
    said = re.findall(r"clock differs from the API server's by (-?\d+)s", worker.log())
    assert len(said) == 1, said
    assert abs(abs(int(said[0])) - abs(offset)) <= 1  # iat is in whole seconds


def test_expired_refresh_token_logs_in_again(api_server_factory, worker_factory):
    api = api_server_factory(EXAMPLE_API_ACCESS_SECONDS="1", EXAMPLE_API_REFRESH_SECONDS="3")
    worker = worker_factory(pool="solo", concurrency=1, api=api)

    out = keep_busy(worker, seconds=7, batch=5)

    stats = api.stats()
    assert stats.get("/api/whoami/ 200") == len(out)
    assert stats.get("/api/token/refresh/ 401", 0) == 0  # never sent an expired refresh token
    assert out[-1]["logins"] >= 2  # logged in again when the refresh token ran out
    assert out[-1]["refreshes"] >= 2
