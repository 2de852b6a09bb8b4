"""Aggregate routes end to end: N calls sent in parallel through the
upstream client, each part spliced into one JSON object, fallbacks (JSON
text, the last good body from the store, null), the degraded list and
X-Gateway-Degraded, per-call timeouts and the aggregate's deadline, 502
when every call fails, templates and their encoding, forwarded headers,
bounds on parts and on the merged body, and a client that leaves taking
every call with it.

Timings are checked only with wide bounds (the machine is shared): the
proof of parallelism is an origin that answers only once all four calls
have arrived."""

import hashlib
import json
import os
import socket
import struct
import threading
import time

import pytest

from conftest import (GWCTL, Client, access_lines, assert_gateway_error,
                      http, route, service)
from origin import KEEP, WAIT_CLOSE, chunked_response, response

API_KEY = "pk_agg_0123456789"
ODD_KEY = "pk_odd_0123456789"


def keys_section(tmp):
    path = os.path.join(tmp, "keys.conf")
    entries = [(API_KEY, "alice"), (ODD_KEY, "../a&b c")]
    with open(path, "w") as f:
        f.write("keys = (\n" + ",\n".join(
            '{ sha256 = "%s"; consumer = "%s"; }' %
            (hashlib.sha256(k.encode()).hexdigest(), c)
            for k, c in entries) + "\n);\n")
    return {"api_keys": {"file": path, "header": "X-API-Key"}}


def call(name, svc, path, **kw):
    d = {"name": name, "service": svc, "path": path}
    d.update(kw)
    return d


def agg_route(calls, name="home", path="/api/home", timeout_ms=200,
              auth="api_key", **agg):
    a = {"calls": calls, "timeout_ms": timeout_ms}
    a.update(agg)
    r = {"name": name, "match": {"path": path}, "aggregate": a}
    if auth:
        r["auth"] = auth
    return r


def home_calls():
    return [
        call("profile", "users", "/users/{consumer}"),
        call("recommendations", "products",
             "/recommendations?user={consumer}", fallback="[]"),
        call("promotions", "products", "/promotions", fallback="cache"),
        call("cart", "orders", "/cart/{consumer}", fallback="null"),
    ]


def home_gateway(gateway, tmp, demos, timeout_ms=200, **kw):
    svcs = {name: service(d.addr, retries=0) for name, d in demos.items()}
    return gateway(svcs, [agg_route(home_calls(), timeout_ms=timeout_ms)],
                   extra={"auth": keys_section(tmp)}, **kw)


def get(g, path="/api/home", key=API_KEY, headers=()):
    h = list(headers)
    if key:
        h.append(("X-API-Key", key))
    with Client(g.port) as c:
        t = time.monotonic()
        r = c.request(path=path, headers=h)
        r.elapsed = time.monotonic() - t
        return r


def fail(d):
    """Every answer of demo service D from now on is a 500."""
    r = http(d.port, "POST", "/_control/fail?mode=500")
    assert r.status == 200, r


def stats_json(g):
    import subprocess
    out = subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock"),
                          "--json", "stats"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def stats(g):
    return stats_json(g)["total"]


def services(g):
    return stats_json(g)["services"]


@pytest.fixture
def demos(demo):
    """users, products and orders, each in its own process (so one can
    be made slow or broken on its own)."""
    return {"users": demo("users"), "products": demo("products"),
            "orders": demo("orders")}


# ------------------------------------------------------------ the answer

def test_access_log_line_of_an_aggregate(gateway, tmp, demos):
    """An aggregate route has no service of its own: its access-log line
    says so (service and upstream null) and the worker lives on. The
    demo's /api/home with the access log on killed the worker here."""
    log = os.path.join(tmp, "access.log")
    g = home_gateway(gateway, tmp, demos,
                     server={"access_log": {"path": log}})
    pids = sorted(g.worker_pids())
    for _ in range(3):
        assert get(g).status == 200
    lines = access_lines(log, 3)
    assert len(lines) == 3, lines
    for ln in lines:
        assert ln["route"] == "home" and ln["status"] == 200, ln
        assert ln["service"] is None and ln["upstream"] is None, ln
        assert ln["consumer"] == "alice", ln
    assert sorted(g.worker_pids()) == pids
    assert "killed by signal" not in g.error_log()
    import subprocess
    out = subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock"),
                          "--json", "stats"], capture_output=True,
                         text=True, timeout=10)
    home = [r for r in json.loads(out.stdout)["routes"]
            if r["name"] == "home"]
    assert len(home) == 1 and home[0]["service"] is None, home
    assert home[0]["requests"] == 3, home
    assert json.loads(out.stdout)["total"]["aggregate"]["requests"] == 3


