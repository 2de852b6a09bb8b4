"""The shared response cache (issue 14): hits across workers with one
origin request, TTL, every Cache-Control rule, Vary, per-consumer entries,
304s, HEAD from GET, invalidation by unsafe methods, request collapsing
across 4 workers, stale-if-error, stale-while-revalidate with one refresh,
purge and show, eviction under a small cache_mb while rate limiting keeps
working, a fetching worker killed without leaving its waiters hanging,
bodies over max_body, and hits that write nothing to the store."""

import email.utils
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import GWCTL, Client, route, service, stop_pid
from jwtlib import claims, hs256
from origin import HANG, KEEP, chunked_response, response

SECRET = b"cache-test-secret"


# ---------------------------------------------------------------- origin

class Script:
    """The origin's behaviour by path prefix: status, headers, body,
    delay. Each answer carries a count per target ("n"), so a test can
    tell a stored response from a fresh one."""

    def __init__(self):
        self.rules = []             # (prefix, dict)
        self.count = {}
        self.inflight = self.max_inflight = 0
        self.lock = threading.Lock()

    def on(self, prefix, **rule):
        self.rules.insert(0, (prefix, rule))
        self.rules.sort(key=lambda r: -len(r[0]))
        return self

    def rule(self, target):
        path = target.split("?")[0]
        for prefix, r in self.rules:
            if path.startswith(prefix):
                return r
        return {}

    def __call__(self, origin, req):
        r = self.rule(req.target)
        with self.lock:
            n = self.count.get(req.target, 0) + 1
            self.count[req.target] = n
        if r.get("hang_first") and n == 1:
            return b"", HANG
        if r.get("hold"):
            # held inside the handler: the origin sees how many requests
            # it has at once
            with self.lock:
                self.inflight += 1
                self.max_inflight = max(self.max_inflight, self.inflight)
            time.sleep(r["hold"])
            with self.lock:
                self.inflight -= 1
        status = r.get("status", 200)
        if callable(status):
            status = status(n)
        body = r.get("body")
        if body is None:
            body = json.dumps({"target": req.target, "n": n,
                               "method": req.method,
                               "user": req.header("x-user-id"),
                               "lang": req.header("x-lang"),
                               "ae": req.header("accept-encoding")})
        if isinstance(body, str):
            body = body.encode()
        headers = r.get("headers", [])
        if callable(headers):
            headers = headers(n)
        headers = [("Content-Type", "application/json")] + list(headers)
        if req.method == "HEAD":
            out = response(status, b"", headers, content_length=False)
            out = out[:-2] + b"Content-Length: %d\r\n\r\n" % len(body)
        else:
            out = response(status, body, headers)
        delay = r.get("delay", 0)
        if delay:
            return [delay, out], KEEP
        return out, KEEP


def seen(o, target):
    """Complete requests the origin got for exactly TARGET."""
    return [r for r in o.complete_requests() if r.target == target]


def get(g, path, headers=(), method="GET"):
    with Client(g.port) as c:
        return c.request(method, path, headers=list(headers))


def xc(r):
    return r.header("x-cache")


def gwctl(g, *args):
    sock = os.path.join(g.tmp, "portico.sock")
    return subprocess.run([GWCTL, "-s", sock] + list(args),
                          capture_output=True, text=True, timeout=20)


def stats(g):
    r = gwctl(g, "--json", "stats")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["cache"]


