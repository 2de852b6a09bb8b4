"""Which timer governs when (issue: upstream timers blamed the wrong side).

timeout_ms is the upstream's budget: connect aside, it runs only while the
gateway waits on the upstream (to accept request bytes, for the response
head, for body bytes it has room to take). While the gateway waits on the
client (body bytes still to come, or a full output buffer the client does
not read), idle_timeout_ms governs. Logs name the side that stalled."""

import os
import socket
import time

from conftest import (access_lines, assert_gateway_error, Client, route,
                      service, wait_log)
from origin import HANG, KEEP, response


def gw(gateway, o, tmp=None, timeout_ms=1000, idle_timeout_ms=10000,
       **svc):
    kw = {"retries": 0, "connect_timeout_ms": 500, "timeout_ms": timeout_ms}
    kw.update(svc)
    server = None
    if tmp is not None:
        server = {"access_log": {"path": os.path.join(tmp, "access.log")}}
    return gateway({"up": service(o.addr, **kw)},
                   [route("all", "up", prefix="/")],
                   limits={"idle_timeout_ms": idle_timeout_ms},
                   server=server)






def test_slow_upload_is_not_an_upstream_timeout(gateway, origin):
    # 10 body bytes over ~3 s with timeout_ms = 1000: the gateway waits on
    # the client, so the upstream's timer must not run.
    o = origin()
    g = gw(gateway, o, timeout_ms=1000)
    with Client(g.port, timeout=10) as c:
        c.send(b"PUT /slow-up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
               b"\r\n")
        for i in range(10):
            time.sleep(0.3)
            c.send(b"%d" % i)
        r = c.read_response()
    assert r.status == 200, r
    assert o.complete_requests("/slow-up")[0].body == b"0123456789"


def test_paused_download_is_not_cut(gateway, origin):
    # A client that stops reading a large response for 3 s (timeout_ms =
    # 1000, idle_timeout_ms = 10 s) gets every byte.
    size = 16 * 1024 * 1024
    body = bytes(range(256)) * (size // 256)
    o = origin(handler=lambda orig, req: (response(200, body), KEEP))
    g = gw(gateway, o, timeout_ms=1000)
    with Client(g.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        head = c._until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        time.sleep(3)
        got = c._exact(size)
        assert got == body
        # the connection is still good for another request
        c.send(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and len(r.body) == size


def test_slow_readers_get_whole_response(gateway, origin):
    # Clients that read an 8 MiB response in pieces, pausing longer than
    # timeout_ms each time, get the whole body (idle_timeout_ms governs).
    size = 8 * 1024 * 1024
    body = b"s" * size
    o = origin(handler=lambda orig, req: (response(200, body), KEEP))
    g = gw(gateway, o, timeout_ms=500)
    clients = []
    for i in range(2):
        c = Client(g.port, timeout=10)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.send(b"GET /slow-read/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        c._until(b"\r\n\r\n")
        clients.append(c)
    got = [0] * len(clients)
    try:
        for _ in range(12):
            if min(got) >= size:
                break
            time.sleep(0.7)
            for i, c in enumerate(clients):
                want = min(1024 * 1024, size - got[i])
                if want > 0:
                    got[i] += len(c._exact(want))
    finally:
        for c in clients:
            c.close()
    assert got == [size] * len(clients), got


def test_paused_pipelining_client_keeps_its_answers(gateway, origin):
    size = 4 * 1024 * 1024
    o = origin(handler=lambda orig, req: (response(200, b"p" * size), KEEP))
    g = gw(gateway, o, timeout_ms=800)
    with Client(g.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /p2 HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(2.5)
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == 200 and len(r1.body) == size
    assert r2.status == 200 and len(r2.body) == size


def test_interim_responses_do_not_extend_head_timeout(gateway, origin):
    # 102 every 0.3 s, never a final response: timeout_ms = 1000 is the
    # budget for the final head, whatever interim responses come.
    interim = b"HTTP/1.1 102 Processing\r\n\r\n"
    o = origin(handler=lambda orig, req: ([interim, 0.3] * 40, HANG))
    g = gw(gateway, o, timeout_ms=1000)
    t0 = time.monotonic()
    with Client(g.port, timeout=10) as c:
        c.send(b"GET /interim HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
    elapsed = time.monotonic() - t0
    assert_gateway_error(r, 504)
    assert elapsed < 5, "held %.1f s by interim responses" % elapsed


def test_upstream_stall_named_in_logs(gateway, origin, tmp):
    o = origin("hang")
    g = gw(gateway, o, tmp=tmp, timeout_ms=300)
    with Client(g.port) as c:
        r = c.request(path="/stall")
    assert_gateway_error(r, 504)
    assert wait_log(g, "upstream stalled"), g.error_log()
    line = access_lines(os.path.join(tmp, "access.log"), 1)[0]
    assert line["status"] == 504
    assert line["reason"] == "upstream_head_timeout", line


def test_upstream_body_stall_named(gateway, origin, tmp):
    # head and part of the body, then silence: the read timer fires
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    o = origin(handler=lambda orig, req: ([head, b"x" * 10], HANG))
    g = gw(gateway, o, tmp=tmp, timeout_ms=300)
    with Client(g.port) as c:
        c.send(b"GET /body-stall HTTP/1.1\r\nHost: a\r\n\r\n")
        c._until(b"\r\n\r\n")
        while c._fill():        # 10 bytes, then the gateway cuts it
            pass
        assert c.eof and len(c.buf) == 10, c.buf
    assert wait_log(g, "upstream stalled"), g.error_log()
    line = access_lines(os.path.join(tmp, "access.log"), 1)[0]
    assert line["reason"] == "upstream_read_timeout", line


def test_client_stall_on_download_named(gateway, origin, tmp):
    # the client stops reading: idle_timeout_ms governs, and the logs say
    # the client stalled, not the upstream
    size = 16 * 1024 * 1024
    o = origin(handler=lambda orig, req: (response(200, b"c" * size), KEEP))
    g = gw(gateway, o, tmp=tmp, timeout_ms=5000, idle_timeout_ms=700)
    with Client(g.port, timeout=10) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        c.send(b"GET /no-read HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_log(g, "client stalled", timeout=8), g.error_log()
    assert "upstream stalled" not in g.error_log()
    line = access_lines(os.path.join(tmp, "access.log"), 1)[0]
    assert line["reason"] == "client_write_timeout", line
    assert line["status"] == 200


def test_client_stall_on_upload_named(gateway, origin, tmp):
    o = origin()
    g = gw(gateway, o, tmp=tmp, timeout_ms=5000, idle_timeout_ms=700)
    with Client(g.port, timeout=10) as c:
        c.send(b"PUT /half HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n"
               b"\r\nabc")
        # nothing answered yet: 408, as for a slow head, then close
        r = c.read_response()
        assert_gateway_error(r, 408)
        assert c.is_closed(timeout=5)
    assert wait_log(g, "client stalled"), g.error_log()
    line = access_lines(os.path.join(tmp, "access.log"), 1)[0]
    assert line["status"] == 408
    assert line["reason"] == "client_read_timeout", line