def test_merged_object_parts_as_they_came(gateway, tmp, demos):
    g = home_gateway(gateway, tmp, demos)
    r = get(g)
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    assert r.header("x-gateway-degraded") is None
    j = r.json()
    assert list(j) == ["profile", "recommendations", "promotions", "cart",
                       "degraded"]
    assert j["degraded"] == []
    assert j["profile"]["id"] == "alice"
    assert j["cart"]["id"] == "alice"
    assert len(j["recommendations"]) == 3
    # spliced byte for byte: the demo's own text, not re-serialised
    prof = http(demos["users"].port, path="/users/alice").body
    assert b'"profile":' + prof + b',' in r.body
    promo = http(demos["products"].port, path="/promotions").body
    assert b'"promotions":' + promo + b',' in r.body
    assert int(r.header("content-length")) == len(r.body)
    t = stats(g)["aggregate"]
    assert t["requests"] == 1 and t["degraded"] == 0


def test_calls_run_in_parallel(gateway, origin, tmp):
    """Each call is held by the origin until all four have arrived (at
    most 3 s): only parallel calls are all answered."""
    barrier = threading.Barrier(4, timeout=3)

    def handler(o, req):
        try:
            barrier.wait()
            ok = True
        except threading.BrokenBarrierError:
            ok = False
        body = json.dumps({"path": req.target, "together": ok})
        return response(200, body, [("Content-Type", "application/json")]), \
            KEEP

    o = origin(handler=handler)
    calls = [call("c%d" % i, "up", "/part/%d" % i) for i in range(4)]
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=5000)},
                [agg_route(calls, timeout_ms=4000, auth=None)])
    r = get(g, key=None)
    assert r.status == 200, r
    j = r.json()
    assert j["degraded"] == []
    assert all(j["c%d" % i]["together"] for i in range(4)), j


def test_four_80ms_calls_answer_together(gateway, tmp, demo):
    """Four calls of 80 ms each: about 80 ms, not 320 (bounds wide for a
    shared machine: under 3 x 80 ms at the median of five)."""
    ds = {"users": demo("users", latency_ms=80),
          "products": demo("products", latency_ms=80),
          "orders": demo("orders", latency_ms=80)}
    g = home_gateway(gateway, tmp, ds, timeout_ms=2000)
    assert get(g).status == 200   # connections warm
    times = []
    for _ in range(5):
        r = get(g)
        assert r.status == 200 and r.json()["degraded"] == [], r
        times.append(r.elapsed)
    times.sort()
    assert times[0] >= 0.079, times
    assert times[2] < 0.240, times


def test_slow_call_degrades_at_its_timeout(gateway, tmp, demo):
    """products at 500 ms with timeout_ms 200: its two parts take their
    fallbacks after about 200 ms (not 500), listed in call order."""
    ds = {"users": demo("users"), "products": demo("products",
                                                     latency_ms=500),
          "orders": demo("orders")}
    g = home_gateway(gateway, tmp, ds, timeout_ms=200)
    r = get(g)
    assert r.status == 200, r
    j = r.json()
    assert j["recommendations"] == [] and j["promotions"] is None
    assert j["degraded"] == ["recommendations", "promotions"]
    assert r.header("x-gateway-degraded") == "recommendations, promotions"
    assert j["profile"]["id"] == "alice" and j["cart"]["id"] == "alice"
    assert 0.19 <= r.elapsed < 0.45, r.elapsed
    t = stats(g)["aggregate"]
    assert t["degraded"] == 1 and t["parts_degraded"] == 2
    # in the products row: the two calls stopped at their timeout, as
    # the 504 a proxied request would get
    svc = {v["name"]: v for v in services(g)}
    assert svc["products"]["requests"] == 2, svc["products"]
    assert svc["products"]["status"]["5xx"] == 2


