"""install(app): the worker bootstep, the --svcjwt-* options and the hook import; idempotent."""

from __future__ import annotations

import os
import types

import click
import pytest

import celery_svcjwt
from celery_svcjwt.bootstep import SvcJWTStep
from celery_svcjwt.errors import ConfigurationError
from celery_svcjwt.install import HOOK_MODULE, install
from celery_svcjwt.settings import SETTINGS

from .conftest import BASE_CONF, PASSWORD, make_app

EXPECTED_OPTIONS = {
    "--svcjwt-api-url",
    "--svcjwt-token-url",
    "--svcjwt-refresh-url",
    "--svcjwt-username",
    "--svcjwt-password-file",
    "--svcjwt-username-field",
    "--svcjwt-auth-header-type",
    "--svcjwt-login-mode",
    "--svcjwt-transport",
    "--svcjwt-wsgi-application",
    "--svcjwt-timeout",
    "--svcjwt-refresh-margin",
    "--svcjwt-verify",
    "--svcjwt-allow-insecure-http",
    "--svcjwt-init-timeout",
    "--svcjwt-login-attempts",
    "--svcjwt-backoff-max",
    "--svcjwt-task-max-retries",
    "--svcjwt-task-retry-backoff-max",
}


def svcjwt_options(app):
    return [o for o in app.user_options["worker"] if any(n.startswith("--svcjwt-") for n in o.opts)]


def test_install_adds_the_bootstep_and_the_options():
    app = make_app()
    assert install(app) is app
    assert SvcJWTStep in app.steps["worker"]
    options = svcjwt_options(app)
    assert {o.opts[0] for o in options} == EXPECTED_OPTIONS
    assert len(options) == len([s for s in SETTINGS if s.cli])
    for option in options:
        assert isinstance(option, click.Option)
        assert option.default is None
        assert option.help.startswith("celery-svcjwt: ")
        assert "``" not in option.help


def test_no_password_option():
    app = install(make_app())
    names = {n for o in app.user_options["worker"] for n in o.opts}
    assert "--svcjwt-password" not in names
    assert "--svcjwt-password-file" in names


def test_install_is_idempotent():
    app = make_app()
    install(app)
    steps, options = set(app.steps["worker"]), list(app.user_options["worker"])
    install(app)
    install(app)
    assert set(app.steps["worker"]) == steps
    assert list(app.user_options["worker"]) == options
    assert len(svcjwt_options(app)) == len(EXPECTED_OPTIONS)
    assert list(app.conf.imports).count(HOOK_MODULE) == 1


def test_hook_module_is_imported_when_the_app_configures():
    app = make_app(imports=("proj.tasks",))
    assert not app.configured
    install(app)
    assert not app.configured
    assert tuple(app.conf.imports) == ("proj.tasks", HOOK_MODULE)


def test_hook_module_is_added_to_an_already_configured_app():
    app = make_app(imports=["proj.tasks"])
    app.conf.get("imports")  # configure it
    assert app.configured
    install(app)
    assert tuple(app.conf.imports) == ("proj.tasks", HOOK_MODULE)


def test_install_is_exported():
    assert celery_svcjwt.install is install


# -- the bootstep that install adds ---------------------------------------------------------


@pytest.fixture
def make_step():
    steps = []

    def build(app, **kwargs):
        options = {f"svcjwt_{s.name}": None for s in SETTINGS if s.cli}
        options.update(kwargs)
        step = SvcJWTStep(types.SimpleNamespace(app=app), **options)
        steps.append(step)
        return step

    yield build
    for step in steps:
        step.shutdown(None)


def test_worker_options_reach_the_config_through_app_conf(make_step):
    app = make_app(**BASE_CONF, svcjwt_timeout=9)
    step = make_step(app, svcjwt_timeout="3", svcjwt_username="from-cli")
    assert app.conf.svcjwt_cli == {"timeout": "3", "username": "from-cli"}
    assert step.config.timeout == 3.0
    assert step.config.username == "from-cli"
    assert step.config.sources["timeout"] == "command line --svcjwt-timeout"
    assert os.path.isdir(app.conf.svcjwt_status_dir)
    assert app.conf.svcjwt_worker_pid == os.getpid()


def test_bootstep_fails_the_worker_start_with_every_problem(make_step):
    with pytest.raises(ConfigurationError) as info:
        make_step(make_app(svcjwt_password=PASSWORD), svcjwt_timeout="-1")
    message = str(info.value)
    assert "svcjwt_api_url is not set" in message
    assert "svcjwt_timeout from command line --svcjwt-timeout is invalid" in message
    assert PASSWORD not in message


def test_bootstep_info_before_any_child_reports(make_step):
    step = make_step(make_app(**BASE_CONF))
    info = step.info(None)["svcjwt"]
    assert info["logged_in"] is False
    assert info["processes"] == []
    assert info["account"] == BASE_CONF["svcjwt_username"]
    step.shutdown(None)
    assert not os.path.exists(step.folder)
