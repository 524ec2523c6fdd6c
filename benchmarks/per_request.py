"""Per request: the cost ``self.api`` adds to one call, against the best token clients.

Every client holds a valid token and calls ``GET api/ping/`` (authenticated:
the API still checks the JWT) on the same loopback waitress server:

* bare: a ``requests.Session`` with the Authorization header set once;
* celery-svcjwt: ``self.api`` of an ``AuthenticatedTask`` (``task.api.get``);
* authlib: ``authlib.integrations.requests_client.OAuth2Session(token=...)``;
* google-auth: ``google.auth.transport.requests.AuthorizedSession`` over
  ``google.oauth2.credentials.Credentials(token, expiry far away)``;
* requests-oauthlib: ``requests_oauthlib.OAuth2Session(token=...)``.

Two measurements, each in interleaved rounds (every round runs every client
once, in a rotated order, so drift hits all alike):

1. loopback: microseconds per call, round trip included;
2. in memory: the same sessions with a transport adapter that answers at
   once, which isolates the client's own cost per call.
"""

from __future__ import annotations

import datetime
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import requests
from common import PASSWORD, SKIPPED, USERNAME, ApiServer, log, parser, rotated, summary, tempdir, write_results
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

LABELS = {
    "bare": "bare requests.Session",
    "celery-svcjwt": "celery-svcjwt self.api",
    "authlib": "authlib OAuth2Session",
    "google-auth": "google-auth AuthorizedSession",
    "requests-oauthlib": "requests-oauthlib OAuth2Session",
}


class InstantAdapter(BaseAdapter):
    """Answers every request with ``200 {}`` without I/O: what is left is the client's own work."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json", "Content-Length": "2"})
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        pass


def build_clients(api: ApiServer, token: str) -> tuple[dict[str, requests.Session], Any]:
    from celery import Celery

    import celery_svcjwt
    from celery_svcjwt import AuthenticatedTask

    far = time.time() + 30 * 86400
    clients: dict[str, requests.Session] = {}

    bare = requests.Session()
    bare.headers["Authorization"] = f"Bearer {token}"
    clients["bare"] = bare

    app = Celery("bench-per-request", set_as_current=False)
    app.conf.update(svcjwt_api_url=api.url, svcjwt_username=USERNAME, svcjwt_password=PASSWORD)
    celery_svcjwt.install(app)

    @app.task(base=AuthenticatedTask, bind=True, shared=False)
    def call(self: Any) -> None:  # pragma: no cover - only its .api is used
        pass

    task = call._get_current_object()
    clients["celery-svcjwt"] = task.api  # its own login: one, before the first round
    clients["celery-svcjwt"].manager.get()

    from authlib.integrations.requests_client import OAuth2Session as AuthlibSession

    clients["authlib"] = AuthlibSession(token={"access_token": token, "token_type": "Bearer", "expires_at": int(far)})

    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2.credentials import Credentials

    expiry = datetime.datetime.fromtimestamp(far, datetime.timezone.utc).replace(tzinfo=None)
    clients["google-auth"] = AuthorizedSession(Credentials(token=token, expiry=expiry))

    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # it refuses http:// otherwise (loopback here)
    from requests_oauthlib import OAuth2Session as OAuthlibSession

    clients["requests-oauthlib"] = OAuthlibSession(
        client_id="bench", token={"access_token": token, "token_type": "Bearer", "expires_at": far}
    )
    return clients, task


def callers(clients: dict[str, requests.Session], task: Any, api: ApiServer) -> dict[str, Callable[[], None]]:
    url = api.url + "api/ping/"
    out: dict[str, Callable[[], None]] = {}
    for name, session in clients.items():
        if name == "celery-svcjwt":
            # as a task writes it: a relative URL through self.api (the property lookup included)

            def call(task: Any = task) -> None:
                task.api.get("api/ping/").raise_for_status()

        else:

            def call(session: requests.Session = session) -> None:
                session.get(url, timeout=10).raise_for_status()

        out[name] = call
    return out


def run_rounds(calls: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Median microseconds per call, one value per (client, round).

    Within a round the clients take turns call by call (in a rotating order),
    so a burst of load from elsewhere on the machine hits every client alike;
    the median of each client's calls then ignores the burst.
    """
    per_call: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    clock = time.perf_counter
    for _ in range(rounds):
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(per_round):
            for name in rotated(names, i):
                call = calls[name]
                started = clock()
                call()
                samples[name].append(clock() - started)
        for name, values in samples.items():
            per_call[name].append(1e6 * statistics.median(values))
    return per_call


