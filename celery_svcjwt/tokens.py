"""Pure token logic: parse what the token endpoint sends, and when to refresh.

Nothing here does I/O or reads a clock; times are passed in.  Expiry is kept
on the worker's own monotonic clock: a token's lifetime (``exp - iat``, both
read from the JWT) is counted from the moment the request for it was sent, so
a worker whose wall clock disagrees with the API server's still refreshes on
time.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import MalformedResponse

__all__ = ["TokenSet", "parse_error_body", "parse_retry_after", "parse_token_response", "refresh_margins"]

#: Most of an error body we ever quote in a message.
_QUOTE_LIMIT = 200


@dataclass(frozen=True)
class TokenSet:
    """An immutable snapshot of the tokens: readers never see half an update.

    Times are on the manager's monotonic clock. ``repr`` shows no token.
    """

    access: str = field(repr=False)
    refresh: str | None = field(repr=False)
    obtained_at: float
    access_expires_at: float
    refresh_expires_at: float | None
    #: How long the access token surely lives from ``obtained_at`` (``exp - iat``,
    #: less the second lost to whole-second claims).
    lifetime: float
    #: Wall-clock ``exp`` claim of the access token (for status reports).
    exp_claim: float
    #: Our wall clock minus the server's, as far as ``iat`` tells (None without ``iat``).
    skew: float | None = None

    def advisory_at(self, margin: float) -> float:
        """From this time on, refresh if no other thread already is."""
        advisory, _ = refresh_margins(self.lifetime, margin)
        return self.access_expires_at - advisory

    def mandatory_at(self, margin: float) -> float:
        """From this time on, the token must not be used until refreshed."""
        _, mandatory = refresh_margins(self.lifetime, margin)
        return self.access_expires_at - mandatory

    def refresh_usable(self, now: float) -> bool:
        """Whether the refresh token can still be sent (with a little slack)."""
        if not self.refresh:
            return False
        if self.refresh_expires_at is None:
            return True
        return now < self.refresh_expires_at - 1.0


def refresh_margins(lifetime: float, margin: float) -> tuple[float, float]:
    """(advisory, mandatory) seconds before expiry.

    The advisory margin is the configured one capped at half the lifetime, so
    a short-lived token is not refreshed on every call (google-auth's lesson);
    the mandatory margin is half the advisory one, at most 10 s: wide enough, for
    short-lived tokens, to cover a request queued behind many others on a busy server.
    """
    advisory = max(0.0, min(margin, lifetime / 2))
    mandatory = min(advisory / 2, 10.0)
    return advisory, mandatory


def usable_lifetime(lifetime: float, iat: float | None) -> float:
    """How long the token surely lives from the moment it was requested.

    SimpleJWT writes ``iat`` and ``exp`` in whole seconds, truncated: a token
    issued at 100.9 says ``iat=100``, so it dies up to a second before
    ``iat + lifetime`` of the issuing moment.  Count that second off (but never
    more than half the lifetime, for absurdly short tokens).
    """
    if iat is not None and float(iat).is_integer():
        return max(lifetime - 1.0, lifetime / 2)
    return lifetime


def read_claims(token: Any, what: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the client has no key); raise if it is not a JWT."""
    if not isinstance(token, str) or not token:
        raise MalformedResponse(f"the {what} token in the token endpoint's answer is missing or not a string")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise MalformedResponse(f"the {what} token in the token endpoint's answer is not a JWT") from None
    if not isinstance(claims, dict):
        raise MalformedResponse(f"the {what} token's claims are not a JSON object")
    return claims


def _number_claim(claims: Mapping[str, Any], name: str, what: str, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise MalformedResponse(f"the {what} token has no '{name}' claim, so its expiry is unknown")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedResponse(f"the {what} token's '{name}' claim is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise MalformedResponse(f"the {what} token's '{name}' claim is not a number")
    return number


def parse_token_response(
    body: Any,
    *,
    sent_at: float,
    wall_now: float,
    previous_refresh: str | None = None,
    previous_refresh_expires_at: float | None = None,
) -> TokenSet:
    """Build a :class:`TokenSet` from a token or refresh endpoint's JSON body.

    ``sent_at`` is the monotonic time the request was sent; ``wall_now`` the
    wall-clock time the answer arrived (only used without ``iat``).  A refresh
    answer without ``refresh`` keeps ``previous_refresh`` (no rotation).
    """
    if not isinstance(body, Mapping):
        raise MalformedResponse("the token endpoint's answer is not a JSON object")
    access_claims = read_claims(body.get("access"), "access")
    exp = _number_claim(access_claims, "exp", "access", required=True)
    iat = _number_claim(access_claims, "iat", "access", required=False)
    assert exp is not None
    if iat is not None:
        lifetime = exp - iat
        skew: float | None = wall_now - iat
    else:
        lifetime = exp - wall_now
        skew = None
    if lifetime <= 0:
        raise MalformedResponse("the access token is already expired when it arrives (exp is not after iat)")
    lifetime = usable_lifetime(lifetime, iat)

    refresh = body.get("refresh", previous_refresh)
    refresh_expires_at = previous_refresh_expires_at
    if "refresh" in body:
        refresh_claims = read_claims(refresh, "refresh")
        r_exp = _number_claim(refresh_claims, "exp", "refresh", required=False)
        r_iat = _number_claim(refresh_claims, "iat", "refresh", required=False)
        if r_exp is None:
            refresh_expires_at = None
        elif r_iat is not None:
            refresh_expires_at = sent_at + (r_exp - r_iat)
        else:
            refresh_expires_at = sent_at + (r_exp - wall_now)
    return TokenSet(
        access=body["access"],
        refresh=refresh,
        obtained_at=sent_at,
        access_expires_at=sent_at + lifetime,
        refresh_expires_at=refresh_expires_at,
        lifetime=lifetime,
        exp_claim=exp,
        skew=skew,
    )


def decode_json(content: bytes) -> Any:
    """JSON from a response body, or raise :class:`MalformedResponse` naming what came instead."""
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        head = content[:64].lstrip().lower()
        kind = "an HTML page" if head.startswith((b"<!doctype", b"<html")) else "a body that is not JSON"
        raise MalformedResponse(f"the token endpoint answered with {kind} ({len(content)} bytes)") from None


@dataclass(frozen=True)
class ErrorBody:
    """What a SimpleJWT/DRF error body says, reduced to safe, short text."""

    detail: str | None = None
    code: str | None = None
    #: Field errors such as ``{"password": ["This field is required."]}``.
    fields: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        parts = []
        if self.detail:
            parts.append(self.detail)
        parts.extend(f"{name}: {msg}" for name, msg in self.fields.items())
        return "; ".join(parts)


def parse_error_body(content: bytes) -> ErrorBody:
    """Read a DRF error body; anything unexpected gives an empty :class:`ErrorBody`.

    Only short strings from known keys are kept: the raw body is never quoted,
    since a misbehaving server might echo what it received.
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ErrorBody()
    if not isinstance(data, dict):
        return ErrorBody()
    detail = _short(data.get("detail"))
    code = _short(data.get("code"))
    fields: dict[str, str] = {}
    for key, value in data.items():
        if key in ("detail", "code", "messages") or not isinstance(key, str):
            continue
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            fields[key[:50]] = _short(" ".join(value)) or ""
    return ErrorBody(detail=detail, code=code, fields=fields)


def _short(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= _QUOTE_LIMIT else value[:_QUOTE_LIMIT] + "..."


def parse_retry_after(value: str | None, wall_now: float, cap: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date), at most ``cap``."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - wall_now
    return max(0.0, min(seconds, cap))


def wall_time_of(monotonic_at: float, monotonic_now: float, wall_now: float | None = None) -> float:
    """Convert a time on the monotonic clock to wall-clock seconds (for status reports)."""
    wall_now = time.time() if wall_now is None else wall_now
    return wall_now + (monotonic_at - monotonic_now)
