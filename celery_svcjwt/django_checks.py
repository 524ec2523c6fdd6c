"""Django system checks: ``manage.py check`` reports celery-svcjwt settings that cannot work.

Registered by :class:`celery_svcjwt.apps.SvcJWTConfig` (``"celery_svcjwt"`` in
``INSTALLED_APPS``).  The settings are read the way a worker configured with
``app.config_from_object("django.conf:settings", namespace="CELERY")`` reads
them: ``CELERY_SVCJWT_*`` in Django settings, then the ``SVCJWT_*``
environment variables.  The account (username, password, password file) is
not checked: the web processes that run ``manage.py check`` usually do not
have the workers' secret.

Whether this project *is* the API the workers call decides the checks that
compare with it (routes, ``SIMPLE_JWT``): it is when the host of
``svcjwt_api_url`` is one this project answers to, by the rule Django applies
to every request (``ALLOWED_HOSTS``, with ``localhost``, ``127.0.0.1`` and
``[::1]`` under ``DEBUG`` when it is empty).  A project whose API lives
elsewhere is not compared with that other project's settings.

=====================  ==========================================================
id                     problem
=====================  ==========================================================
celery_svcjwt.E001     ``svcjwt_api_url`` is not set
celery_svcjwt.E002     a setting's value is invalid
celery_svcjwt.E003     the header type is not in ``SIMPLE_JWT['AUTH_HEADER_TYPES']``
celery_svcjwt.E004     ``svcjwt_login_mode`` is not a login mode
celery_svcjwt.E005     the token URL is not routed in this project
celery_svcjwt.E006     the refresh URL is not routed in this project
celery_svcjwt.E007     ``local``/``mint`` login needs SimpleJWT installed here
celery_svcjwt.E008     ``SIMPLE_JWT['AUTH_HEADER_NAME']`` is not the Authorization header
celery_svcjwt.W001     the token or refresh URL is routed to another view than SimpleJWT's
celery_svcjwt.W002     an unknown ``CELERY_SVCJWT_*`` setting (a typo?)
celery_svcjwt.W003     ``SessionAuthentication`` before ``JWTAuthentication``: 403 instead of 401
=====================  ==========================================================
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, register
from django.core.checks import Warning as CheckWarning

from .settings import LOGIN_MODES, SETTINGS, SETTINGS_BY_NAME, _check_url, resolve_url

__all__ = ["check_settings"]

TAG = "celery_svcjwt"
PREFIX = "CELERY_SVCJWT_"
#: Not checked here: the account belongs to the workers, not to the web processes.
ACCOUNT = ("username", "password", "password_file")
#: Django settings that are not svcjwt settings but share the prefix.
EXTRA_KEYS = {"CELERY_SVCJWT_PROFILES"}


def _id(code: str) -> str:
    return f"{TAG}.{code}"


def _raw_values() -> tuple[dict[str, Any], dict[str, str]]:
    """Each setting's raw value and where it came from: Django settings, then the environment."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for s in SETTINGS:
        value = getattr(settings, s.django_key, None)
        if value is not None:
            values[s.name], sources[s.name] = value, s.django_key
            continue
        env = os.environ.get(s.env_var)
        if env:
            values[s.name], sources[s.name] = env, f"the {s.env_var} environment variable"
    return values, sources


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every celery-svcjwt check; see the module's table of ids."""
    messages: list[CheckMessage] = []
    messages += _unknown_settings()
    raw, sources = _raw_values()
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        s = SETTINGS_BY_NAME[name]
        if name in ACCOUNT:
            continue
        try:
            parsed[name] = s.parse(value)
        except ValueError as exc:
            if name == "login_mode":
                messages.append(
                    Error(
                        f"svcjwt_login_mode from {sources[name]} is invalid: {exc}",
                        hint=f"Use one of: {', '.join(LOGIN_MODES)} (http, the default, needs nothing in this project).",
                        id=_id("E004"),
                    )
                )
            else:
                messages.append(
                    Error(
                        f"{s.conf_key} from {sources[name]} is invalid: {exc}",
                        hint=_first_sentence(s.help),
                        id=_id("E002"),
                    )
                )
    if "api_url" not in raw:
        messages.append(
            Error(
                "svcjwt_api_url is not set: the workers do not know which API to call",
                hint=(
                    f"Set {SETTINGS_BY_NAME['api_url'].django_key} (read by Celery with namespace='CELERY') or the "
                    "SVCJWT_API_URL environment variable. If only the workers' environment sets it, add "
                    "'celery_svcjwt.E001' to SILENCED_SYSTEM_CHECKS."
                ),
                id=_id("E001"),
            )
        )
    messages += _login_mode(parsed)
    api_url = parsed.get("api_url")
    if not api_url:
        return messages
    problems: list[str] = []
    _check_url({**parsed, "api_url": api_url}, "api_url", problems)
    if problems:
        messages += [Error(p, id=_id("E002")) for p in problems]
        return messages
    base = api_url.rstrip("/") + "/"
    urls = {
        name: resolve_url(base, parsed.get(name) or SETTINGS_BY_NAME[name].default)
        for name in ("token_url", "refresh_url")
    }
    for name, url in urls.items():
        if name in parsed and urlsplit(parsed[name]).scheme:
            _check_url({**parsed, name: url}, name, problems)
            if problems:
                messages += [Error(p, id=_id("E002")) for p in problems]
                problems.clear()
                continue
        if _served_here(url):
            messages += _route(name, url, sources.get(name, "the default"))
    if _served_here(base):
        messages += _simplejwt(parsed, sources)
    return messages


