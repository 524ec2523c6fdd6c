"""TokenManager: one login per process, refresh on time, single flight, backoff gate."""

from __future__ import annotations

import json
import logging
import sys
import threading

import pytest

from celery_svcjwt.endpoints import RefreshCrashed, RefreshRejected
from celery_svcjwt.errors import AuthUnavailable, ConfigurationError, CredentialsRejected, MalformedResponse
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.tokens import TokenSet

from .conftest import PASSWORD, SERVER_NOW, USERNAME, FakeBackend, claims_of

pytestmark = pytest.mark.usefixtures("no_secrets_in_logs")

# With the fixtures' defaults: login at t=1000, access token valid 300 s, refresh margin 60 s.
# iat is in whole seconds (as SimpleJWT writes it), so one second is counted off the lifetime.
LOGIN_AT = 1000.0
EXPIRES = LOGIN_AT + 300 - 1
ADVISORY = EXPIRES - 60  # refresh if nobody else is
MANDATORY = EXPIRES - 10  # refresh before use


def gen(tokens: TokenSet) -> int:
    return claims_of(tokens.access)["gen"]


def new_manager(config, backend, clock, **kw) -> TokenManager:
    kw.setdefault("sleep", lambda s: clock.advance(s))
    return TokenManager(config, backend, clock=clock, wall=lambda: SERVER_NOW, rand=lambda: 0.5, **kw)


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}s with svcjwt_login_attempts = 1")


# -- the happy path --------------------------------------------------------------------------


def test_one_login_for_many_gets(manager, backend, clock):
    first = manager.get()
    for _ in range(200):
        clock.advance(1.19)  # up to t=1238, before the advisory window
        assert manager.get() is first
    assert backend.obtain_calls == 1
    assert backend.refresh_calls == []
    assert manager.stats.logins == 1
    assert first.access_expires_at == EXPIRES


def test_refresh_in_the_advisory_window(manager, backend, clock):
    first = manager.get()
    clock.set(ADVISORY + 1)
    second = manager.get()
    assert backend.refresh_calls == [first.refresh]
    assert gen(second) == 2
    assert second.access_expires_at == ADVISORY + 1 + 299
    assert manager.get() is second
    assert (backend.obtain_calls, manager.stats.refreshes) == (1, 1)


def test_refresh_in_the_mandatory_window(manager, backend, clock):
    manager.get()
    clock.set(MANDATORY + 1)
    assert gen(manager.get()) == 2
    assert len(backend.refresh_calls) == 1


def test_expired_access_token_is_refreshed(manager, backend, clock):
    manager.get()
    clock.set(EXPIRES + 100)
    assert manager.get().access_expires_at == EXPIRES + 100 + 299
    assert (backend.obtain_calls, len(backend.refresh_calls)) == (1, 1)


def test_rotated_refresh_token_is_kept_and_used_next(manager, backend, clock):
    first = manager.get()
    clock.set(ADVISORY + 1)
    second = manager.get()
    assert second.refresh != first.refresh
    clock.advance(250)
    manager.get()
    assert backend.refresh_calls == [first.refresh, second.refresh]


def test_without_rotation_the_first_refresh_token_is_reused(config, make_jwt, clock):
    backend = FakeBackend(make_jwt, rotate=False)
    manager = new_manager(config, backend, clock)
    first = manager.get()
    clock.set(ADVISORY + 1)
    second = manager.get()
    assert second.refresh == first.refresh
    assert second.refresh_expires_at == first.refresh_expires_at
    clock.advance(250)
    manager.get()
    assert backend.refresh_calls == [first.refresh, first.refresh]


def test_rejected_refresh_token_means_logging_in_again(manager, backend, clock):
    manager.get()
    backend.refresh_script.append(RefreshRejected("the refresh endpoint rejected the refresh token"))
    clock.set(MANDATORY + 1)
    tokens = manager.get()
    assert (backend.obtain_calls, len(backend.refresh_calls)) == (2, 1)
    assert gen(tokens) == 2
    assert (manager.stats.logins, manager.stats.refreshes) == (2, 0)


def test_expired_refresh_token_means_logging_in_without_trying_it(config, make_jwt, clock):
    backend = FakeBackend(make_jwt, access_lifetime=300, refresh_lifetime=600)
    manager = new_manager(config, backend, clock)
    manager.get()
    clock.set(LOGIN_AT + 599.5)  # within the one-second slack before the refresh token's expiry
    manager.get()
    assert (backend.obtain_calls, backend.refresh_calls) == (2, [])


