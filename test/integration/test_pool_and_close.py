"""Pooled upstream connections (the gateway's own idle bound, unrequested
bytes) and clients that half-close after their request."""

import socket
import struct
import time

from conftest import Client, route, service
from origin import KEEP, WAIT_CLOSE, ok_handler, response


def test_pool_closes_idle_upstream_connection(gateway, origin):
    # keepalive_timeout_ms bounds how long an idle pooled connection is
    # kept, so a request never races the upstream's own idle close
    o = origin(handler=lambda orig, req: (response(200, b"ok"), WAIT_CLOSE))
    g = gateway({"up": service(o.addr, retries=0,
                               keepalive_timeout_ms=300)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        assert c.request(path="/once").status == 200
        t0 = time.monotonic()
    deadline = time.monotonic() + 5
    while not o.peer_closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert o.peer_closed, "idle pooled connection never closed"
    assert o.peer_closed[0] - t0 < 3


def test_pool_notices_upstream_closing_idle_connection(gateway, origin):
    # the upstream closes its idle keep-alive connection cleanly: the
    # next request must use a new connection, not fail
    def handler(orig, req):
        return response(200, b"ok"), "close"
    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    for i in range(3):
        with Client(g.port) as c:
            assert c.request(path="/x%d" % i).status == 200
        time.sleep(0.1)
    assert o.connections == 3


def test_late_bytes_after_head_response_never_parsed(gateway, origin):
    # a HEAD answered with a body that arrives a little later: the pooled
    # connection must be dropped, never read as the next response
    def handler(orig, req):
        if req.method == "HEAD":
            head = response(200, b"", content_length=False)
            head = head[:-2] + b"Content-Length: 38\r\n\r\n"
            garbage = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ngarbage"
            return [head, 0.05, garbage], KEEP
        return ok_handler(orig, req)
    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        r = c.request("HEAD", "/h")
        assert r.status == 200
        time.sleep(0.3)
        r = c.request(path="/next")
        assert r.status == 200 and r.json()["target"] == "/next", r


def test_half_closed_client_gets_its_response(gateway, origin):
    # request, then shutdown(SHUT_WR) 100 ms later: RFC 9112 lets the
    # server answer, and the client is waiting for it
    def handler(orig, req):
        return [0.3, response(200, b"served")], KEEP
    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    ok = 0
    for i in range(10):
        s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
        s.sendall(b"GET /hc/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        s.close()
        if data.startswith(b"HTTP/1.1 200") and data.endswith(b"served"):
            ok += 1
    assert ok == 10, "%d of 10 half-closed clients were answered" % ok


def test_half_closed_client_gets_all_pipelined_answers(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        c.send(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        r1 = c.read_response()
        r2 = c.read_response()
        assert r1.json()["target"] == "/p1" and r2.json()["target"] == "/p2"
        assert c.is_closed()


def test_client_reset_aborts_upstream(gateway, origin):
    # a client that resets its connection is gone for good: the upstream
    # request is abandoned at once (logged 499)
    o = origin(handler=lambda orig, req: (b"", WAIT_CLOSE))
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=20000)},
                [route("all", "up", prefix="/")])
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    s.sendall(b"GET /abandon HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(o.wait_requests(1)) == 1
    gave_up = time.monotonic()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    deadline = time.monotonic() + 5
    while not o.peer_closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert o.peer_closed, "upstream connection left open after client left"
    assert o.peer_closed[0] - gave_up < 5