def wait_for(pred, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def cached_route(name, svc, prefix, **cache):
    r = route(name, svc, prefix=prefix)
    c = {"ttl_s": 60}
    c.update(cache)
    r["cache"] = c
    return r


@pytest.fixture
def script():
    return Script()


@pytest.fixture
def gw(gateway, origin, script):
    """2 workers; /c cached 60 s (stale_s 30 on /s), /v varies on X-Lang,
    /nc not cached; unsafe methods on /c go through the /w route."""
    o = origin(handler=script)
    routes = [
        dict(cached_route("cached", "up", "/c"),
             match={"prefix": "/c", "methods": ["GET", "HEAD"]}),
        dict(route("writes", "up", prefix="/c"),
             match={"prefix": "/c", "methods": ["POST", "PUT", "PATCH",
                                                  "DELETE"]}),
        cached_route("vary", "up", "/v", vary=["X-Lang"]),
        cached_route("stale", "up", "/s", ttl_s=1, stale_s=30),
        cached_route("short", "up", "/t", ttl_s=1),
        cached_route("small", "up", "/big", max_body=100),
        route("plain", "up", prefix="/"),
    ]
    g = gateway({"up": service(o.addr, retries=0, timeout_ms=3000)}, routes,
                workers=2)
    g.origin = o
    return g


# ------------------------------------------------------------------ hits

def test_hit_after_miss_across_workers(gw):
    r = get(gw, "/c/one")
    assert r.status == 200 and xc(r) == "MISS", r
    first = r.body
    for _ in range(30):          # new connections spread over both workers
        r = get(gw, "/c/one")
        assert r.status == 200 and xc(r) == "HIT", r
        assert r.header("age") is not None and r.body == first, r
    assert len(seen(gw.origin, "/c/one")) == 1
    r = gwctl(gw, "--json", "stats")
    workers = json.loads(r.stdout)["workers"]
    assert sum(1 for w in workers if w["requests"] > 0) == 2, workers
    s = stats(gw)
    assert s["hits"] == 30 and s["misses"] == 1, s
    assert s["entries"] >= 1 and s["bytes"] > 0, s


def test_hits_write_nothing_to_the_store(gw):
    def writes():
        r = gwctl(gw, "--json", "limits", "x")
        return json.loads(r.stdout)["store"]["write_txns"]
    get(gw, "/c/quiet")
    before = writes()
    with Client(gw.port) as c:
        for _ in range(300):
            r = c.request(path="/c/quiet")
            assert xc(r) == "HIT"
    # The LRU marks go in one batch per worker per second: at most a
    # couple of write txns for 300 hits (a miss takes two).
    assert writes() - before <= 3


def test_ttl_expiry(gw):
    assert xc(get(gw, "/t/x")) == "MISS"
    assert xc(get(gw, "/t/x")) == "HIT"
    time.sleep(1.3)
    r = get(gw, "/t/x")
    assert xc(r) == "MISS" and r.json()["n"] == 2, r


def test_age_counts_up(gw):
    get(gw, "/c/age")
    time.sleep(1.2)
    r = get(gw, "/c/age")
    assert xc(r) == "HIT" and int(r.header("age")) >= 1, r


def test_stored_headers_drop_cookies_and_hop_by_hop(gw, script):
    script.on("/c/cookie", headers=[("Set-Cookie", "a=1"),
                                    ("X-Kept", "yes"),
                                    ("Connection", "X-Hop"),
                                    ("X-Hop", "no"),
                                    ("X-Cache", "FROM-ORIGIN")])
    r = get(gw, "/c/cookie")
    assert xc(r) == "MISS" and r.header("set-cookie") == "a=1"
    assert r.header_all("x-cache") == ["MISS"], r
    r = get(gw, "/c/cookie")
    assert xc(r) == "HIT", r
    assert r.header("set-cookie") is None and r.header("x-hop") is None
    assert r.header("x-kept") == "yes"
    assert r.header_all("x-cache") == ["HIT"], r


def test_not_cached_route_has_no_x_cache(gw):
    r = get(gw, "/plain")
    assert r.status == 200 and xc(r) is None


# ---------------------------------------------------- Cache-Control rules

@pytest.mark.parametrize("cc", ["no-store", "private", "no-cache",
                                "max-age=0", 'private="Set-Cookie"'])
def test_response_directives_refuse(gw, script, cc):
    path = "/c/refuse-%d" % abs(hash(cc))
    script.on(path, headers=[("Cache-Control", cc)])
    assert xc(get(gw, path)) == "MISS"
    r = get(gw, path)
    assert xc(r) == "MISS" and r.json()["n"] == 2, r


def test_max_age_over_route_ttl(gw, script):
    script.on("/t/long", headers=[("Cache-Control", "max-age=60")])
    get(gw, "/t/long")
    time.sleep(1.3)        # past the route's ttl_s = 1
    assert xc(get(gw, "/t/long")) == "HIT"
    script.on("/c/short", headers=[("Cache-Control", "max-age=1")])
    get(gw, "/c/short")
    assert xc(get(gw, "/c/short")) == "HIT"
    time.sleep(1.3)        # under the route's 60 s, past max-age
    assert xc(get(gw, "/c/short")) == "MISS"


def test_s_maxage_over_max_age(gw, script):
    script.on("/c/smax", headers=[("Cache-Control",
                                   "max-age=60, s-maxage=1")])
    get(gw, "/c/smax")
    time.sleep(1.3)
    assert xc(get(gw, "/c/smax")) == "MISS"


def test_expires(gw, script):
    now = time.time()
    script.on("/c/exp-past", headers=[
        ("Date", email.utils.formatdate(now, usegmt=True)),
        ("Expires", email.utils.formatdate(now - 10, usegmt=True))])
    get(gw, "/c/exp-past")
    assert xc(get(gw, "/c/exp-past")) == "MISS"
    script.on("/t/exp-future", headers=lambda n: [
        ("Date", email.utils.formatdate(time.time(), usegmt=True)),
        ("Expires", email.utils.formatdate(time.time() + 60,
                                           usegmt=True))])
    get(gw, "/t/exp-future")
    time.sleep(1.3)        # past ttl_s = 1: Expires rules
    assert xc(get(gw, "/t/exp-future")) == "HIT"
    script.on("/c/exp-bad", headers=[("Expires", "0")])
    get(gw, "/c/exp-bad")
    assert xc(get(gw, "/c/exp-bad")) == "MISS"


def test_statuses_stored(gw, script):
    script.on("/c/404", status=404)
    script.on("/c/500", status=500)
    script.on("/c/302", status=302, headers=[("Location", "/x")])
    for path, stored in (("/c/404", True), ("/c/500", False),
                         ("/c/302", False)):
        get(gw, path)
        assert xc(get(gw, path)) == ("HIT" if stored else "MISS"), path


def test_authorization_bypasses_a_shared_route(gw):
    assert xc(get(gw, "/c/auth")) == "MISS"
    r = get(gw, "/c/auth", [("Authorization", "Bearer x")])
    assert xc(r) == "BYPASS" and r.json()["n"] == 2, r
    # and nothing was stored from it
    r = get(gw, "/c/auth2", [("Authorization", "Bearer x")])
    assert xc(r) == "BYPASS"
    assert xc(get(gw, "/c/auth2")) == "MISS"


@pytest.mark.parametrize("hdr", [("Cache-Control", "no-cache"),
                                 ("Cache-Control", "no-store"),
                                 ("Cache-Control", "max-age=0"),
                                 ("Pragma", "no-cache")])
def test_client_no_cache_bypasses(gw, hdr):
    path = "/c/nocache-%s" % hdr[1].replace("=", "")
    get(gw, path)
    r = get(gw, path, [hdr])
    assert xc(r) == "BYPASS" and r.json()["n"] == 2, r
    assert xc(get(gw, path)) == "HIT"


def test_unsafe_method_bypasses(gw):
    r = get(gw, "/c/post", method="POST")
    assert xc(r) is None     # the writes route has no cache
    r = get(gw, "/v/post", method="POST")
    assert xc(r) == "BYPASS"


# ------------------------------------------------------------------ Vary

def test_vary_configured_and_from_upstream(gw, script):
    # configured: X-Lang
    a = get(gw, "/v/x", [("X-Lang", "en")])
    b = get(gw, "/v/x", [("X-Lang", "fr")])
    assert xc(a) == "MISS" and xc(b) == "MISS"
    a2 = get(gw, "/v/x", [("X-Lang", "en")])
    b2 = get(gw, "/v/x", [("X-Lang", "fr")])
    assert xc(a2) == "HIT" and a2.json()["lang"] == "en"
    assert xc(b2) == "HIT" and b2.json()["lang"] == "fr"
    assert xc(get(gw, "/v/x")) == "MISS"      # absent is its own value
    # from the upstream: Vary: Accept-Encoding on a route without it
    script.on("/c/uv", headers=[("Vary", "Accept-Encoding")])
    g1 = get(gw, "/c/uv", [("Accept-Encoding", "gzip")])
    i1 = get(gw, "/c/uv", [("Accept-Encoding", "identity")])
    assert xc(g1) == "MISS" and xc(i1) == "MISS"
    g2 = get(gw, "/c/uv", [("Accept-Encoding", "gzip")])
    i2 = get(gw, "/c/uv", [("Accept-Encoding", "identity")])
    assert xc(g2) == "HIT" and g2.json()["ae"] == "gzip"
    assert xc(i2) == "HIT" and i2.json()["ae"] == "identity"
    assert len(seen(gw.origin, "/c/uv")) == 2


def test_vary_star_not_stored(gw, script):
    script.on("/c/star", headers=[("Vary", "*")])
    get(gw, "/c/star")
    assert xc(get(gw, "/c/star")) == "MISS"


# --------------------------------------------------------- per consumer

def test_per_consumer_entries(gateway, origin, script, tmp):
    o = origin(handler=script)
    sf = os.path.join(tmp, "hs.secret")
    with open(sf, "w") as f:
        f.write(SECRET.decode() + "\n")
    auth = {"jwt": {"keys": [{"kid": "k", "alg": "HS256",
                              "secret_file": sf}]}}
    r = dict(cached_route("me", "up", "/me", per_consumer=True),
             auth="jwt")
    g = gateway({"up": service(o.addr)}, [r], workers=2,
                extra={"auth": auth})
    alice = [("Authorization", "Bearer " + hs256(SECRET, claims("alice"),
                                                  kid="k"))]
    bob = [("Authorization", "Bearer " + hs256(SECRET, claims("bob"),
                                                kid="k"))]
    a1, b1 = get(g, "/me/home", alice), get(g, "/me/home", bob)
    assert xc(a1) == "MISS" and xc(b1) == "MISS"
    a2, b2 = get(g, "/me/home", alice), get(g, "/me/home", bob)
    assert xc(a2) == "HIT" and a2.json()["user"] == "alice", a2
    assert xc(b2) == "HIT" and b2.json()["user"] == "bob", b2
    assert len(seen(o, "/me/home")) == 2
    assert get(g, "/me/home").status == 401


# ------------------------------------------------------------ validation

def test_304_from_stored_etag(gw, script):
    script.on("/c/etag", headers=[("ETag", '"v1"'),
                                  ("Cache-Control", "max-age=60")])
    get(gw, "/c/etag")
    r = get(gw, "/c/etag", [("If-None-Match", '"v1"')])
    assert r.status == 304 and r.body == b"", r
    assert r.header("etag") == '"v1"' and xc(r) == "HIT"
    assert r.header("cache-control") == "max-age=60"
    assert r.header("content-type") is None
    r = get(gw, "/c/etag", [("If-None-Match", 'W/"v0", W/"v1"')])
    assert r.status == 304
    r = get(gw, "/c/etag", [("If-None-Match", '"v2"')])
    assert r.status == 200 and r.body, r
    assert len(seen(gw.origin, "/c/etag")) == 1


def test_304_from_computed_etag(gw):
    r = get(gw, "/c/noetag")
    assert r.header("etag") is None      # the miss streams as it came
    r = get(gw, "/c/noetag")
    etag = r.header("etag")
    assert etag and etag.startswith('"'), r
    r = get(gw, "/c/noetag", [("If-None-Match", etag)])
    assert r.status == 304 and r.header("etag") == etag


def test_304_from_last_modified(gw, script):
    lm = email.utils.formatdate(time.time() - 3600, usegmt=True)
    script.on("/c/lm", headers=[("Last-Modified", lm)])
    get(gw, "/c/lm")
    r = get(gw, "/c/lm", [("If-Modified-Since", lm)])
    assert r.status == 304, r
    old = email.utils.formatdate(time.time() - 7200, usegmt=True)
    assert get(gw, "/c/lm", [("If-Modified-Since", old)]).status == 200


def test_conditional_miss_fetches_whole(gw):
    r = get(gw, "/c/cond", [("If-None-Match", '"x"'), ("Range", "bytes=0-1")])
    assert r.status == 200 and xc(r) == "MISS"
    req = seen(gw.origin, "/c/cond")[0]
    assert not req.has("if-none-match") and not req.has("range")


def test_head_from_get(gw):
    g = get(gw, "/c/head")
    r = get(gw, "/c/head", method="HEAD")
    assert r.status == 200 and xc(r) == "HIT", r
    assert int(r.header("content-length")) == len(g.body)
    # a cold HEAD goes to the origin as HEAD and stores nothing
    r = get(gw, "/c/head2", method="HEAD")
    assert xc(r) == "MISS"
    assert seen(gw.origin, "/c/head2")[0].method == "HEAD"
    assert xc(get(gw, "/c/head2")) == "MISS"


# ---------------------------------------------------------- invalidation

def test_unsafe_method_invalidates_its_path(gw, script):
    get(gw, "/c/item?a=1")
    get(gw, "/c/item?a=2")
    get(gw, "/c/other")
    assert xc(get(gw, "/c/item?a=1")) == "HIT"
    script.on("/c/item", status=lambda n: 201 if n == 1 else 200)
    r = get(gw, "/c/item", method="POST")     # another route
    assert r.status in (200, 201)
    assert xc(get(gw, "/c/item?a=1")) == "MISS"
    assert xc(get(gw, "/c/item?a=2")) == "MISS"
    assert xc(get(gw, "/c/other")) == "HIT"
    assert stats(gw)["invalidated"] >= 2


def test_failed_unsafe_method_keeps_entries(gw, script):
    get(gw, "/c/keep")
    script.on("/c/keep", status=lambda n: 200 if n == 1 else 500)
    assert get(gw, "/c/keep", method="DELETE").status == 500
    assert xc(get(gw, "/c/keep")) == "HIT"


# ------------------------------------------------------------ collapsing

def concurrent(port, path, n, timeout=15):
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        try:
            barrier.wait(timeout=10)
            with Client(port, timeout=timeout) as c:
                results[i] = c.request(path=path)
        except Exception as e:          # noqa: BLE001 - reported below
            results[i] = e
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=timeout + 15)
    return results


