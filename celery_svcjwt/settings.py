"""Every setting celery-svcjwt reads, defined once.

:data:`SETTINGS` is the single source of truth: :func:`load_config` resolves
it, the bootstep turns it into ``celery worker`` options, and the docs'
configuration reference is generated from it.  A value is looked up, first
hit wins, in:

1. the ``celery worker`` command line (``--svcjwt-api-url``),
2. the Celery configuration (``svcjwt_api_url``; ``CELERY_SVCJWT_API_URL`` in
   Django settings read with ``namespace="CELERY"``),
3. the environment variable (``SVCJWT_API_URL``; ``SVC_ACCT_USER`` and
   ``SVC_ACCT_PASS`` for the account),
4. a default derived from Django settings, when Django is configured,
5. the built-in default.

Named profiles (several APIs or accounts) read ``svcjwt_profiles[name]``
from the Celery configuration and ``SVCJWT_<NAME>_<SETTING>`` from the
environment, falling back to the default profile's values.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["DEFAULT_PROFILE", "SETTINGS", "Config", "Setting", "load_config"]

DEFAULT_PROFILE = "default"
LOGIN_MODES = ("http", "local", "mint")
TRANSPORTS = ("http", "wsgi")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_str(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


def _parse_float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return number


def _parse_int(value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"must be a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"must be 0 or more, got {value!r}")
    return number


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _parse_verify(value: Any) -> bool | str:
    """``True``/``False`` or the path of a CA bundle, as requests' ``verify``."""
    try:
        return _parse_bool(value)
    except ValueError:
        path = _parse_str(value)
        if not os.path.exists(path):
            raise ValueError(f"is neither true/false nor an existing CA bundle path: {path!r}") from None
        return path


def _parse_login_mode(value: Any) -> str:
    mode = _parse_str(value).lower()
    if mode not in LOGIN_MODES:
        raise ValueError(f"must be one of {', '.join(LOGIN_MODES)}, got {value!r}")
    return mode


def _parse_transport(value: Any) -> str:
    transport = _parse_str(value).lower()
    if transport not in TRANSPORTS:
        raise ValueError(f"must be one of {', '.join(TRANSPORTS)}, got {value!r}")
    return transport


