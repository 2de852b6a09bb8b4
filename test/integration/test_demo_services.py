"""The demo origin program (build/demo) on its own: endpoints, framing,
test query parameters, fault injection and refusal of malformed input."""

import json
import os
import select
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("PORTICO_BUILD", os.path.join(ROOT, "build"))
DEMO = os.path.join(BUILD, "demo")
SERVICES = ("users", "orders", "products", "payments", "echo")


def free_ports(n):
    """Bind port 0 n times at once so the kernel hands out distinct ports."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Demo:
    def __init__(self, args, nlisteners):
        self.proc = subprocess.Popen([DEMO] + args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        deadline = time.monotonic() + 5
        buf = b""
        while len(self.lines) < nlisteners:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("demo did not start: %r" % (buf,))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                buf += chunk
                self.lines = [ln for ln in buf.decode().splitlines()
                              if "listening on" in ln]

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode


def start(request, args, nlisteners=1):
    d = Demo(args, nlisteners)
    request.addfinalizer(d.stop)
    return d


@pytest.fixture(scope="module")
def ports(request):
    ports = dict(zip(SERVICES, free_ports(len(SERVICES))))
    args = []
    for name, port in ports.items():
        args += ["--service", name, "--listen", "127.0.0.1:%d" % port]
    start(request, args, len(SERVICES))
    return ports


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return s


class Reader:
    """Reads HTTP/1.1 responses off one socket, keeping leftover bytes."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self.fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head=False):
        status_line = self.line()
        status = int(status_line.split()[1])
        headers = {}
        while True:
            ln = self.line()
            if not ln:
                break
            k, v = ln.split(b":", 1)
            headers[k.decode().lower()] = v.decode().strip()
        chunks = 0
        body = b""
        if head or status in (204, 304) or 100 <= status < 200:
            pass
        elif headers.get("transfer-encoding") == "chunked":
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                body += self.exact(size)
                assert self.exact(2) == b"\r\n"
                chunks += 1
        else:
            body = self.exact(int(headers["content-length"]))
        return status, headers, body, chunks

    def closed(self):
        """True when the peer closes with nothing more to read."""
        if self.buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def fetch(port, target, method="GET", headers=(), body=None):
    s = connect(port)
    try:
        s.sendall(raw(target, method, headers, body, close=True))
        return Reader(s).response(head=(method == "HEAD"))
    finally:
        s.close()


