"""Tracing: the X-Trace-ID rules and W3C Trace Context.

The trace id is created or kept and goes upstream, back to the client, into
every gateway error body and the error-log lines about the request. Upstream
always gets the gateway's own traceparent: a valid incoming one keeps its
trace id and flags with a new span for this hop; an absent or invalid one
is replaced by a new trace (the X-Trace-ID when that is 32 hex digits).
tracestate passes unchanged only with a valid traceparent."""

import re
import socket

import pytest

from conftest import (assert_gateway_error, Client, http, route, service,
                      wait_log)
from origin import HANG

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parts(tp):
    """(trace id, parent id, flags) of a well-formed version 00 value."""
    m = TP_RE.match(tp or "")
    assert m, "not a traceparent: %r" % tp
    assert m.group(1) != "0" * 32 and m.group(2) != "0" * 16, tp
    return m.groups()


def one_request(g, o, headers, path="/t"):
    """Send one request; return (response, the request the origin got)."""
    before = len(o.complete_requests())
    with Client(g.port) as c:
        r = c.request(path=path, headers=headers)
    reqs = o.wait_requests(before + 1)
    assert len(reqs) == before + 1, reqs
    return r, reqs[-1]


@pytest.fixture
def gw(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    g.origin = o
    return g


def test_trace_id_created_returned_and_sent_upstream(gw):
    r, up = one_request(gw, gw.origin, [])
    tid = r.header("x-trace-id")
    assert re.match(r"^[0-9a-f]{32}$", tid), tid
    assert up.header_all("x-trace-id") == [tid]
    # One trace: the new traceparent carries the same id, sampled.
    assert len(up.header_all("traceparent")) == 1
    t, p, flags = parts(up.header("traceparent"))
    assert t == tid and flags == "01"
    assert not up.has("tracestate")
    # Every request gets its own id.
    r2, _ = one_request(gw, gw.origin, [])
    assert r2.header("x-trace-id") != tid


def test_client_trace_id_preserved(gw):
    r, up = one_request(gw, gw.origin, [("X-Trace-ID", "order-42_x")])
    assert r.header("x-trace-id") == "order-42_x"
    assert up.header_all("x-trace-id") == ["order-42_x"]
    # Not a W3C id: the traceparent starts a trace of its own.
    t, _, flags = parts(up.header("traceparent"))
    assert flags == "01" and t != "order-42_x"


def test_32_hex_trace_id_shared_with_traceparent(gw):
    upper = TID.upper()
    r, up = one_request(gw, gw.origin, [("X-Trace-ID", upper)])
    assert r.header("x-trace-id") == upper
    assert parts(up.header("traceparent"))[0] == TID


@pytest.mark.parametrize("bad", ["x" * 33, "has space", "a.b", "ünï"])
def test_unusable_trace_id_replaced(gw, bad):
    r, up = one_request(gw, gw.origin, [("X-Trace-ID", bad)])
    tid = r.header("x-trace-id")
    assert re.match(r"^[0-9a-f]{32}$", tid), tid
    assert up.header_all("x-trace-id") == [tid]
    assert parts(up.header("traceparent"))[0] == tid


def test_valid_traceparent_propagated_with_new_span(gw):
    incoming = "00-%s-%s-00" % (TID, PID)
    state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    r, up = one_request(gw, gw.origin, [("traceparent", incoming),
                                        ("tracestate", state)])
    # No X-Trace-ID from the client: the traceparent's id is the trace id.
    assert r.header("x-trace-id") == TID
    assert up.header("x-trace-id") == TID
    sent = up.header_all("traceparent")
    assert len(sent) == 1, sent
    t, p, flags = parts(sent[0])
    assert t == TID and flags == "00"       # not sampled stays not sampled
    assert p != PID                         # this hop's span
    assert up.header_all("tracestate") == [state]
    # The client gets X-Trace-ID, not a traceparent.
    assert not r.has("traceparent")
    # The same incoming context again: another span.
    _, up2 = one_request(gw, gw.origin, [("traceparent", incoming)])
    t2, p2, _ = parts(up2.header("traceparent"))
    assert t2 == TID and p2 not in (p, PID)
    assert not up2.has("tracestate")


def test_client_trace_id_wins_over_traceparent(gw):
    incoming = "00-%s-%s-01" % (TID, PID)
    r, up = one_request(gw, gw.origin, [("X-Trace-ID", "req-7"),
                                        ("traceparent", incoming),
                                        ("tracestate", "a=1")])
    assert r.header("x-trace-id") == "req-7"
    t, p, flags = parts(up.header("traceparent"))
    assert (t, flags) == (TID, "01") and p != PID
    assert up.header_all("tracestate") == ["a=1"]


def test_multiple_tracestate_lines_pass_unchanged(gw):
    incoming = "00-%s-%s-01" % (TID, PID)
    _, up = one_request(gw, gw.origin, [("traceparent", incoming),
                                        ("tracestate", "a=1,b=2"),
                                        ("TraceState", "c=3")])
    assert up.header_all("tracestate") == ["a=1,b=2", "c=3"]


INVALID = [
    "00-%s-%s-0" % (TID, PID),                       # short
    "00-%s-%s-010" % (TID, PID),                     # long for 00
    "00-%s-%s-01" % (TID.upper(), PID),              # uppercase
    "00-%s-%s-01" % (TID, PID.upper()),
    "00-%s-%s-01" % ("0" * 32, PID),                 # zero trace id
    "00-%s-%s-01" % (TID, "0" * 16),                 # zero parent id
    "ff-%s-%s-01" % (TID, PID),                      # version ff
    "00-%s-%s-zz" % (TID, PID),
    "00_%s_%s_01" % (TID, PID),
    "garbage",
]


@pytest.mark.parametrize("bad", INVALID)
def test_invalid_traceparent_replaced(gw, bad):
    r, up = one_request(gw, gw.origin, [("traceparent", bad),
                                        ("tracestate", "vendor=secret")])
    tid = r.header("x-trace-id")
    sent = up.header_all("traceparent")
    assert len(sent) == 1 and sent[0] != bad, sent
    t, p, flags = parts(sent[0])
    # A new trace, one id with X-Trace-ID; its tracestate is dropped.
    assert t == tid and t != TID and flags == "01"
    assert not up.has("tracestate")


def test_two_traceparents_are_invalid(gw):
    a = "00-%s-%s-01" % (TID, PID)
    b = "00-%s-%s-01" % ("1" * 32, PID)
    r, up = one_request(gw, gw.origin, [("traceparent", a),
                                        ("Traceparent", b),
                                        ("tracestate", "x=1")])
    t, _, _ = parts(up.header("traceparent"))
    assert len(up.header_all("traceparent")) == 1
    assert t not in (TID, "1" * 32) and t == r.header("x-trace-id")
    assert not up.has("tracestate")


def test_tracestate_without_traceparent_dropped(gw):
    _, up = one_request(gw, gw.origin, [("tracestate", "a=1")])
    assert not up.has("tracestate")


def test_later_version_read_as_00(gw):
    incoming = "cc-%s-%s-09-future-fields" % (TID, PID)
    r, up = one_request(gw, gw.origin, [("traceparent", incoming),
                                        ("tracestate", "a=1")])
    t, p, flags = parts(up.header("traceparent"))
    # Sent as version 00, with only the sampled flag of the later version.
    assert (t, flags) == (TID, "01") and p != PID
    assert r.header("x-trace-id") == TID
    assert up.header_all("tracestate") == ["a=1"]


def test_each_hop_adds_its_span(gateway, origin):
    """client -> gateway A -> gateway B -> origin: one trace id, the flags
    kept, and a span of each hop (so the origin's parent is B's span,
    neither the client's nor one seen twice)."""
    o = origin()
    b = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    a = gateway({"b": service("127.0.0.1:%d" % b.port, retries=0)},
                [route("all", "b", prefix="/")])
    incoming = "00-%s-%s-03" % (TID, PID)
    parents = set()
    for i in range(3):
        with Client(a.port) as c:
            r = c.request(path="/hop/%d" % i,
                          headers=[("traceparent", incoming),
                                   ("tracestate", "k=v")])
        assert r.status == 200
        up = o.wait_requests(i + 1)[i]
        t, p, flags = parts(up.header("traceparent"))
        assert (t, flags) == (TID, "03")
        assert up.header("x-trace-id") == TID
        assert up.header_all("tracestate") == ["k=v"]
        parents.add(p)
    assert len(parents) == 3 and PID not in parents


# ---- the trace id in error bodies and error-log lines ----------------



def test_error_bodies_carry_the_trace_id(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("api", "up", prefix="/api")])
    r = http(g.port, path="/nowhere", headers=[("X-Trace-ID", "mine")])
    assert assert_gateway_error(r, 404)["trace_id"] == "mine"
    assert r.header("x-trace-id") == "mine"
    r = http(g.port, path="/nowhere",
             headers=[("traceparent", "00-%s-%s-01" % (TID, PID))])
    assert assert_gateway_error(r, 404)["trace_id"] == TID
    # Refused while parsing: a fresh id, the same in body and header.
    r = http(g.port, path="/api", headers=[("Content-Length", "1x")])
    j = assert_gateway_error(r, 400)
    assert re.match(r"^[0-9a-f]{32}$", j["trace_id"])
    assert j["trace_id"] == r.header("x-trace-id")