def test_access_token_without_refresh_token_logs_in_again(manager, backend, clock):
    backend.obtain_script.append(lambda: backend.issue(with_refresh=False))
    manager.get()
    clock.set(MANDATORY + 1)
    manager.get()
    assert (backend.obtain_calls, backend.refresh_calls) == (2, [])


def test_short_lived_tokens_are_not_refreshed_on_every_call(config, make_jwt, clock):
    """A 30 s token (29 s usable) with a 60 s margin is refreshed half its life before expiry, not at once."""
    backend = FakeBackend(make_jwt, access_lifetime=30)
    manager = new_manager(config, backend, clock)
    first = manager.get()
    assert first.advisory_at(60) == first.access_expires_at - 14.5
    clock.set(first.advisory_at(60) - 0.1)
    assert manager.get() is first
    clock.advance(0.2)
    assert manager.get() is not first
    assert len(backend.refresh_calls) == 1


def test_server_clock_hours_off_changes_nothing_but_warns(config, make_jwt, clock, caplog):
    backend = FakeBackend(make_jwt, server_now=lambda: SERVER_NOW - 5 * 3600)
    manager = new_manager(config, backend, clock)
    tokens = manager.get()
    assert tokens.access_expires_at == EXPIRES
    assert tokens.skew == 5 * 3600
    clock.set(ADVISORY - 1)
    assert manager.get() is tokens
    assert "clock differs from the API server's by 18000s" in caplog.text


def test_the_skew_warning_comes_once_and_again_only_when_the_skew_moves(config, make_jwt, clock, caplog):
    server_offset = [-3600.0]
    backend = FakeBackend(make_jwt, server_now=lambda: SERVER_NOW + server_offset[0])
    manager = new_manager(config, backend, clock)
    manager.get()
    for _ in range(3):  # three refreshes at the same skew
        clock.advance(300)
        manager.get()
    assert backend.refresh_calls and len(backend.refresh_calls) == 3
    assert caplog.text.count("clock differs") == 1
    server_offset[0] = -7200.0  # someone moved a clock by another hour
    clock.advance(300)
    manager.get()
    assert caplog.text.count("clock differs") == 2
    assert "by 7200s" in caplog.text


def test_forget_drops_the_tokens(manager, backend):
    manager.get()
    manager.forget()
    assert manager.tokens is None
    manager.get()
    assert backend.obtain_calls == 2


# -- failures, retries and the gate ----------------------------------------------------------


def test_transient_failure_is_retried_within_the_call(manager, backend, fake_sleep):
    backend.obtain_script.extend([AuthUnavailable("HTTP 503"), MalformedResponse("an HTML page")])
    tokens = manager.get()
    assert gen(tokens) == 1
    assert backend.obtain_calls == 3
    # equal jitter with rand=0.5: 3/4 of a ceiling of 1 s, then of 2 s
    assert fake_sleep.calls == [0.75, 1.5]
    assert manager.status()["backing_off_for"] == 0.0


def test_after_a_failure_each_gate_allows_one_probe_without_in_call_retries(manager, backend, clock, fake_sleep):
    # A fleet in an outage must not multiply its load by the in-call attempts.
    backend.obtain_script.extend([AuthUnavailable("HTTP 503")] * 4)
    with pytest.raises(AuthUnavailable):
        manager.get()
    assert backend.obtain_calls == 3
    clock.advance(manager.status()["backing_off_for"] + 0.01)
    with pytest.raises(AuthUnavailable):
        manager.get()
    assert backend.obtain_calls == 4  # one probe, no sleep-and-retry
    assert len(fake_sleep.calls) == 2
    clock.advance(manager.status()["backing_off_for"] + 0.01)
    assert gen(manager.get()) == 1  # the endpoint is back: the probe succeeds
    assert backend.obtain_calls == 5


def test_outage_gives_auth_unavailable_then_a_gate(manager, backend, clock, fake_sleep):
    backend.obtain_script.extend([AuthUnavailable("HTTP 503")] * 3)
    with pytest.raises(AuthUnavailable) as info:
        manager.get()
    assert backend.obtain_calls == 3  # svcjwt_login_attempts
    assert fake_sleep.calls == [0.75, 1.5]
    assert info.value.retry_after == 0.75
    assert "HTTP 503" in str(info.value) and "next try in 0.8s" in str(info.value)
    gate = clock.now + 0.75

    # Until the gate passes, callers get the error at once and the endpoint is left alone.
    for _ in range(5):
        with pytest.raises(AuthUnavailable) as info:
            manager.get()
        assert info.value.retry_after == pytest.approx(gate - clock.now)
        assert "backing off" in str(info.value) and "last error: HTTP 503" in str(info.value)
        clock.advance(0.1)
    assert backend.obtain_calls == 3
    assert len(fake_sleep.calls) == 2

    clock.set(gate)
    assert gen(manager.get()) == 1
    assert backend.obtain_calls == 4


