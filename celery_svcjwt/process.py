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
from typing import Any

from celery.signals import worker_process_init

from . import status
from .endpoints import HttpLogin
from .manager import TokenManager
from .session import ApiSession
from .settings import DEFAULT_PROFILE, Config, load_config

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


def build_manager(app: Any, config: Config) -> TokenManager:
    manager = TokenManager(config, HttpLogin(config))
    status_dir = app.conf.get(status.STATUS_DIR_KEY) if app is not None else None
    if status_dir:
        manager.listeners.append(status.FileReporter(status_dir, config.profile))
    return manager


def manager_for(app: Any, profile: str = DEFAULT_PROFILE) -> TokenManager:
    """This process's token manager for ``profile`` of ``app`` (created on first use)."""
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
    """Log a prefork child in once, under a deadline; under solo the first task logs in."""
    from celery import current_app

    app = current_app._get_current_object()
    if not app.conf.get(status.STATUS_DIR_KEY) or not is_pool_child(app):
        return  # not a worker that installed celery-svcjwt, or the solo pool's main process
    try:
        manager = manager_for(app)
    except Exception as exc:  # the bootstep already validated; never kill the child
        logger.error("celery-svcjwt: cannot set up the service account: %s", exc)
        return
    manager.login_within(init_deadline(app, manager.config))
