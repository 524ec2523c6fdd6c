"""Logging: one ``celery_svcjwt.<module>`` hierarchy, sensible levels, no secret at any level.

The flows go through the real HttpLogin, TokenManager and ApiSession; only
HTTP is answered by ``responses``.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import re

import pytest
import responses

import celery_svcjwt
from celery_svcjwt.endpoints import HttpLogin
from celery_svcjwt.errors import AuthUnavailable, CredentialsRejected
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.session import ApiSession

from .conftest import API_URL, PASSWORD, SERVER_NOW

TOKEN_URL = API_URL + "api/token/"
REFRESH_URL = API_URL + "api/token/refresh/"
ITEM_URL = API_URL + "api/items/1/"
PACKAGE_DIR = os.path.dirname(celery_svcjwt.__file__)
#: Modules that need Django to import (they are only loaded by Django's app registry).
DJANGO_MODULES = {"celery_svcjwt.apps", "celery_svcjwt.django_checks"}


def package_modules() -> list[str]:
    return sorted(f"celery_svcjwt.{m.name}" for m in pkgutil.iter_modules([PACKAGE_DIR]))


def test_every_module_logs_under_its_own_name():
    seen = 0
    for name in package_modules():
        if name in DJANGO_MODULES:
            pytest.importorskip("django")
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if isinstance(value, logging.Logger):
                assert value.name == name, f"{name}.{attr} logs as {value.name!r}, not {name!r}"
                seen += 1
    assert seen >= 5  # manager, endpoints, session, process, bootstep at least


def test_no_logger_is_named_by_hand():
    pattern = re.compile(r"getLogger\((?!__name__\))")
    for name in package_modules():
        path = os.path.join(PACKAGE_DIR, name.rsplit(".", 1)[1] + ".py")
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if pattern.search(line) and '"celery_svcjwt"' not in line:
                    pytest.fail(f"{path}:{lineno} names a logger other than __name__: {line.strip()}")


@pytest.fixture
def flows(rsps, make_jwt, make_config, clock, fake_sleep):
    """A real manager and session for the default test account; HTTP answered by ``rsps``."""
    config = make_config(login_attempts=2, refresh_margin=60)
    manager = TokenManager(
        config, HttpLogin(config), clock=clock, wall=lambda: SERVER_NOW, sleep=fake_sleep, rand=lambda: 0.5
    )
    return manager, ApiSession(config, manager)


def assert_clean(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> list[logging.LogRecord]:
    """No secret in any record (whatever its logger); ours are under celery_svcjwt and prefixed."""
    ours = []
    for record in caplog.records:
        text = caplog.handler.format(record)
        for secret in secrets:
            assert secret not in text, f"a secret leaked into {record.name}:{record.lineno}: {text[:200]}"
        if record.pathname.startswith(PACKAGE_DIR):
            assert record.name.startswith("celery_svcjwt."), f"{record.pathname} logged as {record.name!r}"
            assert record.getMessage().startswith("celery-svcjwt: "), record.getMessage()
            ours.append(record)
    return ours


def levels(records: list[logging.LogRecord], fragment: str) -> set[str]:
    return {r.levelname for r in records if fragment in r.getMessage()}


def test_login_refresh_401_and_relogin_flows(caplog, rsps, make_jwt, clock, flows):
    caplog.set_level(logging.DEBUG)
    manager, api = flows

    # 1. login on first use
    rsps.post(TOKEN_URL, json=make_jwt.pair(access_lifetime=300))
    rsps.get(ITEM_URL, json={"id": 1})
    assert api.get("api/items/1/").status_code == 200

    # 2. refresh in the mandatory window
    clock.advance(295)
    rsps.post(REFRESH_URL, json={"access": make_jwt(lifetime=300)})
    assert api.get("api/items/1/").status_code == 200

    # 3. a 401 for a token that has not expired: renew (refresh) once and replay
    rsps.replace(responses.GET, ITEM_URL, json={"detail": "x", "code": "token_not_valid"}, status=401)
    rsps.add(responses.GET, ITEM_URL, json={"id": 1})
    rsps.replace(responses.POST, REFRESH_URL, json={"access": make_jwt(lifetime=300)})
    assert api.get("api/items/1/").status_code == 200

    # 4. the refresh token is refused (blacklisted): log in again
    rsps.replace(responses.GET, ITEM_URL, json={"detail": "x", "code": "token_not_valid"}, status=401)
    rsps.add(responses.GET, ITEM_URL, json={"id": 1})
    rsps.replace(responses.POST, REFRESH_URL, json={"detail": "blacklisted", "code": "token_not_valid"}, status=401)
    rsps.replace(responses.POST, TOKEN_URL, json=make_jwt.pair(access_lifetime=300))
    assert api.get("api/items/1/").status_code == 200

    assert manager.stats.logins == 2 and manager.stats.refreshes == 2 and manager.stats.retries_401 == 2
    ours = assert_clean(caplog, [PASSWORD, *make_jwt.issued])
    assert levels(ours, "logged in as") == {"INFO"}
    assert levels(ours, "refreshed the access token") == {"DEBUG"}
    assert levels(ours, "refused the access token") == {"INFO"}
    assert levels(ours, "rejected the refresh token") == {"INFO"}
    assert not [r for r in ours if r.levelno >= logging.WARNING]  # nothing went wrong


def test_failure_flows(caplog, rsps, make_jwt, clock, flows):
    caplog.set_level(logging.DEBUG)
    manager, api = flows

    # the auth server is down: retried within the call, then a retryable error
    rsps.post(TOKEN_URL, status=503, headers={"Retry-After": "1"})
    with pytest.raises(AuthUnavailable):
        api.get("api/items/1/")

    # it answers with an HTML page
    clock.advance(120)
    rsps.replace(responses.POST, TOKEN_URL, body=b"<!doctype html><html>login</html>", status=200)
    with pytest.raises(AuthUnavailable):
        api.get("api/items/1/")

    # wrong credentials; the server echoes what it got, password included
    clock.advance(120)
    rsps.replace(responses.POST, TOKEN_URL, json={"detail": f"No active account for password {PASSWORD}"}, status=401)
    with pytest.raises(CredentialsRejected) as excinfo:
        api.get("api/items/1/")
    assert PASSWORD not in str(excinfo.value)

    ours = assert_clean(caplog, [PASSWORD, *make_jwt.issued])
    assert levels(ours, "trying again in") == {"INFO"}
    assert levels(ours, "not calling the token endpoint again") == {"WARNING"}
    assert "WARNING" in levels(ours, "rejected the service account")
    assert not [r for r in ours if r.levelno >= logging.ERROR]
    assert manager.stats.failures >= 3


def test_a_header_type_the_api_refuses_is_an_error_once(caplog, rsps, make_jwt, flows):
    caplog.set_level(logging.DEBUG)
    _, api = flows
    rsps.post(TOKEN_URL, json=make_jwt.pair())
    rsps.get(ITEM_URL, status=401, headers={"WWW-Authenticate": 'JWT realm="api"'}, json={"detail": "no"})

    assert api.get("api/items/1/").status_code == 401
    assert api.get("api/items/1/").status_code == 401

    ours = assert_clean(caplog, [PASSWORD, *make_jwt.issued])
    errors = [r for r in ours if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "expects the 'JWT' authorization scheme" in errors[0].getMessage()
