"""Pure token logic: parsing token responses, refresh margins, error bodies, Retry-After."""

from __future__ import annotations

import base64
import email.utils
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from celery_svcjwt.errors import MalformedResponse
from celery_svcjwt.tokens import (
    ErrorBody,
    TokenSet,
    decode_json,
    parse_error_body,
    parse_retry_after,
    parse_token_response,
    refresh_margins,
)

from .conftest import SERVER_NOW, JwtFactory

jwts = JwtFactory()  # module-level: hypothesis tests cannot take function-scoped fixtures

SENT_AT = 500.0  # the worker's monotonic clock when the request left


def parse(body, wall_now=SERVER_NOW, **kw):
    return parse_token_response(body, sent_at=SENT_AT, wall_now=wall_now, **kw)


# -- parse_token_response -------------------------------------------------------------


def test_login_response():
    body = jwts.pair(access_lifetime=300, refresh_lifetime=86400)
    tokens = parse(body, wall_now=SERVER_NOW + 2)
    assert tokens.access == body["access"]
    assert tokens.refresh == body["refresh"]
    assert tokens.obtained_at == SENT_AT
    assert tokens.lifetime == 299  # usable: a second off for whole-second claims
    # iat in whole seconds may be up to a second late: that second is counted off
    assert tokens.access_expires_at == SENT_AT + 299
    assert tokens.refresh_expires_at == SENT_AT + 86400
    assert tokens.exp_claim == SERVER_NOW + 300
    assert tokens.skew == 2


@pytest.mark.parametrize("server_offset", [-3 * 3600, +5 * 3600, -86400 * 3])
def test_expiry_counts_from_sent_at_whatever_the_servers_clock_says(server_offset):
    """Lifetime is exp - iat, counted on our clock: a server hours off changes nothing."""
    server_now = SERVER_NOW + server_offset
    body = {
        "access": jwts(iat=server_now, lifetime=300),
        "refresh": jwts(iat=server_now, lifetime=3600, token_type="refresh"),
    }
    tokens = parse(body, wall_now=SERVER_NOW)
    assert tokens.lifetime == 299  # usable: a second off for whole-second claims
    assert tokens.access_expires_at == SENT_AT + 299
    assert tokens.refresh_expires_at == SENT_AT + 3600
    assert tokens.skew == -server_offset


@pytest.mark.parametrize(
    ("iat", "lifetime", "usable"),
    [
        (SERVER_NOW, 300, 299),  # whole seconds, as SimpleJWT writes them: a second off
        (SERVER_NOW + 0.25, 300, 300),  # sub-second precision: no truncation to allow for
        (SERVER_NOW, 1.5, 0.75),  # never more than half the lifetime off
    ],
)
def test_truncated_iat_costs_a_second(iat, lifetime, usable):
    tokens = parse({"access": jwts(iat=iat, lifetime=lifetime)})
    assert tokens.lifetime == usable
    assert tokens.access_expires_at == SENT_AT + usable


def test_without_iat_the_lifetime_is_counted_from_our_wall_clock():
    body = {"access": jwts(iat=None, exp=SERVER_NOW + 120)}
    tokens = parse(body, wall_now=SERVER_NOW)
    assert tokens.lifetime == 120
    assert tokens.access_expires_at == SENT_AT + 120
    assert tokens.skew is None


def test_refresh_with_rotation_keeps_the_new_refresh_token():
    old = jwts(lifetime=86400, token_type="refresh")
    body = {"access": jwts(lifetime=300), "refresh": jwts(lifetime=7200, token_type="refresh")}
    tokens = parse(body, previous_refresh=old, previous_refresh_expires_at=123.0)
    assert tokens.refresh == body["refresh"]
    assert tokens.refresh_expires_at == SENT_AT + 7200


def test_refresh_without_rotation_keeps_the_previous_refresh_token_and_its_expiry():
    old = jwts(lifetime=86400, token_type="refresh")
    body = {"access": jwts(lifetime=300)}
    tokens = parse(body, previous_refresh=old, previous_refresh_expires_at=123.0)
    assert tokens.refresh == old
    assert tokens.refresh_expires_at == 123.0
    assert tokens.access == body["access"]