def test_the_gate_grows_with_consecutive_failures_up_to_backoff_max(make_config, make_jwt, clock):
    config = make_config(login_attempts=1, backoff_max=5)
    backend = FakeBackend(make_jwt)
    manager = new_manager(config, backend, clock, sleep=never_sleep)
    waits = []
    for _ in range(6):
        backend.obtain_script.append(AuthUnavailable("down"))
        with pytest.raises(AuthUnavailable) as info:
            manager.get()
        waits.append(info.value.retry_after)
        clock.advance(info.value.retry_after)
    assert waits == [0.75, 1.5, 3.0, 3.75, 3.75, 3.75]
    manager.get()  # success resets the count
    manager.forget()
    backend.obtain_script.append(AuthUnavailable("down"))
    with pytest.raises(AuthUnavailable) as info:
        manager.get()
    assert info.value.retry_after == 0.75


def test_a_long_retry_after_is_not_slept_through(manager, backend, clock, fake_sleep):
    backend.obtain_script.append(AuthUnavailable("HTTP 429", retry_after=30))
    with pytest.raises(AuthUnavailable) as info:
        manager.get()
    assert info.value.retry_after == 30
    assert fake_sleep.calls == []
    assert backend.obtain_calls == 1
    clock.advance(29)
    with pytest.raises(AuthUnavailable) as info:
        manager.get()
    assert info.value.retry_after == pytest.approx(1)
    assert backend.obtain_calls == 1


def test_a_short_retry_after_is_honoured_within_the_call(manager, backend, fake_sleep):
    backend.obtain_script.append(AuthUnavailable("HTTP 429", retry_after=2))
    manager.get()
    assert fake_sleep.calls == [2]


@pytest.mark.parametrize(
    "error", [CredentialsRejected("rejected the service account"), ConfigurationError("set svcjwt_token_url")]
)
def test_permanent_errors_are_not_retried_but_gated(manager, backend, clock, fake_sleep, error):
    backend.obtain_script.append(error)
    with pytest.raises(type(error)) as info:
        manager.get()
    assert info.value is error
    assert fake_sleep.calls == []
    with pytest.raises(type(error)) as info:
        manager.get()
    assert "not calling the token endpoint again for 0.8s" in str(info.value)
    assert str(error) in str(info.value)
    assert backend.obtain_calls == 1
    clock.advance(0.75)
    manager.get()
    assert backend.obtain_calls == 2


def test_failed_early_refresh_keeps_the_valid_token(manager, backend, clock, fake_sleep, caplog):
    first = manager.get()
    clock.set(ADVISORY + 1)
    backend.refresh_script.append(AuthUnavailable("HTTP 502"))
    assert manager.get() is first
    assert len(backend.refresh_calls) == 1
    assert fake_sleep.calls == []  # one try only in the advisory window
    assert "early refresh failed" in caplog.text
    # within the gate: the old token, without calling the endpoint
    clock.advance(0.5)
    assert manager.get() is first
    assert len(backend.refresh_calls) == 1
    # after it: another try, which succeeds
    clock.advance(0.5)
    assert gen(manager.get()) == 2
    assert len(backend.refresh_calls) == 2


def test_failed_early_refresh_and_rejected_login_keep_the_valid_token(manager, backend, clock):
    first = manager.get()
    clock.set(ADVISORY + 1)
    backend.refresh_script.append(RefreshRejected("token_not_valid"))
    backend.obtain_script.append(CredentialsRejected("password changed"))
    assert manager.get() is first


def test_failure_in_the_mandatory_window_raises(manager, backend, clock):
    manager.get()
    clock.set(MANDATORY + 1)
    backend.refresh_script.extend([AuthUnavailable("down")] * 3)
    with pytest.raises(AuthUnavailable):
        manager.get()
    assert len(backend.refresh_calls) == 3


def test_a_refresh_endpoint_crash_makes_the_next_try_a_login(manager, backend, clock):
    # SimpleJWT 5.5.1's 500 for a deleted user: refreshing again would fail the same way forever.
    manager.get()
    clock.set(MANDATORY + 1)
    backend.refresh_script.append(RefreshCrashed("HTTP 500"))
    backend.obtain_script.append(CredentialsRejected("no active account for 'svc-robot'"))
    with pytest.raises(CredentialsRejected, match="no active account"):
        manager.get()
    assert (len(backend.refresh_calls), backend.obtain_calls) == (1, 2)


