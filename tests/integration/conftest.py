"""Fixtures of the reliability tests (faults, soak, concurrency, security, fork).

``fleet`` starts workers against fault proxies for one test module; when the
module ends it stops them, searches what they left for every token the
proxies saw issued, and records the module's ``FIGURES`` (if it has any) for
docs/reliability.rst.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Fleet, record_figures
from tests.faults.proxy import FaultProxy


@pytest.fixture(scope="module")
def proxies() -> Iterator[list[FaultProxy]]:
    """The module's fault proxies; each is stopped when the module ends."""
    started: list[FaultProxy] = []
    yield started
    for proxy in started:
        proxy.stop()


@pytest.fixture(scope="module")
def fleet(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, proxies: list[FaultProxy]
) -> Iterator[Fleet]:
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    fleet = Fleet(tmp_path_factory.mktemp(name))
    fleet.proxies = proxies  # type: ignore[attr-defined]
    yield fleet
    fleet.close(secrets=set().union(*(p.issued for p in proxies)))
    figures = getattr(request.module, "FIGURES", None)
    if figures is not None:
        record_figures(name, figures)