def test_call_timeout_of_its_own(gateway, tmp, demo):
    """A call's own timeout_ms, shorter than the aggregate's."""
    ds = {"users": demo("users"), "products": demo("products"),
          "orders": demo("orders", latency_ms=300)}
    calls = home_calls()
    calls[3]["timeout_ms"] = 100
    svcs = {n: service(d.addr, retries=0) for n, d in ds.items()}
    g = gateway(svcs, [agg_route(calls, timeout_ms=2000)],
                extra={"auth": keys_section(tmp)})
    r = get(g)
    assert r.json()["degraded"] == ["cart"], r
    assert r.elapsed < 0.29, r.elapsed


def test_cache_fallback_after_service_breaks(gateway, tmp, demos):
    g = home_gateway(gateway, tmp, demos)
    good = get(g).json()["promotions"]
    assert good
    fail(demos["products"])
    r = get(g)
    j = r.json()
    assert j["promotions"] == good          # the last good body
    assert j["recommendations"] == []       # its JSON fallback
    assert j["degraded"] == ["recommendations", "promotions"]
    # the same from another worker's view: it is in the shared store,
    # and a restarted gateway still has it
    g.stop()
    g.start()
    assert get(g).json()["promotions"] == good


def test_cache_fallback_is_per_consumer(gateway, tmp, demos):
    calls = [call("cart", "orders", "/cart/{consumer}", fallback="cache"),
             call("profile", "users", "/users/{consumer}")]
    svcs = {n: service(d.addr, retries=0) for n, d in demos.items()}
    g = gateway(svcs, [agg_route(calls)], extra={"auth": keys_section(tmp)})
    alice = get(g).json()["cart"]
    assert alice["id"] == "alice"
    fail(demos["orders"])
    assert get(g).json()["cart"] == alice
    # another consumer never had a good cart: null, never alice's
    j = get(g, key=ODD_KEY).json()
    assert j["cart"] is None and j["degraded"] == ["cart"]


def test_non_json_non_2xx_and_encoded_parts_degrade(gateway, origin, tmp):
    def handler(o, req):
        p = req.target
        if p == "/text":
            return response(200, "not json", [("Content-Type",
                                                "text/plain")]), KEEP
        if p == "/bad":
            return response(200, '{"a":', [("Content-Type",
                                            "application/json")]), KEEP
        if p == "/503":
            return response(503, '{"error":"down"}'), KEEP
        if p == "/gzip":
            return response(200, '{"a":1}', [("Content-Encoding",
                                              "gzip")]), KEEP
        if p == "/chunked":
            return chunked_response(['{"a":', '[1,', '2]}']), KEEP
        return response(200, ' {"ok":true} \n'), KEEP

    o = origin(handler=handler)
    calls = [call(n, "up", "/" + n, fallback='{"fb":"%s"}' % n)
             for n in ("text", "bad", "503", "gzip", "chunked", "fine")]
    g = gateway({"up": service(o.addr, retries=0)},
                [agg_route(calls, auth=None)])
    r = get(g, key=None)
    assert r.status == 200
    j = r.json()
    for n in ("text", "bad", "503", "gzip"):
        assert j[n] == {"fb": n}, j
    assert j["chunked"] == {"a": [1, 2]}
    assert b'"fine":{"ok":true},' in r.body    # whitespace trimmed only
    assert j["degraded"] == ["text", "bad", "503", "gzip"]
    # the non-2xx answer was read to its end: its connection is reused
    # (by whichever call of the next page takes it from the pool: the six
    # calls come back, and go out again, in no fixed order)
    first = o.complete_requests()
    conn503 = [q.conn_id for q in first if q.target == "/503"]
    assert get(g, key=None).status == 200
    later = o.complete_requests()[len(first):]
    assert len(conn503) == 1 and len(later) == 6, (conn503, later)
    assert conn503[0] in {q.conn_id for q in later}, (conn503, later)


