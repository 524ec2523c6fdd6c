"""In-process login (local, mint), the wsgi transport, and several profiles, with real workers."""

from __future__ import annotations

import json
import time

import pytest

from celery_svcjwt import CredentialsRejected

pytestmark = pytest.mark.integration

EMAIL = "svc-worker@example.com"


def api_for(api_server_factory, *, email: bool, rotate: bool, access: float = 3):
    env = {"EXAMPLE_API_ACCESS_SECONDS": str(access)}
    if email:
        env["EXAMPLE_API_USER_MODEL"] = "email"
    if rotate:
        env.update(EXAMPLE_API_ROTATE="1", EXAMPLE_API_BLACKLIST="1")
    return env


@pytest.mark.parametrize(
    ("mode", "email", "rotate", "pool", "concurrency"),
    [
        ("local", False, False, "prefork", 2),
        ("local", True, True, "threads", 8),
        ("mint", True, False, "prefork", 2),
        ("mint", False, True, "threads", 8),
    ],
    ids=[
        "local-username-prefork",
        "local-email-rotation-threads",
        "mint-email-prefork",
        "mint-username-rotation-threads",
    ],
)
def test_in_process_login_and_refresh(api_server_factory, worker_factory, mode, email, rotate, pool, concurrency):
    from tests.conftest import ApiServer  # noqa: F401 - for readers: api is an ApiServer

    api = api_server_factory(**api_for(api_server_factory, email=email, rotate=rotate))
    if email:
        api.user = EMAIL
        api.restart()  # creates the email-named account in the same database
    worker = worker_factory(
        pool=pool, concurrency=concurrency, api=api, env={**api.django_env(), "SVCJWT_LOGIN_MODE": mode}
    )

    out = []
    deadline = time.monotonic() + 5  # more than two usable access-token lifetimes
    while time.monotonic() < deadline:
        out += [worker.outcome(r, 60) for r in [worker.send("whoami") for _ in range(10)]]

    assert {o["username"] for o in out} == {api.user}
    assert {o["logins"] for o in out} == {1}
    assert max(o["refreshes"] for o in out) >= 1
    stats = api.stats()
    assert stats.get("/api/token/", 0) == 0  # no HTTP login: the token came from SimpleJWT in process
    assert stats.get("/api/whoami/ 200") == len(out)
    assert stats.get("/api/whoami/ 401", 0) == 0


def test_mint_for_a_missing_user_names_the_account(api_server_factory, worker_factory):
    api = api_server_factory()
    env = {**api.django_env(), "SVCJWT_LOGIN_MODE": "mint", "SVC_ACCT_USER": "nobody-here"}
    worker = worker_factory(pool="solo", api=api, env=env)

    with pytest.raises(CredentialsRejected) as info:
        worker.run("whoami")
    assert "no user with username 'nobody-here' exists" in str(info.value)


def test_local_with_a_wrong_password_is_rejected(api_server_factory, worker_factory):
    api = api_server_factory()
    env = {**api.django_env(), "SVCJWT_LOGIN_MODE": "local", "SVC_ACCT_PASS": "wrong-password-123"}
    worker = worker_factory(pool="solo", api=api, env=env)

    with pytest.raises(CredentialsRejected) as info:
        worker.run("whoami")
    assert "No active account found with the given credentials" in str(info.value)
    assert "wrong-password-123" not in str(info.value)


@pytest.mark.parametrize(("mode", "pool"), [("mint", "prefork"), ("http", "threads")])
def test_wsgi_transport_serves_requests_in_process(api_server_factory, worker_factory, mode, pool):
    api = api_server_factory()
    env = {**api.django_env(), "SVCJWT_LOGIN_MODE": mode, "SVCJWT_TRANSPORT": "wsgi"}
    worker = worker_factory(pool=pool, concurrency=2, api=api, env=env)

    who = worker.run("whoami")
    upload = worker.run("stream_and_upload", 100_000)
    denied = worker.run("call", "GET", "api/whoami/", headers={"Authorization": "Bearer not-a-token"})

    assert who["username"] == api.user  # DRF authenticated the JWT in process
    assert upload["status"] == 200
    assert json.loads(upload["body"]) == {"length": None, "data": {"note": "hi"}, "files": {"blob": 100_000}}
    assert upload["chunks"] > 1  # the answer was read in pieces, streamed
    assert denied["status"] == 401  # the real authentication ran: a bad token is refused
    assert api.stats() == {}  # nothing went over the socket, not even the login


def test_two_profiles_call_two_apis_as_two_accounts(api_server_factory, worker_factory):
    main = api_server_factory()
    billing = api_server_factory()
    billing.user = "svc-billing"
    billing.restart()
    env = {
        "SVCJWT_BILLING_API_URL": billing.url,
        "SVCJWT_BILLING_USERNAME": "svc-billing",
        "SVCJWT_BILLING_PASSWORD": billing.password,
    }
    worker = worker_factory(pool="prefork", concurrency=2, api=main, env=env)

    a = [worker.send("whoami") for _ in range(20)]
    b = [worker.send("whoami_billing") for _ in range(20)]
    a = [worker.outcome(r, 60) for r in a]
    b = [worker.outcome(r, 60) for r in b]

    assert {o["username"] for o in a} == {main.user}
    assert {o["username"] for o in b} == {"svc-billing"}
    assert {o["api"] for o in b} == {billing.url}
    assert main.logins() <= 2 and billing.logins() <= 2  # one login per process and profile
    assert {o["logins"] for o in a + b} == {1}