def _first_sentence(text: str) -> str:
    return text.replace("``", "").split(". ")[0].rstrip(".") + "."


def _unknown_settings() -> list[CheckMessage]:
    known = {s.django_key for s in SETTINGS} | EXTRA_KEYS
    found: list[CheckMessage] = []
    for key in dir(settings):
        if key.startswith(PREFIX) and key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            found.append(
                CheckWarning(
                    f"{key} is not a celery-svcjwt setting; it is ignored",
                    hint=f"Did you mean {close[0]}?" if close else "See celery-svcjwt's configuration reference.",
                    id=_id("W002"),
                )
            )
    profiles = getattr(settings, "CELERY_SVCJWT_PROFILES", None) or {}
    if isinstance(profiles, Mapping):
        for profile, overlay in profiles.items():
            for name in overlay if isinstance(overlay, Mapping) else ():
                if name not in SETTINGS_BY_NAME:
                    close = difflib.get_close_matches(str(name), list(SETTINGS_BY_NAME), n=1)
                    found.append(
                        CheckWarning(
                            f"CELERY_SVCJWT_PROFILES[{profile!r}] has {name!r}, which is not a setting; it is ignored",
                            hint=f"Did you mean {close[0]!r}?" if close else "Keys are setting names without svcjwt_.",
                            id=_id("W002"),
                        )
                    )
    return found


def _login_mode(parsed: Mapping[str, Any]) -> list[CheckMessage]:
    mode = parsed.get("login_mode")
    if mode not in ("local", "mint"):
        return []
    try:
        import rest_framework_simplejwt  # noqa: F401
    except ImportError:
        return [
            Error(
                f"svcjwt_login_mode {mode!r} obtains tokens inside the worker, but SimpleJWT is not installed here",
                hint="pip install 'celery-svcjwt[django]', or use svcjwt_login_mode = 'http'.",
                id=_id("E007"),
            )
        ]
    return []


def _allowed_hosts() -> list[str]:
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def _served_here(url: str) -> bool:
    """Whether this project answers requests for ``url``'s host (Django's ALLOWED_HOSTS rule)."""
    from django.http.request import split_domain_port, validate_host

    netloc = urlsplit(url).netloc.rsplit("@", 1)[-1].lower()
    domain, _port = split_domain_port(netloc)
    return bool(domain) and validate_host(domain, _allowed_hosts())


def _path_in_urlconf(url: str) -> str:
    path = urlsplit(url).path or "/"
    script = getattr(settings, "FORCE_SCRIPT_NAME", None) or ""
    script = script.rstrip("/")
    if script and (path == script or path.startswith(script + "/")):
        path = path[len(script) :] or "/"
    return path


