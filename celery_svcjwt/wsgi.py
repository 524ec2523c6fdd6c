"""``svcjwt_transport = "wsgi"``: send ``self.api``'s requests to the project's WSGI app in process.

A requests transport adapter: each request becomes a WSGI environ and goes
through the whole Django stack (middleware, DRF authentication, permissions,
throttling, request logging) exactly as one from the network would, without
a socket.  The response body is streamed from the application's iterable,
which is closed when the response is (Django's request_finished runs then).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPResponse

__all__ = ["WSGIAdapter", "load_wsgi_application"]

WSGIApp = Callable[..., Iterable[bytes]]


def load_wsgi_application(path: str | None) -> WSGIApp:
    """The WSGI application at ``path`` (dotted), or Django's WSGI_APPLICATION."""
    from .inprocess import require_django

    require_django("wsgi transport")
    if path:
        from django.utils.module_loading import import_string

        return import_string(path)  # type: ignore[no-any-return]
    from django.core.servers.basehttp import get_internal_wsgi_application

    return get_internal_wsgi_application()  # type: ignore[no-any-return]


class _Body(io.RawIOBase):
    """A readable stream over a WSGI response iterable; closing it closes the iterable."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self._iter: Iterator[bytes] = iter(chunks)
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._iter)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            closer = getattr(self._chunks, "close", None)
            if closer is not None:
                closer()
        super().close()


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if hasattr(body, "read"):
        data = body.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return b"".join(c.encode("utf-8") if isinstance(c, str) else bytes(c) for c in body)


def build_environ(request: requests.PreparedRequest) -> dict[str, Any]:
    url = urlsplit(request.url or "")
    body = _body_bytes(request.body)
    scheme = url.scheme or "http"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method or "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(url.path or "/", encoding="latin-1"),
        "QUERY_STRING": url.query,
        "SERVER_NAME": url.hostname or "localhost",
        "SERVER_PORT": str(url.port or (443 if scheme == "https" else 80)),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    environ["HTTP_HOST"] = url.netloc
    return environ


class WSGIAdapter(HTTPAdapter):
    """A requests adapter that calls a WSGI application instead of opening a connection."""

    def __init__(self, app: WSGIApp) -> None:
        super().__init__()
        self.app = app

    def send(  # type: ignore[override]
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        started: dict[str, Any] = {}

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            started["status"], started["headers"] = status, headers
            return lambda data: None  # the legacy write() callable; Django never uses it

        chunks = self.app(build_environ(request), start_response)
        code, _, reason = started["status"].partition(" ")
        raw = HTTPResponse(
            body=io.BufferedReader(_Body(chunks)),
            headers=started["headers"],
            status=int(code),
            reason=reason,
            preload_content=False,
            decode_content=False,
            request_url=request.url,
        )
        response = self.build_response(request, raw)
        if not stream:
            response.content  # noqa: B018 - read now, as requests does without stream=True
            raw.close()  # closes the application's iterable: Django's request_finished runs
        return response