def test_refresh_token_without_exp_never_expires_locally():
    body = {"access": jwts(lifetime=300), "refresh": jwts(lifetime=None, token_type="refresh")}
    assert parse(body).refresh_expires_at is None


def test_refresh_token_without_iat_counts_from_our_wall_clock():
    body = {"access": jwts(lifetime=300), "refresh": jwts(iat=None, exp=SERVER_NOW + 1000, token_type="refresh")}
    assert parse(body, wall_now=SERVER_NOW).refresh_expires_at == SENT_AT + 1000


def test_token_set_repr_shows_no_token():
    body = jwts.pair()
    text = repr(parse(body))
    assert body["access"] not in text
    assert body["refresh"] not in text


def _malformed_cases():
    access = jwts(lifetime=300)
    return {
        "list body": ([access], "not a JSON object"),
        "string body": (access, "not a JSON object"),
        "no body": (None, "not a JSON object"),
        "missing access": ({"refresh": jwts(token_type="refresh")}, "access token"),
        "access not a string": ({"access": 12345}, "missing or not a string"),
        "empty access": ({"access": ""}, "missing or not a string"),
        "access not a JWT": ({"access": "not-a-jwt-but-secret-ish"}, "is not a JWT"),
        "no exp": ({"access": jwts(lifetime=None)}, "no 'exp' claim"),
        "exp a string": ({"access": jwts(exp="tomorrow")}, "'exp' claim is not a number"),
        "exp a boolean": ({"access": jwts(exp=True)}, "'exp' claim is not a number"),
        "exp NaN": ({"access": jwts(exp=float("nan"))}, "'exp' claim is not a number"),
        "iat a string": ({"access": jwts(iat="x", exp=SERVER_NOW)}, "'iat' claim is not a number"),
        "exp equals iat": ({"access": jwts(lifetime=0)}, "already expired"),
        "exp before iat": ({"access": jwts(lifetime=-10)}, "already expired"),
        "refresh not a JWT": ({"access": access, "refresh": "garbage-refresh"}, "refresh token"),
        "refresh null": ({"access": access, "refresh": None}, "refresh token"),
        "refresh exp a string": (
            {"access": access, "refresh": jwts(exp="later", token_type="refresh")},
            "'exp' claim is not a number",
        ),
    }


@pytest.mark.parametrize(("body", "expected"), list(_malformed_cases().values()), ids=list(_malformed_cases()))
def test_malformed_token_responses(body, expected):
    with pytest.raises(MalformedResponse) as info:
        parse(body)
    message = str(info.value)
    assert expected in message
    for token in _strings_in(body):
        if token:
            assert token not in message


def _strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


def test_malformed_response_is_retryable():
    """MalformedResponse is an AuthUnavailable: a proxy's error page is an outage, not a fatal error."""
    from celery_svcjwt.errors import AuthUnavailable

    assert issubclass(MalformedResponse, AuthUnavailable)


# -- margins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "margin", "expected"),
    [
        (300, 60, (60, 10)),  # configured margin fits: mandatory capped at 10 s
        (300, 16, (16, 8)),  # mandatory is half the advisory one
        (60, 60, (30, 10)),  # margin capped at half the lifetime
        (20, 600, (10, 5)),
        (0, 60, (0, 0)),
    ],
)
def test_refresh_margins(lifetime, margin, expected):
    assert refresh_margins(lifetime, margin) == expected


@given(lifetime=st.floats(0, 1e7), margin=st.floats(0.001, 1e7))
def test_refresh_margins_properties(lifetime, margin):
    advisory, mandatory = refresh_margins(lifetime, margin)
    assert 0 <= mandatory <= advisory <= lifetime / 2
    assert advisory <= margin
    assert mandatory <= 10


def test_token_set_windows():
    tokens = TokenSet(
        access="a",
        refresh="r",
        obtained_at=0,
        access_expires_at=300,
        refresh_expires_at=1000,
        lifetime=300,
        exp_claim=0,
    )
    assert tokens.advisory_at(60) == 240
    assert tokens.mandatory_at(60) == 290
    assert tokens.advisory_at(600) == 150  # never more than half the lifetime early
    assert tokens.refresh_usable(998.9)
    assert not tokens.refresh_usable(999.0)  # a second of slack before the refresh token's expiry


