"""load_config: where each value comes from, and how every mistake is reported."""

from __future__ import annotations

import types

import pytest

from celery_svcjwt.errors import ConfigurationError
from celery_svcjwt.settings import SETTINGS, load_config, origin_of, resolve_url

from .conftest import API_URL, BASE_CONF, PASSWORD, USERNAME, make_app


def fake_django(monkeypatch: pytest.MonkeyPatch, *, header_types=("JWT",), username_field=None) -> None:
    """Make celery_svcjwt see a configured Django (settings, and the app registry when username_field)."""
    import django.apps
    import django.conf
    import django.contrib.auth

    monkeypatch.setattr(
        django.conf, "settings", types.SimpleNamespace(configured=True, SIMPLE_JWT={"AUTH_HEADER_TYPES": header_types})
    )
    monkeypatch.setattr(django.apps, "apps", types.SimpleNamespace(ready=username_field is not None))
    if username_field is not None:
        user_model = types.SimpleNamespace(USERNAME_FIELD=username_field)
        monkeypatch.setattr(django.contrib.auth, "get_user_model", lambda: user_model)


def config_error(conf: dict, environ: dict | None = None, **kw) -> str:
    with pytest.raises(ConfigurationError) as info:
        load_config(make_app(**conf), environ=environ or {}, **kw)
    return str(info.value)


# -- precedence ----------------------------------------------------------------


LAYERS = ["cli", "config", "env", "django", "default"]


@pytest.mark.parametrize("top", LAYERS)
def test_precedence_cli_config_env_django_default(monkeypatch, top):
    """Each layer wins over every layer below it; ``sources`` names the winner."""
    present = LAYERS[LAYERS.index(top) :]
    conf = dict(BASE_CONF)
    environ = {}
    cli = {}
    if "cli" in present:
        cli["auth_header_type"] = "FromCli"
    if "config" in present:
        conf["svcjwt_auth_header_type"] = "FromConfig"
    if "env" in present:
        environ["SVCJWT_AUTH_HEADER_TYPE"] = "FromEnv"
    if "django" in present:
        fake_django(monkeypatch, header_types=("FromDjango",))

    config = load_config(make_app(**conf), environ=environ, cli=cli)

    expected = {
        "cli": ("FromCli", "command line --svcjwt-auth-header-type"),
        "config": ("FromConfig", "config svcjwt_auth_header_type"),
        "env": ("FromEnv", "env SVCJWT_AUTH_HEADER_TYPE"),
        "django": ("FromDjango", "Django SIMPLE_JWT['AUTH_HEADER_TYPES']"),
        "default": ("Bearer", "default"),
    }[top]
    assert (config.auth_header_type, config.sources["auth_header_type"]) == expected


def test_sources_name_every_setting():
    config = load_config(make_app(**BASE_CONF), environ={"SVCJWT_TIMEOUT": "4"}, cli={"refresh_margin": "30"})
    assert set(config.sources) == {s.name for s in SETTINGS}
    assert config.sources["api_url"] == "config svcjwt_api_url"
    assert config.sources["timeout"] == "env SVCJWT_TIMEOUT"
    assert config.sources["refresh_margin"] == "command line --svcjwt-refresh-margin"
    assert config.sources["login_attempts"] == "default"
    assert config.sources["password_file"] == "unset"
    assert (config.timeout, config.refresh_margin, config.login_attempts) == (4.0, 30.0, 3)


def test_django_username_field_is_derived_when_apps_are_ready(monkeypatch):
    fake_django(monkeypatch, header_types="JWT", username_field="email")
    config = load_config(make_app(**BASE_CONF), environ={}, cli={})
    assert config.username_field == "email"
    assert config.sources["username_field"] == "Django get_user_model().USERNAME_FIELD"
    assert config.auth_header_type == "JWT"  # a bare string in AUTH_HEADER_TYPES counts as one type


def test_unconfigured_django_gives_builtin_defaults():
    config = load_config(make_app(**BASE_CONF), environ={}, cli={})
    assert (config.username_field, config.auth_header_type) == ("username", "Bearer")


def test_cli_values_are_read_from_app_conf_when_not_passed():
    """The bootstep stores the worker's options in app.conf.svcjwt_cli for pool children."""
    app = make_app(**BASE_CONF, svcjwt_cli={"timeout": 7}, svcjwt_timeout=3)
    config = load_config(app, environ={})
    assert config.timeout == 7.0
    assert config.sources["timeout"] == "command line --svcjwt-timeout"


def test_password_is_never_taken_from_the_command_line():
    app = make_app(svcjwt_api_url=API_URL, svcjwt_username=USERNAME)
    with pytest.raises(ConfigurationError) as info:
        load_config(app, environ={}, cli={"password": PASSWORD})
    assert "svcjwt_password is not set" in str(info.value)
    assert PASSWORD not in str(info.value)