def test_cold_key_reaches_origin_once_across_4_workers(gateway, origin,
                                                        script):
    script.on("/c/cold", delay=0.8)
    o = origin(handler=script)
    g = gateway({"up": service(o.addr, timeout_ms=5000)},
                [cached_route("c", "up", "/c")], workers=4)
    res = concurrent(g.port, "/c/cold", 100)
    bad = [r for r in res if not hasattr(r, "status") or r.status != 200]
    assert not bad, bad[:3]
    assert len(seen(o, "/c/cold")) == 1
    assert {r.json()["n"] for r in res} == {1}
    assert sorted(xc(r) for r in res).count("MISS") == 1
    s = stats(g)
    assert s["misses"] == 1 and s["hits"] == 99, s
    assert s["collapsed_waits"] >= 1, s


def test_uncacheable_key_does_not_serialise_waiters(gateway, origin, script):
    # a response that may not be stored: once the first says so, the
    # waiters go to the origin together, not one after another
    script.on("/c/nostore", hold=0.5, headers=[("Cache-Control",
                                                 "no-store")])
    o = origin(handler=script)
    g = gateway({"up": service(o.addr, timeout_ms=5000)},
                [cached_route("c", "up", "/c")], workers=2)
    res = concurrent(g.port, "/c/nostore", 10)
    assert all(getattr(r, "status", 0) == 200 for r in res), res
    assert len(seen(o, "/c/nostore")) == 10
    assert script.max_inflight >= 2