def test_after_a_refresh_endpoint_crash_the_next_gate_logs_in(make_config, make_jwt, clock):
    backend = FakeBackend(make_jwt)
    manager = new_manager(make_config(login_attempts=1), backend, clock, sleep=never_sleep)
    manager.get()
    clock.set(MANDATORY + 1)
    backend.refresh_script.append(RefreshCrashed("HTTP 500"))
    with pytest.raises(RefreshCrashed):
        manager.get()
    clock.advance(120)  # past the gate
    assert gen(manager.get()) == 2
    assert (len(backend.refresh_calls), backend.obtain_calls, manager.stats.logins) == (1, 2, 2)
    # Logged in: refreshing works as before.
    clock.advance(300 - 60)
    assert gen(manager.get()) == 3
    assert len(backend.refresh_calls) == 2


def test_a_failing_listener_does_not_break_get(manager, caplog):
    events = []

    def broken(event, mgr):
        events.append(event)
        raise RuntimeError("status file unwritable")

    manager.listeners.append(broken)
    manager.get()
    assert events == ["login"]
    assert "a login listener failed" in caplog.text


def test_listeners_hear_login_refresh_and_failure(manager, backend, clock):
    events = []
    manager.listeners.append(lambda event, mgr: events.append(event))
    manager.get()
    clock.set(ADVISORY + 1)
    manager.get()
    backend.refresh_script.append(AuthUnavailable("down"))
    clock.set(ADVISORY + 1 + 241)  # the advisory window of the refreshed token
    manager.get()
    assert events == ["login", "refresh", "failure"]


# -- 401 from the API ----------------------------------------------------------------------


def test_renew_after_401_renews_once_per_stale_snapshot(manager, backend):
    stale = manager.get()
    renewed = manager.renew_after_401(stale)
    assert renewed is not stale
    assert manager.renew_after_401(stale) is renewed  # a second thread that saw the same 401
    assert len(backend.refresh_calls) == 1
    assert manager.stats.retries_401 == 1
    # a 401 for the renewed token renews again
    assert manager.renew_after_401(renewed) is not renewed
    assert len(backend.refresh_calls) == 2


def test_renew_after_401_respects_the_gate(manager, backend, clock):
    stale = manager.get()
    backend.refresh_script.append(CredentialsRejected("user deactivated"))
    with pytest.raises(CredentialsRejected):
        manager.renew_after_401(stale)
    with pytest.raises(CredentialsRejected, match="not calling the token endpoint again"):
        manager.renew_after_401(stale)
    assert backend.calls == 2


# -- reporting -----------------------------------------------------------------------------


def test_status_holds_no_secret(manager, backend, clock, make_jwt):
    manager.get()
    clock.set(MANDATORY + 1)
    backend.refresh_script.extend([AuthUnavailable("down")] * 3)
    with pytest.raises(AuthUnavailable):
        manager.get()
    status = manager.status()
    text = json.dumps(status)
    for secret in [PASSWORD, *make_jwt.issued]:
        assert secret not in text
    assert status["account"] == USERNAME
    assert status["logged_in"] is True  # the access token has not expired yet
    assert status["token_expires_at"] == SERVER_NOW + (EXPIRES - clock.now)
    assert status["last_error"].startswith("AuthUnavailable: down")
    assert status["backing_off_for"] == 0.75
    assert (status["logins"], status["refreshes"]) == (1, 0)


def test_status_before_login(manager):
    status = manager.status()
    assert (status["logged_in"], status["token_expires_at"], status["logins"]) == (False, None, 0)


def test_repr_holds_no_token(manager, make_jwt):
    assert "not logged in" in repr(manager)
    tokens = manager.get()
    text = repr(manager) + repr(tokens) + repr(manager.stats)
    assert "(logged in)" in text
    for secret in [PASSWORD, *make_jwt.issued]:
        assert secret not in text


# -- login_within (a real thread) -------------------------------------------------------------


def test_login_within_logs_in_before_the_deadline(manager):
    assert manager.login_within(5.0) is True
    assert manager.tokens is not None


def test_login_within_gives_up_waiting_but_goes_on_in_the_background(manager, backend, caplog):
    release = threading.Event()
    backend.obtain_script.append(lambda: release.wait(5) and backend.issue())
    assert manager.login_within(0.05) is False
    assert "took longer than 0.1s" in caplog.text
    release.set()
    assert manager.get() is not None  # waits on the lock for the background login
    assert backend.obtain_calls == 1


