"""pytest plugin of celery-svcjwt: the ``svcjwt_mock`` fixture.

Registered by the ``pytest11`` entry point ``svcjwt`` when celery-svcjwt is
installed, so no ``conftest.py`` line is needed (disable with ``-p no:svcjwt``).

* ``svcjwt_mock``: an active :func:`celery_svcjwt.testing.mock_api` for the test.
* ``svcjwt_app``: the Celery app the mock covers; ``None`` (every app) unless a
  project overrides this fixture.
* ``@pytest.mark.svcjwt(**options)``: keyword arguments of ``mock_api`` for one
  test, module or class (``api_url``, ``profile``, ``assert_all_requests_are_fired``...).

This module imports nothing heavy at startup: pytest loads it in every run.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .testing import ApiMock

__all__ = ["svcjwt_app", "svcjwt_mock"]

_CALL_FAILED = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "svcjwt(**options): options of the svcjwt_mock fixture (the keyword arguments of "
        "celery_svcjwt.testing.mock_api, such as api_url=..., assert_all_requests_are_fired=True)",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    item.stash[_CALL_FAILED] = True
    mock = getattr(item, "funcargs", {}).get("svcjwt_mock")
    unmatched = getattr(mock, "unmatched", None)
    if unmatched:  # often the cause of the failure, even when the code under test swallowed the error
        report.sections.append(("celery-svcjwt: requests no mock matched", "\n".join(unmatched)))


@pytest.fixture
def svcjwt_app() -> Any:
    """The Celery app whose tasks ``svcjwt_mock`` covers: ``None``, every app. Override it to narrow."""
    return None


@pytest.fixture
def svcjwt_mock(request: pytest.FixtureRequest, svcjwt_app: Any) -> Iterator[ApiMock]:
    """A fake service account for every ``self.api`` and a ``responses`` mock of the API.

    Relative URLs (``svcjwt_mock.get("api/items/1/", json=...)``) resolve
    against ``svcjwt_api_url``.  At teardown a request no mock matched fails the
    test; with ``@pytest.mark.svcjwt(assert_all_requests_are_fired=True)`` so
    does a mock no request used (not checked when the test itself failed).
    """
    from .testing import mock_api

    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("svcjwt"))):  # closest marker wins
        if marker.args:
            raise pytest.UsageError("@pytest.mark.svcjwt takes keyword arguments only (those of mock_api)")
        options.update(marker.kwargs)
    mock = mock_api(svcjwt_app, **options)
    mock.start()
    try:
        yield mock
    finally:
        mock.stop(allow_assert=not request.node.stash.get(_CALL_FAILED, False))