def test_empty_environment_variable_counts_as_unset():
    config = load_config(make_app(**BASE_CONF), environ={"SVCJWT_TIMEOUT": ""}, cli={})
    assert config.timeout == 10.0
    assert config.sources["timeout"] == "default"


# -- the account -----------------------------------------------------------------


def test_account_from_svc_acct_environment_variables():
    environ = {"SVCJWT_API_URL": API_URL, "SVC_ACCT_USER": USERNAME, "SVC_ACCT_PASS": PASSWORD}
    config = load_config(make_app(), environ=environ, cli={})
    assert (config.username, config.password) == (USERNAME, PASSWORD)
    assert config.sources["username"] == "env SVC_ACCT_USER"
    assert config.sources["password"] == "env SVC_ACCT_PASS"
    assert config.sources["api_url"] == "env SVCJWT_API_URL"


@pytest.mark.parametrize("content", [f"{PASSWORD}\n", f"{PASSWORD}\r\n", f"{PASSWORD}\n\n", PASSWORD])
def test_password_file_strips_trailing_newlines_and_wins_over_password(tmp_path, content):
    secret = tmp_path / "password"
    secret.write_text(content)
    app = make_app(**{**BASE_CONF, "svcjwt_password": "other-password", "svcjwt_password_file": str(secret)})
    config = load_config(app, environ={}, cli={})
    assert config.password == PASSWORD
    assert config.sources["password"] == f"file {secret}"


def test_password_file_keeps_inner_and_leading_whitespace(tmp_path):
    secret = tmp_path / "password"
    secret.write_text(" a b \n")
    app = make_app(svcjwt_api_url=API_URL, svcjwt_username=USERNAME, svcjwt_password_file=str(secret))
    assert load_config(app, environ={}, cli={}).password == " a b "


def test_missing_password_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "nowhere"
    message = config_error({"svcjwt_api_url": API_URL, "svcjwt_username": USERNAME, "svcjwt_password_file": str(path)})
    assert "svcjwt_password_file" in message
    assert str(path) in message
    assert "cannot be read" in message


def test_unreadable_password_file_is_an_error(tmp_path):
    """A directory cannot be read as a file (chmod would not stop root)."""
    message = config_error(
        {"svcjwt_api_url": API_URL, "svcjwt_username": USERNAME, "svcjwt_password_file": str(tmp_path)}
    )
    assert "svcjwt_password_file" in message
    assert "cannot be read" in message


@pytest.mark.parametrize("content", ["", "\n", "\r\n\n"])
def test_empty_password_file_is_an_error(tmp_path, content):
    secret = tmp_path / "password"
    secret.write_text(content)
    message = config_error({**BASE_CONF, "svcjwt_password_file": str(secret)})
    assert f"svcjwt_password_file {str(secret)!r} is empty" in message


# -- reporting problems ------------------------------------------------------------


def test_one_error_lists_every_problem_with_how_to_set_it():
    message = config_error({"svcjwt_timeout": "soon", "svcjwt_login_attempts": -1, "svcjwt_verify": "maybe"})
    lines = [line for line in message.splitlines() if line.startswith("- ")]
    assert len(lines) == 6, message
    # missing settings: named, with every way to set them
    assert "svcjwt_api_url is not set" in message
    for way in ("svcjwt_api_url in the Celery config", "CELERY_SVCJWT_API_URL", "SVCJWT_API_URL", "--svcjwt-api-url"):
        assert way in message
    assert "svcjwt_username is not set" in message
    assert "SVC_ACCT_USER" in message and "--svcjwt-username" in message
    assert "svcjwt_password is not set" in message
    assert "SVC_ACCT_PASS" in message and "svcjwt_password_file" in message
    # invalid values: named, with where they came from and why
    assert "svcjwt_timeout from config svcjwt_timeout is invalid: must be a number of seconds" in message
    assert "svcjwt_login_attempts from config svcjwt_login_attempts is invalid: must be 0 or more" in message
    assert "svcjwt_verify from config svcjwt_verify is invalid" in message


def test_the_password_never_appears_in_an_error():
    conf = {
        "svcjwt_api_url": "http://api.example.com/",
        "svcjwt_token_url": "https://u:x@auth.example.com/token/",
        "svcjwt_password": PASSWORD,
        "svcjwt_timeout": "never",
    }
    message = config_error(conf)
    assert len([line for line in message.splitlines() if line.startswith("- ")]) == 4, message
    assert PASSWORD not in message


def test_a_blank_password_is_reported_without_its_value():
    message = config_error({"svcjwt_api_url": API_URL, "svcjwt_username": USERNAME, "svcjwt_password": "   "})
    assert "svcjwt_password from config svcjwt_password is invalid: must not be empty (value (hidden))" in message
    assert "'   '" not in message