def test_login_within_reports_a_failed_login(manager, backend, caplog):
    backend.obtain_script.append(CredentialsRejected("wrong password"))
    assert manager.login_within(5.0) is False
    assert "login at process start failed" in caplog.text


# -- threads ------------------------------------------------------------------------------


THREADS = 64


def run_threads(target, n=THREADS):
    barrier = threading.Barrier(n)
    results, errors = [], []
    lock = threading.Lock()

    def run():
        barrier.wait()
        try:
            value = target()
        except Exception as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    return results, errors


def test_advisory_window_many_threads_one_refresh_nobody_waits(manager, backend, clock):
    first = manager.get()
    clock.set(ADVISORY + 1)
    finished = threading.Semaphore(0)
    others_done = []

    def hold_refresh():
        # The refresher waits for every other thread to have returned: none of them waited for it.
        others_done.append(all(finished.acquire(timeout=10) for _ in range(THREADS - 1)))

    backend.on_refresh = hold_refresh

    def target():
        tokens = manager.get()
        if tokens is first:
            finished.release()
        return tokens

    results, errors = run_threads(target)
    assert errors == []
    assert len(backend.refresh_calls) == 1
    assert others_done == [True]
    assert [r is first for r in results].count(True) == THREADS - 1
    assert all(r.access_expires_at > clock.now for r in results)
    assert manager.tokens is not first


def test_mandatory_window_many_threads_one_refresh(manager, backend, clock):
    manager.get()
    clock.set(MANDATORY + 1)
    clock.readers.clear()
    entered = []

    def hold_refresh():
        # Wait until every thread has entered get() (it reads the clock first), then refresh.
        for _ in range(1000):
            if len(clock.readers) >= THREADS:
                break
            threading.Event().wait(0.005)
        entered.append(len(clock.readers))

    backend.on_refresh = hold_refresh
    results, errors = run_threads(manager.get)
    assert errors == []
    assert entered == [THREADS]
    assert len(backend.refresh_calls) == 1
    assert all(r is manager.tokens for r in results)
    assert all(r.mandatory_at(60) > clock.now for r in results)


def test_cold_start_many_threads_one_login(manager, backend):
    results, errors = run_threads(manager.get)
    assert errors == []
    assert backend.obtain_calls == 1
    assert len({id(r) for r in results}) == 1


def test_outage_many_threads_one_call(make_config, make_jwt, clock):
    config = make_config(login_attempts=1)
    backend = FakeBackend(make_jwt)
    backend.obtain_script.append(AuthUnavailable("HTTP 503"))
    manager = new_manager(config, backend, clock)
    results, errors = run_threads(manager.get)
    assert results == []
    assert len(errors) == THREADS
    assert all(isinstance(e, AuthUnavailable) for e in errors)
    assert backend.obtain_calls == 1


def test_readers_never_see_a_mixed_snapshot(manager, backend):
    """botocore's race test: a refresher swaps snapshots while readers check each one is whole."""
    manager.get()
    stop = threading.Event()
    problems: list[str] = []
    reads = [0]
    seen: set[int] = set()
    decoded: dict[str, dict] = {}

    def claims(token):
        if token not in decoded:
            decoded[token] = claims_of(token)
        return decoded[token]

    def reader():
        last = 0
        while not stop.is_set():
            for tokens in (manager.get(), manager.tokens):
                access, refresh = claims(tokens.access), claims(tokens.refresh)
                if access["gen"] != refresh["gen"]:
                    problems.append(f"access of generation {access['gen']} with refresh of {refresh['gen']}")
                if tokens.exp_claim != access["exp"]:
                    problems.append("exp_claim of another token")
                if access["gen"] < last:
                    problems.append(f"went back from generation {last} to {access['gen']}")
                last = access["gen"]
                seen.add(last)
                reads[0] += 1

    def refresher():
        try:
            for _ in range(300):
                manager.renew_after_401(manager.tokens)
        finally:
            stop.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=reader) for _ in range(8)] + [threading.Thread(target=refresher)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        sys.setswitchinterval(old)
    assert problems == []
    assert len(backend.refresh_calls) == 300
    assert gen(manager.tokens) == 301
    assert reads[0] > 300
    assert len(seen) > 10, "the readers did not run while the snapshots changed"


def test_secrets_fixture_sees_debug_records(manager, backend, clock, caplog):
    """The log check is live: DEBUG records of the manager are captured."""
    manager.get()
    clock.set(ADVISORY + 1)
    manager.get()
    assert any(r.levelno == logging.DEBUG and "refreshed the access token" in r.getMessage() for r in caplog.records)