def test_upstream_failures_logged_with_trace_id(gateway, origin):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()                        # nothing listens there now
    o = origin("hang")
    g = gateway({"dead": service(dead_addr, retries=0),
                 "slow": service(o.addr, retries=0, timeout_ms=300)},
                [route("dead", "dead", prefix="/dead"),
                 route("slow", "slow", prefix="/slow")])
    r = http(g.port, path="/dead", headers=[("X-Trace-ID", "dead-1")])
    assert assert_gateway_error(r, 502)["trace_id"] == "dead-1"
    assert wait_log(g, "trace dead-1"), g.error_log()
    line = [l for l in g.error_log().splitlines() if "trace dead-1" in l]
    assert dead_addr in line[0] and "(dead)" in line[0], line
    r = http(g.port, path="/slow",
             headers=[("traceparent", "00-%s-%s-01" % (TID, PID))])
    assert assert_gateway_error(r, 504)["trace_id"] == TID
    assert wait_log(g, "(upstream stalled); trace " + TID), g.error_log()


def test_client_stall_logged_with_trace_id(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=5000)},
                [route("all", "up", prefix="/")],
                limits={"idle_timeout_ms": 500})
    with Client(g.port, timeout=10) as c:
        c.send(b"PUT /half HTTP/1.1\r\nHost: a\r\nX-Trace-ID: slow-9\r\n"
               b"Content-Length: 10\r\n\r\nabc")
        r = c.read_response()
    assert assert_gateway_error(r, 408)["trace_id"] == "slow-9"
    assert wait_log(g, "(client stalled); trace slow-9"), g.error_log()


def test_upstream_read_stall_logged_with_trace_id(gateway, origin):
    # A response cut midway: the error-log line names the trace too.
    o = origin(handler=lambda orig, req: (
        [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", b"x" * 10],
        HANG))
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=300)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        c.send(b"GET /cut HTTP/1.1\r\nHost: a\r\nX-Trace-ID: cut-3\r\n\r\n")
        c._until(b"\r\n\r\n")
        while c._fill():
            pass
    assert wait_log(g, "(upstream stalled); trace cut-3"), g.error_log()
