"""A fault-injecting HTTP proxy for the reliability tests, on loopback only.

It runs in a thread of the test process, between ``celery worker``
subprocesses (their ``SVCJWT_API_URL`` points at it) and the example API,
and is controlled in process::

    with FaultProxy(api.url) as proxy:
        proxy.inject(Fault("status", status=503, headers={"Retry-After": "1"}))
        ...                                  # start a worker on proxy.url, send tasks
        proxy.clear()
        assert proxy.count(TOKEN_PATHS) < 10

Built on the standard library's ``http.server`` (a threading HTTP/1.1 server
with keep-alive) and ``requests`` for the upstream side.  Everything is
bounded in time: per-connection socket timeouts, upstream timeouts, delays
that :meth:`FaultProxy.stop` interrupts.

Faults (``Fault.kind``):

``status``
    answer ``status`` with ``headers`` and ``body`` without asking the API
    (bursts of 500/502/503/429 with Retry-After, HTML error pages, a 401 on
    a request whose token is still valid, a refresh token refused as
    blacklisted, a login refused);
``reset``
    forward, then send the headers and half the body and reset the
    connection (RST);
``delay``
    wait ``delay`` seconds, then forward (the client has timed out);
``truncate``
    forward, then send only the first half of the body, with a matching
    Content-Length (a complete HTTP answer whose JSON is cut);
``rewrite``
    forward, then replace the JSON body by ``rewrite(body)`` (tokens that are
    not JWTs, tokens without ``exp``).

Refused connections are not a per-request fault: :meth:`FaultProxy.down`
closes the listening socket and every open connection, :meth:`FaultProxy.up`
listens again on the same port.

The proxy records every request it received (what the workers sent, faulted
or not) and every token the token endpoints issued through it, so the tests
can count calls to the token endpoint and search logs for each token.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import requests

__all__ = [
    "REFRESH_PATH",
    "TOKEN_PATH",
    "TOKEN_PATHS",
    "Fault",
    "FaultProxy",
    "Record",
    "drop_claim",
    "html_page",
    "replace_access",
]

TOKEN_PATH = "/api/token/"
REFRESH_PATH = "/api/token/refresh/"
TOKEN_PATHS = (TOKEN_PATH, REFRESH_PATH)
HOST = "127.0.0.1"
#: Longest anything in the proxy waits: socket reads, upstream answers, injected delays.
MAX_WAIT = 30.0

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-encoding",
    "accept-encoding",
}
_KINDS = {"status", "reset", "delay", "truncate", "rewrite"}


@dataclass
class Fault:
    """One misbehaviour for requests whose path is in ``paths`` (``None``: every path)."""

    kind: str
    paths: tuple[str, ...] | None = TOKEN_PATHS
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0
    rewrite: Callable[[Any], Any] | None = None
    #: Apply to at most this many requests (``None``: until cleared).
    times: int | None = None
    #: Only requests with this method (``None``: any).
    method: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.delay > MAX_WAIT:
            raise ValueError(f"a delay of more than {MAX_WAIT}s would outlive the proxy's bounds")

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return self.paths is None or path in self.paths


@dataclass
class Record:
    """One request the proxy received (recorded on arrival; ``status`` once answered)."""

    at: float
    method: str
    path: str
    fault: str | None
    client_port: int
    status: int | None = None


def html_page(status: int, title: str) -> bytes:
    """An error page such as nginx or a load balancer sends."""
    return (
        f"<!DOCTYPE html>\n<html><head><title>{status} {title}</title></head>\n"
        f"<body><center><h1>{status} {title}</h1></center><hr><center>nginx</center></body></html>\n"
    ).encode()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def drop_claim(name: str, token_key: str = "access") -> Callable[[Any], Any]:
    """A rewrite that removes claim ``name`` from the ``token_key`` JWT (signature left as is)."""

    def rewrite(body: Any) -> Any:
        header, payload, signature = body[token_key].split(".")
        claims = json.loads(_unb64(payload))
        claims.pop(name, None)
        return {**body, token_key: ".".join([header, _b64(json.dumps(claims).encode()), signature])}

    return rewrite


def replace_access(value: Any) -> Callable[[Any], Any]:
    """A rewrite that puts ``value`` where the access token was (e.g. an opaque token)."""

    def rewrite(body: Any) -> Any:
        return {**body, "access": value}

    return rewrite


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    proxy: FaultProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away, a TLS handshake the client refused: count it, print nothing.
        self.proxy._note_error()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.proxy._track(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.proxy._untrack(request)
        super().shutdown_request(request)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = MAX_WAIT
    server: _Server

    def setup(self) -> None:
        context = self.server.proxy.ssl_context
        if context is not None:
            self.request.settimeout(MAX_WAIT)
            self.request = self.connection = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        path = urlsplit(self.path).path
        fault = proxy._take(self.command, path)
        record = Record(time.monotonic(), self.command, path, fault.kind if fault else None, self.client_address[1])
        proxy._record(record)
        try:
            if fault is not None and fault.kind == "status":
                record.status = fault.status
                self._send(fault.status, dict(fault.headers), fault.body)
                return
            if fault is not None and fault.kind == "delay":
                proxy._stopping.wait(fault.delay)
            status, headers, content = self._forward(body)
            record.status = status
            if path in TOKEN_PATHS and status == 200:
                proxy._note_tokens(content)
            if fault is not None and fault.kind == "rewrite" and status == 200:
                assert fault.rewrite is not None
                content = json.dumps(fault.rewrite(json.loads(content))).encode()
                proxy._note_tokens(content)
            if fault is not None and fault.kind == "reset":
                self._send_and_reset(status, headers, content)
                return
            if fault is not None and fault.kind == "truncate":
                content = content[: len(content) // 2]
            self._send(status, headers, content)
        except OSError:  # the client gave up (timeout) or the proxy is going down
            self.close_connection = True

    def _forward(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        proxy = self.server.proxy
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"
        try:
            response = proxy._session().request(
                self.command,
                proxy.upstream + self.path.lstrip("/"),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=(5, MAX_WAIT),
            )
        except requests.RequestException as exc:
            return 502, {"Content-Type": "text/plain"}, f"proxy: upstream failed ({type(exc).__name__})".encode()
        out = {k: v for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP}
        return response.status_code, out, response.content

    def _send(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)
        self.wfile.flush()

    def _send_and_reset(self, status: int, headers: dict[str, str], content: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(max(len(content), 2)))
        self.end_headers()
        self.wfile.write(content[: len(content) // 2])
        self.wfile.flush()
        self.close_connection = True
        # SO_LINGER 0: close() sends RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


class FaultProxy:
    """The proxy; use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self, upstream: str, *, ssl_context: ssl.SSLContext | None = None, port: int = 0) -> None:
        if urlsplit(upstream).hostname not in (HOST, "localhost"):
            raise ValueError("the fault proxy only forwards to loopback")
        self.upstream = upstream.rstrip("/") + "/"
        self.ssl_context = ssl_context
        self.port = port
        self.records: list[Record] = []
        #: Every access and refresh token that went through a token endpoint's answer.
        self.issued: set[str] = set()
        self.errors = 0
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._connections: set[Any] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{HOST}:{self.port}/"

    # -- life cycle ----------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._stopping.clear()
        self.up()
        return self

    def up(self) -> None:
        """Listen (again, on the same port after :meth:`down`)."""
        if self._server is not None:
            return
        server = None
        for _ in range(50):  # the port may linger briefly after down()
            try:
                server = _Server((HOST, self.port), _Handler)
                break
            except OSError:
                time.sleep(0.1)
        if server is None:
            raise RuntimeError(f"cannot listen on {HOST}:{self.port} again")
        server.proxy = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Refuse connections: stop listening and reset every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            open_now = list(self._connections)
            self._connections.clear()
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopping.set()
        self.down()
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------

    def inject(self, *faults: Fault) -> None:
        """Add faults; the first that matches a request applies to it."""
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    # -- what went through ----------------------------------------------------------

    def count(
        self, paths: Iterable[str] | None = TOKEN_PATHS, *, since: float = 0.0, until: float | None = None
    ) -> int:
        """Requests received for ``paths`` (``None``: all), between two monotonic times."""
        wanted = set(paths) if paths is not None else None
        with self._lock:
            return sum(
                1
                for r in self.records
                if (wanted is None or r.path in wanted) and r.at >= since and (until is None or r.at <= until)
            )

    def statuses(self, path: str) -> list[int | None]:
        with self._lock:
            return [r.status for r in self.records if r.path == path]

    def reset_counts(self) -> None:
        with self._lock:
            self.records.clear()

    # -- internals -------------------------------------------------------------------

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _record(self, record: Record) -> None:
        with self._lock:
            self.records.append(record)

    def _note_tokens(self, content: bytes) -> None:
        try:
            data = json.loads(content)
        except ValueError:
            return
        if isinstance(data, dict):
            with self._lock:
                self.issued.update(v for k, v in data.items() if k in ("access", "refresh") and isinstance(v, str))

    def _note_error(self) -> None:
        with self._lock:
            self.errors += 1

    def _track(self, conn: Any) -> None:
        with self._lock:
            self._connections.add(conn)

    def _untrack(self, conn: Any) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # never an environment proxy: loopback only
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session
