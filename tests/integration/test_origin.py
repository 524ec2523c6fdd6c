"""The token goes only to svcjwt_api_url's origin."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from celery_svcjwt import ForeignOriginError

pytestmark = pytest.mark.integration


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_GET(self) -> None:
        Recorder.seen.append(dict(self.headers))
        body = json.dumps({"authorization": "Authorization" in self.headers}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_origin():
    Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_request_to_another_origin_raises_before_sending(worker_factory, other_origin):
    worker = worker_factory(pool="solo")

    with pytest.raises(ForeignOriginError) as info:
        worker.run("call", "GET", other_origin + "steal")
    assert "only sends requests to http://127.0.0.1:" in str(info.value)
    assert Recorder.seen == []


def test_redirect_to_another_origin_drops_the_token(worker_factory, other_origin):
    worker = worker_factory(pool="solo")

    result = worker.run("call", "GET", "api/redirect/", params={"to": other_origin + "landing"})

    assert result["status"] == 200
    assert result["history"] == [302]
    assert result["body"] == {"authorization": False}
    assert len(Recorder.seen) == 1 and "Authorization" not in Recorder.seen[0]


def test_redirect_within_the_origin_keeps_the_token(worker_factory, api_server):
    worker = worker_factory(pool="solo")

    result = worker.run("call", "GET", "api/redirect/", params={"to": api_server.url + "api/headers/"})

    assert result["history"] == [302]
    assert result["body"] == {"authorization": True}
