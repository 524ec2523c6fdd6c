"""Security: no secret in logs, results, tracebacks or reprs; the token stays on its origin; TLS is verified.

The workers here reach the API through the fault proxy (tests/faults/proxy.py),
which records every access and refresh token the API issues; when the module
ends, every worker's DEBUG log, every stored task result (tracebacks
included) and every event line is searched for the password, for anything
shaped like a JWT, and for each of those exact tokens.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from celery import Celery

from celery_svcjwt import AuthUnavailable, CredentialsRejected, ForeignOriginError
from celery_svcjwt.endpoints import HttpLogin
from celery_svcjwt.manager import TokenManager
from celery_svcjwt.session import ApiSession
from celery_svcjwt.settings import load_config
from tests.conftest import JWT_RE, PASSWORD, USERNAME, assert_no_secrets, wait_for
from tests.faults.harness import assert_no_exact_secrets, send
from tests.faults.proxy import TOKEN_PATHS, Fault, FaultProxy

pytestmark = pytest.mark.integration

TOKEN_NOT_VALID = json.dumps({"detail": "Given token not valid for any token type", "code": "token_not_valid"}).encode()
CHALLENGE = {"Content-Type": "application/json", "WWW-Authenticate": 'Bearer realm="api"'}


@pytest.fixture(scope="module")
def proxy(api_server, proxies) -> FaultProxy:
    p = FaultProxy(api_server.url).start()
    proxies.append(p)
    return p


@pytest.fixture(scope="module")
def worker(fleet, proxy):
    """A solo worker that reaches the API through the recording proxy."""
    env = {"SVCJWT_TASK_MAX_RETRIES": "0", "SVCJWT_LOGIN_ATTEMPTS": "1", "SVCJWT_BACKOFF_MAX": "1"}
    return fleet.start(proxy.url, pool="solo", concurrency=1, env=env)


def run(worker, task: str, *args, **kwargs):
    return send(worker, task, *args, **kwargs).get(timeout=60, interval=0.02)


def call(worker, method: str, url: str, **kwargs):
    return worker.app.send_task(
        "tests.integration.workerapp.call", args=(method, url), kwargs=kwargs, queue=worker.queue
    ).get(timeout=60, interval=0.02)


def scan(text: str, where: str, proxy: FaultProxy, password: str = PASSWORD) -> None:
    assert_no_secrets(text, where, password)
    assert_no_exact_secrets(text, proxy.issued, where)


# -- tracebacks, results and reprs ----------------------------------------------------------------------


def failed_result(result) -> tuple[BaseException, str]:
    with pytest.raises(Exception) as info:
        result.get(timeout=60, interval=0.02, propagate=True)
    assert result.state == "FAILURE"
    return info.value, result.traceback or ""


def test_failing_tasks_store_no_secret_in_their_result_or_traceback(worker, proxy):
    assert run(worker, "echo", 1)["n"] == 1  # logged in: there are tokens to leak
    assert proxy.issued

    # The API keeps refusing the token: the second 401 comes back to the task, which raises HTTPError.
    proxy.inject(Fault("status", status=401, paths=("/api/whoami/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=2))
    http_error, http_tb = failed_result(send(worker, "strict_get", "api/whoami/"))
    assert type(http_error).__name__ == "HTTPError" and "401" in str(http_error)

    # A request for another origin.
    foreign, foreign_tb = failed_result(send(worker, "strict_get", "http://127.0.0.1:9/steal"))
    assert isinstance(foreign, ForeignOriginError)

    # The token endpoint fails and the task is out of retries (SVCJWT_TASK_MAX_RETRIES=0).
    proxy.inject(Fault("status", status=401, paths=("/api/whoami/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=1))
    proxy.inject(Fault("status", status=503, paths=TOKEN_PATHS, times=3))
    outage, outage_tb = failed_result(send(worker, "strict_get", "api/whoami/"))
    assert isinstance(outage, AuthUnavailable)
    proxy.clear()

    for exc, tb in [(http_error, http_tb), (foreign, foreign_tb), (outage, outage_tb)]:
        assert tb.startswith("Traceback")
        for text in (str(exc), repr(exc), tb):
            scan(text, f"the {type(exc).__name__} of a failed task", proxy)
    # The stored results themselves (JSON files of the file backend), tracebacks included.
    stored = list((worker.workdir / "spool" / "results").glob("*"))
    assert len(stored) >= 4
    for path in stored:
        scan(path.read_text(), f"the stored result {path.name}", proxy)


def test_a_pickled_http_error_comes_back_whole_and_holds_no_token(fleet, proxy):
    """With the pickle result serializer, the exception itself is stored: response, request, headers."""
    w = fleet.start(proxy.url, pool="solo", concurrency=1, env={"SVCJWT_TEST_RESULT_SERIALIZER": "pickle"})
    w.app.conf.result_serializer = "pickle"  # this side reads the results: before its backend exists
    assert run(w, "echo", 1)["n"] == 1
    proxy.inject(Fault("status", status=401, paths=("/api/whoami/",), headers=CHALLENGE, body=TOKEN_NOT_VALID, times=2))

    exc, tb = failed_result(send(w, "strict_get", "api/whoami/"))

    proxy.clear()
    assert type(exc).__name__ == "HTTPError"  # the real exception, not Celery's unpickleable-exception wrapper
    assert exc.response.status_code == 401
    assert [r.status_code for r in exc.response.history] == [401]  # refused, renewed once, refused again
    assert exc.response.request.headers["Authorization"] == "Bearer [token removed]"
    stored = [path.read_bytes() for path in (w.workdir / "spool" / "results").glob("*")]
    assert any(b"HTTPError" in blob for blob in stored)
    for blob in stored:
        scan(blob.decode("latin-1"), "a pickled result", proxy)
    scan(tb + repr(exc.response.request.headers), "the pickled failure's traceback and request", proxy)
    fleet.retire(w)


def test_wrong_password_in_the_result_the_traceback_and_the_log(fleet, proxy):
    wrong = "Wr0ng-but-still-a-secret-7731"
    w = fleet.start(proxy.url, pool="solo", concurrency=1, password=wrong)
    exc, tb = failed_result(send(w, "echo", 1))
    assert isinstance(exc, CredentialsRejected)
    assert USERNAME in str(exc)
    for text in (str(exc), repr(exc), tb, w.log()):
        scan(text, "a wrong-password failure", proxy, password=wrong)
        assert PASSWORD not in text
    fleet.retire(w)


def test_reprs_and_status_of_a_logged_in_process_hold_no_secret(worker, proxy):
    out = worker.app.send_task("tests.faults.tasks.echo", args=(2,), queue=worker.queue).get(timeout=60)
    assert out["n"] == 2
    # The objects a task can reach, as a debugger, a log line or Sentry would print them.
    text = json.dumps(run(worker, "reprs"))
    assert "TokenManager" in text and "ApiSession" in text and "TokenSet" in text
    scan(text, "the reprs of the session, manager, tokens and config", proxy)
    assert not JWT_RE.search(text)


# -- the token stays on its origin, redirects included ----------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    """Another origin: records what arrives; /back?to=URL redirects back (a chain that returns)."""

    protocol_version = "HTTP/1.1"
    seen: list[dict] = []

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Recorder.seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.startswith("/back?to="):
            self.send_response(307)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        out = json.dumps({"authorization": "Authorization" in self.headers}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_origin() -> Iterator[str]:
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_no_redirect_carries_the_token_to_another_origin(worker, proxy, other_origin, status, method):
    kwargs = {"json": {"n": 1}} if method == "POST" else {}
    result = call(worker, method, "api/redirect/", params={"to": other_origin + "landing", "status": status}, **kwargs)

    assert result["status"] == 200 and result["history"] == [status]
    assert result["body"] == {"authorization": False}
    [arrived] = Recorder.seen
    assert "Authorization" not in arrived["headers"]
    for value in arrived["headers"].values():
        scan(value, "a header sent to another origin", proxy)
    if status in (307, 308) and method == "POST":
        assert arrived["method"] == "POST" and json.loads(arrived["body"]) == {"n": 1}  # body kept, token not


def test_the_same_host_on_another_port_is_another_origin(worker, proxy, api_server):
    """The proxy and the API are both 127.0.0.1: only the port differs."""
    result = call(worker, "GET", "api/redirect/", params={"to": api_server.url + "api/headers/"})
    assert result["body"] == {"authorization": False}


def test_a_chain_that_comes_back_to_the_api_does_not_bring_the_token_back(worker, proxy, other_origin):
    home = proxy.url + "api/headers/"
    result = call(worker, "GET", "api/redirect/", params={"to": f"{other_origin}back?to={home}", "status": 307})

    assert result["history"] == [307, 307]
    # Stripped when the chain left the origin, and not put back when it returned.
    assert result["body"] == {"authorization": False}
    assert "Authorization" not in Recorder.seen[0]["headers"]


# -- TLS: verified by default -------------------------------------------------------------------------------


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 signed by it (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "celery-svcjwt test CA")])
    usage = {k: False for k in ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement")}
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
                **usage,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="module")
def https_api(tmp_path_factory, api_server, proxies) -> tuple[FaultProxy, Path]:
    """The example API behind a TLS front on 127.0.0.1, with a certificate from a private CA."""
    ca, cert, key = make_certificates(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    front = FaultProxy(api_server.url, ssl_context=context).start()
    proxies.append(front)
    return front, ca


def in_process(url: str, **conf):
    app = Celery("security", set_as_current=False)
    app.conf.update(svcjwt_api_url=url, svcjwt_username=USERNAME, svcjwt_password=PASSWORD, **conf)
    config = load_config(app, environ={}, cli={})
    manager = TokenManager(config, HttpLogin(config), sleep=lambda s: None)
    return ApiSession(config, manager), manager


def test_tls_is_verified_by_default(https_api, monkeypatch):
    front, _ = https_api
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    front.reset_counts()
    errors_before = front.errors
    session, _ = in_process(front.url, svcjwt_login_attempts=1)

    with pytest.raises(AuthUnavailable) as info:
        session.get("api/whoami/")
    message = str(info.value)
    assert "TLS failed" in message and "svcjwt_verify" in message
    assert PASSWORD not in message
    wait_for(lambda: front.errors > errors_before, 10, "the proxy to see the refused handshake")
    assert front.count(None) == 0  # the handshake failed: no request, no password, ever reached the server
    session.close()


def test_tls_with_the_ca_bundle_configured(https_api, monkeypatch):
    front, ca = https_api
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    session, manager = in_process(front.url, svcjwt_verify=str(ca))

    response = session.get("api/whoami/")
    assert response.status_code == 200 and response.json() == {"username": USERNAME}
    assert manager.stats.logins == 1
    session.close()


def test_tls_in_a_worker(fleet, https_api):
    front, ca = https_api
    verified = fleet.start(front.url, pool="solo", concurrency=1, env={"SVCJWT_VERIFY": str(ca)})
    assert run(verified, "echo", 7)["n"] == 7
    fleet.retire(verified)

    env = {"SVCJWT_TASK_MAX_RETRIES": "0", "SVCJWT_LOGIN_ATTEMPTS": "1"}
    unverified = fleet.start(front.url, pool="solo", concurrency=1, env=env)
    exc, _ = failed_result(send(unverified, "echo", 8))
    assert isinstance(exc, AuthUnavailable) and "TLS failed" in str(exc)
    fleet.retire(unverified)


# -- plain http only to loopback ----------------------------------------------------------------------------------


def test_plain_http_to_another_host_stops_the_worker_at_start(fleet):
    w = fleet.start("http://api.example.com/", pool="solo", concurrency=1, wait_ready=False)
    assert w.wait_exit(60) != 0
    log = w.log()
    assert "plain http to a host that is not loopback" in log
    assert "svcjwt_allow_insecure_http" in log
    assert "Traceback" not in log


def test_plain_http_to_another_host_when_explicitly_allowed(fleet):
    # Solo logs in on first use, and no task is sent: nothing leaves this machine.
    w = fleet.start("http://api.example.com/", pool="solo", concurrency=1, env={"SVCJWT_ALLOW_INSECURE_HTTP": "true"})
    wait_for(lambda: "celery-svcjwt: tasks call http://api.example.com/" in w.log(), 30, "the worker to start")
    fleet.retire(w)
