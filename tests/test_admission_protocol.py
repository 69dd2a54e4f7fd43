"""`digits serve`'s HTTP protocol refuses a full worker's costly requests itself, before any ASGI work.

A real uvicorn server on 127.0.0.1 runs BoundedHttpToolsProtocol in front of an app that only
records what reached it; the test holds the admission gate's count, and talks raw HTTP/1.1 so that
which connection sends what, and when, is the test's to say.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn
from servers import free_port

from app.api import admission
from app.infra.http_protocol import PAUSE_S, QUIET_S, BoundedHttpToolsProtocol


class Metrics:
    def __init__(self) -> None:
        self.refused: list[str] = []

    def count_refused(self, path: str) -> None:
        self.refused.append(path)


@pytest.fixture(scope="module")
def server():
    reached: list[tuple[str, str, bool | None]] = []

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        reached.append((scope["method"], scope["path"], scope.get(admission.QUIET)))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=BoundedHttpToolsProtocol, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.01)
    yield port, reached
    srv.should_exit = True
    thread.join(5)


@pytest.fixture
def gate(server):
    _, reached = server
    reached.clear()
    before = admission.current
    admission.current = g = admission.Gate(max_in_flight=4, metrics=Metrics())
    yield g
    admission.current = before


def request(method: str, path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


_unread: dict[int, bytes] = {}  # what a socket received past the answer read last (pipelining)


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = _unread.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    length = int(headers["content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    _unread[sock.fileno()] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def connect(server) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server[0]), timeout=5)
    _unread.pop(s.fileno(), None)
    return s


def test_a_full_worker_refuses_costly_requests_before_the_app_sees_them(server, gate):
    gate.in_flight = gate.max_in_flight + gate.reserve  # full even for a connection that waited
    with connect(server) as s:
        s.sendall(request("POST", "/predict", b'{"pixels": [' + b"0," * 50_000 + b"0]}"))
        status, headers, body = answer(s)
        assert status == 503 and headers["retry-after"] == "1" and "busy" in json.loads(body)["detail"]
        assert headers["x-content-type-options"] == "nosniff" and "connection" not in headers  # kept alive
        s.sendall(request("GET", "/healthz"))  # the refused body was read to its end: this parses
        assert answer(s)[0] == 200
    assert server[1] == [("GET", "/healthz", False)]  # the POST never reached the app; this came at once
    assert gate.metrics.refused == ["/predict"]


def test_a_refusal_of_a_request_sent_at_once_is_held_and_one_that_waited_is_not(server, gate):
    gate.in_flight = gate.max_in_flight + gate.reserve
    with connect(server) as s:
        started = time.monotonic()
        s.sendall(request("POST", "/read"))  # a new connection's first request: it waited
        assert answer(s)[0] == 503
        assert time.monotonic() - started < PAUSE_S / 2
        started = time.monotonic()
        s.sendall(request("POST", "/read"))  # at once, as a client ignoring Retry-After would
        assert answer(s)[0] == 503
        assert time.monotonic() - started >= PAUSE_S * 0.9
    assert gate.metrics.refused == ["/read", "/read"]


def test_pipelined_requests_are_answered_in_order_past_a_held_refusal(server, gate):
    gate.in_flight = gate.max_in_flight + gate.reserve
    with connect(server) as s:
        s.sendall(request("GET", "/healthz"))
        assert answer(s)[0] == 200
        s.sendall(request("POST", "/predict") + request("GET", "/first") + request("POST", "/predict"))
        assert [answer(s)[0] for _ in range(3)] == [503, 200, 200]
    # The third waited for the second's answer, so the app had it (its own middleware counts it).
    assert [path for _, path, _ in server[1]] == ["/healthz", "/first", "/predict"]


def test_a_connection_that_waited_may_use_the_reserve_and_one_that_did_not_may_not(server, gate):
    gate.in_flight = gate.max_in_flight  # full for requests sent at once, room for those that waited
    with connect(server) as s:
        s.sendall(request("POST", "/predict"))  # a new connection's first request: it waited
        assert answer(s)[0] == 200
        s.sendall(request("POST", "/predict"))  # sent the moment the answer came
        assert answer(s)[0] == 503
        time.sleep(PAUSE_S + QUIET_S + 0.05)
        s.sendall(request("POST", "/predict"))  # sent after waiting, as Retry-After asks
        assert answer(s)[0] == 200
    assert server[1] == [("POST", "/predict", True), ("POST", "/predict", True)]


def test_cheap_routes_and_gets_are_never_refused_and_an_empty_gate_admits(server, gate):
    gate.in_flight = gate.max_in_flight + gate.reserve
    with connect(server) as s:
        for method, path in (("GET", "/healthz"), ("POST", "/feedback"), ("GET", "/predict")):
            s.sendall(request(method, path))
            assert answer(s)[0] == 200, (method, path)
    gate.in_flight = 0
    with connect(server) as s:
        s.sendall(request("POST", "/predict"))
        assert answer(s)[0] == 200
        s.sendall(request("POST", "/predict"))
        assert answer(s)[0] == 200  # hot, but there is room
    assert gate.metrics.refused == []


def test_a_refusal_asked_to_close_closes(server, gate):
    gate.in_flight = gate.max_in_flight + gate.reserve
    with connect(server) as s:
        s.sendall(request("POST", "/predict", close=True))
        status, headers, _ = answer(s)
        assert status == 503 and headers["connection"] == "close"
        assert s.recv(1) == b""  # closed by the server
