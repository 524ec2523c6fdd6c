"""Sessions: tests across Python/Django/Celery versions, lint, typecheck, docs, demo, bench.

    nox -s tests -p 3.12         # one Python (its Django and Celery: see MATRIX)
    nox -s "tests(3.13-django6-celery5.7)"
    nox -s lint typecheck docs demo
    nox -s bench                 # benchmarks (see benchmarks/README.md)

With pyenv, make every Python visible first:
    export PYENV_VERSION=3.11.7:3.10.13:3.12.1:3.13.0
"""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True

# Django 6 needs Python 3.12+; Django 5.2 is the LTS for 3.10/3.11; celery 5.5 is the oldest supported.
MATRIX = [
    ("3.10", "5.2", "5.5"),
    ("3.11", "5.2", "5.7"),
    ("3.12", "6", "5.7"),
    ("3.13", "6", "5.7"),
]


@nox.session
@nox.parametrize(("python", "django", "celery"), MATRIX, ids=[f"{p}-django{d}-celery{c}" for p, d, c in MATRIX])
def tests(session: nox.Session, django: str, celery: str) -> None:
    """The test suite (unit + integration with real API server and workers)."""
    session.install("-e", ".[django,test]", f"django~={django}.0", f"celery[redis]~={celery}.0")
    session.run("pytest", *session.posargs)


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    paths = ["celery_svcjwt", "tests", "example", "docs", "benchmarks", "dev.py", "noxfile.py"]
    session.run("ruff", "format", "--check", *paths)
    session.run("ruff", "check", *paths)


@nox.session(python="3.12")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[django,test,dev]")
    session.run("mypy")


@nox.session(python="3.12")
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors."""
    session.install("-e", ".[django]", "-r", "docs/requirements.txt")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(python="3.12")
def demo(session: nox.Session) -> None:
    session.install("-e", ".[django,test]")
    session.run("python", "-m", "example.demo", *session.posargs)


@nox.session(python="3.12")
def bench(session: nox.Session) -> None:
    """The benchmarks (benchmarks/README.md): ``nox -s bench`` (full), ``nox -s bench -- --quick`` (short).

    Writes benchmarks/results/*.json, the plots in docs/_static/bench/ and docs/performance_results.inc.
    """
    session.install("-e", ".[django,test,bench]")
    session.run("python", "benchmarks/run_all.py", *session.posargs)


@nox.session(python="3.12")
def reliability(session: nox.Session) -> None:
    """Fault injection, soak (10,000 tasks, marked slow), concurrency, fork and security tests, with figures.

    Writes docs/reliability_figures.json and docs/reliability_figures.inc (included by docs/reliability.rst).
    ``nox -s reliability -- -k soak`` passes arguments to pytest.
    """
    import pathlib

    session.install("-e", ".[django,test]")
    figures = pathlib.Path("docs/reliability_figures.json")
    if not session.posargs:  # a full run starts afresh; a partial one (-k soak) replaces only its sections
        figures.unlink(missing_ok=True)
    tests = [
        "tests/integration/test_faults.py",
        "tests/integration/test_soak.py",
        "tests/integration/test_concurrency.py",
        "tests/integration/test_security.py",
        "tests/integration/test_fork.py",
        "tests/unit/test_properties.py",
    ]
    session.run(
        "pytest",
        "-p",
        "no:cacheprovider",
        "-m",
        "slow or not slow",
        *tests,
        *session.posargs,
        env={"SVCJWT_RELIABILITY_FIGURES": str(figures)},
    )
    session.run("python", "-m", "tests.faults.figures", str(figures), "docs/reliability_figures.inc")