def worker_of_upstream(pids, port):
    """The worker pid holding a TCP connection to 127.0.0.1:port."""
    inodes = set()
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for ln in lines:
            p = ln.split()
            if int(p[2].split(":")[1], 16) == port and p[3] == "01":
                inodes.add(p[9])
    for pid in pids:
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return pid
        except OSError:
            continue
    return None


def test_killed_fetcher_frees_waiters(gateway, origin, script):
    script.on("/c/dies", hang_first=True)
    o = origin(handler=script)
    # A long upstream timeout: the waiters' bound (connect + timeout) is
    # far away, so only the fetcher's death can free them.
    g = gateway({"up": service(o.addr, timeout_ms=30000)},
                [cached_route("c", "up", "/c")], workers=2)
    def fetch_and_die():
        try:
            get(g, "/c/dies")
        except Exception:       # noqa: BLE001 - its worker is killed
            pass
    first = threading.Thread(target=fetch_and_die, daemon=True)
    first.start()
    assert wait_for(lambda: len([r for r in o.requests
                                 if r.target == "/c/dies"]) == 1)
    fetcher = wait_for(lambda: worker_of_upstream(g.worker_pids(), o.port))
    assert fetcher, "no worker holds the upstream connection"
    res = [None] * 12
    done = threading.Event()

    def waiters():
        res[:] = concurrent(g.port, "/c/dies", 12, timeout=20)
        done.set()
    threading.Thread(target=waiters, daemon=True).start()
    time.sleep(0.5)                 # the waiters are waiting now
    os.kill(fetcher, signal.SIGKILL)
    assert done.wait(timeout=10), "waiters still hanging"
    ok = [r for r in res if getattr(r, "status", None) == 200]
    # the waiters on the surviving worker were freed and answered (those
    # on the killed worker lost their connections with it)
    assert ok, res
    assert all(r.json()["n"] == 2 for r in ok)
    # the hung fetch, then the one a waiter took over: no more
    assert len(seen(o, "/c/dies")) == 2
    g.wait_workers(2, exclude=(fetcher,))