@dataclass(frozen=True)
class Setting:
    """One setting: where it is read from and how it is parsed."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    kind: str = "string"
    env: str | None = None
    cli: bool = True
    secret: bool = False

    @property
    def conf_key(self) -> str:
        return f"svcjwt_{self.name}"

    @property
    def django_key(self) -> str:
        return f"CELERY_SVCJWT_{self.name.upper()}"

    @property
    def env_var(self) -> str:
        return self.env or f"SVCJWT_{self.name.upper()}"

    @property
    def option(self) -> str | None:
        return f"--svcjwt-{self.name.replace('_', '-')}" if self.cli else None

    def how_to_set(self) -> str:
        ways = [f"{self.conf_key} in the Celery config", f"{self.django_key} in Django settings"]
        ways.append(f"the {self.env_var} environment variable")
        if self.option:
            ways.append(f"celery worker {self.option}")
        return ", ".join(ways[:-1]) + " or " + ways[-1]


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "api_url",
        _parse_str,
        None,
        "Base URL of the API; relative paths given to ``self.api`` resolve against it.",
        "URL",
    ),
    Setting(
        "token_url",
        _parse_str,
        "api/token/",
        "SimpleJWT's TokenObtainPairView, relative to ``api_url`` or absolute.",
        "URL",
    ),
    Setting(
        "refresh_url",
        _parse_str,
        "api/token/refresh/",
        "SimpleJWT's TokenRefreshView, relative to ``api_url`` or absolute.",
        "URL",
    ),
    Setting(
        "username",
        _parse_str,
        None,
        "The service account's username (the value of the user model's USERNAME_FIELD).",
        env="SVC_ACCT_USER",
    ),
    Setting(
        "password",
        _parse_str,
        None,
        "The service account's password. Never accepted on the command line: use ``password_file`` there.",
        env="SVC_ACCT_PASS",
        cli=False,
        secret=True,
    ),
    Setting(
        "password_file",
        _parse_str,
        None,
        "Path of a file holding the password (a mounted secret); trailing newlines are ignored. Wins over ``password``.",
        "path",
    ),
    Setting(
        "username_field",
        _parse_str,
        "username",
        "Key of the username in the login request. Default: ``get_user_model().USERNAME_FIELD`` when Django is configured, else ``username``.",
    ),
    Setting(
        "auth_header_type",
        _parse_str,
        "Bearer",
        "Scheme word of the Authorization header. Default: ``SIMPLE_JWT['AUTH_HEADER_TYPES'][0]`` when Django is configured, else ``Bearer``.",
    ),
    Setting(
        "login_mode",
        _parse_login_mode,
        "http",
        "How the worker obtains tokens: ``http`` (the token endpoint), ``local`` (SimpleJWT's serializer in "
        "process, with the password) or ``mint`` (tokens minted in process for the service user, no password).",
        "choice",
    ),
    Setting(
        "transport",
        _parse_transport,
        "http",
        "How ``self.api`` reaches the API: ``http`` (a socket) or ``wsgi`` (the project's WSGI application, "
        "called in process; needs Django configured in the worker).",
        "choice",
    ),
    Setting(
        "wsgi_application",
        _parse_str,
        None,
        "Dotted path of the WSGI application for ``transport = wsgi``. Default: Django's WSGI_APPLICATION.",
        "dotted path",
    ),
    Setting(
        "timeout",
        _parse_float,
        10.0,
        "Default timeout in seconds of every request through ``self.api`` and to the token endpoints.",
        "seconds",
    ),
    Setting(
        "refresh_margin",
        _parse_float,
        60.0,
        "Refresh this many seconds before the access token expires; never more than half the token's lifetime.",
        "seconds",
    ),
    Setting(
        "verify",
        _parse_verify,
        True,
        "TLS verification: true, false, or the path of a CA bundle (as requests' ``verify``).",
        "bool or path",
    ),
    Setting(
        "allow_insecure_http",
        _parse_bool,
        False,
        "Allow plain ``http://`` to hosts other than loopback. Off: credentials only travel over TLS or loopback.",
        "bool",
    ),
    Setting(
        "init_timeout",
        _parse_float,
        2.0,
        "Deadline in seconds of the login at ``worker_process_init`` (prefork); on expiry the child starts and logs in on first use. Capped at half ``worker_proc_alive_timeout``.",
        "seconds",
    ),
    Setting(
        "login_attempts",
        _parse_int,
        3,
        "Tries per token request when the endpoint fails transiently (connection error, timeout, 5xx, 429), with exponential backoff and jitter.",
        "count",
    ),
    Setting(
        "backoff_max",
        _parse_float,
        60.0,
        "Longest pause in seconds between the process's calls to a failing token endpoint (and after rejected credentials).",
        "seconds",
    ),
    Setting(
        "task_max_retries",
        _parse_int,
        10,
        "How many times ``AuthenticatedTask`` retries a task that met an auth outage.",
        "count",
    ),
    Setting(
        "task_retry_backoff_max", _parse_float, 300.0, "Longest countdown in seconds between those retries.", "seconds"
    ),
)

SETTINGS_BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    """The resolved settings of one profile. Its repr never shows the password."""

    api_url: str
    token_url: str
    refresh_url: str
    username: str | None
    password: str | None = field(repr=False)
    password_file: str | None
    username_field: str
    auth_header_type: str
    login_mode: str
    transport: str
    wsgi_application: str | None
    timeout: float
    refresh_margin: float
    verify: bool | str
    allow_insecure_http: bool
    init_timeout: float
    login_attempts: int
    backoff_max: float
    task_max_retries: int
    task_retry_backoff_max: float
    profile: str = DEFAULT_PROFILE
    #: Where each value came from ("command line", "config", "env SVC_ACCT_USER", ...).
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def origin(self) -> str:
        return origin_of(self.api_url)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port made explicit."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def resolve_url(base: str, url: str) -> str:
    """Join ``url`` to ``base`` as httpx's ``base_url`` does: paths stay under the base path.

    ``items/1/`` and ``/items/1/`` both resolve to ``{base}items/1/``; an absolute
    URL is returned unchanged.
    """
    if urlsplit(url).scheme:
        return url
    if url.startswith("//"):
        raise ValueError(f"scheme-relative URL {url!r} is ambiguous: give a path or an absolute URL")
    return base.rstrip("/") + "/" + url.lstrip("/")


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _django_defaults() -> dict[str, tuple[Any, str]]:
    """Defaults read from Django settings, when Django is installed and configured."""
    try:
        from django.conf import settings as dj
    except ImportError:
        return {}
    if not dj.configured:
        return {}
    found: dict[str, tuple[Any, str]] = {}
    types = getattr(dj, "SIMPLE_JWT", {}).get("AUTH_HEADER_TYPES", ("Bearer",))
    if isinstance(types, str):
        types = (types,)
    if types:
        found["auth_header_type"] = (types[0], "Django SIMPLE_JWT['AUTH_HEADER_TYPES']")
    from django.apps import apps

    if apps.ready:
        from django.contrib.auth import get_user_model

        found["username_field"] = (get_user_model().USERNAME_FIELD, "Django get_user_model().USERNAME_FIELD")
    return found


def _conf_get(conf: Any, key: str) -> Any:
    try:
        return conf.get(key)
    except (AttributeError, KeyError):
        return None


def load_config(
    app: Any,
    profile: str = DEFAULT_PROFILE,
    *,
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
) -> Config:
    """Resolve every setting of ``profile`` for ``app``; raise one error listing each problem.

    ``cli`` holds ``celery worker`` option values by setting name; by default
    they are read from ``app.conf.svcjwt_cli``, where the bootstep stores them
    so that pool children (forked or spawned) see them too.
    """
    environ = os.environ if environ is None else environ
    conf = app.conf if app is not None else {}
    if cli is None:
        cli = _conf_get(conf, "svcjwt_cli") or {}
    profiles = _conf_get(conf, "svcjwt_profiles") or {}
    if profile != DEFAULT_PROFILE and profile not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise ConfigurationError(
            f"celery-svcjwt profile {profile!r} is not defined: add it to svcjwt_profiles "
            f"(CELERY_SVCJWT_PROFILES in Django settings); defined profiles: {known}"
        )
    overlay = profiles.get(profile, {}) if profile != DEFAULT_PROFILE else {}
    derived = _django_defaults()

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for s in SETTINGS:
        raw, source = _lookup(s, profile, conf, overlay, cli, environ, derived)
        if raw is None:
            values[s.name] = None
            sources[s.name] = "unset"
            continue
        try:
            values[s.name] = s.parse(raw)
        except ValueError as exc:
            shown = "(hidden)" if s.secret else repr(raw)
            problems.append(f"{s.conf_key} from {source} is invalid: {exc} (value {shown})".replace(repr(raw), shown))
            values[s.name] = None
        sources[s.name] = source

    _read_password_file(values, sources, problems)
    _check(values, problems, profile)
    if problems:
        where = "" if profile == DEFAULT_PROFILE else f" (profile {profile!r})"
        raise ConfigurationError(
            f"celery-svcjwt is not configured correctly{where}:\n" + "\n".join(f"- {p}" for p in problems)
        )
    values["api_url"] = values["api_url"].rstrip("/") + "/"
    for key in ("token_url", "refresh_url"):
        values[key] = resolve_url(values["api_url"], values[key])
    return Config(**values, profile=profile, sources=sources)


def _lookup(
    s: Setting,
    profile: str,
    conf: Any,
    overlay: Mapping[str, Any],
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    derived: Mapping[str, tuple[Any, str]],
) -> tuple[Any, str]:
    if profile == DEFAULT_PROFILE:
        if s.cli and cli.get(s.name) is not None:
            return cli[s.name], f"command line {s.option}"
        value = _conf_get(conf, s.conf_key)
        if value is not None:
            return value, f"config {s.conf_key}"
        env = environ.get(s.env_var)
        if env:
            return env, f"env {s.env_var}"
    else:
        if overlay.get(s.name) is not None:
            return overlay[s.name], f"config svcjwt_profiles[{profile!r}][{s.name!r}]"
        env_name = f"SVCJWT_{profile.upper()}_{s.name.upper()}"
        env = environ.get(env_name)
        if env:
            return env, f"env {env_name}"
        if s.name not in ("api_url", "username", "password", "password_file", "token_url", "refresh_url"):
            return _lookup(s, DEFAULT_PROFILE, conf, {}, cli, environ, derived)
    if s.name in derived:
        return derived[s.name]
    if s.default is not None:
        return s.default, "default"
    return None, "unset"


def _read_password_file(values: dict[str, Any], sources: dict[str, str], problems: list[str]) -> None:
    path = values.get("password_file")
    if not path:
        return
    try:
        secret = read_password_file(path)
    except OSError as exc:
        problems.append(
            f"svcjwt_password_file {path!r} cannot be read ({exc.strerror}): mount the secret there or fix the path"
        )
        return
    except ValueError:
        problems.append(f"svcjwt_password_file {path!r} is empty: write the password into it")
        return
    values["password"] = secret
    sources["password"] = f"file {path}"


def read_password_file(path: str) -> str:
    """The password in ``path``, without trailing newlines; ValueError if empty."""
    with open(path, encoding="utf-8") as f:
        secret = f.read().rstrip("\r\n")
    if not secret:
        raise ValueError("empty password file")
    return secret


def _check(values: dict[str, Any], problems: list[str], profile: str) -> None:
    """Cross-setting checks; each problem names the setting and how to fix it."""
    by = SETTINGS_BY_NAME
    if not values.get("api_url"):
        if "api_url" not in " ".join(problems):
            problems.append(f"svcjwt_api_url is not set: set {by['api_url'].how_to_set()}")
    else:
        _check_url(values, "api_url", problems)
        for name in ("token_url", "refresh_url"):
            url = values.get(name) or ""
            if url.startswith("//"):
                problems.append(f"svcjwt_{name} {url!r} is scheme-relative: give a path or an absolute https:// URL")
            elif urlsplit(url).scheme:
                _check_url(values, name, problems)
    if not values.get("username"):
        problems.append(f"svcjwt_username is not set: set {by['username'].how_to_set()}")
    _check_django(values, problems)
    if values.get("login_mode") in ("http", "local"):
        if not values.get("password"):
            problems.append(
                "svcjwt_password is not set: set svcjwt_password in the Celery config, the SVC_ACCT_PASS "
                "environment variable, or point svcjwt_password_file (--svcjwt-password-file) at a file holding it"
            )


def _check_django(values: dict[str, Any], problems: list[str]) -> None:
    """In-process login and the wsgi transport need Django configured in the worker."""
    needs = [f"svcjwt_login_mode {values['login_mode']!r}"] if values.get("login_mode") in ("local", "mint") else []
    if values.get("transport") == "wsgi":
        needs.append("svcjwt_transport 'wsgi'")
    if not needs:
        return
    try:
        import rest_framework_simplejwt  # noqa: F401
        from django.conf import settings
    except ImportError:
        problems.append(f"{' and '.join(needs)} need Django, DRF and SimpleJWT: pip install 'celery-svcjwt[django]'")
        return
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        problems.append(
            f"{' and '.join(needs)} {'need' if len(needs) > 1 else 'needs'} Django configured in the worker: "
            "set DJANGO_SETTINGS_MODULE to the API project's settings"
        )


def _check_url(values: dict[str, Any], name: str, problems: list[str]) -> None:
    url = values[name]
    parts = urlsplit(url)
    if parts.username or parts.password:
        problems.append(f"svcjwt_{name} must not carry credentials in the URL: use svcjwt_username and svcjwt_password")
        return
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"svcjwt_{name} {url!r} is not an http(s) URL with a host, such as https://api.example.com/")
        return
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        problems.append(f"svcjwt_{name} {url!r} has an invalid port")
        return
    if parts.scheme == "http" and not is_loopback(url) and not values.get("allow_insecure_http"):
        problems.append(
            f"svcjwt_{name} {url!r} is plain http to a host that is not loopback: the password and tokens "
            "would cross the network unencrypted. Use https, or set svcjwt_allow_insecure_http = True "
            "if the network is trusted"
        )
