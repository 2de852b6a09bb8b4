"""A scripted origin server for the integration tests.

It plays the upstream in cases the demo services cannot produce (a reset in
the middle of a response, a response that never comes, bad framing, chunked
responses) and records exactly what it received, so tests can assert on the
headers the gateway forwarded and on how many upstream connections it opened.

Standard library only. One thread accepts, one thread per connection; every
blocking call has a short timeout so stop() always finishes.
"""

import json
import socket
import ssl
import struct
import threading
import time

MAX_HEAD = 256 * 1024


class Headers:
    """Header look-ups over self.headers, a list of (name, value)."""

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has(self, name):
        return self.header(name) is not None


class Request(Headers):
    """One request as the origin received it."""

    def __init__(self, conn_id, head, method, target, version, headers):
        self.conn_id = conn_id
        self.head = head            # raw bytes of the head, CRLFCRLF included
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers      # list of (name, value) as received
        self.body = b""
        self.chunked = False
        self.complete = False       # body fully received

    def __repr__(self):
        return "<Request %s %s conn=%d>" % (self.method, self.target,
                                             self.conn_id)


class _Stopped(Exception):
    pass


class _Conn:
    """Buffered reading on one accepted connection, stop-aware."""

    def __init__(self, origin, sock, conn_id):
        self.origin = origin
        self.sock = sock
        self.id = conn_id
        self.buf = bytearray()
        self.raw = bytearray()

    def _fill(self):
        while True:
            if self.origin._stop.is_set():
                raise _Stopped()
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return False
            if not data:
                return False
            self.raw += data
            with self.origin._lock:
                self.origin.bytes_received += len(data)
            self.buf += data
            return True

    def _fill_or_eof(self):
        """True at EOF or error, False after reading some bytes."""
        try:
            return not self._fill()
        except _Stopped:
            raise

    def read_until(self, sep, limit):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if len(self.buf) > limit:
                return None
            if not self._fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def response(status=200, body=b"", headers=None, reason=None, version="1.1",
             content_length=True):
    """Build a raw HTTP/1.1 response with a Content-Length."""
    if isinstance(body, str):
        body = body.encode()
    reason = reason or {200: "OK", 204: "No Content", 304: "Not Modified",
                        404: "Not Found", 500: "Internal Server Error"}.get(
                            status, "Status")
    lines = ["HTTP/%s %d %s" % (version, status, reason)]
    for k, v in (headers or []):
        lines.append("%s: %s" % (k, v))
    if content_length and status not in (204, 304) and status >= 200:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked_response(chunks, status=200, headers=None, trailers=None):
    """A raw chunked response made of the given body pieces."""
    lines = ["HTTP/1.1 %d OK" % status]
    for k, v in (headers or []):
        lines.append("%s: %s" % (k, v))
    lines.append("Transfer-Encoding: chunked")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode()
    for c in chunks:
        if isinstance(c, str):
            c = c.encode()
        out += b"%x\r\n" % len(c) + c + b"\r\n"
    out += b"0\r\n"
    for k, v in (trailers or []):
        out += ("%s: %s\r\n" % (k, v)).encode()
    out += b"\r\n"
    return out


# Actions a handler may return alongside (or instead of) response bytes.
KEEP = "keep"       # send, keep the connection for the next request
CLOSE = "close"     # send, then close normally
RESET = "reset"     # send (may be empty), then abort with RST
HANG = "hang"       # send (may be empty), then never answer again
WAIT_CLOSE = "wait_close"   # send (may be empty), then wait for the peer
                            # to close; its time lands in origin.peer_closed


def ok_handler(origin, req):
    """Default: a small JSON description of the request, keep-alive."""
    body = json.dumps({
        "origin": origin.name,
        "method": req.method,
        "target": req.target,
        "conn": req.conn_id,
        "body_length": len(req.body),
    }).encode()
    if req.method == "HEAD":
        head = response(200, b"", [("Content-Type", "application/json")],
                        content_length=False)
        head = head[:-2] + b"Content-Length: %d\r\n\r\n" % len(body)
        return head, KEEP
    conn_close = (req.header("connection") or "").lower() == "close"
    return (response(200, body, [("Content-Type", "application/json"),
                                 ("X-Origin", origin.name)]),
            CLOSE if conn_close else KEEP)


def hang_handler(origin, req):
    return b"", HANG


def reset_handler(origin, req):
    return b"", RESET


def reset_mid_handler(origin, req):
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 1000\r\n\r\n")
    return head + b"x" * 100, RESET


MODES = {
    "ok": ok_handler,
    "hang": hang_handler,
    "reset": reset_handler,
    "reset_mid": reset_mid_handler,
}


