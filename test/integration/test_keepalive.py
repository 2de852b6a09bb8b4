"""Keep-alive on both sides, pipelining, Connection: close, HTTP/1.0."""

import time

from conftest import Client, build_request, http, route, service
from origin import CLOSE, ok_handler, response


def one_route_gateway(gateway, origin, workers=1, **svc):
    o = origin(name="up")
    kw = {"retries": 0}
    kw.update(svc)
    g = gateway({"up": service(o.addr, **kw)},
                [route("all", "up", prefix="/")], workers=workers)
    return g, o


def test_client_keepalive_many_requests(gateway, origin):
    g, o = one_route_gateway(gateway, origin)
    with Client(g.port) as c:
        for i in range(50):
            r = c.request(path="/k/%d" % i)
            assert r.status == 200, r
            assert r.json()["target"] == "/k/%d" % i
            assert (r.header("connection") or "").lower() != "close"
    assert len(o.complete_requests()) == 50


def test_upstream_connection_reused(gateway, origin):
    g, o = one_route_gateway(gateway, origin, keepalive=8)
    # sequential requests through the single worker, each on a fresh
    # client connection: all must ride one pooled upstream connection
    for i in range(10):
        with Client(g.port) as c:
            r = c.request(path="/reuse/%d" % i)
            assert r.status == 200, r
    reqs = o.complete_requests("/reuse/")
    assert len(reqs) == 10
    assert o.connections == 1, "upstream connections: %d" % o.connections
    # and on one client connection too
    with Client(g.port) as c:
        for i in range(10):
            assert c.request(path="/reuse2/%d" % i).status == 200
    assert o.connections == 1, "upstream connections: %d" % o.connections


def test_pipelining_in_order(gateway, origin):
    g, o = one_route_gateway(gateway, origin)
    with Client(g.port) as c:
        c.send(b"".join(build_request(path="/p/%d" % i) for i in (1, 2, 3)))
        for i in (1, 2, 3):
            r = c.read_response()
            assert r.status == 200, r
            assert r.json()["target"] == "/p/%d" % i
        # the connection is still usable afterwards
        assert c.request(path="/p/4").json()["target"] == "/p/4"


def test_pipelining_with_bodies_and_errors(gateway, origin):
    g, o = one_route_gateway(gateway, origin)
    with Client(g.port) as c:
        c.send(build_request("POST", "/p/a", body=b"hello") +
               build_request("GET", "/p/b") +
               build_request("POST", "/p/c", body=b"x" * 3000))
        r1, r2, r3 = c.read_response(), c.read_response(), c.read_response()
    assert (r1.status, r2.status, r3.status) == (200, 200, 200)
    assert r1.json()["target"] == "/p/a" and r1.json()["body_length"] == 5
    assert r2.json()["target"] == "/p/b"
    assert r3.json()["target"] == "/p/c" and r3.json()["body_length"] == 3000


def test_connection_close_honoured(gateway, origin):
    g, o = one_route_gateway(gateway, origin)
    with Client(g.port) as c:
        r = c.request(path="/c", headers=[("Connection", "close")])
        assert r.status == 200
        assert (r.header("connection") or "").lower() == "close", r
        assert c.is_closed(), "gateway kept the connection open"


def test_http10_without_keepalive_closes(gateway, origin):
    g, o = one_route_gateway(gateway, origin)
    with Client(g.port) as c:
        r = c.request(path="/ten", version="HTTP/1.0")
        assert r.status == 200, r
        assert r.json()["target"] == "/ten"
        assert c.is_closed(), "HTTP/1.0 connection left open"



def test_idle_client_connection_closed(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")],
                limits={"idle_timeout_ms": 500})
    with Client(g.port) as c:
        assert c.request(path="/idle").status == 200
        t0 = time.monotonic()
        assert c.is_closed(timeout=5), "idle connection not closed"
        assert time.monotonic() - t0 >= 0.3


def test_upstream_closing_idle_connection(gateway, origin):
    # the origin closes each connection after answering, without saying
    # so: the pooled connection goes stale and must not be used again
    def handler(orig, req):
        return ok_handler(orig, req)[0], CLOSE

    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    for i in range(5):
        r = http(g.port, "GET", "/stale/%d" % i)
        assert r.status == 200, (i, r)
        time.sleep(0.2)
    for i in range(3):
        r = http(g.port, "POST", "/stale-post/%d" % i, body=b"x")
        assert r.status == 200, (i, r)
        time.sleep(0.2)
    assert o.connections == 8


def test_upstream_connection_close_not_reused(gateway, origin):
    def handler(orig, req):
        return response(200, b"bye", [("Connection", "close")]), CLOSE

    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        for i in range(4):
            r = c.request(path="/cc/%d" % i)
            assert r.status == 200 and r.body == b"bye", r
    assert o.connections == 4


def test_pipelining_slow_first_stays_in_order(gateway, origin):
    def handler(orig, req):
        if req.target == "/slow":
            time.sleep(0.5)
        return ok_handler(orig, req)

    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        c.send(build_request(path="/slow") + build_request(path="/fast") +
               build_request(path="/nomatch-is-fine-too"))
        got = [c.read_response().json()["target"] for _ in range(3)]
    assert got == ["/slow", "/fast", "/nomatch-is-fine-too"]


def test_request_arriving_during_previous_exchange_answered(gateway, origin):
    # The second request reaches the socket while the first waits for the
    # upstream: its read event comes then, and only then (edge-triggered),
    # so it must be read once the first response is done.
    def handler(orig, req):
        if req.target == "/slow":
            time.sleep(0.5)
        return ok_handler(orig, req)

    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        c.send(build_request(path="/slow"))
        time.sleep(0.2)
        c.send(build_request(path="/next"))
        got = [c.read_response().json()["target"] for _ in range(2)]
    assert got == ["/slow", "/next"]


def test_slow_upstream_outlasts_client_idle_timeout(gateway, demo):
    # Waiting for the upstream is governed by timeout_ms, not by the
    # client's idle timeout: the client is not stalled, the upstream is.
    users = demo("users")
    g = gateway({"users": service(users.addr, retries=0, timeout_ms=4000)},
                [route("all", "users", prefix="/")],
                limits={"idle_timeout_ms": 500})
    r = http(g.port, path="/users/1?sleep_ms=1500", timeout=10)
    assert r.status == 200, r
