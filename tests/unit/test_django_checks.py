"""Django system checks (``manage.py check``), run in subprocesses with tests/django_settings.

Django is configured only in those subprocesses, so nothing here changes the
test process (where other tests rely on Django *not* being configured).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django")
pytest.importorskip("rest_framework_simplejwt")

ROOT = Path(__file__).resolve().parent.parent.parent
SETTINGS = "tests.django_settings.settings"

SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {},
    "no api url": {"settings": {"CELERY_SVCJWT_API_URL": None}},
    "api url from the environment": {
        "settings": {"CELERY_SVCJWT_API_URL": None},
        "env": {"SVCJWT_API_URL": "https://api.example.com/"},
    },
    "header type not accepted": {"settings": {"CELERY_SVCJWT_AUTH_HEADER_TYPE": "Token"}},
    "header type case": {"settings": {"CELERY_SVCJWT_AUTH_HEADER_TYPE": "bearer"}},
    "header type second of the list": {"settings": {"CELERY_SVCJWT_AUTH_HEADER_TYPE": "JWT"}},
    "header type, API elsewhere": {
        "settings": {
            "CELERY_SVCJWT_API_URL": "https://other.example.org/",
            "CELERY_SVCJWT_AUTH_HEADER_TYPE": "Token",
        }
    },
    "token url not routed": {"settings": {"CELERY_SVCJWT_TOKEN_URL": "auth/token/"}},
    "refresh url without its slash": {"settings": {"CELERY_SVCJWT_REFRESH_URL": "api/token/refresh"}},
    "not routed, API elsewhere": {
        "settings": {"CELERY_SVCJWT_API_URL": "https://other.example.org/", "CELERY_SVCJWT_TOKEN_URL": "auth/token/"}
    },
    "absolute token url elsewhere": {"settings": {"CELERY_SVCJWT_TOKEN_URL": "https://auth.example.org/token/"}},
    "loopback API in DEBUG": {
        "settings": {
            "DEBUG": True,
            "ALLOWED_HOSTS": [],
            "CELERY_SVCJWT_API_URL": "http://127.0.0.1:8000/",
            "CELERY_SVCJWT_TOKEN_URL": "nowhere/",
        }
    },
    "script name": {
        "settings": {"FORCE_SCRIPT_NAME": "/v1", "CELERY_SVCJWT_API_URL": "https://api.example.com/v1/"},
    },
    "routed to other views": {
        "settings": {
            "CELERY_SVCJWT_TOKEN_URL": "api/token/sliding/",
            "CELERY_SVCJWT_REFRESH_URL": "api/token/verify/",
        }
    },
    "routed to a function view": {"settings": {"CELERY_SVCJWT_TOKEN_URL": "custom/token/"}},
    "login mode unknown": {"settings": {"CELERY_SVCJWT_LOGIN_MODE": "ldap"}},
    "invalid values": {
        "settings": {"CELERY_SVCJWT_TIMEOUT": "soon", "CELERY_SVCJWT_API_URL": "http://api.example.com/"},
    },
    "typo": {"settings": {"CELERY_SVCJWT_API_ULR": "https://api.example.com/"}},
    "profile typo": {"settings": {"CELERY_SVCJWT_PROFILES": {"billing": {"api_url": "https://x/", "timout": 3}}}},
    "header name": {"settings": {"SIMPLE_JWT": {"AUTH_HEADER_NAME": "HTTP_X_TOKEN"}}},
    "session authentication first": {
        "settings": {
            "REST_FRAMEWORK": {
                "DEFAULT_AUTHENTICATION_CLASSES": [
                    "rest_framework.authentication.SessionAuthentication",
                    "rest_framework_simplejwt.authentication.JWTAuthentication",
                ]
            }
        }
    },
    "password never checked": {"settings": {"CELERY_SVCJWT_PASSWORD": ""}},
}


def env_without_svcjwt(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCJWT_", "SVC_ACCT_", "DJANGO_"))}
    return {**env, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": SETTINGS, **extra}


@pytest.fixture(scope="module")
def results() -> dict[str, list[dict[str, Any]]]:
    """Every scenario's celery_svcjwt messages, from one subprocess."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.django_settings.run_checks"],
        input=json.dumps(SCENARIOS),
        cwd=ROOT,
        env=env_without_svcjwt(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(m["id"] for m in messages)


def only(messages: list[dict[str, Any]], check_id: str) -> dict[str, Any]:
    assert ids(messages) == [check_id], messages
    return messages[0]


def test_a_correct_project_has_nothing_to_report(results):
    assert results["clean"] == []
    assert results["header type second of the list"] == []
    assert results["password never checked"] == []  # the account belongs to the workers


def test_missing_api_url(results):
    message = only(results["no api url"], "celery_svcjwt.E001")
    assert "svcjwt_api_url is not set" in message["msg"]
    assert "CELERY_SVCJWT_API_URL" in message["hint"] and "SILENCED_SYSTEM_CHECKS" in message["hint"]
    assert results["api url from the environment"] == []


def test_header_type_simplejwt_does_not_accept(results):
    message = only(results["header type not accepted"], "celery_svcjwt.E003")
    assert "'Token'" in message["msg"] and "('Bearer', 'JWT')" in message["msg"]
    assert "'Bearer'" in message["hint"]
    only(results["header type case"], "celery_svcjwt.E003")  # SimpleJWT compares exactly
    assert results["header type, API elsewhere"] == []  # another project's SIMPLE_JWT is unknown here


def test_token_and_refresh_urls_must_be_routed_when_this_project_is_the_api(results):
    message = only(results["token url not routed"], "celery_svcjwt.E005")
    assert "https://api.example.com/auth/token/" in message["msg"] and "'/auth/token/'" in message["msg"]
    assert "TokenObtainPairView" in message["hint"]
    message = only(results["refresh url without its slash"], "celery_svcjwt.E006")
    assert "trailing slash" in message["hint"]
    assert results["not routed, API elsewhere"] == []
    assert results["absolute token url elsewhere"] == []
    # DEBUG with no ALLOWED_HOSTS serves loopback, as Django does
    only(results["loopback API in DEBUG"], "celery_svcjwt.E005")
    assert results["script name"] == []  # FORCE_SCRIPT_NAME is not part of the URLconf's paths


def test_routes_to_other_views_are_warned_about(results):
    assert ids(results["routed to other views"]) == ["celery_svcjwt.W001", "celery_svcjwt.W001"]
    assert "TokenObtainSlidingView" in results["routed to other views"][0]["msg"]
    assert results["routed to a function view"] == []  # may be a custom token endpoint


def test_login_mode_and_other_values(results):
    message = only(results["login mode unknown"], "celery_svcjwt.E004")
    assert "'ldap'" in message["msg"] and "http" in message["hint"]
    messages = results["invalid values"]
    assert ids(messages) == ["celery_svcjwt.E002", "celery_svcjwt.E002"]
    text = " ".join(m["msg"] for m in messages)
    assert "svcjwt_timeout from CELERY_SVCJWT_TIMEOUT is invalid" in text
    assert "plain http to a host that is not loopback" in text


def test_unknown_settings(results):
    message = only(results["typo"], "celery_svcjwt.W002")
    assert "CELERY_SVCJWT_API_ULR" in message["msg"]
    assert message["hint"] == "Did you mean CELERY_SVCJWT_API_URL?"
    message = only(results["profile typo"], "celery_svcjwt.W002")
    assert "'timout'" in message["msg"] and "'timeout'" in message["hint"]


def test_api_settings_that_break_every_task(results):
    message = only(results["header name"], "celery_svcjwt.E008")
    assert "HTTP_X_TOKEN" in message["msg"]
    message = only(results["session authentication first"], "celery_svcjwt.W003")
    assert "403 instead of 401" in message["msg"]


def test_manage_py_check_reports_and_fails(tmp_path):
    settings = tmp_path / "broken_settings.py"
    settings.write_text(
        f"from {SETTINGS} import *\nCELERY_SVCJWT_API_URL = None\nCELERY_SVCJWT_AUTH_HEADER_TYPE = 'Token'\n"
    )
    env = env_without_svcjwt(DJANGO_SETTINGS_MODULE="broken_settings")
    env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{ROOT}"
    command = [sys.executable, "-m", "django", "check"]

    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "celery_svcjwt.E001" in proc.stderr

    settings.write_text(settings.read_text() + "SILENCED_SYSTEM_CHECKS = ['celery_svcjwt.E001']\n")
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "System check identified no issues" in proc.stdout


def test_the_package_works_without_django():
    """Only apps.py and django_checks.py need Django, and only Django imports them."""
    code = (
        "import sys; sys.modules['django'] = None\n"  # any `import django...` now raises ImportError
        "import celery_svcjwt, celery_svcjwt.check, celery_svcjwt.control, celery_svcjwt.signals\n"
        "from celery import Celery; celery_svcjwt.install(Celery('x', set_as_current=False)); print('ok')"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
