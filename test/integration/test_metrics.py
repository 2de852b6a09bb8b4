"""Metrics end to end: the admin listener's /metrics, parsed by a
Prometheus text-format parser written here (standard library only), with
counts that match the requests sent per route and status class across 2
workers; histograms (buckets monotonic, +Inf equal to _count, _sum
plausible); /healthz and /readyz (503 while a graceful stop drains);
gwctl stats (--json numbers, --route, --watch with a bounded count);
totals across a reload; the admin socket handed over at an upgrade; the
shipped Grafana dashboard names only metrics /metrics exposes."""

import hashlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import GWCTL, PORTICO, REPO, Client, build_request, \
    children_of, free_port, http, need_binary, pid_alive, route, service, \
    stop_pid, write_config
from origin import KEEP, response

API_KEY = "pk_metrics_test_key_0123456789"


# ------------------------------------------------- Prometheus text format

NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_labels(text, lineno):
    """'a="x",b="y\\"z"' -> {"a": "x", "b": 'y"z'}; raises on bad text."""
    labels = {}
    i = 0
    while i < len(text):
        m = LABEL_RE.match(text, i)
        assert m, "line %d: bad label name at %r" % (lineno, text[i:])
        name = m.group(0)
        i = m.end()
        assert text[i:i + 2] == '="', "line %d: %r" % (lineno, text)
        i += 2
        val = []
        while True:
            assert i < len(text), "line %d: unterminated value" % lineno
            c = text[i]
            if c == "\\":
                nxt = text[i + 1]
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        assert name not in labels, "line %d: label %s twice" % (lineno, name)
        labels[name] = "".join(val)
        if i < len(text):
            assert text[i] == ",", "line %d: %r" % (lineno, text)
            i += 1
    return labels


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    return float(s)


class Metrics:
    """A parsed exposition: families (name -> type, help) and samples
    (name, labels dict, value)."""

    def __init__(self, text):
        self.types = {}
        self.helps = {}
        self.samples = []
        for n, line in enumerate(text.split("\n"), 1):
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    assert NAME_RE.fullmatch(parts[2]), line
                    if parts[1] == "TYPE":
                        assert parts[3] in ("counter", "gauge", "histogram",
                                            "summary", "untyped"), line
                        assert parts[2] not in self.types, \
                            "TYPE of %s twice" % parts[2]
                        self.types[parts[2]] = parts[3]
                    else:
                        self.helps[parts[2]] = parts[3]
                continue
            m = NAME_RE.match(line)
            assert m, "line %d: %r" % (n, line)
            name = m.group(0)
            rest = line[m.end():]
            labels = {}
            if rest.startswith("{"):
                end = rest.rindex("}")
                labels = parse_labels(rest[1:end], n)
                rest = rest[end + 1:]
            assert rest.startswith(" "), "line %d: %r" % (n, line)
            self.samples.append((name, labels, parse_value(rest.strip())))
        # every sample belongs to a declared family, with HELP and TYPE
        for name, _, _ in self.samples:
            fam = self.family_of(name)
            assert fam in self.types and fam in self.helps, name

    def family_of(self, name):
        for suf in ("_bucket", "_sum", "_count"):
            base = name[:-len(suf)]
            if name.endswith(suf) and self.types.get(base) == "histogram":
                return base
        return name

    def get(self, name, **labels):
        """The value of the one sample of NAME with exactly LABELS."""
        found = [v for n, l, v in self.samples if n == name and l == labels]
        assert len(found) == 1, (name, labels, found)
        return found[0]

    def series(self, name):
        return [(l, v) for n, l, v in self.samples if n == name]

    def histogram(self, name, **labels):
        """[(le, count)] in le order, sum, count."""
        buckets = []
        for l, v in self.series(name + "_bucket"):
            rest = dict(l)
            le = rest.pop("le")
            if rest == labels:
                buckets.append((parse_value(le), v))
        return (buckets, self.get(name + "_sum", **labels),
                self.get(name + "_count", **labels))


