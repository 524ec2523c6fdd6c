"""Per-process state: one token manager and one session per (app, profile).

Nothing is created before a task needs it, and a forked child never reuses
its parent's: ``os.register_at_fork`` plus a pid check give every child a
clean slate (no shared socket, lock or token; psf/requests #4323).  A
spawned child starts clean by construction.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from celery.signals import worker_process_init

from . import inprocess, signals, status
from .endpoints import HttpLogin, LoginBackend
from .manager import TokenManager
from .session import ApiSession
from .settings import DEFAULT_PROFILE, Config, load_config
from .wsgi import WSGIAdapter, load_wsgi_application

__all__ = ["is_pool_child", "manager_for", "reset", "session_for"]

logger = logging.getLogger(__name__)

#: celery.conf key where the bootstep records the worker's main process id.
MAIN_PID_KEY = "svcjwt_worker_pid"
#: celery.conf key with how many threads share this process's session (threads, gevent, eventlet pools).
POOL_THREADS_KEY = "svcjwt_pool_threads"


class _State:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.managers: dict[tuple[int, str], TokenManager] = {}
        self.sessions: dict[tuple[int, str], ApiSession] = {}


_state = _State()


def reset() -> None:
    """Forget every manager and session of this process (after fork; in tests)."""
    global _state
    _state = _State()


os.register_at_fork(after_in_child=reset)


def _current() -> _State:
    if _state.pid != os.getpid():  # forked by something that bypassed at-fork hooks
        reset()
    return _state


def backend_for(config: Config) -> LoginBackend:
    """The login backend ``svcjwt_login_mode`` names."""
    if config.login_mode == "local":
        return inprocess.LocalLogin(config)
    if config.login_mode == "mint":
        return inprocess.MintLogin(config)
    if config.transport == "wsgi":  # the token endpoint too is called in process
        return HttpLogin(config, session=wsgi_session(config))
    return HttpLogin(config)


def wsgi_session(config: Config, session: requests.Session | None = None) -> requests.Session:
    """``session`` with the API's origin mounted on the project's WSGI application."""
    session = session or requests.Session()
    parts = urlsplit(config.api_url)
    session.mount(f"{parts.scheme}://{parts.netloc}/", WSGIAdapter(load_wsgi_application(config.wsgi_application)))
    return session


def build_manager(app: Any, config: Config) -> TokenManager:
    manager = TokenManager(config, backend_for(config))
    manager.listeners.append(signals.send)  # celery_svcjwt.signals: metrics and audit hooks
    status_dir = app.conf.get(status.STATUS_DIR_KEY) if app is not None else None
    if status_dir:
        manager.listeners.append(status.FileReporter(status_dir, config.profile))
    return manager


def manager_for(app: Any, profile: str = DEFAULT_PROFILE) -> TokenManager:
    """This process's token manager for ``profile`` of ``app`` (created on first use)."""
    if _overrides and (fake := _overridden(app, profile)) is not None:
        return fake[0]  # celery_svcjwt.testing.mock_api
    state = _current()
    key = (id(app), profile)
    manager = state.managers.get(key)
    if manager is None:
        with state.lock:
            manager = state.managers.get(key)
            if manager is None:
                manager = build_manager(app, load_config(app, profile))
                state.managers[key] = manager
    return manager


def session_for(app: Any, profile: str = DEFAULT_PROFILE) -> ApiSession:
    """This process's ``self.api`` session for ``profile`` of ``app``."""
    if _overrides and (fake := _overridden(app, profile)) is not None:
        return fake[1]  # celery_svcjwt.testing.mock_api
    state = _current()
    key = (id(app), profile)
    session = state.sessions.get(key)
    if session is None:
        manager = manager_for(app, profile)
        with state.lock:
            session = state.sessions.get(key)
            if session is None:
                threads = (app.conf.get(POOL_THREADS_KEY) if app is not None else None) or 10
                session = ApiSession(manager.config, manager, pool_size=int(threads))
                if manager.config.transport == "wsgi":
                    wsgi_session(manager.config, session)
                state.sessions[key] = session
    return session


def managers() -> list[TokenManager]:
    return list(_current().managers.values())


def is_pool_child(app: Any) -> bool:
    """True in a prefork pool child (forked or spawned), False in the worker's main process."""
    main_pid = app.conf.get(MAIN_PID_KEY)
    return main_pid is not None and int(main_pid) != os.getpid()


def init_deadline(app: Any, config: Config) -> float:
    """The login deadline at process start: well below the pool's alive timeout."""
    alive = float(app.conf.get("worker_proc_alive_timeout") or 4.0)
    return min(config.init_timeout, alive / 2)


@worker_process_init.connect(weak=False, dispatch_uid="celery_svcjwt.process")
def _on_worker_process_init(**_: Any) -> None:
    """Log a prefork child in once per profile, under a deadline; under solo the first task logs in."""
    from celery import current_app

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.conf.get(status.STATUS_DIR_KEY) or not is_pool_child(app):
        return  # not a worker that installed celery-svcjwt, or the solo pool's main process
    started: list[TokenManager] = []
    for profile in [DEFAULT_PROFILE, *sorted(app.conf.get("svcjwt_profiles") or {})]:
        try:
            started.append(manager_for(app, profile))
        except Exception as exc:  # the bootstep already validated; never kill the child
            logger.error("celery-svcjwt: cannot set up profile %r: %s", profile, exc)
    if started:  # the logins run side by side; the child waits for all of them at most once
        deadline = init_deadline(app, started[0].config)
        waits = [m.start_login() for m in started]
        until = time.monotonic() + deadline
        if not all(done.wait(max(0.0, until - time.monotonic())) for done in waits):
            logger.warning(
                "celery-svcjwt: login at process start took longer than %.1fs; continuing in the background", deadline
            )


# -- test doubles (celery_svcjwt.testing) ---------------------------------------

#: A hook returns this process's stand-in (manager, session) for an (app, profile) it covers, else None.
OverrideHook = Callable[[Any, str], "tuple[TokenManager, ApiSession] | None"]

#: Hooks installed by ``celery_svcjwt.testing.mock_api``, newest last.  Process-wide on purpose:
#: an in-process test worker runs tasks in other threads.
_overrides: list[OverrideHook] = []


def push_override(hook: OverrideHook) -> None:
    """Make :func:`manager_for` and :func:`session_for` ask ``hook`` first (tests only)."""
    _overrides.append(hook)


def pop_override(hook: OverrideHook) -> None:
    """Remove a hook installed by :func:`push_override`; no error if it is not installed."""
    try:
        _overrides.remove(hook)
    except ValueError:
        pass


def _overridden(app: Any, profile: str) -> tuple[TokenManager, ApiSession] | None:
    for hook in reversed(list(_overrides)):
        found = hook(app, profile)
        if found is not None:
            return found
    return None
