"""What an installed celery-svcjwt gives a fresh pytest: the fixture, unmatched-call failures, Django.

Each test runs pytest in a subprocess, in a folder that has no conftest.py: the
``svcjwt_mock`` fixture comes from the package's pytest11 entry point.
"""

import shutil
from pathlib import Path

pytest_plugins = ["pytester"]

HERE = Path(__file__).parent

USER_TESTS = """
from celery import Celery

from celery_svcjwt import AuthenticatedTask

app = Celery("user")


@app.task(base=AuthenticatedTask, bind=True)
def fetch(self, pk):
    return self.api.get(f"items/{pk}/").json()


def test_fetch(svcjwt_mock):
    svcjwt_mock.get("items/1/", json={"id": 1})
    assert fetch.apply(args=(1,)).get() == {"id": 1}
    assert svcjwt_mock.calls[0].request.url == "http://api.test/items/1/"


def test_swallowed_unmatched_call(svcjwt_mock):
    result = fetch.apply(args=(2,))  # apply() stores the error instead of raising it
    assert result.failed()


def test_unmatched_call(svcjwt_mock):
    assert fetch.apply(args=(3,)).get() == {"id": 3}
"""


def test_the_fixture_comes_with_the_package(pytester):
    pytester.makepyfile(test_user=USER_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")

    # test_swallowed_unmatched_call passes its own asserts, then errors at teardown
    result.assert_outcomes(passed=2, failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_swallowed_unmatched_call*",
            "*1 request(s) matched no mock*",
            "*- GET http://api.test/items/2/",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*_ test_unmatched_call _*",
            "*UnmatchedRequest: celery-svcjwt mock_api: no mock matches GET http://api.test/items/3/*",
            "*celery-svcjwt: requests no mock matched*",
            "GET http://api.test/items/3/",
        ]
    )


def test_the_fixture_is_the_entry_points(pytester):
    pytester.makepyfile(test_user=USER_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:svcjwt")

    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*fixture 'svcjwt_mock' not found*"])


def test_a_django_project(pytester):
    """django.test.TestCase (with mock_api) and pytest-django (with svcjwt_mock), on a real test database."""
    shutil.copytree(HERE / "django_project", pytester.path, dirs_exist_ok=True)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--ds=djproj.settings", "-v")

    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*ImportItemTests::test_import_item_saves_it PASSED*"])
