"""celery_svcjwt.signals: sent on login, refresh, failure and 401 retry, with facts and no secret."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from celery_svcjwt import process, signals
from celery_svcjwt.endpoints import HttpLogin
from celery_svcjwt.errors import AuthUnavailable, CredentialsRejected

from .conftest import API_URL, BASE_CONF, PASSWORD, USERNAME, make_app


@pytest.fixture
def heard() -> Iterator[list[tuple[str, Any, dict[str, Any]]]]:
    """Every signal sent during the test: (signal name, sender, kwargs)."""
    events: list[tuple[str, Any, dict[str, Any]]] = []
    receivers = []
    for sig in (signals.token_obtained, signals.token_refreshed, signals.auth_failed, signals.request_retried_401):

        def receiver(sender: Any, _name: str = sig.name, **kwargs: Any) -> None:
            kwargs.pop("signal", None)
            events.append((_name, sender, kwargs))

        sig.connect(receiver, weak=False)
        receivers.append((sig, receiver))
    yield events
    for sig, receiver in receivers:
        sig.disconnect(receiver)


@pytest.fixture
def wired(manager):
    manager.listeners.append(signals.send)
    return manager


def test_login_refresh_401_and_failure_are_signalled(wired, backend, clock, heard, make_jwt):
    manager = wired
    first = manager.get()
    clock.advance(250)  # into the advisory window: one refresh
    manager.get()
    manager.renew_after_401(manager.get())
    backend.refresh_script.extend(AuthUnavailable("the refresh endpoint answered HTTP 503") for _ in range(5))
    with pytest.raises(AuthUnavailable):
        manager.renew_after_401(manager.get())
    assert first is not None

    names = [name for name, _, _ in heard]
    assert names == [
        "token_obtained",
        "token_refreshed",
        "request_retried_401",
        "token_refreshed",
        "request_retried_401",
        "auth_failed",
    ]
    for _, sender, kwargs in heard:
        assert sender == "default"
        assert kwargs["account"] == USERNAME
        assert kwargs["api_url"] == API_URL
        assert kwargs["profile"] == "default"
        assert kwargs["pid"] == os.getpid()
        text = json.dumps(kwargs, default=str)
        assert PASSWORD not in text
        assert not any(token in text for token in make_jwt.issued)

    _, _, login = heard[0]
    assert login["lifetime"] == pytest.approx(299)
    assert login["logins"] == 1 and login["refreshes"] == 0
    assert login["expires_at"] > 0
    assert login["skew"] == pytest.approx(0.0)
    _, _, refresh = heard[1]
    assert refresh["refreshes"] == 1
    _, _, retry = heard[2]
    assert retry["retries_401"] == 1
    _, _, failure = heard[-1]
    assert failure["error_type"] == "AuthUnavailable"
    assert "answered HTTP 503" in failure["error"]
    assert failure["retryable"] is True
    assert failure["backoff"] > 0
    assert failure["failures"] >= 1


def test_rejected_credentials_are_not_retryable(wired, backend, heard):
    backend.obtain_script.append(CredentialsRejected("the token endpoint rejected the service account 'svc-robot'"))
    with pytest.raises(CredentialsRejected):
        wired.get()
    [(name, _, kwargs)] = heard
    assert name == "auth_failed"
    assert kwargs["retryable"] is False
    assert kwargs["error_type"] == "CredentialsRejected"


def test_receivers_can_listen_to_one_profile(wired, heard):
    billing: list[dict[str, Any]] = []

    def on_billing(sender: Any, **kwargs: Any) -> None:
        billing.append(kwargs)

    signals.token_obtained.connect(on_billing, sender="billing", weak=False)
    try:
        wired.get()
    finally:
        signals.token_obtained.disconnect(on_billing, sender="billing")
    assert [name for name, _, _ in heard] == ["token_obtained"]
    assert billing == []  # the default profile logged in


def test_a_failing_receiver_never_breaks_the_login(wired, heard):
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("metrics backend down")

    signals.token_obtained.connect(broken, weak=False)
    try:
        assert wired.get() is not None
    finally:
        signals.token_obtained.disconnect(broken)
    assert wired.stats.logins == 1


def test_no_receiver_means_no_work(wired, monkeypatch):
    monkeypatch.setattr(signals, "facts", lambda *a: pytest.fail("facts computed with no receiver"))
    wired.get()


def test_workers_managers_send_signals():
    manager = process.build_manager(make_app(**BASE_CONF), process.load_config(make_app(**BASE_CONF), environ={}))
    assert signals.send in manager.listeners
    assert isinstance(manager.backend, HttpLogin)
