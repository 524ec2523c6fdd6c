"""Status side channel: each worker process reports its token state to the main process.

Prefork children do the logging in, but ``celery inspect`` asks the main
process.  Each process that logs in writes a small JSON file (its pid as the
name, written atomically on login, refresh, failure and 401 retry, never on
an ordinary request) into a folder the bootstep made; the bootstep reads them
back.  The files hold no token and no password.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manager import TokenManager

__all__ = ["STATUS_DIR_KEY", "FileReporter", "collect"]

#: celery.conf key holding the folder (app.conf reaches forked and spawned children).
STATUS_DIR_KEY = "svcjwt_status_dir"


class FileReporter:
    """A token-manager listener that writes this process's status file."""

    def __init__(self, folder: str, profile: str) -> None:
        self.folder = folder
        self.profile = profile

    def __call__(self, event: str, manager: TokenManager) -> None:
        pid = os.getpid()
        path = os.path.join(self.folder, f"{pid}.json")
        data = _read(path) or {"pid": pid, "profiles": {}}
        data["profiles"][self.profile] = manager.status()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{pid}.")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect(folder: str) -> list[dict[str, Any]]:
    """Every live process's status, oldest pid first; files of dead processes are removed."""
    found = []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(folder, name)
        data = _read(path)
        if data is None:
            continue
        pid = int(data.get("pid", 0))
        if not _alive(pid):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        found.append(data)
    return sorted(found, key=lambda d: d["pid"])