def test_all_calls_fail_502(gateway, tmp):
    dead = "127.0.0.1:%d" % _closed_port()
    calls = [call("a", "down", "/a"), call("b", "down", "/b")]
    g = gateway({"down": service(dead, retries=0)},
                [agg_route(calls, auth=None),
                 agg_route([call("a", "down", "/a"),
                            call("b", "down", "/b", fallback="[]")],
                           name="soft", path="/soft", auth=None)])
    r = get(g, key=None)
    j = assert_gateway_error(r, 502)
    assert j["error"] == "all_calls_failed"
    assert j["calls"] == {"a": "upstream_connect_failed",
                          "b": "upstream_connect_failed"}
    assert r.header("x-trace-id") == j["trace_id"]
    # one fallback to give: an answer, degraded
    r = get(g, path="/soft", key=None)
    assert r.status == 200
    assert r.json() == {"a": None, "b": [], "degraded": ["a", "b"]}
    assert stats(g)["aggregate"]["failed"] == 1


def test_service_rows_count_the_calls_of_aggregates(gateway, tmp, demos):
    """gwctl stats: a service's row sums the routes that name it and the
    calls aggregate routes made to it (status, upstream latency); a
    failed call counts as the 502 a proxied request would get. The
    aggregate route itself has no service."""
    fail(demos["orders"])
    svcs = {name: service(d.addr, retries=0) for name, d in demos.items()}
    svcs["down"] = service("127.0.0.1:%d" % _closed_port(), retries=0)
    calls = home_calls() + [call("gone", "down", "/x", fallback="null")]
    g = gateway(svcs, [agg_route(calls),
                       {"name": "users", "match": {"prefix": "/users"},
                        "service": "users"}],
                extra={"auth": keys_section(tmp)})
    for _ in range(3):
        assert get(g).status == 200
    assert http(g.port, path="/users/alice").status == 200
    j = stats_json(g)
    svc = {s["name"]: s for s in j["services"]}
    # users: 3 profile calls and 1 proxied request
    assert svc["users"]["requests"] == 4, svc["users"]
    assert svc["users"]["status"]["2xx"] == 4
    assert svc["users"]["p50_ms"] is not None
    # products: recommendations and promotions, 3 pages each
    assert svc["products"]["requests"] == 6, svc["products"]
    assert svc["products"]["status"]["2xx"] == 6
    # orders answered 500 to every cart call
    assert svc["orders"]["requests"] == 3, svc["orders"]
    assert svc["orders"]["status"]["5xx"] == 3
    assert svc["orders"]["error_rate"] == pytest.approx(1.0)
    # a call that found no instance: the 502 a proxied request gets
    assert svc["down"]["requests"] == 3, svc["down"]
    assert svc["down"]["status"]["5xx"] == 3
    assert svc["down"]["upstream_errors"]["connect"] == 3
    routes = {r["name"]: r for r in j["routes"]}
    assert routes["home"]["service"] is None
    assert routes["home"]["requests"] == 3
    assert routes["users"]["requests"] == 1
    # no route row for the calls
    assert set(routes) == {"home", "users", None}


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ------------------------------------------------- templates and headers

def test_templates_and_forwarded_headers(gateway, origin, tmp):
    o = origin()
    calls = [call("t", "up", "/u/{consumer}/{1}?q={query.q}&h="
                  "{header.X-H}&none={query.none}",
                  forward_headers=["Accept-Language", "Cookie"])]
    r_ = {"name": "t", "match": {"regex": "^/api/t/([^/]+)$"},
          "auth": "api_key",
          "transform": {"request": {
              "add_headers": ["X-From: {consumer} via {1}"],
              "remove_headers": ["Cookie"]}},
          "aggregate": {"calls": calls, "timeout_ms": 2000}}
    g = gateway({"up": service(o.addr, retries=0)}, [r_],
                extra={"auth": keys_section(tmp)})
    r = get(g, path="/api/t/x%3fy?q=1%262+3", key=ODD_KEY,
            headers=[("X-H", "v w"), ("Accept-Language", "fr"),
                     ("Cookie", "secret=1"), ("X-Trace-ID", "trace-abc"),
                     ("X-Other", "no")])
    assert r.status == 200, r
    req = o.wait_requests(1)[0]
    # each value one segment / one parameter, whatever it holds
    assert req.target == ("/u/..%2Fa%26b%20c/x%3Fy?q=1%262%203&h=v%20w"
                          "&none="), req.target
    assert req.method == "GET"
    assert req.header("host") == "up"
    assert req.header("accept-language") == "fr"
    assert req.header("cookie") is None          # removed by the route
    assert req.header("x-other") is None         # not named
    assert req.header("x-user-id") == "../a&b c"  # identity always goes
    assert req.header("x-trace-id") == "trace-abc"
    assert req.header("x-from") == "../a&b c via x?y"
    assert req.header("accept-encoding") == "identity"
    assert req.header("x-forwarded-for") == "127.0.0.1"
    assert r.json()["t"]["target"] == req.target


