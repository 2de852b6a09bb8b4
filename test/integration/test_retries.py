"""Retry rules: never resend a request whose body was sent, and never more
than one free resend (a stale pooled connection) in a request's life."""

import threading
import time

from conftest import Client, assert_gateway_error, route, service
from origin import RESET, ok_handler


def test_put_with_body_not_retried_after_reset(gateway, origin):
    # the upstream reads the whole PUT, then resets: a retry would send the
    # head again without its body; the client gets 502 at once instead
    o1 = origin("reset")
    o2 = origin("reset")
    g = gateway({"up": service(o1.addr, o2.addr, retries=2,
                               timeout_ms=5000)},
                [route("all", "up", prefix="/")])
    t0 = time.monotonic()
    with Client(g.port, timeout=10) as c:
        r = c.request("PUT", "/put", body=b"hello")
    assert_gateway_error(r, 502)
    assert time.monotonic() - t0 < 4
    time.sleep(0.3)
    reqs = o1.requests + o2.requests
    assert len(reqs) == 1, reqs
    assert reqs[0].body == b"hello"


def test_chunked_body_not_retried(gateway, origin):
    o1 = origin("reset")
    o2 = origin("reset")
    g = gateway({"up": service(o1.addr, o2.addr, retries=2,
                               timeout_ms=5000)},
                [route("all", "up", prefix="/")])
    with Client(g.port, timeout=10) as c:
        c.send(b"PUT /ck HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
               b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        r = c.read_response()
    assert_gateway_error(r, 502)
    time.sleep(0.3)
    assert len(o1.requests + o2.requests) == 1


def test_one_free_resend_per_request(gateway, origin):
    # Both instances have several pooled connections, then start resetting.
    # One GET with retries = 1 may reach them at most 3 times: the first
    # try, one free resend for a stale pooled connection, one retry.
    state = {"reset": False}

    def handler(orig, req):
        if state["reset"] and req.target.startswith("/victim"):
            return b"", RESET
        return ok_handler(orig, req)

    o1 = origin(handler=handler)
    o2 = origin(handler=handler)
    g = gateway({"up": service(o1.addr, o2.addr, retries=1, keepalive=16,
                               timeout_ms=5000)},
                [route("all", "up", prefix="/")])

    def warm(n):
        with Client(g.port) as c:
            for i in range(4):
                assert c.request(path="/warm/%d/%d" % (n, i)).status == 200

    # concurrent clients leave several idle connections in each pool
    for _ in range(3):
        ts = [threading.Thread(target=warm, args=(n,)) for n in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(10)
    assert o1.connections >= 2 and o2.connections >= 2
    state["reset"] = True
    with Client(g.port, timeout=10) as c:
        r = c.request(path="/victim")
    assert_gateway_error(r, 502)
    time.sleep(0.3)
    hits = [q for q in o1.requests + o2.requests
            if q.target.startswith("/victim")]
    assert 1 <= len(hits) <= 3, "one GET reached the origins %d times" % \
        len(hits)