def analyse(per_call: dict[str, list[float]]) -> dict[str, Any]:
    bare = per_call["bare"]
    out = {}
    for name, values in per_call.items():
        overhead = [v - b for v, b in zip(values, bare, strict=True)]
        ratio = [v / b for v, b in zip(values, bare, strict=True)]
        out[name] = {
            "label": LABELS[name],
            "us_per_call": summary(values),
            "overhead_us": summary(overhead),
            "ratio_to_bare": summary(ratio),
            "per_round": values,
        }
    return out


def parts(clients: dict[str, requests.Session], task: Any, api: ApiServer) -> dict[str, float]:
    """Microseconds of each step self.api adds (or skips), timed alone: the best of 5 repeats."""
    import timeit

    from requests.utils import get_netrc_auth

    session = clients["celery-svcjwt"]
    bare = requests.Session()
    url = api.url + "api/ping/"
    prepared = clients["bare"].prepare_request(requests.Request("GET", url))
    steps: dict[str, Callable[[], object]] = {
        "task.api: this process's session": lambda: task.api,
        "resolve the URL and check its origin": lambda: session.resolve("api/ping/"),
        "attach the token (JWTAuth)": lambda: session.auth(prepared.copy()),  # type: ignore[misc]
        "copy of a request (subtracted)": prepared.copy,
        # Steps a bare session pays on every call and self.api does not (SKIPPED marks them):
        SKIPPED + "requests' ~/.netrc lookup (sessions without an auth object)": lambda: get_netrc_auth(url),
        SKIPPED + "requests' reading of the environment (self.api: once per process)": lambda: (
            bare.merge_environment_settings(url, {}, None, True, None)
        ),
    }
    n = 20000
    out = {name: min(timeit.repeat(step, number=n, repeat=5)) / n * 1e6 for name, step in steps.items()}
    out["attach the token (JWTAuth)"] -= out.pop("copy of a request (subtracted)")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    rounds, per_round = (7, 100) if args.quick else (15, 200)
    mem_rounds, mem_per_round = (7, 1000) if args.quick else (15, 2000)
    with ApiServer(tempdir("per-request"), access_seconds=3600) as api:
        token = api.login()["access"]
        clients, task = build_clients(api, token)
        calls = callers(clients, task, api)
        for call in calls.values():  # warm up: connections open, imports done
            for _ in range(20):
                call()
        log(f"loopback: {rounds} rounds x {per_round} calls per client")
        loopback = run_rounds(calls, rounds, per_round)
        for name, values in loopback.items():
            log(f"  {name:18s} {statistics.median(values):8.1f} us per call")
        for session in clients.values():
            session.mount(api.url, InstantAdapter())
        log(f"in memory: {mem_rounds} rounds x {mem_per_round} calls per client")
        for call in calls.values():
            for _ in range(50):
                call()
        memory = run_rounds(calls, mem_rounds, mem_per_round)
        for name, values in memory.items():
            log(f"  {name:18s} {statistics.median(values):8.1f} us per call")
        logins = clients["celery-svcjwt"].manager.stats.logins  # type: ignore[attr-defined]
        steps = parts(clients, task, api)
        for name, us in steps.items():
            log(f"  {name:50s} {us:6.2f} us")
    results = {
        "rounds": {"loopback": [rounds, per_round], "memory": [mem_rounds, mem_per_round]},
        "loopback": analyse(loopback),
        "memory": analyse(memory),
        "svcjwt_logins": logins,
        "svcjwt_steps_us": steps,
        "environment_variables": len(os.environ),  # what requests' per-call reading of it scans, twice
        "versions": versions(),
    }
    write_results("per_request", results, args.out)
    return 0


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        p: version(p) for p in ("requests", "authlib", "google-auth", "requests-oauthlib", "oauthlib", "celery-svcjwt")
    }


if __name__ == "__main__":
    raise SystemExit(main())
