"""``self.api``: a requests.Session bound to one API, carrying the service account's JWT.

* URLs resolve against ``svcjwt_api_url`` (``items/1/`` and ``/items/1/`` both
  stay under its path, as httpx's ``base_url`` does).
* A request for another origin raises :class:`ForeignOriginError` before
  anything is sent; a redirect to another origin is followed without the token.
* A 401 from the API renews the token once and replays the request once,
  when its body can be replayed (google-auth's bounded retry).
* Every request gets a default timeout.
* The proxy and CA-bundle environment variables are read once, when the
  session is made, instead of on every request as requests does (two scans
  of ``os.environ``, the largest part of a client's own cost per call).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies
from urllib3.util.retry import Retry

from .endpoints import user_agent
from .errors import ForeignOriginError
from .manager import TokenManager
from .settings import Config, origin_of, resolve_url
from .tokens import TokenSet, parse_error_body

__all__ = ["ApiSession", "JWTAuth"]

logger = logging.getLogger(__name__)

#: What a finished request's Authorization header says instead of the token (see JWTAuth.scrubbed).
REDACTED = "[token removed]"

#: 401 codes that a refresh cannot cure (the password changed; the account was deleted or
#: deactivated): log in again instead, which either works or says what is wrong with the account.
RELOGIN_CODES = frozenset({"password_changed", "user_not_found", "user_inactive"})

# Attributes set on a PreparedRequest (per request, so the auth object stays thread-safe).
_TOKEN_ATTR = "_svcjwt_token"
_BODY_POS_ATTR = "_svcjwt_body_pos"
_RETRIED_ATTR = "_svcjwt_retried"
_OWN_ATTRS = frozenset({_TOKEN_ATTR, _BODY_POS_ATTR, _RETRIED_ATTR})

_merge: Callable[[Any, Any], Any] = merge_setting  # requests' rule: the request's value wins over the session's


class JWTAuth(requests.auth.AuthBase):
    """Adds ``Authorization: <type> <access token>`` for one origin and handles a 401 once."""

    def __init__(self, manager: TokenManager, header_type: str, origin: str) -> None:
        self.manager = manager
        self.header_type = header_type
        self.origin = origin
        self._warned_scheme = False

    def __repr__(self) -> str:
        return f"<JWTAuth {self.header_type} for {self.origin}>"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if origin_of(request.url or "") != self.origin:
            return request  # never attach the token anywhere else
        if "Authorization" in request.headers:
            return request  # the caller chose its own credentials for this request
        self._attach(request, self.manager.get())
        body = request.body
        if body is not None and hasattr(body, "tell") and hasattr(body, "seek"):
            try:
                setattr(request, _BODY_POS_ATTR, body.tell())
            except OSError:
                setattr(request, _BODY_POS_ATTR, None)
        request.register_hook("response", self.handle_401)  # type: ignore[no-untyped-call]
        return request

    def _attach(self, request: requests.PreparedRequest, tokens: TokenSet) -> None:
        request.headers["Authorization"] = f"{self.header_type} {tokens.access}"
        setattr(request, _TOKEN_ATTR, tokens)

    def handle_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        request = response.request
        if response.status_code != 401 or getattr(request, _RETRIED_ATTR, False):
            return response
        used: TokenSet | None = getattr(request, _TOKEN_ATTR, None)
        if used is None or origin_of(request.url or "") != self.origin:
            return response  # a redirect hop elsewhere, which carried no token
        if not self._scheme_accepted(response):
            return response
        if not _rewind(request):
            logger.info("celery-svcjwt: 401 on a request whose body cannot be replayed; returning it as is")
            return response
        code = parse_error_body(response.content).code
        tokens = self.manager.renew_after_401(used, login=code in RELOGIN_CODES)
        response.content  # noqa: B018 - drain, so the connection returns to the pool
        response.close()
        retry = request.copy()
        self._attach(retry, tokens)
        setattr(retry, _RETRIED_ATTR, True)
        if hasattr(request, _BODY_POS_ATTR):
            setattr(retry, _BODY_POS_ATTR, getattr(request, _BODY_POS_ATTR))
        connection = response.connection
        new = connection.send(retry, **kwargs)
        new.history.append(response)
        new.request = retry
        return new

    def _scheme_accepted(self, response: requests.Response) -> bool:
        """False when the server's WWW-Authenticate names another scheme than ours."""
        challenge = response.headers.get("WWW-Authenticate", "").strip()
        expected = challenge.split(" ", 1)[0] if challenge else ""
        if parse_error_body(response.content).code == "token_not_valid":
            return True  # the server read our header: the token itself was refused
        if expected and expected.lower() != self.header_type.lower():
            if not self._warned_scheme:
                self._warned_scheme = True
                logger.error(
                    "celery-svcjwt: the API expects the %r authorization scheme but svcjwt_auth_header_type is %r: "
                    "set svcjwt_auth_header_type to %r (SIMPLE_JWT['AUTH_HEADER_TYPES'])",
                    expected,
                    self.header_type,
                    expected,
                )
            return False
        return True

    def scrubbed(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """A copy of a request that is done with, holding no token and no hook of this auth.

        A response keeps its request (and its redirects' requests), and so does a
        requests exception: whatever pickles, logs or reports them (a result backend
        with the pickle serializer, an error tracker) then finds no token.  A copy,
        so that what was sent (and what a ``responses`` mock recorded) stays as it was.
        """
        # Shallow: the body and cookie jar are shared (the request is done with); the headers are
        # not, and this auth's attributes (the token snapshot) stay behind. Cheaper than .copy(),
        # which also copies the cookie jar, on every call.
        clean = requests.PreparedRequest.__new__(requests.PreparedRequest)
        clean.__dict__.update((name, value) for name, value in request.__dict__.items() if name not in _OWN_ATTRS)
        clean.headers = request.headers.copy()
        credentials = clean.headers.get("Authorization")
        if credentials and (hasattr(request, _TOKEN_ATTR) or origin_of(clean.url or "") == self.origin):
            clean.headers["Authorization"] = f"{credentials.split(' ', 1)[0]} {REDACTED}"
        clean.hooks = {
            event: [h for h in hooks if getattr(h, "__self__", None) is not self]
            for event, hooks in (request.hooks or {}).items()
        }
        return clean


def _responses_in(response: requests.Response | None) -> list[requests.Response]:
    """``response`` and every response in its history, nested ones too (a 401 retry's lands there)."""
    found: dict[int, requests.Response] = {}
    todo = [response] if response is not None else []
    while todo:
        r = todo.pop()
        if id(r) not in found:
            found[id(r)] = r
            todo.extend(r.history)
    return list(found.values())


def _rewind(request: requests.PreparedRequest) -> bool:
    """Make the body readable again; False when it cannot be replayed (a generator, a stream)."""
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    pos = getattr(request, _BODY_POS_ATTR, None)
    if pos is None:
        return False
    try:
        body.seek(pos)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return False
    return True


class ApiSession(requests.Session):
    """A requests.Session for one API origin, authenticated as the service account."""

    def __init__(self, config: Config, manager: TokenManager, pool_size: int = 10) -> None:
        """``pool_size``: connections kept per host; the process's thread count (threads pool)."""
        super().__init__()
        self.base_url = config.api_url
        self.origin = config.origin
        self.timeout: float | tuple[float, float] | None = config.timeout
        self.verify = config.verify
        self.auth = JWTAuth(manager, config.auth_header_type, self.origin)
        self.manager = manager
        self.headers["User-Agent"] = user_agent()
        # Retry only failures to connect: the request never left, so any method is safe.
        retry = Retry(total=None, connect=2, read=0, redirect=None, status=0, other=0, backoff_factor=0.1)
        adapter = HTTPAdapter(max_retries=retry, pool_maxsize=max(10, pool_size))
        self.mount("http://", adapter)
        self.mount("https://", adapter)
        # What requests would read from the environment for every request to the API.
        self._env_proxies = get_environ_proxies(self.base_url)
        self._env_ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")

    def __repr__(self) -> str:
        return f"<ApiSession {self.base_url} as {self.manager.config.username!r}>"

    def resolve(self, url: str | bytes) -> str:
        """The absolute URL for ``url``; raise :class:`ForeignOriginError` if it leaves the API's origin."""
        text = url.decode() if isinstance(url, bytes) else str(url)
        absolute = resolve_url(self.base_url, text)
        other = origin_of(absolute)
        if other != self.origin:
            raise ForeignOriginError(
                f"self.api only sends requests to {self.origin} (svcjwt_api_url), and this one is for {other}; "
                "use a plain requests.Session for other hosts, so the service account's token never leaves its API"
            )
        return absolute

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        request.url = self.resolve(request.url)
        return super().prepare_request(request)

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if len(args) < 9:  # timeout is the 9th positional parameter of Session.request
            kwargs.setdefault("timeout", self.timeout)
        if len(args) < 13:  # verify: passed per request, or REQUESTS_CA_BUNDLE would override it
            kwargs.setdefault("verify", self.verify)
        try:
            response = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            self._scrub(exc, exc.response)
            raise
        self._scrub(None, response)
        return response

    def _scrub(self, exc: requests.RequestException | None, response: requests.Response | None) -> None:
        """Swap the finished requests that a response or an exception keeps for token-free copies."""
        auth = self.auth
        if not isinstance(auth, JWTAuth):
            return
        if exc is not None and isinstance(exc.request, requests.PreparedRequest):
            exc.request = auth.scrubbed(exc.request)
        for hop in _responses_in(response):
            if isinstance(hop.request, requests.PreparedRequest):
                hop.request = auth.scrubbed(hop.request)

    def merge_environment_settings(  # type: ignore[override]
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        """requests' own merge, with the environment read at start for the API's origin."""
        own = isinstance(url, str) and origin_of(url) == self.origin
        if not own or not self.trust_env or (proxies and "no_proxy" in proxies):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        if proxies is not None:
            for key, value in self._env_proxies.items():
                proxies.setdefault(key, value)
        if verify is True or verify is None:
            verify = self._env_ca_bundle or verify
        return {
            "proxies": _merge(proxies, self.proxies),
            "stream": _merge(stream, self.stream),
            "verify": _merge(verify, self.verify),
            "cert": _merge(cert, self.cert),
        }

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        """A same-origin redirect hop carries the token of the hop before it.

        requests copies every hop from the first request, so after a 401 renewal the
        hop would otherwise carry the token the API had just refused.
        """
        super().rebuild_auth(prepared_request, response)  # type: ignore[no-untyped-call]
        previous = response.request
        used: TokenSet | None = getattr(previous, _TOKEN_ATTR, None)
        if used is not None and isinstance(self.auth, JWTAuth) and "Authorization" in prepared_request.headers:
            self.auth._attach(prepared_request, used)
            setattr(prepared_request, _RETRIED_ATTR, getattr(previous, _RETRIED_ATTR, False))

    def should_strip_auth(self, old_url: str, new_url: str) -> bool:
        """Strip the token on any change of origin, including http -> https on the same host."""
        return origin_of(old_url) != origin_of(new_url) or bool(
            super().should_strip_auth(old_url, new_url)  # type: ignore[no-untyped-call]
        )