def test_refresh_usable_without_refresh_token_or_expiry():
    base = {"access": "a", "obtained_at": 0, "access_expires_at": 300, "lifetime": 300, "exp_claim": 0}
    assert not TokenSet(refresh=None, refresh_expires_at=None, **base).refresh_usable(0)
    assert TokenSet(refresh="r", refresh_expires_at=None, **base).refresh_usable(1e12)


# -- error bodies ------------------------------------------------------------------------


def test_error_body_of_a_wrong_password():
    err = parse_error_body(b'{"detail": "No active account found with the given credentials"}')
    assert err == ErrorBody(detail="No active account found with the given credentials")
    assert err.describe() == "No active account found with the given credentials"


def test_error_body_of_a_rejected_refresh_token():
    body = {
        "detail": "Token is invalid",
        "code": "token_not_valid",
        "messages": [{"token_class": "AccessToken", "message": "expired"}],
    }
    err = parse_error_body(json.dumps(body).encode())
    assert (err.detail, err.code, dict(err.fields)) == ("Token is invalid", "token_not_valid", {})


def test_error_body_with_field_errors():
    err = parse_error_body(b'{"email": ["This field is required."], "password": ["This field is required.", "x"]}')
    assert dict(err.fields) == {"email": "This field is required.", "password": "This field is required. x"}
    assert err.describe() == "email: This field is required.; password: This field is required. x"


def test_error_body_quotes_at_most_a_short_text():
    err = parse_error_body(json.dumps({"detail": "x" * 5000, "f" * 80: ["y" * 5000]}).encode())
    assert err.detail == "x" * 200 + "..."
    assert dict(err.fields) == {"f" * 50: "y" * 200 + "..."}


@pytest.mark.parametrize(
    "content",
    [
        b"<!DOCTYPE html><html><body>Bad Gateway</body></html>",
        b"\xff\xfe\x00garbage",
        b"",
        b"[1, 2]",
        b'"just a string"',
        b'{"detail": 5, "code": ["x"], "field": [1, 2], "other": []}',
    ],
)
def test_error_body_of_anything_else_is_empty(content):
    assert parse_error_body(content) == ErrorBody()


# -- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (" 7 ", 7.0), ("0", 0.0), ("999999", 3600.0), (None, None), ("", None), ("soon", None)],
)
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value, SERVER_NOW, cap=3600) == expected


def test_retry_after_http_date():
    value = email.utils.formatdate(SERVER_NOW + 90, usegmt=True)
    assert parse_retry_after(value, SERVER_NOW, cap=3600) == 90.0


def test_retry_after_date_in_the_past_means_now():
    value = email.utils.formatdate(SERVER_NOW - 90, usegmt=True)
    assert parse_retry_after(value, SERVER_NOW, cap=3600) == 0.0


def test_retry_after_date_is_capped():
    value = email.utils.formatdate(SERVER_NOW + 86400, usegmt=True)
    assert parse_retry_after(value, SERVER_NOW, cap=60) == 60.0


@pytest.mark.parametrize("value", ["1.5", "-5", "Sun, 06 Nov 1994 08:49:37", "Mon, 99 Foo 2020 99:99:99 GMT"])
def test_retry_after_garbage_is_ignored(value):
    assert parse_retry_after(value, SERVER_NOW, cap=3600) is None


def test_retry_after_with_a_latin1_digit_lookalike_is_ignored():
    """requests decodes header bytes as latin-1, so b'\\xb2' arrives as '²', which str.isdigit() accepts."""
    assert parse_retry_after("\u00b2", SERVER_NOW, cap=3600) is None


# -- decode_json ---------------------------------------------------------------------------


def test_decode_json():
    assert decode_json(b'{"a": 1}') == {"a": 1}


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"<!DOCTYPE html><html>502</html>", "an HTML page"),
        (b"  \n<html><body>login</body></html>", "an HTML page"),
        (b"<HTML>", "an HTML page"),
        (b"Service Unavailable", "a body that is not JSON"),
        (b"\xff\xfe\xfa", "a body that is not JSON"),
        (b"", "a body that is not JSON"),
    ],
)
def test_decode_json_names_what_came_instead(content, kind):
    with pytest.raises(MalformedResponse) as info:
        decode_json(content)
    assert str(info.value) == f"the token endpoint answered with {kind} ({len(content)} bytes)"