def scrape(port, path="/metrics"):
    with Client(port) as c:
        r = c.request(path=path, host="127.0.0.1")
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain; version=0.0.4")
    return Metrics(r.body.decode("utf-8"))


def wait_metrics(port, check, timeout=5.0):
    """Scrape until check(metrics) holds (a worker counts an exchange just
    after its last byte went out), at most TIMEOUT; returns the last."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(port)
        try:
            check(m)
            return m
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def check_histogram(buckets, total_sum, count):
    les = [le for le, _ in buckets]
    assert les == sorted(les) and les[-1] == math.inf, les
    vals = [v for _, v in buckets]
    assert all(a <= b for a, b in zip(vals, vals[1:])), vals
    assert vals[-1] == count, (vals, count)
    assert total_sum >= 0
    # every observation is at most its bucket's upper bound
    bound = 0.0
    prev = 0
    for le, v in buckets:
        if le != math.inf:
            bound += (v - prev) * le
        prev = v
    if buckets[-1][1] == buckets[-2][1]:    # nothing past the last bound
        assert total_sum <= bound + 1e-6, (total_sum, bound)


# ---------------------------------------------------------------- fixture

def app_handler(origin, req):
    """/s/NNN answers NNN; /slow answers after 0.4 s, /slower after 2 s;
    else 200."""
    m = re.match(r".*/s/(\d{3})", req.target)
    if m:
        return response(int(m.group(1)), b"status"), KEEP
    if "/slower" in req.target:
        return [response(200, b"slower")[:10], 2.0,
                response(200, b"slower")[10:]], KEEP
    if "/slow" in req.target:
        return [response(200, b"slow")[:10], 0.4,
                response(200, b"slow")[10:]], KEEP
    return response(200, b"ok"), KEEP


def keys_file(tmp):
    path = os.path.join(tmp, "keys.conf")
    with open(path, "w") as f:
        f.write('keys = (\n  { sha256 = "%s"; consumer = "acme"; }\n);\n' %
                hashlib.sha256(API_KEY.encode()).hexdigest())
    return path


def metrics_setup(gateway, origin, tmp, workers=2):
    o = origin(handler=app_handler)
    dead = free_port()                    # nothing listens there
    services = {"app": service(o.addr, retries=0, timeout_ms=10000),
                "dead": service("127.0.0.1:%d" % dead, retries=0)}
    lim = route("limited", "app", prefix="/lim")
    lim["rate_limit"] = {"by": "route", "tier": "tiny"}
    sec = dict(route("secure", "app", prefix="/sec"), auth="api_key")
    routes = [route("api", "app", prefix="/api"), lim, sec,
              route("down", "dead", prefix="/down"),
              route('we"ird\\name', "app", prefix="/weird")]
    admin = free_port()
    g = gateway(services, routes, workers=workers,
                server={"admin": "127.0.0.1:%d" % admin},
                extra={"tiers": {"tiny": {"rate": 1, "per_s": 3600,
                                          "burst": 3}},
                       "auth": {"api_keys": {"file": keys_file(tmp)}}})
    g.admin = admin
    g.dead = "127.0.0.1:%d" % dead
    g.origin = o
    return g


@pytest.fixture
def mgw(gateway, origin, tmp):
    return metrics_setup(gateway, origin, tmp)


# What send_mix sends, by route (None: no route) and status class.
EXPECTED = {
    "api": {"2xx": 10, "4xx": 5, "5xx": 3},
    "limited": {"2xx": 3, "4xx": 2},
    "secure": {"4xx": 4},
    "down": {"5xx": 3},
    'we"ird\\name': {"2xx": 1},
    None: {"4xx": 3},
}


def send_mix(port):
    """Every request on a fresh connection, so both workers take some."""
    for _ in range(10):
        assert http(port, path="/api/ok").status == 200
    for _ in range(3):
        assert http(port, path="/api/s/404").status == 404
    # an upstream's own 401 and 429 are not the gateway's refusals
    assert http(port, path="/api/s/401").status == 401
    assert http(port, path="/api/s/429").status == 429
    for _ in range(3):
        assert http(port, path="/api/s/500").status == 500
    got = [http(port, path="/lim/x").status for _ in range(5)]
    assert got == [200, 200, 200, 429, 429], got
    for _ in range(4):
        assert http(port, path="/sec/x").status == 401
    for _ in range(3):
        assert http(port, path="/down/x").status == 502
    assert http(port, path="/weird/x").status == 200
    assert http(port, path="/nowhere").status == 404
    assert http(port, path="/api/%zz").status == 400     # before routing
    with Client(port) as c:                 # refused while reading the head
        c.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        assert c.read_response().status == 400


def expect_counts(m):
    for rt, classes in EXPECTED.items():
        labels = {"route": rt} if rt is not None else {}
        for cls in ("1xx", "2xx", "3xx", "4xx", "5xx", "other"):
            want = classes.get(cls, 0)
            assert m.get("portico_requests_total", code_class=cls,
                         **labels) == want, (rt, cls)


# ------------------------------------------------------------------ tests

def test_metrics_counts_match_requests_across_workers(mgw):
    send_mix(mgw.port)
    m = wait_metrics(mgw.admin, expect_counts)
    for rt in EXPECTED:
        labels = {"route": rt} if rt is not None else {}
        total = sum(EXPECTED[rt].values())
        b, s, c = m.histogram("portico_request_duration_seconds", **labels)
        assert c == total, (rt, c)
        check_histogram(b, s, c)
    assert m.get("portico_rate_limited_total", route="limited") == 2
    assert m.get("portico_rate_limited_total", route="api") == 0
    assert m.get("portico_auth_refused_total", route="secure") == 4
    assert m.get("portico_auth_refused_total", route="api") == 0
    # upstream: every request that went upstream, the 502s included
    for rt, n in (("api", 18), ("limited", 3), ("down", 3)):
        b, s, c = m.histogram("portico_upstream_duration_seconds", route=rt)
        assert c == n, (rt, c)
        check_histogram(b, s, c)
    assert m.get("portico_upstream_errors_total", service="dead",
                 instance=mgw.dead, kind="connect") == 3
    for kind in ("reset", "timeout", "bad_response"):
        assert m.get("portico_upstream_errors_total", service="dead",
                     instance=mgw.dead, kind=kind) == 0
    assert m.get("portico_upstream_health", service="dead",
                 instance=mgw.dead) == -1
    assert m.get("portico_upstream_breaker_state", service="dead",
                 instance=mgw.dead) == -1
    assert m.get("portico_sent_bytes_total", route="api") > 18 * 40
    assert m.get("portico_received_bytes_total") > 30 * 30
    assert m.get("portico_workers", state="serving") == 2
    assert m.get("portico_config_generation") == 1
    assert m.get("portico_reloads_total", result="ok") == 0
    assert m.get("portico_worker_restarts_total") == 0
    assert abs(m.get("portico_start_time_seconds") - time.time()) < 600
    assert m.types["portico_requests_total"] == "counter"
    assert m.types["portico_request_duration_seconds"] == "histogram"
    assert m.types["portico_connections_open"] == "gauge"
    # no route caches: the cache family is declared, without series
    assert m.types["portico_cache_requests_total"] == "counter"
    assert m.series("portico_cache_requests_total") == []
    # both workers took part (their own per-worker totals)
    j = stats_json(mgw)
    assert len(j["workers"]) == 2
    assert all(w["requests"] > 0 for w in j["workers"]), j["workers"]


def test_cache_series_per_caching_route(gateway, origin):
    """portico_cache_requests_total has a series per result for each
    route that caches, counting its lookups; none for a route that does
    not; gwctl stats shows the same counts and the hit ratio."""
    o = origin(handler=app_handler)
    admin = free_port()
    cached = route("cat", "app", prefix="/api")
    cached["cache"] = {"ttl_s": 60}
    g = gateway({"app": service(o.addr, retries=0)},
                [cached, route("plain", "app", prefix="/")],
                server={"admin": "127.0.0.1:%d" % admin})
    for _ in range(3):
        assert http(g.port, path="/api/x").status == 200
    assert http(g.port, path="/other").status == 200

    def counted(m):
        assert m.get("portico_cache_requests_total", route="cat",
                     result="miss") == 1
        assert m.get("portico_cache_requests_total", route="cat",
                     result="hit") == 2
    m = wait_metrics(admin, counted)
    assert m.get("portico_cache_requests_total", route="cat",
                 result="stale") == 0
    assert {l["route"] for l, _ in
            m.series("portico_cache_requests_total")} == {"cat"}
    # the same counts in gwctl stats: the route's hit ratio and results
    routes = {r["name"]: r for r in stats_json(g)["routes"]}
    assert routes["cat"]["cache"] == {"hit": 2, "miss": 1, "stale": 0,
                                      "bypass": 0}
    assert routes["cat"]["cache_hit_ratio"] == pytest.approx(2 / 3)
    assert routes["plain"]["cache_hit_ratio"] is None


def test_histogram_buckets_place_a_slow_request(mgw):
    assert http(mgw.port, path="/api/slow").status == 200

    def slow_seen(m):
        b, s, c = m.histogram("portico_request_duration_seconds",
                              route="api")
        assert c == 1
    m = wait_metrics(mgw.admin, slow_seen)
    b, s, c = m.histogram("portico_request_duration_seconds", route="api")
    le = dict(b)
    # 0.4 s: above 0.25, within 0.5 (and a loaded machine may add a bit)
    assert le[0.25] == 0 and le[math.inf] == 1, b
    assert 0.39 <= s <= 5.0, s
    ub, us, uc = m.histogram("portico_upstream_duration_seconds",
                             route="api")
    assert uc == 1 and 0.39 <= us <= s, (us, s)


def test_open_connections_gauge(mgw):
    with Client(mgw.port) as c:
        assert c.request(path="/api/ok").status == 200
        wait_metrics(mgw.admin, lambda m: assert_eq(
            m.get("portico_connections_open"), 1))
    wait_metrics(mgw.admin,
                 lambda m: assert_eq(m.get("portico_connections_open"), 0))


def assert_eq(a, b):
    assert a == b, (a, b)


def wait_ready(port, timeout=5.0):
    """/readyz until 200 (the workers report ready just after they
    accept), at most TIMEOUT; returns the last response."""
    deadline = time.monotonic() + timeout
    while True:
        r = http(port, path="/readyz", host="h")
        if r.status == 200 or time.monotonic() > deadline:
            return r
        assert r.status == 503 and b"workers ready" in r.body, r
        time.sleep(0.02)


def test_healthz_readyz_and_refusals(mgw):
    r = http(mgw.admin, path="/healthz", host="127.0.0.1")
    assert r.status == 200 and r.body.startswith(b"ok")
    r = wait_ready(mgw.admin)
    assert r.status == 200, r
    assert b"2 of 2 workers ready" in r.body, r.body
    assert ("pid %d" % mgw.pid).encode() in r.body
    r = http(mgw.admin, path="/metrics?x=1", method="HEAD", host="h")
    assert r.status == 200 and r.body == b""
    assert int(r.header("content-length")) > 1000
    r = http(mgw.admin, path="/nope", host="h")
    assert r.status == 404
    r = http(mgw.admin, path="/metrics", method="POST", body=b"x", host="h")
    assert r.status == 405 and r.header("allow") == "GET, HEAD"
    with Client(mgw.admin) as c:            # garbage: 400 and closed
        c.send(b"\x16\x03\x01\x00\x05hello\r\n\r\n")
        assert c.read_response().status == 400
        assert c.is_closed()
    # keep-alive: several requests on one connection, pipelined too
    with Client(mgw.admin) as c:
        c.send(build_request(path="/healthz") + build_request(path="/readyz"))
        assert c.read_response().status == 200
        assert c.read_response().status == 200
        assert c.request(path="/metrics").status == 200


def test_admin_connections_are_capped_and_timed_out(mgw):
    """Idle clients hold at most 16 slots and are closed after 5 s; a
    newcomer past the cap is told 503; the master answers gwctl all the
    while."""
    idle = [socket.create_connection(("127.0.0.1", mgw.admin), timeout=5)
            for _ in range(16)]
    try:
        time.sleep(0.3)
        with Client(mgw.admin) as c:
            r = c.read_response()
            assert r.status == 503, r
        assert stats_json(mgw)["ok"] is True
        # a slow scraper that never reads does not stall /metrics either
        idle[0].close()
        idle[0] = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                r = http(mgw.admin, path="/healthz", host="h")
                if r.status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert r.status == 200
        # after the read timeout (5 s) the idle ones are gone
        idle[1].settimeout(8)
        assert idle[1].recv(10) == b""
    finally:
        for s in idle:
            if s is not None:
                s.close()


def test_slow_scraper_is_cut_off_and_master_keeps_answering(mgw):
    """A client that pipelines /metrics requests and never reads: once
    its socket is full the master stops at the pending response, keeps
    serving everyone else, and closes it after the 10 s write limit."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", mgw.admin))
    s.settimeout(5)
    req = build_request(path="/metrics", host="h")
    n = 2000
    sent = 0
    try:
        while sent < n:
            s.sendall(req * 50)
            sent += 50
    except (socket.timeout, OSError):
        pass                                # the master stopped reading
    try:
        t0 = time.monotonic()
        # meanwhile the master answers others at once
        assert http(mgw.admin, path="/healthz", host="h").status == 200
        assert stats_json(mgw)["ok"]
        assert time.monotonic() - t0 < 5
        time.sleep(11)
        s.settimeout(5)
        got = b""
        while True:
            try:
                d = s.recv(1 << 20)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
            assert len(got) < 200 << 20
        answered = got.count(b"HTTP/1.1 200 OK")
        assert 0 < answered < sent, (answered, sent)
    finally:
        s.close()


