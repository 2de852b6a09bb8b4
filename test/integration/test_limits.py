"""server.limits statuses (431, 413, 408) and the refusal of every request a
second parser could read differently: 400, connection closed, and nothing
forwarded to the upstream."""

import select
import time

import pytest

from conftest import Client, assert_gateway_error, build_request, route, \
    service

LIMITS = {"header_bytes": 1024, "headers": 10, "body_bytes": 1000,
          "header_timeout_ms": 500}


@pytest.fixture
def gw(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")], limits=LIMITS)
    g.origin = o
    return g


def refused(g, raw, status, expect_close=True):
    """Send raw, expect a gateway error `status`; returns the response."""
    with Client(g.port) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert_gateway_error(r, status)
        if expect_close:
            assert c.is_closed(), "connection left open after %d" % status
    return r


def nothing_forwarded(g, settle=0.2):
    time.sleep(settle)
    assert g.origin.complete_requests() == [], g.origin.requests
    assert g.origin.bytes_received == 0, \
        "origin received %d bytes" % g.origin.bytes_received


def test_within_limits_passes(gw):
    with Client(gw.port) as c:
        r = c.request("POST", "/ok", headers=[("X-A", "a" * 500)] +
                      [("X-%d" % i, "v") for i in range(7)],
                      body=b"b" * 1000)
        assert r.status == 200, r
        assert r.json()["body_length"] == 1000


def test_head_too_long_431(gw):
    refused(gw, build_request(headers=[("X-Big", "a" * 2000)]), 431,
            expect_close=False)
    nothing_forwarded(gw)


def test_request_line_too_long_431(gw):
    r = refused(gw, build_request(path="/" + "a" * 2000), 431,
                expect_close=False)
    assert r.status == 431
    nothing_forwarded(gw)


def test_too_many_headers_431(gw):
    hdrs = [("X-H%d" % i, "v") for i in range(12)]
    refused(gw, build_request(headers=hdrs), 431, expect_close=False)
    nothing_forwarded(gw)


def test_body_over_limit_413(gw):
    # only the head is sent: the gateway must answer from Content-Length
    raw = build_request("POST", "/up", headers=[("Content-Length", "5000")])
    refused(gw, raw, 413, expect_close=False)
    nothing_forwarded(gw)


def test_chunked_body_over_limit_413(gw):
    body = b"".join(b"200\r\n" + b"c" * 512 + b"\r\n" for _ in range(4))
    body += b"0\r\n\r\n"
    raw = build_request("POST", "/up",
                        headers=[("Transfer-Encoding", "chunked")]) + body
    with Client(gw.port) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
    # the head may already be on its way upstream when the limit is hit,
    # but the client must get 413 and the origin never a whole request
    assert_gateway_error(r, 413)
    time.sleep(0.2)
    assert [q for q in gw.origin.complete_requests()
            if len(q.body) > 1000] == []


def test_header_timeout_408(gw):
    with Client(gw.port) as c:
        t0 = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: test.local\r\n")
        r = c.read_response()
        elapsed = time.monotonic() - t0
        assert_gateway_error(r, 408)
        assert 0.3 <= elapsed < 4.0, elapsed
        assert c.is_closed()
    nothing_forwarded(gw)


def test_header_timeout_trickle_408(gw):
    # one byte every 100 ms: the whole head must arrive in time, not each
    # byte; stop sending as soon as the gateway answers
    head = build_request(path="/trickle")
    with Client(gw.port) as c:
        t0 = time.monotonic()
        for b in head[:-2]:
            try:
                c.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([c.sock], [], [], 0.1)[0]:
                break
            if time.monotonic() - t0 > 4:
                break
        assert_gateway_error(c.read_response(), 408)
    nothing_forwarded(gw)


SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                 b"\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "two_differing_cl": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                        b"Content-Length: 6\r\n\r\nhello!",
    "cl_list_differing": b"POST / HTTP/1.1\r\nHost: a\r\n"
                         b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl_not_a_number": b"POST / HTTP/1.1\r\nHost: a\r\n"
                       b"Content-Length: 5x\r\n\r\nhello",
    "cl_negative": b"POST / HTTP/1.1\r\nHost: a\r\n"
                   b"Content-Length: -5\r\n\r\nhello",
    "cl_plus": b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n"
               b"hello",
    "te_gzip": b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
               b"\r\n",
    "te_gzip_chunked": b"POST / HTTP/1.1\r\nHost: a\r\n"
                       b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_chunked_chunked": b"POST / HTTP/1.1\r\nHost: a\r\n"
                          b"Transfer-Encoding: chunked, chunked\r\n\r\n"
                          b"0\r\n\r\n",
    "te_with_space_name": b"POST / HTTP/1.1\r\nHost: a\r\n"
                          b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te_on_http10": b"POST / HTTP/1.0\r\nHost: a\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "space_in_header_name": b"GET / HTTP/1.1\r\nHost: a\r\n"
                            b"X A: b\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
    "bare_cr_in_value": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
    "bare_cr_line_end": b"GET / HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n",
    "bare_lf": b"GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n",
    "nul_in_value": b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n",
    "nul_in_target": b"GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n",
    "missing_host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "two_hosts_same": b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    "two_hosts_differ": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "absolute_form_other_authority": b"GET http://evil.example/ HTTP/1.1"
                                     b"\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_refused(gw, name):
    refused(gw, SMUGGLING[name], 400)
    nothing_forwarded(gw)


INVALID_CHUNKS = {
    "non_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "empty_size": b"\r\nhello\r\n0\r\n\r\n",
    "negative": b"-5\r\nhello\r\n0\r\n\r\n",
    "overflow": b"1" + b"0" * 20 + b"\r\nhello\r\n0\r\n\r\n",
    "size_0x": b"0x5\r\nhello\r\n0\r\n\r\n",
    "no_crlf_after_data": b"5\r\nhelloXX0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(INVALID_CHUNKS))
def test_invalid_chunk_refused(gw, name):
    raw = build_request("POST", "/chunk",
                        headers=[("Transfer-Encoding", "chunked")],
                        host="a") + INVALID_CHUNKS[name]
    refused(gw, raw, 400)
    # the head may have been streamed upstream before the bad chunk was
    # seen, but no complete request may reach the origin
    time.sleep(0.2)
    assert gw.origin.complete_requests() == []


def test_absolute_form_same_authority_accepted(gw):
    with Client(gw.port) as c:
        c.send(b"GET http://a/abs?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        r = c.read_response()
    assert r.status == 200, r
    assert r.json()["target"] == "/abs?x=1"


def test_connection_usable_until_refusal(gw):
    # a good request followed by a smuggling attempt on the same connection:
    # the first is answered, the second refused, and nothing of it forwarded
    with Client(gw.port) as c:
        assert c.request(path="/first").status == 200
        c.send(SMUGGLING["cl_and_te"])
        assert_gateway_error(c.read_response(), 400)
        assert c.is_closed()
    time.sleep(0.2)
    assert [q.target for q in gw.origin.complete_requests()] == ["/first"]


def test_expect_continue_over_limit_413_without_100(gw):
    raw = build_request("POST", "/up", headers=[("Expect", "100-continue"),
                                                ("Content-Length", "5000")])
    with Client(gw.port) as c:
        c.send(raw)
        r = c.read_response()
        assert r.status != 100, "100 Continue for a body that is refused"
        assert_gateway_error(r, 413)
    nothing_forwarded(gw)


def test_unsupported_version_refused(gw):
    with Client(gw.port) as c:
        c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status in (400, 505), r
    nothing_forwarded(gw)


def test_keepalive_pause_longer_than_header_timeout(gw):
    # header_timeout_ms bounds a request head once it has started; an idle
    # keep-alive connection is governed by idle_timeout_ms instead
    with Client(gw.port) as c:
        assert c.request(path="/one").status == 200
        time.sleep(1.0)
        r = c.request(path="/two")
        assert r.status == 200, r
