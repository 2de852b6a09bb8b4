"""Every access-log field, for a proxied request, a cache miss and hit, a
401, a 429, a 502, a 504 and a 400 parse error: every JSON line has every
field, in one order, null where it does not apply. Query strings are
logged with credentials redacted (the listed names, a configured extra,
percent-encoded names, repeats, parameters without a value), and the
combined format ends with the trace id."""

import datetime
import json
import os
import re
import socket
import time

import pytest

from conftest import build_request, Client, read_lines, route, service
from jwtlib import claims, hs256
from test_auth import SECRET, auth_section

FIELDS = ["time", "trace_id", "client_ip", "method", "path", "status",
          "bytes_in", "bytes_out", "route", "service", "upstream",
          "upstream_ms", "duration_ms", "cache", "rate_limit", "consumer",
          "user_agent", "referer", "reason"]
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")




def entries(path, n):
    """The first n JSON lines, each checked to hold every field in order,
    keyed by trace id."""
    lines = read_lines(path, n)
    assert len(lines) >= n, lines
    out = {}
    for l in lines:
        e = json.loads(l)
        assert list(e) == FIELDS, l
        assert TIME_RE.match(e["time"]), e["time"]
        t = datetime.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%S.%fZ")
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        assert abs((now - t).total_seconds()) < 600, (e["time"], now)
        assert isinstance(e["duration_ms"], float) and \
            e["duration_ms"] >= 0, e
        assert e["client_ip"] == "127.0.0.1"
        out[e["trace_id"]] = e
    return out


def exchange(port, raw):
    """Send RAW on a new connection: (response, bytes sent, bytes got)."""
    with Client(port) as c:
        c.send(raw)
        r = c.read_response()
    return r, len(raw), len(r.raw_head) + len(r.body)


@pytest.fixture
def gw(gateway, origin, tmp):
    o = origin()
    hang = origin("hang")
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_addr = "127.0.0.1:%d" % dead.getsockname()[1]
    dead.close()
    log = os.path.join(tmp, "access.log")
    routes = [
        dict(route("orders", "up", prefix="/orders"), auth="jwt"),
        dict(route("limited", "up", prefix="/limited"),
             rate_limit={"by": "ip", "tier": "one"}),
        route("dead", "dead", prefix="/dead"),
        route("slow", "slow", prefix="/slow"),
        dict(route("api", "up", prefix="/api"),
             rate_limit={"by": "ip", "tier": "many"}),
        dict(route("cached", "up", prefix="/cached"), cache={"ttl_s": 60}),
    ]
    g = gateway({"up": service(o.addr, retries=0),
                 "dead": service(dead_addr, retries=0),
                 "slow": service(hang.addr, retries=0, timeout_ms=300)},
                routes,
                server={"access_log": {"path": log, "format": "json"}},
                extra={"auth": auth_section(tmp, api=False),
                       "tiers": {"one": {"rate": 1, "per_s": 3600,
                                         "burst": 1},
                                 "many": {"rate": 1000, "per_s": 1,
                                          "burst": 1000}}})
    g.log = log
    g.origin = o
    g.dead_addr = dead_addr
    g.hang = hang
    return g


def test_proxied_request_fields(gw):
    raw = build_request("POST", "/api/items?token=t0ps3cret&q=blue",
                        headers=[("X-Trace-ID", "prox-1"),
                                 ("User-Agent", "tester/1.0"),
                                 ("Referer", "http://example.com/p")],
                        body=b"hello")
    r, sent, got = exchange(gw.port, raw)
    assert r.status == 200
    e = entries(gw.log, 1)["prox-1"]
    assert e["method"] == "POST"
    assert e["path"] == "/api/items?token=REDACTED&q=blue"
    assert e["status"] == 200
    assert e["bytes_in"] == sent            # head + body
    assert e["bytes_out"] == got
    assert e["route"] == "api" and e["service"] == "up"
    assert e["upstream"] == gw.origin.addr
    assert isinstance(e["upstream_ms"], float)
    assert 0 <= e["upstream_ms"] <= e["duration_ms"]
    assert e["rate_limit"] == "allowed"
    assert e["cache"] is None               # no cache on the route
    assert e["consumer"] is None
    assert e["user_agent"] == "tester/1.0"
    assert e["referer"] == "http://example.com/p"
    assert e["reason"] is None
    with open(gw.log) as f:
        assert "t0ps3cret" not in f.read()