# ----------------------------------------------------------- stale serving

def test_stale_if_error_origin_down(gateway, origin, script):
    # the origin's stale-if-error, no stale-while-revalidate: the expired
    # entry goes to the origin first, and is served when it cannot
    script.on("/s/", headers=[("Cache-Control",
                               "max-age=1, stale-if-error=30")])
    o = origin(handler=script)
    g = gateway({"up": service(o.addr, retries=0, connect_timeout_ms=300)},
                [cached_route("s", "up", "/s", ttl_s=1)], workers=2)
    assert xc(get(g, "/s/down")) == "MISS"
    o.stop()
    time.sleep(1.3)
    r = get(g, "/s/down")
    assert r.status == 200 and xc(r) == "STALE", r
    assert r.json()["n"] == 1 and int(r.header("age")) >= 1
    # a key never stored still fails plainly
    assert get(g, "/s/never").status == 502


def test_stale_if_error_on_5xx(gw, script):
    script.on("/t/err", status=lambda n: 200 if n == 1 else 503,
              headers=[("Cache-Control", "max-age=1, stale-if-error=30")])
    get(gw, "/t/err")
    time.sleep(1.3)
    r = get(gw, "/t/err")
    assert r.status == 200 and xc(r) == "STALE", r
    assert r.json()["n"] == 1
    assert len(seen(gw.origin, "/t/err")) == 2     # it did ask


