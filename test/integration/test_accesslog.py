"""Access log: one JSON (or combined) line per request, query strings never
logged, a client that leaves early logged as 499, lines reach the file
within the flush interval."""

import json
import os
import socket
import struct
import time

from conftest import http, route, service
from origin import HANG, ok_handler


def read_lines(path, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                lines = [l for l in f.read().splitlines() if l]
        except OSError:
            lines = []
        if len(lines) >= n:
            return lines
        time.sleep(0.05)
    return lines


def test_json_lines(gateway, origin, tmp):
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [route("api", "up", prefix="/api")],
                server={"access_log": {"path": log, "format": "json"}})
    assert http(g.port, path="/api/a/../b?token=s3cret&x=1").status == 200
    assert http(g.port, path="/nowhere").status == 404
    lines = read_lines(log, 2)
    assert len(lines) == 2, lines
    first, second = (json.loads(l) for l in lines)
    assert first["method"] == "GET"
    assert first["path"] == "/api/b"
    assert first["status"] == 200
    assert first["route"] == "api"
    assert first["upstream"] == o.addr
    assert first["remote"] == "127.0.0.1"
    assert len(first["trace_id"]) == 32
    assert first["bytes"] > 0
    assert second["status"] == 404 and second["route"] is None
    with open(log) as f:
        assert "s3cret" not in f.read()


def test_combined_and_client_gone(gateway, origin, tmp):
    def handler(orig, req):
        if req.target == "/slow":
            return b"", HANG
        return ok_handler(orig, req)

    o = origin(handler=handler)
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=3000)},
                [route("api", "up", prefix="/")],
                server={"access_log": {"path": log, "format": "combined"}})
    assert http(g.port, method="HEAD", path="/x?k=v").status == 200
    # A request whose client resets its connection before the answer.
    s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
    s.sendall(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    lines = read_lines(log, 2)
    assert lines[0].startswith('127.0.0.1 - - [')
    assert '"HEAD /x HTTP/1.1" 200 ' in lines[0]
    assert "k=v" not in lines[0]
    assert len(lines) == 2, lines
    assert '"GET /slow HTTP/1.1" 499 ' in lines[1]
