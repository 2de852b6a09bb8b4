"""Request and response bodies: chunked both ways, a large body streamed
through, Expect: 100-continue, HEAD, and responses that carry no body."""

import hashlib
import json
import os
import socket
import subprocess
import time

from conftest import Client, build_request, route, service
from origin import CLOSE, KEEP, chunked_response, ok_handler, response

MIB = 1024 * 1024


def gw_for(gateway, o, limits=None, **svc):
    kw = {"retries": 0, "timeout_ms": 10000}
    kw.update(svc)
    return gateway({"up": service(o.addr, **kw)},
                   [route("all", "up", prefix="/")], limits=limits)


def test_chunked_request_forwarded(gateway, origin):
    o = origin()
    g = gw_for(gateway, o)
    pieces = [b"hello ", b"chunked ", b"x" * 5000, b" world"]
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + \
        b"0\r\n\r\n"
    with Client(g.port) as c:
        c.send(build_request("POST", "/chunky",
                             [("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["body_length"] == len(b"".join(pieces))
        # keep-alive still works after a chunked request
        assert c.request(path="/after").json()["target"] == "/after"
    req = o.complete_requests("/chunky")[0]
    assert req.body == b"".join(pieces)
    # the upstream got exactly one framing
    assert req.chunked or req.header("content-length") is not None
    assert not (req.chunked and req.header("content-length") is not None)


def test_chunked_request_sent_slowly(gateway, origin):
    # the body arrives in several TCP segments, split inside size lines
    o = origin()
    g = gw_for(gateway, o)
    parts = [b"5\r\nhel", b"lo\r\n", b"6", b"\r\n world\r", b"\n0\r\n", b"\r\n"]
    with Client(g.port) as c:
        c.send(build_request("POST", "/slow",
                             [("Transfer-Encoding", "chunked")]))
        for p in parts:
            time.sleep(0.05)
            c.send(p)
        r = c.read_response()
        assert r.status == 200, r
    assert o.complete_requests("/slow")[0].body == b"hello world"


def test_chunked_response_round_trip(gateway, origin):
    chunks = [b"first,", b"y" * 10000, b",last"]

    def handler(orig, req):
        return chunked_response(chunks, headers=[("Content-Type",
                                                  "text/plain")]), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        for _ in range(3):
            r = c.request(path="/chunked-out")
            assert r.status == 200, r
            assert r.body == b"".join(chunks)


def test_chunked_request_and_response_with_curl(gateway, origin):
    def handler(orig, req):
        return chunked_response([req.body[:10], req.body[10:]]), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    payload = b"0123456789abcdefghij" * 100
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "-H",
         "Transfer-Encoding: chunked", "--data-binary", "@-",
         "http://127.0.0.1:%d/curl" % g.port],
        input=payload, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert r.stdout == payload


def _upload_8mib(gateway, demo, tmp, path, header):
    """POST 8 MiB of random bytes through the gateway to the echo service
    with curl; returns the echo's description of what arrived."""
    d = demo("echo")
    g = gateway({"echo": service(d.addr, retries=0, timeout_ms=20000)},
                [route("all", "echo", prefix="/")],
                limits={"body_bytes": 16 * MIB})
    body = os.path.join(tmp, "big.bin")
    with open(body, "wb") as f:
        f.write(os.urandom(8 * MIB))
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "30", "-H", "Expect:", "-H", header,
         "--data-binary", "@" + body, "http://127.0.0.1:%d%s" % (g.port, path)],
        capture_output=True, timeout=40)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_8mib_body_to_echo(gateway, demo, tmp):
    j = _upload_8mib(gateway, demo, tmp, "/big",
                     "Content-Type: application/octet-stream")
    assert j["body_length"] == 8 * MIB, j
    assert j["method"] == "POST"


def test_8mib_body_arrives_intact(gateway, origin):
    def handler(orig, req):
        body = json.dumps({"sha256": hashlib.sha256(req.body).hexdigest(),
                           "length": len(req.body)})
        return response(200, body), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o, limits={"body_bytes": 16 * MIB})
    data = os.urandom(8 * MIB)
    with Client(g.port, timeout=30) as c:
        c.send(build_request("POST", "/big", body=data))
        r = c.read_response()
    assert r.status == 200, r
    assert r.json() == {"sha256": hashlib.sha256(data).hexdigest(),
                        "length": 8 * MIB}