def raw(target, method="GET", headers=(), body=None, close=False):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: demo"]
    lines += ["%s: %s" % h for h in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def get_json(port, target, **kw):
    status, headers, body, _ = fetch(port, target, **kw)
    assert headers["content-type"] == "application/json"
    return status, headers, json.loads(body)


def test_health_and_headers_on_every_service(ports):
    for name, port in ports.items():
        if name == "echo":
            continue
        status, headers, doc = get_json(port, "/health")
        assert status == 200
        assert doc == {"status": "ok", "service": name}
        assert headers["x-demo-service"] == name
        assert headers["x-demo-port"] == str(port)


def test_users(ports):
    status, _, doc = get_json(ports["users"], "/users/7")
    assert status == 200
    assert doc["id"] == "7"
    assert doc["name"] and "@" in doc["email"]


def test_products(ports):
    p = ports["products"]
    status, _, recs = get_json(p, "/recommendations?user=7")
    assert status == 200 and isinstance(recs, list) and len(recs) >= 1
    assert all("id" in r and "price" in r for r in recs)
    status, _, promos = get_json(p, "/promotions")
    assert status == 200 and isinstance(promos, list) and promos
    status, _, prod = get_json(p, "/products/p-2")
    assert status == 200 and prod["id"] == "p-2" and prod["name"]
    status, _, prod2 = get_json(p, "/v2/products/p-2")
    assert status == 200 and prod2["id"] == "p-2" and prod2["version"] == 2


def test_orders(ports):
    o = ports["orders"]
    status, _, doc = get_json(o, "/orders/1")
    assert status == 200 and doc["id"] == "1"
    assert doc["status"] and doc["items"]
    assert "internal_cost" in doc and "debug" in doc
    assert doc["customer"] is None
    # the identity the gateway forwards shows in the order
    status, _, doc = get_json(o, "/orders/2", headers=[("X-User-ID",
                                                         "alice")])
    assert status == 200 and doc["customer"] == "alice"
    status, _, doc = get_json(o, "/orders", method="POST", body=b"x" * 123)
    assert status == 201 and doc["body_length"] == 123
    status, _, doc = get_json(o, "/cart/9")
    assert status == 200 and doc["id"] == "9" and doc["items"]


def test_payments(ports):
    status, _, doc = get_json(ports["payments"], "/payments/5")
    assert status == 200 and doc["id"] == "5" and doc["status"]


def test_unknown_path_and_method(ports):
    status, _, doc = get_json(ports["users"], "/nope")
    assert status == 404 and doc["error"] == "not found"
    status, _, doc = get_json(ports["users"], "/orders/1")
    assert status == 404
    status, headers, _ = get_json(ports["users"], "/users/1", method="DELETE")
    assert status == 405 and "GET" in headers["allow"]


def test_head_has_no_body(ports):
    s = connect(ports["users"])
    try:
        s.sendall(raw("/users/1", method="HEAD") + raw("/health"))
        r = Reader(s)
        status, headers, body, _ = r.response(head=True)
        assert status == 200 and int(headers["content-length"]) > 0
        assert body == b""
        # the next response starts right after the head
        assert r.response()[0] == 200
    finally:
        s.close()


def test_keep_alive_two_requests_one_socket(ports):
    s = connect(ports["users"])
    try:
        r = Reader(s)
        s.sendall(raw("/users/1"))
        st1, h1, b1, _ = r.response()
        s.sendall(raw("/users/2"))
        st2, h2, b2, _ = r.response()
        assert (st1, st2) == (200, 200)
        assert "connection" not in h1 and "connection" not in h2
        assert json.loads(b1)["id"] == "1" and json.loads(b2)["id"] == "2"
        s.sendall(raw("/health", close=True))
        st3, h3, _, _ = r.response()
        assert st3 == 200 and h3["connection"] == "close"
        assert r.closed()
    finally:
        s.close()


def test_pipelined_requests_answered_in_order(ports):
    s = connect(ports["users"])
    try:
        s.sendall(b"".join(raw("/users/%d" % i) for i in range(10)))
        r = Reader(s)
        for i in range(10):
            st, _, body, _ = r.response()
            assert st == 200 and json.loads(body)["id"] == str(i)
    finally:
        s.close()


def test_http10_closes_by_default(ports):
    s = connect(ports["users"])
    try:
        s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        r = Reader(s)
        st, h, _, _ = r.response()
        assert st == 200 and h["connection"] == "close"
        assert r.closed()
    finally:
        s.close()


def test_status_bytes_chunked_sleep(ports):
    u = ports["users"]
    status, _, doc = get_json(u, "/users/3?status=503")
    assert status == 503 and doc["id"] == "3"
    status, _, _ = get_json(u, "/anything?status=202")
    assert status == 202
    status, headers, body, _ = fetch(u, "/health?bytes=100000")
    assert status == 200 and body == b"x" * 100000
    assert headers["content-length"] == "100000"
    status, headers, body, chunks = fetch(u, "/health?chunked=1")
    assert headers["transfer-encoding"] == "chunked" and chunks > 1
    assert json.loads(body)["status"] == "ok"
    status, headers, body, chunks = fetch(u, "/h?bytes=50000&chunked=1")
    assert body == b"x" * 50000 and chunks > 1
    t0 = time.monotonic()
    status, _, _, _ = fetch(u, "/health?sleep_ms=300")
    assert status == 200 and time.monotonic() - t0 >= 0.29
    status, _, doc = get_json(u, "/health?status=abc")
    assert status == 400


def test_echo_describes_request(ports):
    e = ports["echo"]
    status, headers, doc = get_json(
        e, "/any/path?q=1&x=%20", method="PUT",
        headers=[("X-Multi", "a"), ("x-multi", "b"), ("X-Quote", 'say "hi"')],
        body=b"hello")
    assert status == 200 and headers["x-demo-service"] == "echo"
    assert doc["method"] == "PUT"
    assert doc["path"] == "/any/path?q=1&x=%20"
    assert doc["port"] == e
    assert doc["body_length"] == 5
    assert doc["headers"]["host"] == "demo"
    assert doc["headers"]["x-multi"] == "a, b"
    assert doc["headers"]["x-quote"] == 'say "hi"'
    assert doc["headers"]["content-length"] == "5"


def test_echo_chunked_request_body(ports):
    s = connect(ports["echo"])
    try:
        s.sendall(b"POST /up HTTP/1.1\r\nHost: demo\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n"
                  b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
        r = Reader(s)
        st, _, body, _ = r.response()
        doc = json.loads(body)
        assert st == 200 and doc["body_length"] == 11
        # the connection is still usable afterwards
        s.sendall(raw("/next"))
        assert json.loads(r.response()[2])["path"] == "/next"
    finally:
        s.close()


def test_expect_continue(ports):
    s = connect(ports["echo"])
    try:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: demo\r\nContent-Length: 3\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        r = Reader(s)
        assert r.response()[0] == 100
        s.sendall(b"abc")
        st, _, body, _ = r.response()
        assert st == 200 and json.loads(body)["body_length"] == 3
    finally:
        s.close()


def test_large_streamed_request_body(ports):
    s = connect(ports["orders"])
    try:
        n = 8 * 1024 * 1024
        s.sendall(b"POST /orders HTTP/1.1\r\nHost: d\r\nContent-Length: %d\r\n"
                  b"\r\n" % n)
        block = b"y" * 65536
        for _ in range(n // len(block)):
            s.sendall(block)
        st, _, body, _ = Reader(s).response()
        assert st == 201 and json.loads(body)["body_length"] == n
    finally:
        s.close()


BAD_INPUTS = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: d\r\n\r\n",
    b"GET / HTTP/1.1\nHost: d\n\n",
    b"GET / HTTP/1.1\r\nHost : d\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: d\r\n folded\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: d\x00\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
]


@pytest.mark.parametrize("data", BAD_INPUTS)
def test_bad_input_gets_400_and_close(ports, data):
    s = connect(ports["users"])
    try:
        s.sendall(data)
        r = Reader(s)
        st, h, body, _ = r.response()
        assert st == 400 and h["connection"] == "close"
        assert json.loads(body)["status"] == 400
        assert r.closed()
    finally:
        s.close()


def test_oversized_head_gets_431(ports):
    s = connect(ports["users"])
    try:
        s.sendall(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        st, h, _, _ = Reader(s).response()
        assert st == 431 and h["connection"] == "close"
    finally:
        s.close()


def test_server_survives_bad_input(ports):
    # after all the refusals above, every service still answers
    for name, port in ports.items():
        assert fetch(port, "/health")[0] == 200


def test_fail_rate_one_gives_500(request):
    port, = free_ports(1)
    start(request, ["--fail-rate", "1", "users=127.0.0.1:%d" % port])
    for _ in range(3):
        status, _, doc = get_json(port, "/users/1")
        assert status == 500 and doc == {"error": "injected failure"}


def test_fail_rate_half_is_mixed(request):
    port, = free_ports(1)
    start(request, ["--fail-rate", "0.5", "--seed", "42",
                    "users=127.0.0.1:%d" % port])
    s = connect(port)
    try:
        s.sendall(b"".join(raw("/users/1") for _ in range(100)))
        r = Reader(s)
        codes = [r.response()[0] for _ in range(100)]
    finally:
        s.close()
    assert set(codes) == {200, 500}
    assert 20 <= codes.count(500) <= 80


def test_settings_change_latency_and_failures(request):
    """POST /_demo/settings makes a running service slow or broken (what
    the aggregation demo and tests use); it is itself never delayed or
    failed, and refuses bad values."""
    port, = free_ports(1)
    start(request, ["products=127.0.0.1:%d" % port])
    st, _, doc = get_json(port, "/_demo/settings")
    assert st == 200 and doc == {"service": "products", "latency_ms": 0,
                                 "fail_rate": 0}
    st, _, doc = get_json(port, "/_demo/settings?latency_ms=200&fail_rate=1",
                          method="POST")
    assert st == 200 and doc["latency_ms"] == 200 and doc["fail_rate"] == 1
    t = time.monotonic()
    st, _, doc = get_json(port, "/promotions")
    assert st == 500 and doc == {"error": "injected failure"}
    assert time.monotonic() - t >= 0.19
    for bad in ("latency_ms=x", "fail_rate=1.5", "fail_rate="):
        assert fetch(port, "/_demo/settings?" + bad, method="POST")[0] == 400
    assert fetch(port, "/_demo/settings", method="DELETE")[0] == 405
    st, _, doc = get_json(port, "/_demo/settings?latency_ms=0&fail_rate=0",
                          method="POST")
    assert doc["latency_ms"] == 0 and doc["fail_rate"] == 0
    assert get_json(port, "/promotions")[0] == 200


def test_latency_is_concurrent(request):
    port, = free_ports(1)
    start(request, ["--latency-ms", "300", "products=127.0.0.1:%d" % port])
    results = []

    def one():
        t = time.monotonic()
        st = fetch(port, "/promotions")[0]
        results.append((st, time.monotonic() - t))

    t0 = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    total = time.monotonic() - t0
    assert len(results) == 20
    assert all(st == 200 and dt >= 0.29 for st, dt in results)
    # timers, not sleeps: twenty delayed requests overlap
    assert total < 2.0


def test_usage_and_bad_arguments():
    out = subprocess.run([DEMO, "--help"], capture_output=True, timeout=5)
    assert out.returncode == 0 and b"--latency-ms" in out.stdout
    for args in (["nosuch=127.0.0.1:1"], ["users=nowhere"], [],
                 ["--fail-rate", "2", "users=127.0.0.1:0"]):
        out = subprocess.run([DEMO] + args, capture_output=True, timeout=5)
        assert out.returncode != 0


def test_sigterm_and_sigint_exit_zero(request):
    for sig in (signal.SIGTERM, signal.SIGINT):
        port, = free_ports(1)
        d = Demo(["echo=127.0.0.1:%d" % port], 1)
        request.addfinalizer(d.stop)
        s = connect(port)       # an open idle connection must not block exit
        os.kill(d.proc.pid, sig)
        assert d.proc.wait(5) == 0
        s.close()