def test_part_and_body_bounds(gateway, origin, tmp):
    big = json.dumps({"x": "y" * 3000})

    def handler(o, req):
        if req.target == "/big":
            return response(200, big), KEEP
        if req.target == "/bigchunked":
            return chunked_response([big[:1000], big[1000:]]), KEEP
        return response(200, '{"small":1}'), KEEP

    o = origin(handler=handler)
    calls = [call("big", "up", "/big", fallback='"too big"'),
             call("bigc", "up", "/bigchunked"),
             call("small", "up", "/small")]
    g = gateway({"up": service(o.addr, retries=0)},
                [agg_route(calls, auth=None, max_part_bytes=1024),
                 agg_route([call("a", "up", "/big"), call("b", "up", "/big",
                                                         fallback="[]")],
                           name="merged", path="/merged", auth=None,
                           max_body_bytes=5000)])
    j = get(g, key=None).json()
    assert j == {"big": "too big", "bigc": None, "small": {"small": 1},
                 "degraded": ["big", "bigc"]}
    # the merged body's bound: the second part takes its fallback
    r = get(g, path="/merged", key=None)
    j = r.json()
    assert json.loads(big) == j["a"] and j["b"] == [] and \
        j["degraded"] == ["b"]
    assert len(r.body) <= 5000


def test_head_request(gateway, tmp, demos):
    g = home_gateway(gateway, tmp, demos)
    with Client(g.port) as c:
        r = c.request("HEAD", "/api/home", headers=[("X-API-Key", API_KEY)])
        assert r.status == 200 and r.body == b""
        assert int(r.header("content-length")) > 100
        # the connection goes on
        assert c.request(path="/api/home",
                         headers=[("X-API-Key", API_KEY)]).status == 200


# ------------------------------------------------------ a client leaving

def test_client_leaving_cancels_every_call(gateway, origin, tmp):
    """The origin never answers; the client resets mid-aggregate: every
    call's upstream connection is closed at once, long before the
    aggregate's deadline, and the gateway serves on."""
    def handler(o, req):
        if req.target.startswith("/hang"):
            return b"", WAIT_CLOSE
        return response(200, "{}"), KEEP

    o = origin(handler=handler)
    calls = [call("c%d" % i, "up", "/hang/%d" % i) for i in range(3)]
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=20000)},
                [agg_route(calls, auth=None, timeout_ms=20000),
                 agg_route([call("ok", "up", "/ok")], name="ok", path="/ok",
                           auth=None)])
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    s.sendall(b"GET /api/home HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(o.wait_requests(3, timeout=5)) == 3
    t0 = time.monotonic()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    deadline = time.monotonic() + 5
    while len(o.peer_closed) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(o.peer_closed) == 3, o.peer_closed
    assert max(o.peer_closed) - t0 < 5
    assert get(g, path="/ok", key=None).json() == {"ok": {},
                                                   "degraded": []}
    t = stats(g)
    assert t["upstream_conns"] <= 1, t
    # the three calls the client's leaving cut short: 499, as a proxied
    # request's would be (and the /ok call's 200)
    up = {v["name"]: v for v in services(g)}["up"]
    assert up["status"]["4xx"] == 3 and up["status"]["2xx"] == 1, up