def test_8mib_response_streams(gateway, origin):
    data = os.urandom(8 * MIB)

    def handler(orig, req):
        return response(200, data), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    with Client(g.port, timeout=30) as c:
        r = c.request(path="/bigout")
    assert r.status == 200
    assert hashlib.sha256(r.body).digest() == hashlib.sha256(data).digest()


def test_expect_100_continue(gateway, origin):
    o = origin()
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        c.send(build_request("POST", "/expect",
                             [("Expect", "100-continue"),
                              ("Content-Length", "11")]))
        r = c.read_response()
        assert r.status == 100, r
        c.send(b"hello world")
        r = c.read_response()
        assert r.status == 200, r
        assert r.json()["body_length"] == 11
        # no stray 100 afterwards: the next request gets its own answer
        assert c.request(path="/next").json()["target"] == "/next"
    assert o.complete_requests("/expect")[0].body == b"hello world"


def test_expect_100_with_curl(gateway, origin):
    o = origin()
    g = gw_for(gateway, o)
    payload = b"z" * 2048
    r = subprocess.run(
        ["curl", "-sS", "--max-time", "10", "--expect100-timeout", "5",
         "-H", "Expect: 100-continue", "--data-binary", "@-",
         "-w", "\n%{http_code}", "http://127.0.0.1:%d/e" % g.port],
        input=payload, capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    body, code = r.stdout.rsplit(b"\n", 1)
    assert code == b"200"
    assert json.loads(body)["body_length"] == 2048


def test_head_has_no_body(gateway, origin):
    o = origin()
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        r = c.request("HEAD", "/head")
        assert r.status == 200, r
        # the origin's Content-Length is passed on, but no body follows:
        # the next response on the connection must parse cleanly
        assert int(r.header("content-length")) > 0
        r2 = c.request("GET", "/after-head")
        assert r2.status == 200, r2
        assert r2.json()["target"] == "/after-head"


def _status_handler(status):
    def handler(orig, req):
        if req.target.startswith("/after"):
            return ok_handler(orig, req)
        h = [("ETag", '"abc"')] if status == 304 else []
        return response(status, b"", h), KEEP
    return handler


def test_204_no_body(gateway, origin):
    o = origin(handler=_status_handler(204))
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        r = c.request(path="/nocontent")
        assert r.status == 204, r
        assert r.header("transfer-encoding") is None
        cl = r.header("content-length")
        assert cl in (None, "0")
        r2 = c.request(path="/after")
        assert r2.status == 200 and r2.json()["target"] == "/after", r2


def test_304_no_body(gateway, origin):
    o = origin(handler=_status_handler(304))
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        r = c.request(path="/cached", headers=[("If-None-Match", '"abc"')])
        assert r.status == 304, r
        assert r.header("transfer-encoding") is None
        assert r.header("etag") == '"abc"'
        r2 = c.request(path="/after")
        assert r2.status == 200 and r2.json()["target"] == "/after", r2


def test_response_delimited_by_close(gateway, origin):
    # an HTTP/1.0-style origin answer with neither CL nor TE ends at close
    def handler(orig, req):
        return (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"
                b"until the end"), CLOSE

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        r = c.request(path="/eof")
        assert r.status == 200
        assert r.body == b"until the end"


def test_8mib_chunked_upload_to_echo(gateway, demo, tmp):
    j = _upload_8mib(gateway, demo, tmp, "/bigc", "Transfer-Encoding: chunked")
    assert j["body_length"] == 8 * MIB, j


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1])
    return 0


