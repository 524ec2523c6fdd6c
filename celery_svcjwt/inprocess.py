"""Logging in through SimpleJWT's Python API, in the worker's own process.

For workers that run the API's Django project (same settings, same database):

* ``local``: TokenObtainPairSerializer with the service account's password,
  exactly what the token view does, without the HTTP hop;
* ``mint``: no password at all: the configured serializer's ``get_token(user)``
  mints the pair for the service user (the worker already holds SIGNING_KEY,
  so this grants nothing it could not forge anyway).

Both refresh with TokenRefreshSerializer (rotation and blacklist included),
so a token's life is the same as over HTTP.  SimpleJWT is imported lazily: its
modules need ``django.setup()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .endpoints import RefreshRejected, current_password, redact
from .errors import ConfigurationError, CredentialsRejected
from .settings import Config

__all__ = ["LocalLogin", "MintLogin", "require_django"]


def require_django(mode: str) -> None:
    """Raise a clear error unless Django is configured and its apps are loaded."""
    try:
        from django.apps import apps
        from django.conf import settings
    except ImportError:
        raise ConfigurationError(
            f"svcjwt_login_mode {mode!r} needs Django, DRF and SimpleJWT in the worker: "
            "pip install 'celery-svcjwt[django]'"
        ) from None
    if not settings.configured:
        raise ConfigurationError(
            f"svcjwt_login_mode {mode!r} needs Django configured in the worker: set DJANGO_SETTINGS_MODULE "
            "to the API project's settings (Celery's Django fixup then calls django.setup())"
        )
    if not apps.ready:
        import django

        django.setup()


def _serializer(setting: str) -> Any:
    from django.utils.module_loading import import_string
    from rest_framework_simplejwt.settings import api_settings

    return import_string(getattr(api_settings, setting))


def _describe(exc: Any) -> str:
    """A DRF exception's detail as short text."""
    detail = getattr(exc, "detail", None)
    if isinstance(detail, Mapping):
        return "; ".join(f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(map(str, detail))
    return str(detail if detail is not None else exc)


class _InProcess:
    mode = ""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.description = f"SimpleJWT in process ({self.mode}) as {config.username!r}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.config.username!r}>"

    def refresh(self, refresh_token: str) -> Mapping[str, Any]:
        require_django(self.mode)
        from django.core.exceptions import ObjectDoesNotExist
        from rest_framework.exceptions import APIException
        from rest_framework_simplejwt.exceptions import TokenError

        serializer = _serializer("TOKEN_REFRESH_SERIALIZER")(data={"refresh": refresh_token})
        try:
            serializer.is_valid(raise_exception=True)
        except (TokenError, APIException, ObjectDoesNotExist) as exc:
            raise RefreshRejected(f"SimpleJWT rejected the refresh token in process ({type(exc).__name__})") from None
        return dict(serializer.validated_data)

    def close(self) -> None:
        pass


class LocalLogin(_InProcess):
    """TokenObtainPairSerializer in process: a password check, no network."""

    mode = "local"

    def obtain(self) -> Mapping[str, Any]:
        require_django(self.mode)
        from rest_framework.exceptions import APIException

        cls = _serializer("TOKEN_OBTAIN_SERIALIZER")
        password = current_password(self.config)
        serializer = cls(data={cls.username_field: self.config.username, "password": password})
        try:
            serializer.is_valid(raise_exception=True)
        except APIException as exc:
            said = redact(_describe(exc), password).rstrip(".")
            raise CredentialsRejected(
                f"SimpleJWT rejected the service account {self.config.username!r} ({cls.username_field}) in "
                f"process: {said}. To fix: check svcjwt_username and the password (svcjwt_password, "
                "SVC_ACCT_PASS or svcjwt_password_file)"
            ) from None
        return dict(serializer.validated_data)


class MintLogin(_InProcess):
    """Mint the pair for the service user with the configured token class: no password."""

    mode = "mint"

    def obtain(self) -> Mapping[str, Any]:
        require_django(self.mode)
        from django.contrib.auth import get_user_model
        from rest_framework_simplejwt.settings import api_settings

        user_model = get_user_model()
        field = user_model.USERNAME_FIELD
        try:
            user = user_model._default_manager.get_by_natural_key(self.config.username)  # type: ignore[attr-defined]
        except user_model.DoesNotExist:
            raise CredentialsRejected(
                f"cannot mint tokens: no user with {field} {self.config.username!r} exists. To fix: create the "
                "service account or correct svcjwt_username"
            ) from None
        if not api_settings.USER_AUTHENTICATION_RULE(user):
            raise CredentialsRejected(
                f"cannot mint tokens: the user with {field} {self.config.username!r} is inactive "
                "(SIMPLE_JWT USER_AUTHENTICATION_RULE). To fix: activate the service account"
            )
        refresh = _serializer("TOKEN_OBTAIN_SERIALIZER").get_token(user)
        access = getattr(refresh, "access_token", refresh)
        return {"refresh": str(refresh), "access": str(access)}
