"""Fault injection: real workers talk to the real API through tests/faults/proxy.py.

For each fault: what the tasks saw (the exceptions their retries and failures
carried), how many calls reached the token endpoints while the fault lasted
(no storm: each process backs off), and that every task completes once the
fault ends, or fails at once where it must (rejected credentials, a token the
API keeps refusing).  With SVCJWT_RELIABILITY_FIGURES set, the rows are
written for docs/reliability.rst.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from celery_svcjwt import CredentialsRejected
from tests.conftest import wait_for
from tests.faults.harness import Fleet, events, seen, send
from tests.faults.proxy import (
    REFRESH_PATH,
    TOKEN_PATH,
    TOKEN_PATHS,
    Fault,
    FaultProxy,
    drop_claim,
    html_page,
    replace_access,
)

pytestmark = pytest.mark.integration

#: Small settings so that faults are met and recovered from in seconds.
FAST = {
    "SVCJWT_TIMEOUT": "1.5",
    "SVCJWT_BACKOFF_MAX": "1",
    "SVCJWT_LOGIN_ATTEMPTS": "2",
    "SVCJWT_TASK_RETRY_BACKOFF_MAX": "1",
    "SVCJWT_TASK_MAX_RETRIES": "100",
}
PROCESSES = 2
TASKS = 30
#: The shortest pause between two calls of one process to a failing endpoint (BACKOFF_MAX=1: [0.5, 1]).
MIN_GAP = 0.5
FAULT_SECONDS = 2.5

JSON = {"Content-Type": "application/json"}
HTML = {"Content-Type": "text/html"}
TOKEN_NOT_VALID = json.dumps(
    {
        "detail": "Given token not valid for any token type",
        "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "token_type": "access", "message": "Token is invalid"}],
    }
).encode()
BLACKLISTED = json.dumps({"detail": "Token is blacklisted", "code": "token_not_valid"}).encode()
NO_ACCOUNT = json.dumps({"detail": "No active account found with the given credentials"}).encode()
CHALLENGE = {**JSON, "WWW-Authenticate": 'Bearer realm="api"'}

FIGURES: list[dict[str, Any]] = []


@pytest.fixture(scope="module")
def api(api_server_factory):
    """The example API with its default 5-minute access tokens."""
    return api_server_factory()


def new_proxy(fleet: Fleet, api) -> FaultProxy:
    proxy = FaultProxy(api.url).start()
    fleet.proxies.append(proxy)  # type: ignore[attr-defined]
    return proxy


def generic(text: str | None) -> str | None:
    """``text`` with ports and timings made generic (for the docs)."""
    if text is None:
        return None
    text = re.sub(r"127\.0\.0\.1(:|', port=)\d+", r"127.0.0.1\1PORT", text)
    return re.sub(r"\d+\.\d+s", "N.Ns", text)


def sample(worker, containing: str = "") -> str | None:
    """One message a task saw: the first-hand error if a task met it, else one from a process backing off."""
    messages = [e["message"] for e in events(worker) if e["message"] and containing in e["message"]]
    first_hand = [m for m in messages if not m.startswith("the token endpoint is backing off")]
    return generic((first_hand or messages or [None])[0])


# -- the token endpoints fail while the workers start ---------------------------------------------


@dataclass
class Case:
    id: str
    what: str
    faults: list[Fault] = field(default_factory=list)
    refuse: bool = False
    #: The exception type the tasks saw; a process that is backing off raises AuthUnavailable
    #: naming the last error, so a MalformedResponse reaches most tasks as AuthUnavailable.
    saw: str = "AuthUnavailable"
    said: str = ""
    #: The shortest pause a process takes between calls to the failing endpoint.
    gap: float = MIN_GAP
    fails: bool = False


BOOT_CASES = [
    Case("refused", "connection refused", refuse=True, said="ConnectionRefusedError"),
    Case("reset", "reset mid-response", [Fault("reset")], said="ChunkedEncodingError"),
    Case("timeout", "answer delayed past svcjwt_timeout", [Fault("delay", delay=2.5)], said="timed out"),
    Case("500", "HTTP 500 burst", [Fault("status", status=500, body=html_page(500, "Internal Server Error"))]),
    Case(
        "502-html",
        "HTTP 502 HTML page",
        [Fault("status", status=502, headers=HTML, body=html_page(502, "Bad Gateway"))],
    ),
    Case(
        "503-retry-after",
        "HTTP 503 with Retry-After: 1",
        [Fault("status", status=503, headers={"Retry-After": "1"})],
        said="Retry-After 1s",
    ),
    Case(
        "429-retry-after",
        "HTTP 429 with Retry-After: 2",
        [Fault("status", status=429, headers={**JSON, "Retry-After": "2"}, body=b'{"detail": "throttled"}')],
        said="Retry-After 2s",
        gap=2.0,
    ),
    Case(
        "html-200",
        "HTML page with status 200",
        [Fault("status", status=200, headers=HTML, body=html_page(200, "Sign in"))],
        saw="MalformedResponse",
        said="HTML page",
    ),
    Case("truncated", "JSON cut in half", [Fault("truncate")], saw="MalformedResponse", said="not JSON"),
    Case(
        "not-json",
        "a body that is not JSON",
        [Fault("status", status=200, headers={"Content-Type": "text/plain"}, body=b"OK")],
        saw="MalformedResponse",
        said="not JSON",
    ),
    Case(
        "not-a-jwt",
        "an access token that is not a JWT",
        [Fault("rewrite", rewrite=replace_access("opaque-token-0123456789"))],
        saw="MalformedResponse",
        said="not a JWT",
    ),
    Case(
        "no-exp",
        "an access token without exp",
        [Fault("rewrite", rewrite=drop_claim("exp"))],
        saw="MalformedResponse",
        said="no 'exp' claim",
    ),
    Case(
        "credentials-refused",
        "login refused (HTTP 401, wrong credentials)",
        [Fault("status", status=401, paths=(TOKEN_PATH,), headers=CHALLENGE, body=NO_ACCOUNT)],
        saw="CredentialsRejected",
        said="rejected the service account 'svc-worker'",
        fails=True,
    ),
]


@pytest.mark.parametrize("case", BOOT_CASES, ids=[c.id for c in BOOT_CASES])
def test_token_endpoint_fault_while_workers_start(fleet, api, case):
    proxy = new_proxy(fleet, api)
    if case.refuse:
        proxy.down()
    proxy.inject(*case.faults)
    started = time.monotonic()
    worker = fleet.start(proxy.url, pool="prefork", concurrency=PROCESSES, env=FAST)
    results = [send(worker, "echo", n) for n in range(TASKS)]

    # The fault lasts FAULT_SECONDS, and at least until the tasks have met it a few times.
    wait_for(lambda: len(events(worker)) >= 3, 60, "tasks to meet the fault")
    time.sleep(max(0.0, started + FAULT_SECONDS - time.monotonic()))
    if case.refuse:
        proxy.up()
    proxy.clear()
    ended = time.monotonic()
    window = ended - started
    during = proxy.count(TOKEN_PATHS, until=ended)

    outcomes: list[Any] = []
    for r in results:
        try:
            outcomes.append(worker.outcome(r, 90))
        except Exception as exc:
            outcomes.append(exc)
    recovered = time.monotonic() - ended
    after = proxy.count(TOKEN_PATHS, since=ended)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    saw = seen(worker)
    message = sample(worker, case.said)

    # What the task saw.
    accepted = {case.saw, "AuthUnavailable"} if case.saw == "MalformedResponse" else {case.saw}
    assert saw and {key.split(" ")[0] for key in saw} <= accepted, saw
    assert message is not None, f"no task saw {case.said!r}: {[e['message'] for e in events(worker)][:3]}"
    # No storm: each process pauses at least `gap` seconds between calls to the failing endpoint.
    assert during <= PROCESSES * (window / case.gap + 2), f"{during} token-endpoint calls in {window:.1f}s"
    if case.fails:
        # Wrong credentials fail the task at once, with a message naming the account, never retried...
        assert failed and all(isinstance(f, CredentialsRejected) for f in failed)
        assert all(e["event"] == "failure" for e in events(worker))
        # ...and once the account is fixed, new tasks run after the backoff (at most BACKOFF_MAX).
        time.sleep(1.2)
        later = [send(worker, "echo", TASKS + i) for i in range(4)]
        assert sorted(worker.outcome(r, 60)["n"] for r in later) == list(range(TASKS, TASKS + 4))
    else:
        # Every task completed once the fault ended; each process then logged in once.
        assert failed == []
        assert sorted(o["n"] for o in outcomes) == list(range(TASKS))
        assert all(o["logins"] == 1 for o in outcomes)
        assert after <= PROCESSES
    fleet.retire(worker)
    FIGURES.append(
        {
            "group": "token endpoint, while the workers start",
            "fault": case.what,
            "task_saw": saw,
            "message": message,
            "fault_seconds": round(window, 1),
            "token_calls_during": during,
            "token_calls_after": after,
            "tasks": TASKS,
            "completed": TASKS - len(failed),
            "failed": len(failed),
            "recovery_seconds": round(recovered, 1),
        }
    )


# -- faults on the API's answers to a logged-in worker ------------------------------------------------


@pytest.fixture(scope="module")
def running(fleet, api):
    """A prefork worker whose two children have logged in, and its proxy."""
    proxy = new_proxy(fleet, api)
    worker = fleet.start(proxy.url, pool="prefork", concurrency=PROCESSES, env=FAST)
    wait_for(lambda: proxy.count([TOKEN_PATH]) >= PROCESSES, 30, "both children to log in")
    return worker, proxy


@dataclass
class ApiCase:
    id: str
    what: str
    faults: list[Fault]
    task: str = "echo"
    refuse: bool = False
    saw: str | None = None
    token_calls: int = 0
    fails: int = 0
    history: list[int] | None = None


API_CASES = [
    ApiCase(
        "revoked",
        "HTTP 401 token_not_valid on a request whose token is still valid",
        [Fault("status", status=401, paths=("/api/echo/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=1)],
        token_calls=1,  # one refresh, then the request is replayed
        history=[401],
    ),
    ApiCase(
        "revoked+blacklisted",
        "HTTP 401 on a request, then the refresh token refused as blacklisted",
        [
            Fault("status", status=401, paths=("/api/echo/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=1),
            Fault("status", status=401, paths=(REFRESH_PATH,), headers=JSON, body=BLACKLISTED, times=1),
        ],
        token_calls=2,  # the refused refresh, then one login
        history=[401],
    ),
    ApiCase(
        "refused-twice",
        "HTTP 401 again after the renewal (the API keeps refusing the account)",
        [Fault("status", status=401, paths=("/api/echo/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=2)],
        saw="HTTPError",
        token_calls=1,  # one renewal, no loop
        fails=1,
    ),
    ApiCase(
        "api-reset",
        "the API's answer reset mid-response",
        [Fault("reset", paths=("/api/echo/",), times=3)],
        task="echo_retrying",
        saw="ChunkedEncodingError",
    ),
    ApiCase(
        "api-timeout",
        "the API's answer delayed past svcjwt_timeout",
        [Fault("delay", paths=("/api/echo/",), delay=2.5, times=2)],
        task="echo_retrying",
        saw="ReadTimeout",
    ),
    ApiCase(
        "api-refused",
        "the API refuses connections for 2 s",
        [],
        task="echo_retrying",
        refuse=True,
        saw="ConnectionError",
    ),
    ApiCase(
        "api-503",
        "the API answers HTTP 503 (HTML)",
        [Fault("status", status=503, paths=("/api/echo/",), headers=HTML, body=html_page(503, "Unavailable"), times=3)],
        saw="HTTPError",
        fails=3,
    ),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c.id for c in API_CASES])
def test_api_fault_with_a_logged_in_worker(running, case):
    worker, proxy = running
    before = len(events(worker))
    proxy.reset_counts()
    proxy.inject(*case.faults)
    if case.refuse:
        proxy.down()
    started = time.monotonic()
    n = 10
    # The first task alone, so that a fault meant for one request cannot be split between two tasks.
    first = send(worker, case.task, 0)
    if not case.refuse:
        try:
            worker.outcome(first, 60)
        except Exception:
            pass
    results = [first, *(send(worker, case.task, i) for i in range(1, n))]
    if case.refuse:
        wait_for(lambda: len(events(worker)) > before, 30, "tasks to meet the refused connections")
        time.sleep(max(0.0, started + 2 - time.monotonic()))
        proxy.up()
    outcomes: list[Any] = []
    for r in results:
        try:
            outcomes.append(worker.outcome(r, 60))
        except Exception as exc:
            outcomes.append(exc)
    proxy.clear()
    elapsed = time.monotonic() - started
    new_events = events(worker)[before:]
    saw: dict[str, int] = {}
    for e in new_events:
        key = f"{e['exc']} ({e['event']})"
        saw[key] = saw.get(key, 0) + 1
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    token_calls = proxy.count(TOKEN_PATHS)

    assert token_calls == case.token_calls, f"{token_calls} token-endpoint calls"
    assert len(failed) == case.fails, failed
    if case.saw:
        assert any(k.startswith(case.saw + " ") for k in saw), saw
    else:
        assert saw == {}
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len({o["n"] for o in done}) == n - case.fails
    if case.history is not None:
        assert sorted(o["history"] for o in done).count(case.history) == 1
    FIGURES.append(
        {
            "group": "API, with a logged-in worker",
            "fault": case.what,
            "task": case.task,
            "task_saw": saw,
            "message": generic(next((e["message"] for e in new_events if e["message"]), None)),
            "token_calls_during": token_calls,
            "tasks": n,
            "completed": len(done),
            "failed": len(failed),
            "seconds": round(elapsed, 1),
        }
    )


# -- faults at refresh time, with short-lived tokens ----------------------------------------------------


@pytest.fixture(scope="module")
def short_api(api_server_factory):
    """Access tokens of 3 s (2 s usable), rotation and blacklist on."""
    return api_server_factory(EXAMPLE_API_ACCESS_SECONDS="3", EXAMPLE_API_ROTATE="1", EXAMPLE_API_BLACKLIST="1")


def keep_busy(worker, seconds: float, task: str = "echo") -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        batch = [send(worker, task, n + i) for i in range(10)]
        n += 10
        out.extend(worker.outcome(r, 60) for r in batch)
    return out


def test_refresh_token_blacklisted_at_every_refresh_logs_in_again(fleet, short_api):
    proxy = new_proxy(fleet, short_api)
    worker = fleet.start(proxy.url, pool="prefork", concurrency=PROCESSES, env=FAST)
    wait_for(lambda: proxy.count([TOKEN_PATH]) >= PROCESSES, 30, "both children to log in")
    proxy.reset_counts()
    proxy.inject(Fault("status", status=401, paths=(REFRESH_PATH,), headers=JSON, body=BLACKLISTED))

    out = keep_busy(worker, 5)
    proxy.clear()

    refused = proxy.count([REFRESH_PATH])
    logins = proxy.count([TOKEN_PATH])
    assert events(worker) == []  # no task saw anything
    assert refused >= 2
    assert logins == refused  # each refused refresh -> exactly one login, no more
    fleet.retire(worker)
    FIGURES.append(
        {
            "group": "token endpoint, at refresh time (3 s tokens)",
            "fault": "every refresh answered 401 token_not_valid (blacklisted) for 5 s",
            "task_saw": {},
            "message": None,
            "token_calls_during": refused + logins,
            "tasks": len(out),
            "completed": len(out),
            "failed": 0,
            "note": f"{refused} refused refreshes, {logins} logins",
        }
    )


def test_refresh_endpoint_outage_while_tokens_expire(fleet, short_api):
    proxy = new_proxy(fleet, short_api)
    worker = fleet.start(proxy.url, pool="prefork", concurrency=PROCESSES, env=FAST)
    wait_for(lambda: proxy.count([TOKEN_PATH]) >= PROCESSES, 30, "both children to log in")
    proxy.reset_counts()
    proxy.inject(Fault("status", status=503, paths=TOKEN_PATHS, headers=HTML, body=html_page(503, "Unavailable")))
    started = time.monotonic()
    results = []
    while time.monotonic() < started + 4:  # tasks keep coming while the tokens expire
        base = len(results)
        results.extend([send(worker, "echo", base + i) for i in range(5)])
        time.sleep(0.1)
    wait_for(lambda: len(events(worker)) >= 3, 30, "tasks to meet the outage once their token expired")
    proxy.clear()
    ended = time.monotonic()
    during = proxy.count(TOKEN_PATHS, until=ended)

    out = [worker.outcome(r, 90) for r in results]
    after = proxy.count(TOKEN_PATHS, since=ended)
    saw = seen(worker)
    assert sorted(o["n"] for o in out) == list(range(len(results)))
    assert set(saw) == {"AuthUnavailable (retry)"}
    assert during <= PROCESSES * ((ended - started) / MIN_GAP + 2)
    # Afterwards, one refresh per process, then refreshes at their usual pace (every 1 s at most).
    assert after <= PROCESSES * ((time.monotonic() - ended) / 1.0 + 2)
    # Past the mandatory window the tasks waited (retried) instead of sending an expired token;
    # only a token that expired on its way through a loaded server may come back as a 401.
    assert short_api.stats().get("/api/echo/ 401", 0) <= 2
    fleet.retire(worker)
    FIGURES.append(
        {
            "group": "token endpoint, at refresh time (3 s tokens)",
            "fault": "token and refresh endpoints answer HTTP 503 for 4 s",
            "task_saw": saw,
            "message": sample(worker),
            "fault_seconds": round(ended - started, 1),
            "token_calls_during": during,
            "token_calls_after": after,
            "tasks": len(results),
            "completed": len(out),
            "failed": 0,
        }
    )
