"""The process-wide token manager: one login, refresh before expiry, back off on failure.

Reading the token is lock-free while it is fresh.  Near expiry it follows
botocore's RefreshableCredentials:

* in the *advisory* window one thread refreshes (a non-blocking try-lock);
  every other thread keeps using the still-valid token, and a failed early
  refresh keeps it too;
* in the *mandatory* window (or with no token) threads wait on the lock,
  re-check, and at most one of them calls the endpoint.

Failures open a backoff gate: until it passes, callers get the last error at
once and the endpoint is not called, so a fleet never hammers a failing or
refusing auth server.  The clock, sleep and randomness are injected, so all
of this is tested without waiting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backoff import backoff_delay
from .endpoints import LoginBackend, RefreshCrashed, RefreshRejected
from .errors import AuthUnavailable, ConfigurationError, CredentialsRejected, SvcJWTError
from .settings import Config
from .tokens import TokenSet, parse_token_response, wall_time_of

__all__ = ["Stats", "TokenManager"]

logger = logging.getLogger(__name__)

#: Base of the backoff between calls to a failing endpoint, in seconds.
BACKOFF_BASE = 1.0
#: The longest a caller sleeps inside one call before giving up with a retryable error.
IN_CALL_WAIT_CAP = 5.0
#: A clock skew against the API server (seconds) worth a warning; tracking expiry does not need NTP.
SKEW_WARNING = 30.0

Listener = Callable[[str, "TokenManager"], None]


@dataclass
class Stats:
    """Counters for status reports; never holds a secret."""

    logins: int = 0
    refreshes: int = 0
    failures: int = 0
    retries_401: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TokenManager:
    """Holds one account's tokens for one process and renews them on time."""

    def __init__(
        self,
        config: Config,
        backend: LoginBackend,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.backend = backend
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        self._rand = rand
        self._tokens: TokenSet | None = None
        self._lock = threading.Lock()
        self._gate_until = 0.0
        self._consecutive_failures = 0
        self._gate_error: SvcJWTError | None = None
        self._login_next = False  # the refresh endpoint crashed on our refresh token: log in instead
        self._warned_skew: float | None = None
        self.stats = Stats()
        self.listeners: list[Listener] = []

    def __repr__(self) -> str:
        state = "logged in" if self._tokens else "not logged in"
        return f"<TokenManager {self.config.username!r} at {self.config.api_url} ({state})>"

    # -- reading -----------------------------------------------------------

    @property
    def tokens(self) -> TokenSet | None:
        """The current snapshot, fresh or not (for status; no I/O)."""
        return self._tokens

    def get(self) -> TokenSet:
        """A token that is valid now, logging in or refreshing if needed."""
        tokens = self._tokens
        now = self._clock()
        margin = self.config.refresh_margin
        if tokens is not None and now < tokens.advisory_at(margin):
            return tokens
        if tokens is not None and now < tokens.mandatory_at(margin):
            return self._advisory_refresh(tokens, now)
        with self._lock:
            current = self._tokens
            if current is not None and self._clock() < current.mandatory_at(margin):
                return current
            return self._renew(current, self.config.login_attempts)

    def renew_after_401(self, rejected: TokenSet, login: bool = False) -> TokenSet:
        """The API refused ``rejected``: renew it once, however many threads saw the 401.

        ``login``: skip the refresh token and log in again; for a 401 that a refresh cannot
        cure, such as SimpleJWT's ``password_changed`` (CHECK_REVOKE_TOKEN), where a refresh
        would mint another access token carrying the old password's hash.
        """
        with self._lock:
            current = self._tokens
            if current is not None and current is not rejected:
                return current  # another thread already renewed it
            self.stats.retries_401 += 1
            logger.info(
                "celery-svcjwt: the API refused the access token of %r before its expiry; renewing it",
                self.config.username,
            )
            self._emit("retry_401")
            return self._renew(None if login else current, self.config.login_attempts)

    def renew(self) -> TokenSet:
        """Refresh now (or log in when there is no usable refresh token), whatever the expiry.

        One try, no in-call retry; used by ``python -m celery_svcjwt check``.
        """
        with self._lock:
            return self._renew(self._tokens, attempts=1)

    def login_within(self, deadline: float) -> bool:
        """Log in in a background thread, waiting at most ``deadline`` seconds.

        Used at ``worker_process_init``: a slow auth server must not delay the
        pool child past ``worker_proc_alive_timeout``.  If the deadline passes,
        the login goes on in the background and the first task waits for it.
        """
        done = self.start_login()
        if done.wait(deadline):
            return self._tokens is not None
        logger.warning(
            "celery-svcjwt: login at process start took longer than %.1fs; continuing in the background", deadline
        )
        return False

    def start_login(self) -> threading.Event:
        """Log in in a background thread; the event is set when it has finished, well or not."""
        done = threading.Event()

        def run() -> None:
            try:
                self.get()
            except SvcJWTError as exc:
                logger.warning("celery-svcjwt: login at process start failed (%s); will retry on first use", exc)
            finally:
                done.set()

        threading.Thread(target=run, name="celery-svcjwt-login", daemon=True).start()
        return done

    def forget(self) -> None:
        """Drop the tokens (the next :meth:`get` logs in)."""
        with self._lock:
            self._tokens = None

    # -- renewing ----------------------------------------------------------

    def _advisory_refresh(self, tokens: TokenSet, now: float) -> TokenSet:
        if now < self._gate_until or not self._lock.acquire(blocking=False):
            return tokens
        try:
            if self._tokens is not tokens:
                return self._tokens or tokens
            try:
                return self._renew(tokens, attempts=1)
            except SvcJWTError as exc:
                logger.warning("celery-svcjwt: early refresh failed (%s); the current token is still valid", exc)
                return tokens
        finally:
            self._lock.release()

    def _renew(self, tokens: TokenSet | None, attempts: int) -> TokenSet:
        """Refresh, or log in, with bounded in-call retries. Call with the lock held."""
        now = self._clock()
        if now < self._gate_until:
            raise self._gated(now)
        if self._consecutive_failures:
            attempts = 1  # the endpoint is known to be failing: one probe per gate, no in-call retries
        use_refresh = tokens is not None and tokens.refresh_usable(now) and not self._login_next
        attempt = 0
        while True:
            attempt += 1
            try:
                if use_refresh and tokens is not None:
                    try:
                        return self._store(self._refresh(tokens), "refresh")
                    except RefreshRejected as exc:
                        logger.info("celery-svcjwt: %s; logging in again", exc)
                        use_refresh = False
                return self._store(self._login(), "login")
            except (CredentialsRejected, ConfigurationError) as exc:
                self._fail(exc, self._backoff())
                raise
            except AuthUnavailable as exc:
                if isinstance(exc, RefreshCrashed):
                    self._login_next, use_refresh = True, False
                wait = max(exc.retry_after, self._backoff(failures=attempt))
                if attempt >= max(1, attempts) or wait > IN_CALL_WAIT_CAP:
                    delay = max(exc.retry_after, self._backoff())
                    self._fail(exc, delay)
                    raise type(exc)(f"{exc} (next try in {delay:.1f}s)", retry_after=delay) from None
                self.stats.failures += 1
                logger.info("celery-svcjwt: %s; trying again in %.2fs", exc, wait)
                self._sleep(wait)

    def _login(self) -> TokenSet:
        sent_at = self._clock()
        body = self.backend.obtain()
        tokens = parse_token_response(body, sent_at=sent_at, wall_now=self._wall())
        self.stats.logins += 1
        logger.info(
            "celery-svcjwt: logged in as %r at %s (access token valid %.0fs)",
            self.config.username,
            self.config.api_url,
            tokens.lifetime,
        )
        return tokens

    def _refresh(self, tokens: TokenSet) -> TokenSet:
        assert tokens.refresh is not None
        sent_at = self._clock()
        body = self.backend.refresh(tokens.refresh)
        new = parse_token_response(
            body,
            sent_at=sent_at,
            wall_now=self._wall(),
            previous_refresh=tokens.refresh,
            previous_refresh_expires_at=tokens.refresh_expires_at,
        )
        self.stats.refreshes += 1
        logger.debug(
            "celery-svcjwt: refreshed the access token of %r%s",
            self.config.username,
            " (refresh token rotated)" if new.refresh != tokens.refresh else "",
        )
        return new

    def _store(self, tokens: TokenSet, event: str) -> TokenSet:
        self._tokens = tokens
        self._login_next = False
        self._consecutive_failures = 0
        self._gate_until = 0.0
        self._gate_error = None
        skew = tokens.skew
        if (
            skew is not None
            and abs(skew) > SKEW_WARNING
            and (self._warned_skew is None or abs(skew - self._warned_skew) > SKEW_WARNING)
        ):  # once, and again only if the skew moves: not at every refresh
            self._warned_skew = skew
            logger.warning(
                "celery-svcjwt: this worker's clock differs from the API server's by %.0fs; "
                "expiry is tracked on the worker's own clock, but fix NTP",
                skew,
            )
        self._emit(event)
        return tokens

    def _backoff(self, failures: int | None = None) -> float:
        n = self._consecutive_failures + 1 if failures is None else failures
        return backoff_delay(n, BACKOFF_BASE, self.config.backoff_max, self._rand())

    def _fail(self, exc: SvcJWTError, delay: float) -> None:
        self._consecutive_failures += 1
        self._gate_until = self._clock() + delay
        self._gate_error = exc
        self.stats.failures += 1
        self.stats.last_error = f"{type(exc).__name__}: {exc}"
        self.stats.last_error_at = self._wall()
        logger.warning("celery-svcjwt: %s; not calling the token endpoint again for %.1fs", exc, delay)
        self._emit("failure")

    def _gated(self, now: float) -> SvcJWTError:
        wait = self._gate_until - now
        error = self._gate_error
        if isinstance(error, (CredentialsRejected, ConfigurationError)):
            return type(error)(f"{error} (not calling the token endpoint again for {wait:.1f}s)")
        return AuthUnavailable(
            f"the token endpoint is backing off for {wait:.1f}s after {self._consecutive_failures} failure(s); "
            f"last error: {error}",
            retry_after=wait,
        )

    def _emit(self, event: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, self)
            except Exception:  # a status writer or signal receiver must never break a task
                logger.exception("celery-svcjwt: a %s listener failed", event)

    # -- reporting ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """A secret-free summary for ``celery inspect`` and the status files."""
        tokens = self._tokens
        now = self._clock()
        expires = None
        if tokens is not None:
            expires = wall_time_of(tokens.access_expires_at, now, self._wall())
        return {
            "account": self.config.username,
            "api_url": self.config.api_url,
            "logged_in": tokens is not None and now < tokens.access_expires_at,
            "token_expires_at": expires,
            "logins": self.stats.logins,
            "refreshes": self.stats.refreshes,
            "failures": self.stats.failures,
            "retries_401": self.stats.retries_401,
            "last_error": self.stats.last_error,
            "last_error_at": self.stats.last_error_at,
            "backing_off_for": max(0.0, self._gate_until - now),
        }
