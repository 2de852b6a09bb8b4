"""What a client cannot do with headers: delete end-to-end headers through
Connection, carry fields in request trailers, send overlong fields or
targets, pass underscore names a backend might fold into real ones, or keep
the gateway waiting with a request that is not HTTP/1.x."""

import time

import pytest

from conftest import Client, assert_gateway_error, build_request, route, \
    service
from origin import KEEP, response


LIMITS = {"header_bytes": 16384, "headers": 50, "field_bytes": 1024,
          "uri_bytes": 2048, "header_timeout_ms": 5000}


@pytest.fixture
def gw(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")], limits=LIMITS)
    g.origin = o
    return g


def refused(g, raw, status, timeout=3.0):
    with Client(g.port, timeout=timeout) as c:
        try:
            c.send(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response()
        assert_gateway_error(r, status)
        return r


def nothing_forwarded(g, settle=0.2):
    time.sleep(settle)
    assert g.origin.complete_requests() == [], g.origin.requests


# ---- Connection tokens

def test_connection_cannot_remove_host(gw):
    with Client(gw.port) as c:
        r = c.request(path="/h", host="svc.example",
                      headers=[("Connection", "close, Host")])
    assert r.status == 200
    req = gw.origin.complete_requests("/h")[0]
    assert req.header("host") == "svc.example", req.headers


def test_connection_cannot_change_framing(gw):
    with Client(gw.port) as c:
        r = c.request("POST", "/cl", body=b"12345",
                      headers=[("Connection", "Content-Length, "
                                              "Transfer-Encoding")])
        assert r.status == 200
        assert c.request(path="/after").status == 200
    req = gw.origin.complete_requests("/cl")[0]
    assert req.body == b"12345"
    assert req.header("content-length") == "5"


def test_connection_cannot_remove_trace_header(gw):
    with Client(gw.port) as c:
        r = c.request(path="/t", headers=[("Connection", "X-Trace-ID"),
                                          ("X-Trace-ID", "keep-me")])
    assert r.status == 200
    assert gw.origin.complete_requests("/t")[0].header("x-trace-id") == \
        "keep-me"


def test_too_many_connection_tokens_refused(gw):
    tokens = ", ".join("X-T%d" % i for i in range(40))
    refused(gw, build_request(path="/many",
                              headers=[("Connection", tokens)]), 400)
    nothing_forwarded(gw)


def test_connection_tokens_still_remove_listed_headers(gw):
    with Client(gw.port) as c:
        r = c.request(path="/hop", headers=[("Connection", "X-Private"),
                                            ("X-Private", "secret"),
                                            ("X-Public", "ok")])
    assert r.status == 200
    req = gw.origin.complete_requests("/hop")[0]
    assert not req.has("x-private") and req.header("x-public") == "ok"


def test_upstream_connection_cannot_change_response_framing(gateway, origin):
    def handler(orig, req):
        return response(200, b"hello", [("Connection", "Content-Length")]), \
            KEEP
    o = origin(handler=handler)
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        r = c.request(path="/r")
        assert r.status == 200 and r.body == b"hello"
        assert r.header("content-length") == "5"
        assert c.request(path="/r2").body == b"hello"


# ---- request trailers

def chunked(trailers):
    return (b"POST /trl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n5\r\nhello\r\n0\r\n" + trailers + b"\r\n")


def test_request_trailers_dropped(gw):
    with Client(gw.port) as c:
        c.send(chunked(b"X-User-ID: admin\r\nContent-Length: 99\r\n"
                       b"Host: evil.example\r\nX-Checksum: 1\r\n"))
        r = c.read_response()
        assert r.status == 200, r
        assert c.request(path="/after").status == 200
    req = gw.origin.complete_requests("/trl")[0]
    assert req.body == b"hello"
    raw = bytes(gw.origin.conns[0].raw)
    body_part = raw[raw.index(b"\r\n\r\n") + 4:]
    assert body_part.startswith(b"5\r\nhello\r\n0\r\n\r\n"), body_part[:80]
    for bad in (b"X-User-ID", b"evil.example", b"X-Checksum"):
        assert bad not in raw


def test_too_many_trailer_fields_431(gw):
    trl = b"".join(b"X-T%d: v\r\n" % i for i in range(10000))
    refused(gw, chunked(trl), 431)


def test_trailer_bytes_over_header_limit_431(gw):
    trl = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 900) for i in range(40))
    refused(gw, chunked(trl), 431)