def test_must_revalidate_never_stale(gw, script):
    script.on("/s/mr", status=lambda n: 200 if n == 1 else 503,
              headers=[("Cache-Control", "max-age=1, must-revalidate")])
    get(gw, "/s/mr")
    time.sleep(1.3)
    r = get(gw, "/s/mr")
    assert r.status == 503 and xc(r) == "MISS", r


def test_stale_while_revalidate_one_refresh(gw, script):
    # the route's stale_s = 30 gives the window
    script.on("/s/swr", headers=[("Cache-Control", "max-age=1")])
    assert get(gw, "/s/swr").json()["n"] == 1
    time.sleep(1.3)
    script.on("/s/swr", hold=1.5, headers=[("Cache-Control",
                                            "max-age=60")])
    res = concurrent(gw.port, "/s/swr", 20)
    assert all(getattr(r, "status", 0) == 200 for r in res), res
    stale = [r for r in res if xc(r) == "STALE"]
    assert stale and all(r.json()["n"] == 1 for r in stale)
    assert all(xc(r) in ("STALE", "HIT") for r in res)
    # one background refresh, whose answer is then served
    assert wait_for(lambda: len(seen(gw.origin, "/s/swr")) == 2)
    r = wait_for(lambda: (lambda r: r if xc(r) == "HIT" else None)(
        get(gw, "/s/swr")))
    assert r and r.json()["n"] == 2, r
    time.sleep(0.3)
    assert len(seen(gw.origin, "/s/swr")) == 2
    assert stats(gw)["refreshes"] == 1