def test_readyz_503_until_a_dead_worker_is_back(gateway, origin, tmp):
    """Three quick deaths in a row: the respawn waits 400 ms (backoff),
    and /readyz says 503 in between, then 200 again."""
    o = origin(handler=app_handler)
    admin = free_port()
    g = gateway({"app": service(o.addr)}, [route("api", "app", prefix="/")],
                workers=1, server={"admin": "127.0.0.1:%d" % admin})
    assert wait_ready(admin).status == 200
    seen = []
    for i in range(3):
        w = g.worker_pids()
        assert len(w) == 1, w
        os.kill(w[0], signal.SIGKILL)
        if i == 2:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                r = http(admin, path="/readyz", host="h")
                seen.append(r.status)
                if r.status == 503:
                    assert b"0 of 1 workers ready" in r.body, r
                    break
                time.sleep(0.01)
        assert g.wait_workers(1, exclude=w), "no respawn"
    assert 503 in seen, seen
    assert wait_ready(admin).status == 200


def test_readyz_503_while_draining(gateway, origin, tmp):
    g = metrics_setup(gateway, origin, tmp, workers=1)
    result = {}

    def slow():
        result["r"] = http(g.port, path="/api/slower", timeout=10)
    t = threading.Thread(target=slow)
    t.start()
    try:
        assert len(g.origin.wait_requests(1)) == 1      # in flight
        g.signal(signal.SIGQUIT)
        deadline = time.monotonic() + 3
        r = None
        while time.monotonic() < deadline:
            r = http(g.admin, path="/readyz", host="h")
            if r.status == 503:
                break
            time.sleep(0.02)
        assert r.status == 503 and b"draining" in r.body, r
        assert http(g.admin, path="/healthz", host="h").status == 200
    finally:
        t.join(timeout=10)
    assert result["r"].status == 200
    g.proc.wait(timeout=10)


