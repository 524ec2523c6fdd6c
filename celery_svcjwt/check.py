"""``python -m celery_svcjwt check -A proj``: try the service account before deploying workers.

Loads the Celery app as ``celery -A`` does, resolves its celery-svcjwt
settings, then, through the same token manager and session the workers use:
logs in once, refreshes once, and calls ``--url`` if given.  It prints every
setting with where its value came from (never the password), the header type,
the token's lifetime, the clock skew against the API server, and for anything
that fails, what to fix.

Exit status: 0 when everything worked, 1 when something failed, 2 for a
usage error (no ``-A``, or ``-A`` names no Celery app).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

import requests

from . import process
from .control import iso
from .errors import AuthUnavailable, ConfigurationError, CredentialsRejected, MalformedResponse, SvcJWTError
from .manager import SKEW_WARNING, TokenManager
from .session import ApiSession
from .settings import DEFAULT_PROFILE, SETTINGS, Config, load_config

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "UsageError", "load_app", "run_check"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_NEXT_TRY = re.compile(r" \(next try in [\d.]+s\)$")


class UsageError(Exception):
    """The command line does not name a loadable Celery app (exit status 2)."""


def load_app(name: str) -> Any:
    """The Celery app named as ``celery -A`` takes it: ``proj``, ``proj.celery`` or ``proj.celery:app``.

    A module is searched for an ``app`` or ``celery`` attribute, then for a
    ``celery`` submodule, then for any Celery instance, as Celery does.
    """
    from celery import Celery
    from celery.app.utils import find_app
    from celery.utils.imports import import_from_cwd

    module_name = name.split(":", 1)[0]
    try:
        app = find_app(name, imp=import_from_cwd)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if ":" in name and missing == name:  # Celery retried "module:attr" as a module name
            raise UsageError(f"-A {name}: no Celery app found there (no attribute {name.split(':', 1)[1]!r})") from None
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageError(
                f"-A {name}: no module named {missing!r} (run from the project's folder, or fix PYTHONPATH)"
            ) from None
        raise
    except AttributeError:
        raise UsageError(
            f"-A {name}: no Celery app found there (give module:attribute, e.g. proj.celery:app)"
        ) from None
    if not isinstance(app, Celery):
        raise UsageError(f"-A {name}: {type(app).__name__} is not a Celery app")
    return app


def _setup_django(out: Report) -> bool:
    """Set Django up when DJANGO_SETTINGS_MODULE is set, as a Celery worker does."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return True
    try:
        import django

        django.setup()
    except Exception as exc:
        out.fail(f"set up Django (DJANGO_SETTINGS_MODULE={module})", f"{type(exc).__name__}: {exc}")
        return False
    out.info(f"Django: settings {module} (defaults of svcjwt_username_field and svcjwt_auth_header_type come from it)")
    return True


class Report:
    """Writes the report and remembers whether anything failed."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed: list[str] = []
        self.warnings: list[str] = []

    def write(self, text: str = "") -> None:
        print(text, file=self.stream)

    def info(self, text: str) -> None:
        self.write(text)

    def ok(self, what: str, *details: str) -> None:
        self.write(f"[ok]   {what}")
        for d in details:
            self.write(f"       {d}")

    def warn(self, what: str, *details: str) -> None:
        self.warnings.append(what)
        self.write(f"[warn] {what}")
        for d in details:
            self.write(f"       {d}")

    def fail(self, what: str, *details: str) -> None:
        self.failed.append(what)
        self.write(f"[FAIL] {what}")
        for d in details:
            for i, line in enumerate(d.splitlines()):
                self.write(("       " if i == 0 else "         ") + line)


class _Capture(logging.Handler):
    """Keeps celery-svcjwt's log records during the check (they are quoted in the report)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, since: int = 0, level: int = logging.INFO) -> list[str]:
        return [
            f"{r.levelname} {r.getMessage().removeprefix('celery-svcjwt: ')}"
            for r in self.records[since:]
            if r.levelno >= level
        ]


@contextmanager
def _captured_logs() -> Iterator[_Capture]:
    logger = logging.getLogger("celery_svcjwt")
    handler = _Capture()
    old = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old[0])
        logger.propagate = old[1]


def _shown(config: Config, name: str) -> str:
    value = getattr(config, name)
    source = config.sources.get(name, "unset")
    if name == "password":
        return f"(set, from {source})" if value else "(not set)"
    if value is None:
        return "(not set)"
    return repr(value) if isinstance(value, str) and name == "username" else str(value)