def test_cache_miss_and_hit_fields(gw):
    for tid in ("miss-1", "hit-1"):
        r, _, got = exchange(gw.port, build_request(
            "GET", "/cached/item", headers=[("X-Trace-ID", tid)]))
        assert r.status == 200
    e = entries(gw.log, 2)
    miss, hit = e["miss-1"], e["hit-1"]
    assert miss["cache"] == "miss" and hit["cache"] == "hit", (miss, hit)
    assert miss["upstream"] == gw.origin.addr
    assert hit["upstream"] is None and hit["upstream_ms"] is None, hit
    assert hit["route"] == "cached" and hit["status"] == 200
    assert hit["bytes_out"] == got
    assert len(gw.origin.complete_requests("/cached")) == 1


def test_chunked_request_bytes_in(gw):
    body = b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n"
    raw = build_request("POST", "/api/c", headers=[
        ("X-Trace-ID", "chunk-1"), ("Transfer-Encoding", "chunked")],
        body=body)
    r, sent, got = exchange(gw.port, raw)
    assert r.status == 200
    e = entries(gw.log, 1)["chunk-1"]
    assert e["bytes_in"] == sent and e["bytes_out"] == got


def test_auth_fields(gw):
    # 401: which auth check failed; the upstream never involved.
    raw = build_request("GET", "/orders/1", headers=[("X-Trace-ID", "a-1")])
    r, sent, got = exchange(gw.port, raw)
    assert r.status == 401
    expired = hs256(SECRET, claims("bob", ttl=-100), kid="hs1")
    r2, sent2, got2 = exchange(gw.port, build_request(
        "GET", "/orders/2", headers=[("X-Trace-ID", "a-2"),
                                     ("Authorization", "Bearer " + expired)]))
    assert r2.status == 401
    good = hs256(SECRET, claims("alice"), kid="hs1")
    r3, _, _ = exchange(gw.port, build_request(
        "GET", "/orders/3?id_token=" + good, headers=[
            ("X-Trace-ID", "a-3"), ("Authorization", "Bearer " + good)]))
    assert r3.status == 200
    es = entries(gw.log, 3)
    e = es["a-1"]
    assert (e["status"], e["reason"]) == (401, "missing_credentials")
    assert e["route"] == "orders" and e["service"] == "up"
    assert e["upstream"] is None and e["upstream_ms"] is None
    assert e["rate_limit"] is None and e["consumer"] is None
    assert e["bytes_in"] == sent and e["bytes_out"] == got
    assert e["user_agent"] is None and e["referer"] is None
    e = es["a-2"]
    assert (e["status"], e["reason"]) == (401, "token_expired")
    assert e["bytes_in"] == sent2 and e["bytes_out"] == got2
    e = es["a-3"]
    assert e["consumer"] == "alice" and e["reason"] is None
    assert e["path"] == "/orders/3?id_token=REDACTED"
    with open(gw.log) as f:
        text = f.read()
    assert good not in text and expired not in text


def test_rate_limit_fields(gw):
    r, _, _ = exchange(gw.port, build_request(
        "GET", "/limited/a", headers=[("X-Trace-ID", "rl-1")]))
    assert r.status == 200
    r, sent, got = exchange(gw.port, build_request(
        "GET", "/limited/b", headers=[("X-Trace-ID", "rl-2")]))
    assert r.status == 429
    es = entries(gw.log, 2)
    assert es["rl-1"]["rate_limit"] == "allowed"
    assert es["rl-1"]["reason"] is None
    e = es["rl-2"]
    assert e["status"] == 429 and e["rate_limit"] == "limited"
    # which limit: the tier and what the bucket is keyed by
    assert e["reason"] == "rate_limited: tier one, by ip"
    assert e["route"] == "limited" and e["service"] == "up"
    assert e["upstream"] is None and e["upstream_ms"] is None
    assert e["bytes_in"] == sent and e["bytes_out"] == got