def test_trailer_field_over_field_limit_431(gw):
    refused(gw, chunked(b"X-Big: " + b"v" * 2000 + b"\r\n"), 431)


# ---- field and target limits

def test_field_line_over_field_bytes_431(gw):
    refused(gw, build_request(path="/f", headers=[("X-Big", "a" * 1100)]),
            431)
    nothing_forwarded(gw)


def test_field_line_within_field_bytes_passes(gw):
    with Client(gw.port) as c:
        r = c.request(path="/f", headers=[("X-Ok", "a" * 900)])
    assert r.status == 200


def test_target_over_uri_bytes_414(gw):
    refused(gw, build_request(path="/" + "u" * 2100), 414)
    nothing_forwarded(gw)


def test_long_target_refused_before_head_completes(gw):
    # 414 as soon as the target passes the limit, without the rest
    with Client(gw.port, timeout=3) as c:
        c.send(b"GET /" + b"u" * 3000)
        r = c.read_response()
        assert_gateway_error(r, 414)


# ---- underscores

def test_underscore_headers_dropped(gw):
    with Client(gw.port) as c:
        r = c.request(path="/u", headers=[("X_User_ID", "admin"),
                                          ("Transfer_Encoding", "chunked"),
                                          ("X-Fine", "yes")])
    assert r.status == 200
    req = gw.origin.complete_requests("/u")[0]
    names = [k.lower() for k, _ in req.headers]
    assert "x_user_id" not in names and "transfer_encoding" not in names
    assert req.header("x-fine") == "yes"


def test_underscore_headers_refused_when_configured(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")],
                server={"underscores_in_headers": "refuse"})
    with Client(g.port) as c:
        r = c.request(path="/u", headers=[("X_User_ID", "admin")])
    assert_gateway_error(r, 400)
    time.sleep(0.2)
    assert o.complete_requests() == []


# ---- not HTTP/1.x: an immediate 400, not a wait for the header timeout

def test_http09_request_line_refused_at_once(gw):
    r = refused(gw, b"GET /index.html\r\n", 400, timeout=2)
    assert r.status == 400


def test_tls_client_hello_on_plain_port_refused_at_once(gw):
    hello = bytes.fromhex("16030100a5010000a10303") + b"\x00" * 32
    refused(gw, hello, 400, timeout=2)


# ---- Tomcat-style path parameters on dot segments

@pytest.mark.parametrize("path", ["/a/..;/b", "/a/.;/b", "/..;x/etc",
                                  "/a/%2e%2e;/b"])
def test_dot_segment_with_parameters_refused(gw, path):
    refused(gw, build_request(path=path), 400)
    nothing_forwarded(gw)


def test_semicolon_elsewhere_passes(gw):
    with Client(gw.port) as c:
        r = c.request(path="/a;v=1/b")
    assert r.status == 200


def test_transform_cannot_write_framing_or_gateway_headers(tmp):
    """A transform that adds Content-Length, or renames a client header
    into one, is refused at load with its line: the upstream would read
    the request's framing differently from the gateway."""
    import subprocess
    from conftest import PORTICO, write_config
    for tf, name in (({"request": {"add_headers": ["Content-Length: 5"]}},
                      "Content-Length"),
                     ({"request": {"rename_headers": ["X-Len: "
                                                      "Transfer-Encoding"]}},
                      "Transfer-Encoding"),
                     ({"request": {"add_headers": ["X-User-ID: bob"]}},
                      "X-User-ID")):
        r = route("all", "up", prefix="/")
        r["transform"] = tf
        path, _ = write_config(tmp, {"up": service("127.0.0.1:9")}, [r])
        out = subprocess.run([PORTICO, "-t", "-c", path],
                             capture_output=True, text=True, timeout=10)
        assert out.returncode != 0, out
        assert "%s:" % path in out.stderr and \
            "'%s' cannot be set or renamed" % name in out.stderr, out.stderr


def test_transform_host_replaces_the_clients(gateway, origin):
    o = origin()
    r = route("all", "up", prefix="/")
    r["transform"] = {"request": {"add_headers": ["Host: backend.internal"]}}
    g = gateway({"up": service(o.addr)}, [r])
    with Client(g.port) as c:
        assert c.request(path="/h", host="a.example") \
            .status == 200
    hosts = [v for k, v in o.complete_requests()[-1].headers
             if k.lower() == "host"]
    assert hosts == ["backend.internal"], hosts