def print_settings(out: Report, config: Config) -> None:
    out.write(
        "Settings (each from the first place that has a value: command line, Celery config, environment, Django, default):"
    )
    width = max(len(s.conf_key) for s in SETTINGS)
    rows = [(s, _shown(config, s.name)) for s in SETTINGS]
    value_width = max(len(shown) for s, shown in rows if not s.secret)
    for s, shown in rows:
        if s.secret:
            out.write(f"  {s.conf_key:<{width}}  {shown}")
        else:
            out.write(f"  {s.conf_key:<{width}}  {shown:<{value_width}}  {config.sources.get(s.name, 'unset')}")
    out.write()
    header_source = config.sources.get("auth_header_type", "default")
    out.write(f"Header: Authorization: {config.auth_header_type} <access token>   (type from {header_source})")
    out.write()


def _explain(exc: SvcJWTError) -> tuple[str, str | None]:
    """The message (without the worker's retry countdown) and a hint when the message has none."""
    message = _NEXT_TRY.sub("", str(exc))
    name = type(exc).__name__
    if isinstance(exc, MalformedResponse) or "answered with" in message:
        hint = (
            "To fix: point svcjwt_token_url / svcjwt_refresh_url at SimpleJWT's views, and check that "
            "nothing in front of the API (a proxy, a front-end's catch-all route) answers instead"
        )
    elif isinstance(exc, AuthUnavailable):
        hint = (
            "To fix: check that the API is up and reachable from this machine (DNS, firewall, proxy), "
            "svcjwt_api_url and svcjwt_token_url, and svcjwt_timeout; then run the check again"
        )
    elif isinstance(exc, CredentialsRejected) and "To fix" not in message:
        hint = "To fix: check svcjwt_username and the password (svcjwt_password, SVC_ACCT_PASS or svcjwt_password_file)"
    else:
        hint = None
    return f"{name}: {message}", hint


def _duration(start: float) -> str:
    return f"{time.monotonic() - start:.2f}s"


def _token_facts(manager: TokenManager) -> list[str]:
    tokens = manager.tokens
    if tokens is None:
        return []
    status = manager.status()
    facts = [f"access token lives {tokens.lifetime:.0f}s (expires {iso(status['token_expires_at'])})"]
    if tokens.refresh_expires_at is not None:
        facts[0] += f"; refresh token {tokens.refresh_expires_at - tokens.obtained_at:.0f}s"
    return facts


def _skew(out: Report, manager: TokenManager) -> None:
    tokens = manager.tokens
    if tokens is None:
        return
    if tokens.skew is None:
        out.warn("clock skew unknown: the access token has no 'iat' claim")
        return
    text = (
        f"clock skew {tokens.skew:+.1f}s (this machine's clock minus the API server's, read from the token's iat; "
        "within about 1s is normal)"
    )
    if abs(tokens.skew) > SKEW_WARNING:
        out.warn(
            text,
            "Expiry is tracked on the worker's own clock, so tokens still refresh on time, but fix the clock (NTP).",
        )
    else:
        out.ok(text)


def _call_url(out: Report, session: ApiSession, url: str) -> None:
    what = f"GET {url}"
    start = time.monotonic()
    try:
        absolute = session.resolve(url)
        what = f"GET {absolute}"
        response = session.get(url)
    except SvcJWTError as exc:
        message, hint = _explain(exc)
        out.fail(what, message, *([hint] if hint else []))
        return
    except ValueError as exc:
        out.fail(what, f"{type(exc).__name__}: {exc}")
        return
    except requests.RequestException as exc:
        out.fail(
            what,
            f"{type(exc).__name__}: the request failed before an answer came",
            "To fix: check that the API is reachable from this machine and svcjwt_timeout",
        )
        return
    status = f"HTTP {response.status_code} {response.reason or ''}".rstrip() + f" ({_duration(start)})"
    if response.history:
        status += f", after {' -> '.join(str(r.status_code) for r in response.history)}"
    if response.ok:
        out.ok(f"{what}: {status}")
        return
    hints = {
        401: _hint_401(session, response),
        403: "To fix: the account is logged in but not allowed: give it the permissions the view needs "
        "(or, if SessionAuthentication comes before JWTAuthentication, DRF answers 403 instead of 401)",
        404: "To fix: check the path; relative paths resolve against svcjwt_api_url",
    }
    hint = hints.get(response.status_code, "To fix: see what the API logged for this request")
    out.fail(f"{what}: {status}", hint)