def test_upstream_failure_fields(gw):
    r, sent, got = exchange(gw.port, build_request(
        "GET", "/dead/x", headers=[("X-Trace-ID", "up-502")]))
    assert r.status == 502
    r2, sent2, got2 = exchange(gw.port, build_request(
        "GET", "/slow/x", headers=[("X-Trace-ID", "up-504")]))
    assert r2.status == 504
    es = entries(gw.log, 2)
    e = es["up-502"]
    assert e["reason"] == "upstream_connect_failed"
    assert (e["route"], e["service"]) == ("dead", "dead")
    assert e["upstream"] == gw.dead_addr
    assert isinstance(e["upstream_ms"], float)
    assert e["rate_limit"] is None
    assert e["bytes_in"] == sent and e["bytes_out"] == got
    e = es["up-504"]
    assert e["reason"] == "upstream_head_timeout"
    assert (e["route"], e["service"]) == ("slow", "slow")
    assert e["upstream"] == gw.hang.addr
    assert isinstance(e["upstream_ms"], float)
    assert e["upstream_ms"] <= e["duration_ms"]
    assert e["bytes_in"] == sent2 and e["bytes_out"] == got2


def test_parse_error_fields(gw):
    raw = build_request("GET", "/api/bad?secret=hunter2&x=1",
                        headers=[("Content-Length", "1x"),
                                 ("User-Agent", "never-read")])
    r, sent, got = exchange(gw.port, raw)
    assert r.status == 400
    tid = r.header("x-trace-id")
    e = entries(gw.log, 1)[tid]
    assert e["method"] == "GET"
    assert e["path"] == "/api/bad?secret=REDACTED&x=1"
    assert e["status"] == 400 and e["reason"] == "bad_request"
    for k in ("route", "service", "upstream", "upstream_ms", "rate_limit",
              "consumer", "user_agent", "referer"):
        assert e[k] is None, (k, e)
    assert e["bytes_in"] == sent and e["bytes_out"] == got
    with open(gw.log) as f:
        assert "hunter2" not in f.read()


def test_unnormalisable_path_logged_as_sent(gw):
    raw = build_request("GET", "/../etc?password=hunter2",
                        headers=[("X-Trace-ID", "norm-1")])
    r, sent, got = exchange(gw.port, raw)
    assert r.status == 400
    e = entries(gw.log, 1)["norm-1"]
    assert e["path"] == "/../etc?password=REDACTED"
    assert (e["reason"], e["route"]) == ("bad_path", None)
    assert e["bytes_in"] == sent and e["bytes_out"] == got


# ---- redaction --------------------------------------------------------

NAMES = ["token", "access_token", "id_token", "api_key", "apikey", "key",
         "password", "secret", "signature", "sig"]


@pytest.fixture
def redact_gw(gateway, origin, tmp):
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")],
                server={"access_log": {"path": log, "format": "json",
                                       "redact": ["session", "Code"]}})
    g.log = log
    return g


def logged_path(g, query, n):
    r, _, _ = exchange(g.port, build_request(
        "GET", "/r?" + query, headers=[("X-Trace-ID", "red-%d" % n)]))
    assert r.status == 200
    return entries(g.log, n + 1)["red-%d" % n]["path"]