def test_repr_of_config_hides_the_password(make_config):
    config = make_config()
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    assert "password=" not in repr(config).replace("password_file=", "")


def test_unknown_profile_is_an_error_listing_the_defined_ones():
    app = make_app(**BASE_CONF, svcjwt_profiles={"billing": {}, "audit": {}})
    with pytest.raises(ConfigurationError) as info:
        load_config(app, "reports", environ={}, cli={})
    message = str(info.value)
    assert "'reports' is not defined" in message
    assert "svcjwt_profiles" in message
    assert "audit, billing" in message


def test_unknown_profile_without_any_profiles():
    with pytest.raises(ConfigurationError, match="defined profiles: none"):
        load_config(make_app(**BASE_CONF), "reports", environ={}, cli={})


# -- URLs ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://api.example.com/", "http://10.0.0.5:8000/", "http://[2001:db8::1]/"])
def test_plain_http_to_another_host_is_refused(url):
    message = config_error({**BASE_CONF, "svcjwt_api_url": url})
    assert "plain http" in message
    assert "svcjwt_allow_insecure_http" in message


def test_plain_http_allowed_when_insecure_http_is_allowed():
    conf = {**BASE_CONF, "svcjwt_api_url": "http://api.internal/", "svcjwt_allow_insecure_http": "yes"}
    config = load_config(make_app(**conf), environ={}, cli={})
    assert config.token_url == "http://api.internal/api/token/"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/", "http://localhost/", "http://api.localhost/", "http://[::1]:8000/"]
)
def test_plain_http_to_loopback_is_allowed(url):
    config = load_config(make_app(**{**BASE_CONF, "svcjwt_api_url": url}), environ={}, cli={})
    assert config.api_url == url


def test_plain_http_token_url_is_refused_even_with_an_https_api():
    message = config_error({**BASE_CONF, "svcjwt_token_url": "http://auth.example.com/token/"})
    assert "svcjwt_token_url" in message and "plain http" in message


@pytest.mark.parametrize("name", ["api_url", "token_url", "refresh_url"])
def test_urls_carrying_credentials_are_refused(name):
    url = "https://robot:hunter2-in-url@api.example.com/v1/"
    message = config_error({**BASE_CONF, f"svcjwt_{name}": url})
    assert f"svcjwt_{name} must not carry credentials" in message
    assert "hunter2-in-url" not in message


@pytest.mark.parametrize("url", ["ftp://api.example.com/", "api.example.com/v1/", "https:///v1/"])
def test_api_url_must_be_http_with_a_host(url):
    message = config_error({**BASE_CONF, "svcjwt_api_url": url})
    assert "svcjwt_api_url" in message and "is not an http(s) URL with a host" in message


def test_api_url_with_an_invalid_port_is_a_configuration_error():
    """An unusable port must be reported with the other problems, not blow up later as ValueError."""
    with pytest.raises(ConfigurationError, match="svcjwt_api_url"):
        config = load_config(make_app(**{**BASE_CONF, "svcjwt_api_url": "https://api.example.com:99999/"}), environ={})
        config.origin  # noqa: B018 - what ApiSession does first


@pytest.mark.parametrize(
    ("api_url", "token_url", "expected"),
    [
        ("https://api.example.com/v1/", "api/token/", "https://api.example.com/v1/api/token/"),
        ("https://api.example.com/v1/", "/api/token/", "https://api.example.com/v1/api/token/"),
        ("https://api.example.com/v1", "api/token/", "https://api.example.com/v1/api/token/"),
        ("https://api.example.com", "/api/token/", "https://api.example.com/api/token/"),
        ("https://api.example.com/v1/", "https://auth.example.com/jwt/", "https://auth.example.com/jwt/"),
    ],
)
def test_token_and_refresh_urls_resolve_under_the_api_path(api_url, token_url, expected):
    conf = {**BASE_CONF, "svcjwt_api_url": api_url, "svcjwt_token_url": token_url, "svcjwt_refresh_url": token_url}
    config = load_config(make_app(**conf), environ={}, cli={})
    assert config.token_url == expected
    assert config.refresh_url == expected
    assert config.api_url.endswith("/")


def test_default_token_urls(make_config):
    config = make_config()
    assert config.token_url == "https://api.example.com/v1/api/token/"
    assert config.refresh_url == "https://api.example.com/v1/api/token/refresh/"


def test_scheme_relative_token_url_is_a_configuration_error():
    """'//host/path' is ambiguous: load_config must report it as a ConfigurationError, not a bare ValueError."""
    with pytest.raises(ConfigurationError, match="svcjwt_token_url"):
        load_config(make_app(**{**BASE_CONF, "svcjwt_token_url": "//auth.example.com/token/"}), environ={}, cli={})