class Origin:
    """A scripted upstream on 127.0.0.1:<free port>.

    handler(origin, request) -> out | (out, action); out is bytes, or a
    list of bytes to send and pauses in seconds between them; action is
    one of KEEP (default), CLOSE, RESET, HANG, WAIT_CLOSE. Use start()/stop() or the `origin`
    fixture from conftest.
    """

    def __init__(self, mode="ok", name="origin", handler=None, tls=None):
        self.name = name
        self.tls = tls              # an ssl.SSLContext: serve HTTPS
        self.tls_failures = 0       # handshakes that failed
        self.tls_resumed = 0        # handshakes that resumed a session
        self.handler = handler or MODES[mode]
        self.connections = 0
        self.bytes_received = 0
        self.requests = []
        self.conns = []             # _Conn objects, for raw bytes
        self.peer_closed = []       # monotonic times of WAIT_CLOSE ends
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = []
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port

    def start(self):
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in list(self._threads):
            t.join(timeout=3)
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in list(self._socks):
            try:
                s.close()
            except OSError:
                pass

    def complete_requests(self, path_prefix=None):
        with self._lock:
            reqs = [r for r in self.requests if r.complete]
        if path_prefix is not None:
            reqs = [r for r in reqs if r.target.startswith(path_prefix)]
        return reqs

    def wait_requests(self, n, timeout=5.0):
        """Wait until at least n complete requests arrived; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.complete_requests()
            if len(reqs) >= n:
                return reqs
            time.sleep(0.02)
        return self.complete_requests()

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                s, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(0.1)
            with self._lock:
                self.connections += 1
                conn_id = self.connections
                self._socks.append(s)
            t = threading.Thread(target=self._serve, args=(s, conn_id),
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def _handshake(self, s):
        """The TLS handshake of an accepted socket (stop-aware): the
        wrapped socket, or None when it failed."""
        ts = self.tls.wrap_socket(s, server_side=True,
                                  do_handshake_on_connect=False)
        deadline = time.monotonic() + 5
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                ts.do_handshake()
            except (socket.timeout, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                continue
            except (ssl.SSLError, OSError):
                break
            with self._lock:
                if ts.session_reused:
                    self.tls_resumed += 1
                self._socks.append(ts)
            return ts
        with self._lock:
            self.tls_failures += 1
        return None

    def _serve(self, s, conn_id):
        if self.tls is not None:
            s = self._handshake(s)
            if s is None:
                return
        c = _Conn(self, s, conn_id)
        with self._lock:
            self.conns.append(c)
        try:
            while True:
                req = self._read_request(c)
                if req is None:
                    break
                out = self.handler(self, req)
                action = KEEP
                if isinstance(out, tuple):
                    out, action = out
                if isinstance(out, list):
                    # a script: bytes to send and pauses (seconds) between
                    if not self._send_script(s, out):
                        break
                elif out and not self._send_all(s, out):
                    break
                if action == KEEP:
                    continue
                if action == RESET:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                 struct.pack("ii", 1, 0))
                if action == HANG:
                    while not self._stop.wait(0.1):
                        pass
                if action == WAIT_CLOSE:
                    while not c._fill_or_eof():
                        pass
                    with self._lock:
                        self.peer_closed.append(time.monotonic())
                break
        except _Stopped:
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def _send_script(self, s, script):
        for piece in script:
            if isinstance(piece, (int, float)):
                if self._stop.wait(piece):
                    return False
            elif not self._send_all(s, piece):
                return False
        return True

    def _send_all(self, s, data):
        """sendall that survives the short socket timeout (a slow reader
        is not an error) but gives up when the origin stops."""
        view = memoryview(data)
        while view:
            if self._stop.is_set():
                return False
            try:
                n = s.send(view)
            except socket.timeout:
                continue
            except OSError:
                return False
            view = view[n:]
        return True

    def _read_request(self, c):
        head = c.read_until(b"\r\n\r\n", MAX_HEAD)
        if head is None:
            return None
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        method = parts[0] if parts else ""
        target = parts[1] if len(parts) > 1 else ""
        version = parts[2] if len(parts) > 2 else ""
        headers = []
        for ln in lines[1:]:
            k, _, v = ln.decode("latin-1").partition(":")
            headers.append((k, v.strip()))
        req = Request(c.id, head, method, target, version, headers)
        with self._lock:
            self.requests.append(req)
        te = (req.header("transfer-encoding") or "").lower()
        if te == "chunked":
            req.chunked = True
            body = bytearray()
            while True:
                line = c.read_until(b"\r\n", 4096)
                if line is None:
                    return None
                size_s = line[:-2].split(b";")[0].strip()
                try:
                    size = int(size_s, 16)
                except ValueError:
                    return None
                if size == 0:
                    # trailers up to the empty line
                    while True:
                        t = c.read_until(b"\r\n", 4096)
                        if t is None:
                            return None
                        if t == b"\r\n":
                            break
                    break
                data = c.read_exact(size + 2)
                if data is None or data[-2:] != b"\r\n":
                    return None
                body += data[:-2]
            req.body = bytes(body)
        else:
            cl = req.header("content-length")
            if cl is not None:
                try:
                    n = int(cl)
                except ValueError:
                    return None
                data = c.read_exact(n)
                if data is None:
                    req.body = bytes(c.buf)
                    return None
                req.body = data
        req.complete = True
        return req