def _hint_401(session: ApiSession, response: requests.Response) -> str:
    challenge = response.headers.get("WWW-Authenticate", "").strip()
    expected = challenge.split(" ", 1)[0] if challenge else ""
    header_type = session.manager.config.auth_header_type
    if expected and expected.lower() != header_type.lower():
        return (
            f"To fix: the API expects the {expected!r} scheme but svcjwt_auth_header_type is {header_type!r}: "
            f"set svcjwt_auth_header_type to {expected!r} (the first of SIMPLE_JWT['AUTH_HEADER_TYPES'])"
        )
    return (
        "To fix: the API refused a token its own token endpoint just issued, even after renewing it: check "
        "svcjwt_auth_header_type against SIMPLE_JWT['AUTH_HEADER_TYPES'], and that the token endpoint and "
        "this URL belong to the same service (same SIGNING_KEY)"
    )


def run_check(
    app: Any,
    *,
    profile: str = DEFAULT_PROFILE,
    url: str | None = None,
    out: TextIO | None = None,
    app_name: str | None = None,
    cli: Mapping[str, Any] | None = None,
) -> int:
    """Run the check for ``app`` and write the report to ``out``; return the exit status.

    ``cli``: ``--svcjwt-*`` option values by setting name; they win over config, as on ``celery worker``.
    """
    report = Report(out or sys.stdout)
    report.write(f"celery-svcjwt check: app {app_name or app.main!r}, profile {profile!r}")
    report.write()
    if not _setup_django(report):
        return _finish(report, None)
    if not getattr(app, "_svcjwt_installed", False):
        report.warn(
            "celery_svcjwt.install(app) was not called on this app",
            "Workers will have no bootstep: no settings check at start, no login at prefork child start, "
            "no `celery inspect svcjwt_status`. Call it in the module that creates the app.",
        )
    try:
        config = load_config(app, profile, cli=dict(cli or {}))
    except ConfigurationError as exc:
        report.fail("resolve the settings", str(exc))
        return _finish(report, None)
    print_settings(report, config)

    manager = process.build_manager(None, config)  # what a worker builds: same backend, same signals
    session: ApiSession | None = None
    with _captured_logs() as logs:
        try:
            if not _login(report, manager):
                return _finish(report, config)
            _refresh(report, manager, logs)
            _skew(report, manager)
            if url:
                session = ApiSession(config, manager)
                if config.transport == "wsgi":  # as process.session_for does
                    process.wsgi_session(config, session)
                _call_url(report, session, url)
        finally:
            if session is not None:
                session.close()
            manager.backend.close()
    return _finish(report, config)


def _login(report: Report, manager: TokenManager) -> bool:
    config = manager.config
    what = f"log in as {config.username!r}" + (f" at {config.token_url}" if config.login_mode == "http" else "")
    start = time.monotonic()
    try:
        manager.get()
    except SvcJWTError as exc:
        message, hint = _explain(exc)
        report.fail(what, message, *([hint] if hint else []))
        return False
    report.ok(f"{what} ({_duration(start)})", *_token_facts(manager))
    return True


def _refresh(report: Report, manager: TokenManager, logs: _Capture) -> bool:
    config = manager.config
    what = "refresh" + (f" at {config.refresh_url}" if config.login_mode == "http" else "")
    refreshes = manager.stats.refreshes
    old = manager.tokens
    mark = len(logs.records)
    start = time.monotonic()
    try:
        new = manager.renew()
    except SvcJWTError as exc:
        message, hint = _explain(exc)
        report.fail(what, message, *([hint] if hint else []))
        return False
    if manager.stats.refreshes == refreshes:
        said = [m for m in logs.messages(since=mark) if "refresh" in m]
        report.fail(
            what,
            *said,
            "The refresh endpoint refused a refresh token the token endpoint had just issued, so the worker would "
            "log in with the password instead of refreshing. To fix: point svcjwt_refresh_url at SimpleJWT's "
            "TokenRefreshView (the same service as svcjwt_token_url)",
        )
        return False
    rotated = old is not None and new.refresh != old.refresh
    report.ok(
        f"{what} ({_duration(start)})",
        "refresh token rotated (ROTATE_REFRESH_TOKENS): the worker keeps the new one"
        if rotated
        else "refresh token not rotated: the worker logs in again when it expires",
    )
    return True


def _finish(report: Report, config: Config | None) -> int:
    report.write()
    if report.failed:
        n = len(report.failed)
        report.write(f"FAILED: {n} step{'s' if n > 1 else ''} failed (marked [FAIL] above).")
        return EXIT_FAILED
    assert config is not None
    extra = f" ({len(report.warnings)} warning{'s' if len(report.warnings) > 1 else ''})" if report.warnings else ""
    report.write(f"OK: workers can log in and refresh as {config.username!r} at {config.api_url}{extra}.")
    return EXIT_OK