def test_resolve_url_like_httpx_base_url():
    assert resolve_url("https://h/base/", "items/1/") == "https://h/base/items/1/"
    assert resolve_url("https://h/base/", "/items/1/") == "https://h/base/items/1/"
    assert resolve_url("https://h/base/", "https://o/x") == "https://o/x"
    with pytest.raises(ValueError, match="scheme-relative"):
        resolve_url("https://h/base/", "//o/x")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://API.example.com/v1/", "https://api.example.com:443"),
        ("http://h/", "http://h:80"),
        ("http://h:8000/x", "http://h:8000"),
        ("https://[::1]/", "https://[::1]:443"),
    ],
)
def test_origin_of(url, origin):
    assert origin_of(url) == origin


# -- other values ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["local", "mint", "LOCAL"])
def test_in_process_login_modes_need_django_configured(mode, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    message = config_error({**BASE_CONF, "svcjwt_login_mode": mode})
    assert f"svcjwt_login_mode {mode.lower()!r} needs Django configured in the worker" in message
    assert "DJANGO_SETTINGS_MODULE" in message


def test_wsgi_transport_needs_django_configured(monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    message = config_error({**BASE_CONF, "svcjwt_transport": "wsgi"})
    assert "svcjwt_transport 'wsgi' needs Django configured in the worker" in message


def test_mint_mode_needs_no_password(monkeypatch):
    conf = {k: v for k, v in BASE_CONF.items() if k != "svcjwt_password"}
    app = make_app(**conf, svcjwt_login_mode="mint")
    # Set after the app exists: an app created with it would install Celery's Django fixup,
    # whose global signal receivers outlive this test.
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "example.apiproject.settings")
    config = load_config(app, environ={})
    assert config.login_mode == "mint"
    assert config.password is None


def test_unknown_login_mode_lists_the_choices():
    message = config_error({**BASE_CONF, "svcjwt_login_mode": "oauth"})
    assert "must be one of http, local, mint" in message


@pytest.mark.parametrize(("raw", "parsed"), [("true", True), ("OFF", False), (False, False), ("1", True)])
def test_verify_accepts_booleans(raw, parsed):
    config = load_config(make_app(**{**BASE_CONF, "svcjwt_verify": raw}), environ={}, cli={})
    assert config.verify is parsed


def test_verify_accepts_a_ca_bundle_path(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    config = load_config(make_app(**BASE_CONF), environ={"SVCJWT_VERIFY": str(bundle)}, cli={})
    assert config.verify == str(bundle)


def test_verify_with_a_missing_path_is_an_error(tmp_path):
    message = config_error({**BASE_CONF, "svcjwt_verify": str(tmp_path / "missing.pem")})
    assert "neither true/false nor an existing CA bundle path" in message


@pytest.mark.parametrize(("name", "raw"), [("timeout", "0"), ("refresh_margin", "-5"), ("backoff_max", "x")])
def test_seconds_must_be_positive_numbers(name, raw):
    message = config_error({**BASE_CONF, f"svcjwt_{name}": raw})
    assert f"svcjwt_{name} from config svcjwt_{name} is invalid" in message


def test_profiles_read_their_own_account_and_fall_back_for_the_rest():
    conf = {
        **BASE_CONF,
        "svcjwt_timeout": 4,
        "svcjwt_profiles": {"billing": {"api_url": "https://billing.example.com/", "refresh_margin": 20}},
    }
    environ = {
        "SVCJWT_BILLING_USERNAME": "billing-robot",
        "SVCJWT_BILLING_PASSWORD": "billing-pw",
        "SVC_ACCT_USER": "ignored-for-profiles",
    }
    config = load_config(make_app(**conf), "billing", environ=environ, cli={})
    assert config.profile == "billing"
    assert config.api_url == "https://billing.example.com/"
    assert config.token_url == "https://billing.example.com/api/token/"
    assert (config.username, config.password) == ("billing-robot", "billing-pw")
    assert config.sources["api_url"] == "config svcjwt_profiles['billing']['api_url']"
    assert config.sources["username"] == "env SVCJWT_BILLING_USERNAME"
    assert config.refresh_margin == 20.0
    assert config.timeout == 4.0  # the default profile's value
    assert config.sources["timeout"] == "config svcjwt_timeout"


def test_profiles_do_not_inherit_the_default_account():
    conf = {**BASE_CONF, "svcjwt_profiles": {"billing": {"api_url": "https://billing.example.com/"}}}
    message = config_error(conf, environ={"SVC_ACCT_USER": USERNAME, "SVC_ACCT_PASS": PASSWORD}, profile="billing")
    assert "(profile 'billing')" in message
    assert "svcjwt_username is not set" in message
    assert "svcjwt_password is not set" in message
    assert PASSWORD not in message