def _route(name: str, url: str, source: str) -> list[CheckMessage]:
    from django.urls import Resolver404, resolve

    path = _path_in_urlconf(url)
    view = "TokenObtainPairView" if name == "token_url" else "TokenRefreshView"
    try:
        match = resolve(path)
    except Resolver404:
        slash = " (mind the trailing slash)" if not path.endswith("/") else ""
        return [
            Error(
                f"svcjwt_{name} {url} (from {source}) is not routed in this project: {path!r} matches no URL "
                f"pattern of {settings.ROOT_URLCONF}, and svcjwt_api_url's host is served by this project",
                hint=f"Route SimpleJWT's {view} at {path!r}, or set svcjwt_{name} to its path{slash}.",
                id=_id("E005" if name == "token_url" else "E006"),
            )
        ]
    kind = _simplejwt_view_kind(match.func)
    wanted = "obtain" if name == "token_url" else "refresh"
    if kind is not None and kind != wanted:
        return [
            CheckWarning(
                f"svcjwt_{name} {url} is routed to {_view_name(match.func)}, which is not SimpleJWT's {view}",
                hint=f"Point svcjwt_{name} at {view} (the workers need its request and answer).",
                id=_id("W001"),
            )
        ]
    return []


def _view_name(func: Any) -> str:
    target = getattr(func, "view_class", func)
    return f"{target.__module__}.{target.__qualname__}"


def _simplejwt_view_kind(func: Any) -> str | None:
    """ "obtain", "refresh" or "other" for a class-based view; None when it cannot be told."""
    view_class = getattr(func, "view_class", None)
    if view_class is None:
        return None  # a function view: it may well be a custom token endpoint
    try:
        from rest_framework_simplejwt.serializers import TokenObtainPairSerializer, TokenRefreshSerializer
        from rest_framework_simplejwt.views import TokenViewBase
    except ImportError:
        return None
    if not issubclass(view_class, TokenViewBase):
        return "other"
    try:
        serializer = view_class().get_serializer_class()
    except Exception:
        return None
    if issubclass(serializer, TokenObtainPairSerializer):
        return "obtain"
    if issubclass(serializer, TokenRefreshSerializer):
        return "refresh"
    return "other"  # sliding tokens, verify, blacklist


def _simplejwt(parsed: Mapping[str, Any], sources: Mapping[str, str]) -> list[CheckMessage]:
    """Compare with this project's SimpleJWT and DRF settings (it serves the API)."""
    try:
        from rest_framework_simplejwt.settings import api_settings
    except ImportError:
        return []
    messages: list[CheckMessage] = []
    types = api_settings.AUTH_HEADER_TYPES
    if isinstance(types, str):
        types = (types,)
    header = parsed.get("auth_header_type")
    if header is not None and header not in types:
        messages.append(
            Error(
                f"svcjwt_auth_header_type {header!r} (from {sources.get('auth_header_type')}) is not one of "
                f"SIMPLE_JWT['AUTH_HEADER_TYPES'] {tuple(types)!r}: the API would answer 401 to every task",
                hint=f"Set it to {types[0]!r}, or remove it: the default is the first of AUTH_HEADER_TYPES.",
                id=_id("E003"),
            )
        )
    header_name = api_settings.AUTH_HEADER_NAME
    if header_name != "HTTP_AUTHORIZATION":
        messages.append(
            Error(
                f"SIMPLE_JWT['AUTH_HEADER_NAME'] is {header_name!r}, but celery-svcjwt sends the token in the "
                "Authorization header: the API would answer 401 to every task",
                hint="Use the default AUTH_HEADER_NAME ('HTTP_AUTHORIZATION') for the API the workers call.",
                id=_id("E008"),
            )
        )
    configured = (getattr(settings, "REST_FRAMEWORK", {}) or {}).get("DEFAULT_AUTHENTICATION_CLASSES", ())
    classes = [(c if isinstance(c, str) else getattr(c, "__qualname__", "")).rsplit(".", 1)[-1] for c in configured]
    jwt = [i for i, c in enumerate(classes) if c.endswith("JWTAuthentication")]
    session = [i for i, c in enumerate(classes) if c == "SessionAuthentication"]
    if jwt and session and session[0] < jwt[0]:
        messages.append(
            CheckWarning(
                "SessionAuthentication comes before JWTAuthentication in DEFAULT_AUTHENTICATION_CLASSES: DRF answers "
                "403 instead of 401 to a refused token, so the workers cannot tell it apart and renew",
                hint="List JWTAuthentication first.",
                id=_id("W003"),
            )
        )
    return messages
