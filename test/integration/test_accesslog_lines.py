"""Access-log lines for requests the gateway refused while parsing, and the
referer and user agent in the combined format."""

import json
import os
import re
import time

import pytest

from conftest import Client, build_request, route, service


def read_lines(path, n, timeout=5.0):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            lines = []
        if len(lines) >= n:
            break
        time.sleep(0.05)
    return lines


def gw(gateway, origin, tmp, fmt="json"):
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")],
                limits={"header_bytes": 2048, "headers": 10,
                        "body_bytes": 100, "header_timeout_ms": 400,
                        "uri_bytes": 1024},
                server={"access_log": {"path": log, "format": fmt}})
    return g, log


CASES = {
    400: build_request(path="/bad", headers=[("Content-Length", "1x")]),
    413: build_request("POST", "/big", body=b"b" * 200),
    414: build_request(path="/" + "u" * 1500),
    431: build_request(path="/many",
                       headers=[("X-%d" % i, "v") for i in range(20)]),
    505: b"GET /v HTTP/2.0\r\nHost: a\r\n\r\n",
}


@pytest.mark.parametrize("status", sorted(CASES))
def test_refused_request_logged(gateway, origin, tmp, status):
    g, log = gw(gateway, origin, tmp)
    with Client(g.port) as c:
        c.send(CASES[status])
        r = c.read_response()
        assert r.status == status, r
    lines = read_lines(log, 1)
    assert len(lines) == 1, lines
    e = json.loads(lines[0])
    assert e["status"] == status, e
    assert e["client_ip"] == "127.0.0.1"
    assert e["trace_id"] == r.header("x-trace-id") or \
        e["trace_id"] == r.json()["trace_id"]
    if status in (400, 413, 431, 505):
        assert e["method"] in ("GET", "POST")


def test_header_timeout_logged_408(gateway, origin, tmp):
    g, log = gw(gateway, origin, tmp)
    with Client(g.port) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        r = c.read_response()
        assert r.status == 408
    lines = read_lines(log, 1)
    assert len(lines) == 1, lines
    e = json.loads(lines[0])
    assert e["status"] == 408 and e["method"] == "GET", e


def test_combined_has_referer_and_user_agent(gateway, origin, tmp):
    g, log = gw(gateway, origin, tmp, fmt="combined")
    with Client(g.port) as c:
        r = c.request(path="/ref", headers=[
            ("Referer", "https://example.com/from?q=1"),
            ("User-Agent", 'curl/8.0 "quoted" \\ back')])
        assert r.status == 200
        r = c.request(path="/none")
    lines = read_lines(log, 2)
    assert len(lines) == 2, lines
    trace = r.header("x-trace-id")
    assert re.search(
        r' "https://example.com/from\?q=1" "curl/8.0 \\"quoted\\" '
        r'\\\\ back" "[0-9a-f]{32}"$', lines[0]), lines[0]
    assert lines[1].endswith('"-" "-" "%s"' % trace), lines[1]
