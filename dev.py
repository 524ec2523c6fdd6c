#!/usr/bin/env python3
"""Run the demo or the tests from a fresh clone, with only Python (3.10+) and git.

    python3 dev.py demo     # the example API + a real celery worker + authenticated tasks
    python3 dev.py test     # the test suite (extra arguments go to pytest)

The first run creates .venv/ beside this file and installs the package with
its test dependencies; later runs reuse it until setup.cfg changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".svcjwt-installed"


def python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_venv() -> Path:
    if sys.version_info < (3, 10):
        sys.exit(f"celery-svcjwt needs Python 3.10 or newer; this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + (ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python().exists():
        print(f"dev.py: creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text() != wanted:
        print("dev.py: installing celery-svcjwt with its test dependencies ...", flush=True)
        pip = [str(python()), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f"{ROOT}[django,test]"], check=True)
        STAMP.write_text(wanted)
    return python()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    py = str(ensure_venv())
    if argv[0] == "demo":
        return subprocess.call([py, "-m", "example.demo", *argv[1:]], cwd=ROOT)
    return subprocess.call([py, "-m", "pytest", *argv[1:]], cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