# ------------------------------------------------------------ body limits

def test_body_over_max_body_streams_uncached(gw, script):
    script.on("/big/x", body=b"b" * 1000)
    r = get(gw, "/big/x")
    assert r.status == 200 and r.body == b"b" * 1000
    r = get(gw, "/big/x")
    assert xc(r) == "MISS" and r.body == b"b" * 1000
    assert stats(gw)["too_big"] >= 1


def test_large_body_served_in_pieces(gw, script):
    big = bytes(range(256)) * 2048          # 512 KiB, under max_body
    script.on("/c/large", body=big)
    get(gw, "/c/large")
    r = get(gw, "/c/large")
    assert xc(r) == "HIT" and r.body == big


# --------------------------------------------------------- gwctl commands

def test_purge_and_show(gw):
    for p in ("/c/p/1", "/c/p/2", "/c/q/1", "/c/pp"):
        get(gw, p)
    out = gwctl(gw, "cache", "show", "/c/p/1")
    assert out.returncode == 0, out.stderr
    assert "/c/p/1" in out.stdout and "status     200" in out.stdout
    j = json.loads(gwctl(gw, "--json", "cache", "show", "/c/p/1").stdout)
    e = j["entries"][0]
    assert e["status"] == 200 and e["fresh_for_s"] > 50 and e["etag"]
    r = gwctl(gw, "cache", "purge", "/c/p")
    assert r.returncode == 0 and "purged 2 cached responses" in r.stdout
    assert xc(get(gw, "/c/p/1")) == "MISS"
    assert xc(get(gw, "/c/pp")) == "HIT"       # segment-aware
    assert xc(get(gw, "/c/q/1")) == "HIT"
    r = gwctl(gw, "cache", "purge")
    assert r.returncode == 0 and "purged" in r.stdout
    assert xc(get(gw, "/c/q/1")) == "MISS"
    r = gwctl(gw, "cache", "show", "/nothing")
    assert "no cached response" in r.stdout


def test_cache_usage_errors(gw):
    for args in (["cache"], ["cache", "show"], ["cache", "frob", "/x"]):
        r = gwctl(gw, *args)
        assert r.returncode != 0 and "usage" in r.stderr, args
    r = gwctl(gw, "cache", "purge", "nopath")
    assert r.returncode != 0 and "is not a path" in r.stderr


