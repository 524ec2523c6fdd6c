"""The worker bootstep: checks the settings at start, reports the account's state."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

from celery import bootsteps
from celery.apps.worker import Worker as CliWorker

from . import process, status
from .errors import ConfigurationError
from .settings import SETTINGS, load_config

__all__ = ["SvcJWTStep"]

logger = logging.getLogger(__name__)


class SvcJWTStep(bootsteps.StartStopStep):
    """Service-account JWT for tasks.

    Runs in the worker's main process, which never logs in under prefork:
    each pool child logs in at ``worker_process_init`` (see
    :mod:`celery_svcjwt.process`).  Command-line values and the status folder
    go into ``app.conf``, which both forked and spawned children receive.
    """

    label = "celery-svcjwt"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        app = worker.app
        cli = {
            s.name: kwargs[f"svcjwt_{s.name}"] for s in SETTINGS if s.cli and kwargs.get(f"svcjwt_{s.name}") is not None
        }
        if cli:
            app.conf.svcjwt_cli = cli
        try:
            self.config = load_config(app)
            self.profiles = [load_config(app, name) for name in sorted(app.conf.get("svcjwt_profiles") or {})]
        except ConfigurationError as exc:
            if isinstance(worker, CliWorker):  # `celery worker`: one clear message, no traceback
                raise SystemExit(f"\n{exc}\n") from None
            raise
        self.folder = tempfile.mkdtemp(prefix="celery-svcjwt-")
        app.conf[status.STATUS_DIR_KEY] = self.folder
        app.conf[process.MAIN_PID_KEY] = os.getpid()
        if "prefork" not in getattr(getattr(worker, "pool_cls", None), "__module__", "prefork"):
            app.conf[process.POOL_THREADS_KEY] = worker.concurrency
        super().__init__(worker, **kwargs)

    def start(self, worker: Any) -> None:
        cfg = self.config
        logger.info(
            "celery-svcjwt: tasks call %s as %r (login %s, header %s)",
            cfg.api_url,
            cfg.username,
            cfg.login_mode,
            cfg.auth_header_type,
        )

    def stop(self, worker: Any) -> None:
        pass

    def shutdown(self, worker: Any) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def info(self, worker: Any) -> dict[str, Any]:  # type: ignore[override]
        """Merged into ``celery inspect stats``: per process, logged in or not and expiry (no token)."""
        from .control import refreshed  # files are written on events: "logged in" is decided now

        processes = refreshed(status.collect(self.folder))
        logged_in = [p for p in processes if p["profiles"].get("default", {}).get("logged_in")]
        expiries = [p["profiles"]["default"]["token_expires_at"] for p in logged_in]
        return {
            "svcjwt": {
                "account": self.config.username,
                "api_url": self.config.api_url,
                "logged_in": bool(logged_in),
                "processes_logged_in": len(logged_in),
                "token_expires_at": min(expiries) if expiries else None,
                "processes": processes,
            }
        }
