"""In-process modes: ms per login for ``http``, ``local`` and ``mint``; ms per call for ``wsgi`` vs loopback HTTP.

One process with Django configured against the example project's database
(the one the API server uses) and Django's default PBKDF2 hasher:

* login: ``obtain()`` of each login backend (``HttpLogin`` to the waitress
  server, ``LocalLogin``: TokenObtainPairSerializer in process, ``MintLogin``:
  tokens minted for the service user, no password), and ``refresh()`` of each;
* call: ``self.api.get("api/items/1/")`` with ``svcjwt_transport = "http"``
  (loopback socket to the waitress server) and ``"wsgi"`` (the Django
  application called in process), plus a bare requests.Session for reference.

Rounds interleave the variants (a rotating order, call by call for the calls).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from common import PASSWORD, USERNAME, ApiServer, log, parser, rotated, summary, tempdir, write_results

LOGIN_LABELS = {
    "http": "http: POST to the token endpoint (waitress, loopback)",
    "local": "local: TokenObtainPairSerializer in the worker",
    "mint": "mint: RefreshToken.for_user in the worker (no password)",
}
CALL_LABELS = {
    "bare-http": "bare requests.Session, loopback HTTP",
    "http": "self.api, transport http (loopback)",
    "wsgi": "self.api, transport wsgi (in process)",
}


def setup_django(api: ApiServer) -> None:
    for key, value in api.django_env().items():
        os.environ[key] = value
    os.environ.pop("EXAMPLE_API_FAST_HASHER", None)  # Django's default PBKDF2 hasher, as the server
    import django

    django.setup()
    from django.conf import settings

    hasher = settings.PASSWORD_HASHERS[0]
    assert "PBKDF2" in hasher, hasher


def app_for(api: ApiServer, **conf: Any) -> Any:
    from celery import Celery

    import celery_svcjwt

    app = Celery(f"bench-modes-{len(conf)}-{id(conf)}", set_as_current=False)
    app.conf.update(svcjwt_api_url=api.url, svcjwt_username=USERNAME, svcjwt_password=PASSWORD, **conf)
    celery_svcjwt.install(app)
    return app


def backends(api: ApiServer) -> dict[str, Any]:
    from celery_svcjwt import process
    from celery_svcjwt.settings import load_config

    return {mode: process.backend_for(load_config(app_for(api, svcjwt_login_mode=mode))) for mode in LOGIN_LABELS}


def time_logins(found: dict[str, Any], rounds: int, per_round: dict[str, int]) -> dict[str, list[float]]:
    """ms per obtain(), one value per call."""
    out: dict[str, list[float]] = {name: [] for name in found}
    for r in range(rounds):
        for name in rotated(list(found), r):
            for _ in range(per_round[name]):
                started = time.perf_counter()
                found[name].obtain()
                out[name].append(1000 * (time.perf_counter() - started))
    return out


def time_refreshes(found: dict[str, Any], rounds: int, per_round: int) -> dict[str, list[float]]:
    refresh = {name: b.obtain()["refresh"] for name, b in found.items()}
    out: dict[str, list[float]] = {name: [] for name in found}
    for r in range(rounds):
        for name in rotated(list(found), r):
            for _ in range(per_round):
                started = time.perf_counter()
                found[name].refresh(refresh[name])
                out[name].append(1000 * (time.perf_counter() - started))
    return out


def time_calls(calls: dict[str, Callable[[], None]], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Median ms per call, one value per round; the variants take turns call by call."""
    out: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for _ in range(rounds):
        samples: dict[str, list[float]] = {name: [] for name in names}
        for i in range(per_round):
            for name in rotated(names, i):
                started = time.perf_counter()
                calls[name]()
                samples[name].append(time.perf_counter() - started)
        for name, values in samples.items():
            out[name].append(1000 * statistics.median(values))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    login_rounds, slow, fast = (3, 2, 20) if args.quick else (6, 3, 50)
    refresh_rounds, refresh_per = (3, 10) if args.quick else (6, 20)
    call_rounds, call_per = (5, 100) if args.quick else (11, 200)
    with ApiServer(tempdir("modes"), access_seconds=3600) as api:
        setup_django(api)
        found = backends(api)
        for b in found.values():  # warm up: imports, connections, the user row in the page cache
            b.obtain()
        log(f"logins: {login_rounds} rounds")
        logins = time_logins(found, login_rounds, {"http": slow, "local": slow, "mint": fast})
        for name, values in logins.items():
            log(f"  {name:6s} {statistics.median(values):9.3f} ms per login")
        refreshes = time_refreshes(found, refresh_rounds, refresh_per)
        for name, values in refreshes.items():
            log(f"  {name:6s} {statistics.median(values):9.3f} ms per refresh")

        import requests

        from celery_svcjwt import process

        sessions = {
            "http": process.session_for(app_for(api)),
            "wsgi": process.session_for(app_for(api, svcjwt_transport="wsgi")),
        }
        bare = requests.Session()
        bare.headers["Authorization"] = f"Bearer {api.login()['access']}"
        url = api.url + "api/items/1/"
        calls: dict[str, Callable[[], None]] = {
            "bare-http": lambda: bare.get(url, timeout=10).raise_for_status(),
            "http": lambda: sessions["http"].get("api/items/1/").raise_for_status(),
            "wsgi": lambda: sessions["wsgi"].get("api/items/1/").raise_for_status(),
        }
        for call in calls.values():
            for _ in range(20):
                call()
        log(f"calls: {call_rounds} rounds x {call_per} calls")
        per_call = time_calls(calls, call_rounds, call_per)
        for name, values in per_call.items():
            log(f"  {name:9s} {statistics.median(values):7.3f} ms per call")

    ratio = [w / h for w, h in zip(per_call["wsgi"], per_call["http"], strict=True)]
    results = {
        "login_ms": {name: {"label": LOGIN_LABELS[name], **summary(v)} for name, v in logins.items()},
        "refresh_ms": {name: {"label": LOGIN_LABELS[name], **summary(v)} for name, v in refreshes.items()},
        "call_ms": {name: {"label": CALL_LABELS[name], **summary(v), "per_round": v} for name, v in per_call.items()},
        "wsgi_vs_http": summary(ratio),
        "hasher": "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    }
    write_results("modes", results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