def test_redaction(redact_gw):
    g = redact_gw
    cases = [(n + "=v4lue&ok=1", n + "=REDACTED&ok=1") for n in NAMES]
    cases += [
        # case-insensitive; the configured extras too
        ("Token=v4lue&PASSWORD=v4lue", "Token=REDACTED&PASSWORD=REDACTED"),
        ("session=v4lue&code=v4lue&other=1",
         "session=REDACTED&code=REDACTED&other=1"),
        # percent-encoded names, written as sent
        ("%74oken=v4lue&api%5fkey=v4lue&%53ESSION=v4lue",
         "%74oken=REDACTED&api%5fkey=REDACTED&%53ESSION=REDACTED"),
        # repeated
        ("sig=v4lue&sig=v4lue&sig=v4lue", "sig=REDACTED&sig=REDACTED&"
         "sig=REDACTED"),
        # without a value: nothing to hide
        ("token&key=&x=1", "token&key=&x=1"),
        # names that only look alike are kept
        ("tokens=1&monkey=2&keys=3", "tokens=1&monkey=2&keys=3"),
    ]
    for i, (q, want) in enumerate(cases):
        assert logged_path(g, q, i) == "/r?" + want, q
    with open(g.log) as f:
        assert "v4lue" not in f.read()


def test_combined_format_ends_with_trace_id(gateway, origin, tmp):
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [dict(route("orders", "up", prefix="/orders"), auth="jwt"),
                 route("all", "up", prefix="/")],
                server={"access_log": {"path": log, "format": "combined"}},
                extra={"auth": auth_section(tmp, api=False)})
    good = hs256(SECRET, claims("alice"), kid="hs1")
    with Client(g.port) as c:
        r1 = c.request(path="/a/b?api_key=s3cr3t&x=1",
                       headers=[("User-Agent", "ua/1"),
                                ("X-Trace-ID", "comb-1")])
        r2 = c.request(path="/orders/1", version="HTTP/1.0",
                       headers=[("Authorization", "Bearer " + good)])
    assert r1.status == 200 and r2.status == 200
    lines = read_lines(log, 2)
    assert len(lines) == 2, lines
    m = re.match(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d '
                 r'\+0000\] "GET /a/b\?api_key=REDACTED&x=1 HTTP/1\.1" 200 '
                 r'(\d+) "-" "ua/1" "comb-1"$', lines[0])
    assert m, lines[0]
    assert int(m.group(1)) == len(r1.raw_head) + len(r1.body)
    # The consumer is the remote user; the trace id is the last field.
    assert re.match(r'^127\.0\.0\.1 - alice \[.*\] "GET /orders/1 '
                    r'HTTP/1\.0" 200 \d+ "-" "-" "%s"$'
                    % r2.header("x-trace-id"), lines[1]), lines[1]
    with open(log) as f:
        assert "s3cr3t" not in f.read()


def test_log_off_still_serves(gateway, origin, tmp):
    """path = "off": no file, nothing written, requests served."""
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")])
    with Client(g.port) as c:
        assert c.request(path="/x?token=1").status == 200
    assert not os.path.exists(os.path.join(tmp, "logs", "access.log"))
    assert not [f for f in os.listdir(tmp) if "access" in f]


def test_fifo_nobody_reads_never_blocks(gateway, origin, tmp):
    """An access log on a FIFO whose reader stops reading: the workers keep
    serving (lines that do not fit are dropped and counted in the error
    log), and what reaches the FIFO is whole lines, never two workers'
    lines mixed."""
    o = origin()
    fifo = os.path.join(tmp, "access.fifo")
    os.mkfifo(fifo)
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        g = gateway({"up": service(o.addr, retries=0)},
                    [route("all", "up", prefix="/")], workers=2,
                    server={"access_log": {"path": fifo, "format": "json"}})
        long_path = "/" + "p" * 1000
        # Several connections, so both workers write into the FIFO.
        for k in range(10):
            with Client(g.port, timeout=5) as c:
                for i in range(30):
                    r = c.request(path="%s?i=%d" % (long_path, i))
                    assert r.status == 200, (k, i, r)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and \
                "lines dropped" not in g.error_log():
            time.sleep(0.05)
        assert re.search(r"access log .*access\.fifo: \d+ lines dropped",
                         g.error_log()), g.error_log()
        data = b""
        while True:
            try:
                chunk = os.read(rd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
        lines = data.split(b"\n")
        assert lines[-1] == b"" and len(lines) > 10, len(lines)
        for l in lines[:-1]:
            assert json.loads(l)["path"].startswith(long_path), l[:80]
        assert g.alive()
    finally:
        os.close(rd)