def _sanitized(pid):
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


def test_response_not_buffered_for_slow_client(gateway, origin):
    # 64 MiB offered by the origin to a client that reads nothing: with
    # back-pressure the worker holds a bounded amount, not the whole body
    size = 64 * MIB
    blob = b"r" * MIB

    def handler(orig, req):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size
        out = [head]
        out += [blob] * 64
        return b"".join(out), CLOSE

    o = origin(handler=handler)
    g = gw_for(gateway, o, timeout_ms=30000)
    worker = g.wait_workers(1)[0]
    base = _rss_kb(worker)
    with Client(g.port, timeout=30) as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        c.send(build_request(path="/firehose"))
        time.sleep(1.5)
        grown = _rss_kb(worker) - base
        print("worker RSS growth: %d KiB" % grown)
        # a fully buffered body would add 64 MiB; sanitizers add overhead
        bound = 48 * 1024 if _sanitized(worker) else 24 * 1024
        assert grown < bound, "worker RSS grew by %d KiB" % grown
        r = c.read_response()
    assert r.status == 200 and len(r.body) == size


def test_chunk_extensions_and_trailers(gateway, origin):
    o = origin()
    g = gw_for(gateway, o)
    body = (b"5;name=value\r\nhello\r\n"
            b"6;quoted=\"a b\"\r\n world\r\n"
            b"0\r\nX-Checksum: abc\r\n\r\n")
    with Client(g.port) as c:
        c.send(build_request("POST", "/ext",
                             [("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response()
        assert r.status == 200, r
        assert c.request(path="/after").status == 200
    assert o.complete_requests("/ext")[0].body == b"hello world"


def test_chunked_response_with_trailers(gateway, origin):
    def handler(orig, req):
        return chunked_response([b"abc", b"def"],
                                trailers=[("X-Sum", "1")]), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        r = c.request(path="/tr")
        assert r.status == 200 and r.body == b"abcdef", r
        assert c.request(path="/tr").body == b"abcdef"


def test_request_body_not_buffered_for_slow_upstream(gateway, origin):
    # an upstream that reads nothing while a client uploads 64 MiB: the
    # worker must apply back-pressure to the client, not buffer the body
    import threading
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    ls.settimeout(5)
    addr = "127.0.0.1:%d" % ls.getsockname()[1]
    g = gateway({"up": service(addr, retries=0, timeout_ms=30000)},
                [route("all", "up", prefix="/")],
                limits={"body_bytes": 128 * MIB})
    worker = g.wait_workers(1)[0]
    base = _rss_kb(worker)
    c = Client(g.port, timeout=10)
    size = 64 * MIB
    sent = [0]

    def upload():
        try:
            c.send(build_request("POST", "/upload",
                                 [("Content-Length", str(size))]))
            blob = b"u" * MIB
            for _ in range(64):
                c.sock.sendall(blob)
                sent[0] += len(blob)
        except OSError:
            pass

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    up = None
    try:
        up, _ = ls.accept()
        time.sleep(1.5)
        grown = _rss_kb(worker) - base
        bound = 48 * 1024 if _sanitized(worker) else 24 * 1024
        assert grown < bound, "worker RSS grew by %d KiB" % grown
        assert sent[0] < size, "the whole body was accepted with nobody " \
            "reading it"
    finally:
        c.close()
        if up is not None:
            up.close()
        ls.close()
        t.join(timeout=10)


def test_chunked_response_to_http10_client(gateway, origin):
    # an HTTP/1.0 client does not know chunked: the body must reach it
    # decoded, delimited by Content-Length or by the close
    def handler(orig, req):
        return chunked_response([b"one,", b"two"]), KEEP

    o = origin(handler=handler)
    g = gw_for(gateway, o)
    with Client(g.port) as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response()
        assert r.status == 200, r
        assert r.header("transfer-encoding") is None, r.headers
        assert r.body == b"one,two", r