# ----------------------------------------------------------- gwctl stats

def gwctl(g, *args, timeout=20):
    need_binary(GWCTL)
    return subprocess.run([GWCTL, "-c", g.conf, "-p", g.tmp] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def stats_json(g, *args):
    r = gwctl(g, "--json", "stats", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_gwctl_stats_json_matches_requests(mgw):
    send_mix(mgw.port)
    wait_metrics(mgw.admin, expect_counts)
    j = stats_json(mgw)
    routes = {r["name"]: r for r in j["routes"]}
    assert list(routes)[:5] == ["api", "limited", "secure", "down",
                                'we"ird\\name']
    for rt, classes in EXPECTED.items():
        r = routes[rt]
        assert r["requests"] == sum(classes.values()), rt
        for cls in ("2xx", "4xx", "5xx"):
            assert r["status"][cls] == classes.get(cls, 0), (rt, cls)
    assert routes["api"]["error_rate"] == pytest.approx(3 / 18)
    assert routes["limited"]["rate_limited"] == 2
    assert routes["secure"]["auth_refused"] == 4
    assert routes["api"]["cache_hit_ratio"] is None
    assert routes["api"]["breaker"] == "unknown"
    assert routes[None]["service"] is None
    for rt in ("api", "limited"):
        r = routes[rt]
        assert 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] <= 30000, r
    # rates: the last 10 s hold every request sent
    assert 0 < j["window_s"] <= 11
    assert routes["api"]["rate"] > 0
    svc = {s["name"]: s for s in j["services"]}
    assert svc["app"]["requests"] == 18 + 5 + 4 + 1
    assert svc["dead"]["requests"] == 3
    assert svc["dead"]["upstream_errors"]["connect"] == 3
    inst = svc["dead"]["instances"]
    assert [i["address"] for i in inst] == [mgw.dead]
    assert inst[0]["health"] == "unknown" and inst[0]["breaker"] == \
        "unknown"
    # the per-worker totals are kept and agree
    assert j["total"]["requests"] == sum(sum(c.values())
                                         for c in EXPECTED.values())


def test_gwctl_stats_table_and_route_detail(mgw):
    send_mix(mgw.port)
    wait_metrics(mgw.admin, expect_counts)
    r = gwctl(mgw, "stats")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "interpolated within histogram buckets" in out
    for h in ("ROUTE", "SERVICE", "REQUESTS", "RATE/S", "ERR%", "P50ms",
              "P99ms", "HIT%", "LIMITED", "AUTH", "BREAKER", "WORKER"):
        assert h in out, h
    api = [ln for ln in out.splitlines() if ln.startswith("api ")][0]
    cols = api.split()
    assert cols[1] == "app" and cols[2] == "18", api
    assert cols[4:7] == ["10", "5", "3"], api
    assert "(no route)" in out and "127.0.0.1:" in out
    d = gwctl(mgw, "stats", "--route", "limited")
    assert d.returncode == 0, d.stderr
    assert d.stdout.startswith("route limited (service app)")
    assert "rate limited   2" in d.stdout
    assert "<=" in d.stdout             # the buckets
    j = stats_json(mgw, "--route", "limited")
    lat = j["route"]["latency"]
    assert lat["count"] == 5 and lat["buckets"][-1]["le_ms"] is None
    assert lat["buckets"][-1]["count"] == 5
    counts = [b["count"] for b in lat["buckets"]]
    assert counts == sorted(counts)
    assert j["service"]["name"] == "app"
    r = gwctl(mgw, "stats", "--route", "nope")
    assert r.returncode != 0 and "no route 'nope'" in r.stderr
    r = gwctl(mgw, "stats", "--watch", "0")
    assert r.returncode != 0 and "--watch" in r.stderr
    r = gwctl(mgw, "stats", "--bogus")
    assert r.returncode != 0


def test_gwctl_stats_watch_bounded(mgw):
    r = gwctl(mgw, "stats", "--watch", "0.2", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\033[H\033[2J") == 3
    assert r.stdout.count("ROUTE ") == 3
    r = gwctl(mgw, "--json", "stats", "--watch", "0.2", "--count", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2 and all(json.loads(x)["ok"] for x in lines)


# ------------------------------------------------- reload, restart, upgrade

def test_totals_survive_reload_and_removed_routes_go(gateway, origin, tmp):
    o = origin(handler=app_handler)
    admin = free_port()
    srv = {"admin": "127.0.0.1:%d" % admin}
    services = {"app": service(o.addr)}
    g = gateway(services, [route("keep", "app", prefix="/k"),
                           route("gone", "app", prefix="/g")],
                workers=2, server=srv, limits={"drain_timeout_ms": 2000})
    for _ in range(4):
        assert http(g.port, path="/k").status == 200
    assert http(g.port, path="/g").status == 200
    wait_metrics(admin, lambda m: assert_eq(m.get(
        "portico_requests_total", route="keep", code_class="2xx"), 4))
    write_config(tmp, services, [route("new", "app", prefix="/n"),
                                 route("keep", "app", prefix="/k")],
                 port=g.port, workers=2, server=srv,
                 limits={"drain_timeout_ms": 2000})
    r = gwctl(g, "reload")
    assert r.returncode == 0, r.stderr
    for _ in range(2):
        assert http(g.port, path="/k").status == 200
    m = wait_metrics(admin, lambda m: assert_eq(m.get(
        "portico_requests_total", route="keep", code_class="2xx"), 6))
    assert m.get("portico_reloads_total", result="ok") == 1
    assert m.get("portico_config_generation") == 2
    assert m.get("portico_requests_total", route="new", code_class="2xx") \
        == 0

    def gone_dropped(m):
        assert not [l for l, _ in m.series("portico_requests_total")
                    if l.get("route") == "gone"]
        assert m.get("portico_workers", state="draining") == 0
    m = wait_metrics(admin, gone_dropped, timeout=10)
    # folded, not lost, and never lower than before
    assert m.get("portico_requests_total", route="keep", code_class="2xx") \
        == 6
    b, s, c = m.histogram("portico_request_duration_seconds", route="keep")
    assert c == 6
    # a refused reload counts as failed; the admin address cannot change
    write_config(tmp, services, [route("keep", "app", prefix="/k")],
                 port=g.port, workers=2,
                 server={"admin": "127.0.0.1:%d" % free_port()})
    r = gwctl(g, "reload")
    assert r.returncode != 0 and "server.admin" in r.stderr, r.stderr
    m = scrape(admin)
    assert m.get("portico_reloads_total", result="failed") == 1


def test_worker_restart_counted_and_counts_kept(gateway, origin, tmp):
    o = origin(handler=app_handler)
    admin = free_port()
    g = gateway({"app": service(o.addr)}, [route("api", "app", prefix="/")],
                workers=1, server={"admin": "127.0.0.1:%d" % admin})
    for _ in range(3):
        assert http(g.port, path="/x").status == 200
    wait_metrics(admin, lambda m: assert_eq(m.get(
        "portico_requests_total", route="api", code_class="2xx"), 3))
    w = g.worker_pids()
    os.kill(w[0], signal.SIGKILL)
    g.wait_workers(1, exclude=w)
    m = wait_metrics(admin, lambda m: assert_eq(
        m.get("portico_worker_restarts_total"), 1))
    # the respawned worker adds to the same slot: nothing went back
    assert m.get("portico_requests_total", route="api", code_class="2xx") \
        == 3
    assert wait_ready(admin).status == 200
    assert http(g.port, path="/x").status == 200
    wait_metrics(admin, lambda m: assert_eq(m.get(
        "portico_requests_total", route="api", code_class="2xx"), 4))


def test_admin_listener_passes_to_new_master_at_upgrade(gateway, origin,
                                                         tmp):
    o = origin(handler=app_handler)
    admin = free_port()
    g = gateway({"app": service(o.addr)}, [route("api", "app", prefix="/")],
                workers=1, server={"admin": "127.0.0.1:%d" % admin})
    assert ("pid %d" % g.pid).encode() in wait_ready(admin).body
    bin2 = os.path.join(tmp, "portico-new")
    shutil.copy(PORTICO, bin2)
    new_pid = None
    try:
        r = gwctl(g, "upgrade", "--binary", bin2, timeout=40)
        assert r.returncode == 0, r.stderr
        g.proc.wait(timeout=15)
        with open(os.path.join(tmp, "portico.pid")) as f:
            new_pid = int(f.read())
        assert new_pid != g.pid and pid_alive(new_pid)
        deadline = time.monotonic() + 5
        while True:
            r = http(admin, path="/readyz", host="h")
            if r.status == 200 and ("pid %d" % new_pid).encode() in r.body:
                break
            assert time.monotonic() < deadline, r
            time.sleep(0.05)
        assert http(g.port, path="/x").status == 200
        wait_metrics(admin, lambda m: assert_eq(m.get(
            "portico_requests_total", route="api", code_class="2xx"), 1))
    finally:
        if new_pid is not None:
            for p in children_of(new_pid):
                g._known_workers.add(p)
            stop_pid(new_pid)


def test_admin_address_in_use_refused_at_start(gateway, origin, tmp):
    o = origin()
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        g = gateway({"app": service(o.addr)},
                    [route("api", "app", prefix="/")],
                    server={"admin": "127.0.0.1:%d" %
                            taken.getsockname()[1]}, start=False)
        p = subprocess.run([need_binary(PORTICO), "-c", g.conf, "-p", g.tmp],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 1
        assert "server.admin: cannot listen on" in p.stderr, p.stderr
    finally:
        taken.close()


# ------------------------------------------------------------- dashboard

def test_dashboard_names_only_exposed_metrics(mgw):
    with open(os.path.join(REPO, "etc", "grafana-portico.json")) as f:
        dash = json.load(f)
    exprs = []

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k in ("expr", "query") and isinstance(v, str):
                    exprs.append(v)
                else:
                    walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(dash)
    assert len(exprs) >= 6, exprs
    send_mix(mgw.port)
    m = scrape(mgw.admin)
    exposed = set(m.types)
    names = set()
    for e in exprs:
        for n in re.findall(r"\bportico_[a-z_]+", e):
            names.add(n)
            fam = m.family_of(n)
            assert fam in exposed or n in exposed, (n, e)
            if n.endswith(("_bucket", "_sum", "_count")):
                assert m.types.get(fam) == "histogram", n
    for want in ("portico_requests_total",
                 "portico_request_duration_seconds_bucket",
                 "portico_upstream_errors_total",
                 "portico_cache_requests_total",
                 "portico_rate_limited_total"):
        assert want in names, want
    assert any("histogram_quantile" in e for e in exprs)
    titles = json.dumps(dash).lower()
    for t in ("request rate", "error rate", "latency", "upstream errors",
              "cache hit ratio", "rate-limited"):
        assert t in titles, t
    with open(os.path.join(REPO, "etc", "prometheus.yml")) as f:
        prom = f.read()
    assert "127.0.0.1:9901" in prom and "/metrics" in prom


def test_breaker_and_health_gauges(gateway, origin, tmp):
    """The gauges read the store: an instance whose breaker opened shows 2
    (open), its sibling 0 (closed); a service with checks shows 0 for a
    failing instance and 1 for a passing one; what a service does not
    have stays -1."""
    ok = origin(handler=app_handler)
    bad = origin(handler=lambda o, req: (response(500, b"no"), KEEP))
    admin = free_port()
    g = gateway({"app": service(bad.addr, ok.addr, retries=0,
                                breaker={"failures": 2, "open_ms": 60000}),
                 "chk": service(bad.addr, ok.addr,
                                health={"path": "/health",
                                        "interval_ms": 100})},
                [route("api", "app", prefix="/"),
                 route("c", "chk", prefix="/chk")], workers=1,
                server={"admin": "127.0.0.1:%d" % admin})
    for _ in range(8):
        http(g.port, path="/x")

    def settled(m):
        def st(name, svc, inst):
            return m.get(name, service=svc, instance=inst.addr)
        assert st("portico_upstream_breaker_state", "app", bad) == 2
        assert st("portico_upstream_breaker_state", "app", ok) == 0
        assert st("portico_upstream_health", "app", bad) == -1
        assert st("portico_upstream_health", "chk", bad) == 0
        assert st("portico_upstream_health", "chk", ok) == 1
        assert st("portico_upstream_breaker_state", "chk", ok) == -1
    wait_metrics(admin, settled)