def test_stats_figures(gw):
    get(gw, "/c/st")
    get(gw, "/c/st")
    get(gw, "/c/st", [("Cache-Control", "no-cache")])
    s = stats(gw)
    assert s["hits"] == 1 and s["misses"] == 1 and s["bypass"] == 1, s
    assert s["hit_ratio"] == 0.5
    assert s["budget_bytes"] == 8 << 20    # half of max_mb = 16
    out = gwctl(gw, "stats").stdout
    assert "cache: 1 hits" in out and "hit ratio 50.0%" in out, out


# --------------------------------------------------------------- eviction

def test_small_cache_evicts_and_limits_hold(gateway, origin, script, tmp):
    script.on("/c/", body=b"z" * 50000)
    o = origin(handler=script)
    rl = route("limited", "up", prefix="/rl")
    rl["rate_limit"] = {"by": "header:X-Key", "tier": "t"}
    g = gateway({"up": service(o.addr)},
                [cached_route("c", "up", "/c"), rl], workers=2,
                server={"state": {"path": os.path.join(tmp, "state"),
                                  "max_mb": 4, "cache_mb": 3}},
                extra={"tiers": {"t": {"rate": 1, "per_s": 3600,
                                       "burst": 3}}})
    with Client(g.port) as c:
        for i in range(200):              # 10 MB through a 3 MB cache
            r = c.request(path="/c/%d" % i)
            assert r.status == 200 and len(r.body) == 50000, (i, r)
    s = stats(g)
    assert s["evictions"] > 0 and s["bytes"] <= 3 << 20, s
    assert 0 < s["entries"] < 200, s
    # rate limiting still has its room: 300 new keys, each exactly limited
    with Client(g.port) as c:
        for k in range(300):
            codes = [c.request(path="/rl/x", headers=[
                ("X-Key", "k%d" % k)]).status for _ in range(4)]
            assert codes == [200, 200, 200, 429], (k, codes)
    # and the cache goes on working
    get(g, "/c/again")
    assert xc(get(g, "/c/again")) == "HIT"


def test_invalidation_names_its_own_path(gateway, origin, script):
    # The response to an unsafe method comes late; meanwhile the worker
    # parses another request. The entries removed are the first one's.
    o = origin(handler=script)
    g = gateway({"up": service(o.addr)},
                [cached_route("c", "up", "/c")], workers=1)
    get(g, "/c/a")
    get(g, "/c/b")
    script.on("/c/a", status=204, hold=0.5)
    t = threading.Thread(target=lambda: get(g, "/c/a", method="DELETE"))
    t.start()
    assert wait_for(lambda: script.inflight == 1)
    assert xc(get(g, "/c/b")) == "HIT"      # parsed while DELETE waits
    t.join(timeout=10)
    assert xc(get(g, "/c/b")) == "HIT"
    assert xc(get(g, "/c/a")) == "MISS"


def test_chunked_origin_stored_whole(gw, script):
    parts = {"/c/chunked": [b'{"part":1,', b'"part2":true}'],
             "/big/chunked": [b"x" * 60, b"y" * 60, b"z" * 60]}

    def handler(o, req):
        if req.target in parts:
            return chunked_response(parts[req.target]), KEEP
        return script(o, req)
    gw.origin.handler = handler
    r = get(gw, "/c/chunked")
    assert xc(r) == "MISS" and r.json() == {"part": 1, "part2": True}
    r = get(gw, "/c/chunked")
    assert xc(r) == "HIT" and r.json() == {"part": 1, "part2": True}
    assert r.header("content-length") == str(len(r.body))
    # over max_body (100) with no length given: found out while it
    # streams, which it does whole; not stored
    whole = b"".join(parts["/big/chunked"])
    r = get(gw, "/big/chunked")
    assert r.status == 200 and r.body == whole
    r = get(gw, "/big/chunked")
    assert xc(r) == "MISS" and r.body == whole