# -- properties: arbitrary input only ever gives MalformedResponse ------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
)
claim_values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | json_values


@st.composite
def jwt_like(draw):
    """Tokens from plausible to hostile: real JWTs with odd claims, hand-made segments, plain text."""
    kind = draw(st.sampled_from(["claims", "segments", "text"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "claims":
        claims = draw(st.dictionaries(st.sampled_from(["exp", "iat", "nbf", "jti", "gen"]), claim_values, max_size=4))
        header = draw(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "b64"]), json_values, max_size=3))
        header = {"alg": "HS256", "typ": "JWT", **header}
        return ".".join([_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), "c2ln"])
    header = draw(st.binary(max_size=30) | st.just(b'{"alg":"HS256","typ":"JWT"}'))
    payload = draw(st.binary(max_size=30) | json_values.map(lambda v: json.dumps(v).encode()))
    return ".".join([_b64(header), _b64(payload), draw(st.text(max_size=10))])


token_bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"access": jwt_like()}, optional={"refresh": jwt_like() | json_values}),
    st.fixed_dictionaries({"access": json_values}, optional={"refresh": jwt_like()}),
)

BIG = 10**400  # json.loads reads it; float() cannot


@pytest.mark.parametrize(
    "body",
    [
        {"access": jwts(exp=BIG)},
        {"access": jwts(exp=SERVER_NOW + 10, iat=-BIG)},
        {"access": jwts(lifetime=300), "refresh": jwts(exp=BIG, token_type="refresh")},
    ],
    ids=["access exp", "access iat", "refresh exp"],
)
def test_a_claim_too_big_for_a_float_is_malformed(body):
    """A JSON integer like 10**400 decodes fine but float() overflows: that is a malformed answer."""
    with pytest.raises(MalformedResponse, match="is not a number"):
        parse(body)


@pytest.mark.parametrize("func", [parse_error_body, decode_json])
def test_deeply_nested_json_is_not_a_crash(func):
    """json.loads raises RecursionError on deep nesting: a hostile body must not crash the caller."""
    try:
        result = func(b"[" * 5000)
    except MalformedResponse:
        return
    assert result == ErrorBody()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=token_bodies, sent_at=st.floats(0, 1e9), wall_now=st.floats(0, 2e9))
def test_parse_token_response_only_raises_malformed_response(body, sent_at, wall_now):
    try:
        tokens = parse_token_response(body, sent_at=sent_at, wall_now=wall_now, previous_refresh="prev-refresh")
    except MalformedResponse as exc:
        message = str(exc)
        for text in _strings_in(body):
            if len(text) >= 8:  # short strings may occur in any English sentence
                assert text not in message
    else:
        assert isinstance(tokens, TokenSet)
        assert tokens.lifetime > 0
        assert tokens.access_expires_at >= sent_at


@settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_parse_error_body_never_raises(content):
    try:
        result = parse_error_body(content)
    except MalformedResponse:
        return
    assert isinstance(result, ErrorBody)
    assert all(len(v) <= 203 for v in result.fields.values())


@settings(max_examples=300, deadline=None)
@given(content=st.binary(max_size=200))
def test_decode_json_only_raises_malformed_response(content):
    try:
        decode_json(content)
    except MalformedResponse as exc:
        assert str(exc).startswith("the token endpoint answered with")


http_dates = st.datetimes(timezones=st.timezones()).map(lambda d: email.utils.format_datetime(d))


@settings(max_examples=300, deadline=None)
@given(
    value=st.none() | st.text(max_size=40) | st.integers(0, 10**30).map(str) | http_dates,
    wall_now=st.floats(0, 4e9),
    cap=st.floats(0, 1e6),
)
@example(value="\u00b2", wall_now=0.0, cap=60.0)
@example(value="\u0663", wall_now=0.0, cap=60.0)  # ARABIC-INDIC DIGIT THREE
def test_parse_retry_after_returns_none_or_a_bounded_wait(value, wall_now, cap):
    try:
        wait = parse_retry_after(value, wall_now, cap)
    except MalformedResponse:
        return
    assert wait is None or 0.0 <= wait <= cap
