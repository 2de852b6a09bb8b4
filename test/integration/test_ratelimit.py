"""Rate limiting across workers (issue 4): exact admitted counts under
overload with 4 workers and 64 connections, independent keys, the shared ""
bucket of a missing header, 429 shape, kill -9 of a worker, gwctl limits,
and buckets surviving a restart, a reload and a binary upgrade of the
gateway."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

import shutil

from conftest import (GWCTL, PORTICO, Client, assert_gateway_error, http,
                      route, stop_pid, write_config)

HAMMER_S = 5.0
CONNS = 64

TIERS = {
    "anonymous": {"rate": 10, "per_s": 1, "burst": 20},
    "t50": {"rate": 50, "per_s": 1, "burst": 10},
    "slow": {"rate": 1, "per_s": 3600, "burst": 3},
    "lease": {"rate": 1, "per_s": 3600, "burst": 200},
}


def limited(name, prefix, by, tier):
    r = route(name, "users", prefix=prefix)
    r["rate_limit"] = {"by": by, "tier": tier}
    return r


@pytest.fixture
def gw(gateway, demo):
    users = demo("users")
    routes = [
        limited("hammer", "/health", "route", "t50"),
        limited("keyed", "/users", "header:X-Key", "slow"),
        limited("leased", "/leased", "header:X-Key", "lease"),
        route("open", "users", prefix="/"),
    ]

    def make(workers=4):
        return gateway({"users": {"instances": [users.addr]}}, routes,
                       workers=workers, extra={"tiers": TIERS})
    return make


def gwctl(g, *args):
    sock = os.path.join(g.tmp, "portico.sock")
    return subprocess.run([GWCTL, "-s", sock] + list(args),
                          capture_output=True, text=True, timeout=10)


def forwarded(r):
    """Admitted and answered by the upstream (the demo's 404 included)."""
    return r.header("X-Demo-Service") is not None


def check_ratelimit_headers(r, tier):
    assert r.header("RateLimit-Policy") is not None, r
    assert r.header("RateLimit-Policy").startswith('"%s";q=' % tier), r
    rl = r.header("RateLimit")
    assert rl is not None and rl.startswith('"%s";r=' % tier), r
    parts = dict(p.split("=", 1) for p in rl.split(";")[1:])
    assert int(parts["r"]) >= 0 and int(parts["t"]) >= 0, rl


def ideal_admitted(times, start, rate, burst):
    """How many requests arriving at TIMES a single exact token bucket
    (full at START) admits."""
    tokens, prev, n = float(burst), start, 0
    for t in times:
        tokens = min(float(burst), tokens + rate * (t - prev))
        prev = t
        if tokens >= 1.0:
            tokens -= 1.0
            n += 1
    return n


def test_exact_across_workers(gw):
    g = gw(workers=4)
    counts = {"ok": 0, "limited": 0, "other": 0}
    sample = []
    lock = threading.Lock()
    errors = []
    start = time.monotonic()
    deadline = start + HAMMER_S
    last = [start]
    answered = []           # when each answer came, every thread

    def worker():
        ok = lim = other = 0
        end = start
        times = []
        try:
            c = Client(g.port)
            while time.monotonic() < deadline:
                r = c.request("GET", "/health")
                end = time.monotonic()
                times.append(end)
                if r.status == 200:
                    ok += 1
                elif r.status == 429:
                    lim += 1
                    if not sample:
                        sample.append(r)
                else:
                    other += 1
                if r.header("connection") == "close":
                    c.close()
                    c = Client(g.port)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
        with lock:
            counts["ok"] += ok
            counts["limited"] += lim
            counts["other"] += other
            last[0] = max(last[0], end)
            answered.extend(times)

    threads = [threading.Thread(target=worker) for _ in range(CONNS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HAMMER_S + 30)
    assert not errors, errors[:3]
    elapsed = last[0] - start
    expected = 10 + 50 * elapsed
    print("admitted %d refused %d in %.2f s (expected %.1f)" %
          (counts["ok"], counts["limited"], elapsed, expected))
    assert counts["other"] == 0, counts
    assert counts["limited"] > counts["ok"], counts   # real overload
    assert counts["ok"] <= expected, (counts, expected)
    # Never fewer than a perfect bucket would admit given when requests
    # really came: on a loaded machine the clients may pause longer than
    # the burst lasts, and the tokens of such a gap are lost by rule.
    ideal = ideal_admitted(sorted(answered), start, rate=50, burst=10)
    assert counts["ok"] >= 0.98 * ideal, (counts, ideal, expected)
    r = sample[0]
    j = assert_gateway_error(r, 429)
    assert j["error"] == "rate_limited"
    assert int(r.header("Retry-After")) >= 1
    check_ratelimit_headers(r, "t50")


def test_keys_independent(gw):
    g = gw(workers=2)
    with Client(g.port) as c:
        for _ in range(3):
            r = c.request("GET", "/users/1", headers=[("X-Key", "a")])
            assert r.status == 200, r
            check_ratelimit_headers(r, "slow")
        r = c.request("GET", "/users/1", headers=[("X-Key", "a")])
        j = assert_gateway_error(r, 429)
        assert j["error"] == "rate_limited"
        assert int(r.header("Retry-After")) > 60   # 1 token per hour
        check_ratelimit_headers(r, "slow")
        assert r.header("RateLimit").startswith('"slow";r=0;')
        # Another key is limited on its own.
        for _ in range(3):
            r = c.request("GET", "/users/1", headers=[("X-Key", "b")])
            assert r.status == 200, r
        assert c.request("GET", "/users/1",
                         headers=[("X-Key", "b")]).status == 429
    # No header: one shared "" bucket, never unlimited, whichever
    # connection (and so worker) the request lands on.
    statuses = [http(g.port, "GET", "/users/1").status for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429], statuses
    # A route without rate_limit carries no RateLimit headers.
    r = http(g.port, "GET", "/products/1")
    assert r.header("RateLimit") is None


def test_gwctl_limits_and_reset(gw):
    g = gw(workers=2)
    for _ in range(3):
        assert http(g.port, "GET", "/users/1",
                    headers=[("X-Key", "ctl")]).status == 200
    assert http(g.port, "GET", "/users/1",
                headers=[("X-Key", "ctl")]).status == 429
    p = gwctl(g, "limits", "ctl")
    assert p.returncode == 0, p.stderr
    assert "slow" in p.stdout and "header:x-key" in p.stdout, p.stdout
    p = gwctl(g, "--json", "limits", "ctl")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["ok"] is True
    assert len(j["buckets"]) == 1
    b = j["buckets"][0]
    assert (b["tier"], b["by"], b["tokens"], b["burst"]) == \
        ("slow", "header:x-key", 0, 3)
    # The store's figures come along (make bench reads write_txns).
    st = j["store"]
    assert st["map_bytes"] == 16 << 20, st
    assert 0 < st["reserve_pages"] < st["headroom_pages"] < st["free_pages"]
    assert st["write_txns"] > 0, st
    p = gwctl(g, "limits", "--reset", "ctl")
    assert p.returncode == 0, p.stderr
    assert "reset 1 bucket" in p.stdout, p.stdout
    for _ in range(3):
        assert http(g.port, "GET", "/users/1",
                    headers=[("X-Key", "ctl")]).status == 200
    p = gwctl(g, "limits", "nobody")
    assert p.returncode == 0 and "no stored bucket" in p.stdout, p


def test_kill9_loses_at_most_a_lease(gw):
    g = gw(workers=4)
    burst = TIERS["lease"]["burst"]
    # Spread requests over many connections, hence every worker.
    admitted = 0
    conns = [Client(g.port) for _ in range(16)]
    for _ in range(2):
        for c in conns:
            r = c.request("GET", "/leased", headers=[("X-Key", "k9")])
            assert forwarded(r), r
            admitted += 1
    for c in conns:
        c.close()
    victim = g.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    g.wait_workers(4, exclude=(victim,))
    # Spend the rest of the budget; leases not spent in time return.
    time.sleep(0.3)
    refused = 0
    for _ in range(3 * burst):
        with Client(g.port) as c:
            for _ in range(4):
                r = c.request("GET", "/leased", headers=[("X-Key", "k9")])
                if forwarded(r):
                    admitted += 1
                else:
                    assert r.status == 429, r
                    refused += 1
        if refused >= 16:
            break
    # A worker leases at most 1/8 of what is left (4 workers x 2), so
    # the dead one took at most burst / 8 tokens with it.
    print("admitted %d of %d" % (admitted, burst))
    assert admitted <= burst
    assert admitted >= burst - burst // 8, admitted


def test_limit_survives_restart(gw):
    g = gw(workers=2)
    for _ in range(3):
        assert http(g.port, "GET", "/users/1",
                    headers=[("X-Key", "r")]).status == 200
    assert http(g.port, "GET", "/users/1",
                headers=[("X-Key", "r")]).status == 429
    g.stop()
    g.start()
    assert http(g.port, "GET", "/users/1",
                headers=[("X-Key", "r")]).status == 429
    assert http(g.port, "GET", "/users/1",
                headers=[("X-Key", "other")]).status == 200


def test_limit_survives_reload_and_upgrade(gateway, demo, tmp):
    """A key at its limit stays limited across a reload and a binary
    upgrade (the store is shared by both generations and both binaries);
    a tier whose settings change starts full."""
    users = demo("users")
    routes = [limited("keyed", "/users", "header:X-Key", "slow")]
    services = {"users": {"instances": [users.addr]}}
    g = gateway(services, routes, workers=2, extra={"tiers": TIERS})
    key = [("X-Key", "held")]

    def status():
        return http(g.port, "GET", "/users/1", headers=key).status

    for _ in range(3):
        assert status() == 200
    assert status() == 429

    # Reload with the same tiers (another route added): still limited.
    write_config(tmp, services, routes + [route("open", "users", prefix="/")],
                 port=g.port, workers=2, extra={"tiers": TIERS})
    r = gwctl(g, "reload")
    assert r.returncode == 0, r.stderr
    assert status() == 429

    # Binary upgrade to a copy of the binary: still limited.
    bin2 = os.path.join(tmp, "portico-copy")
    shutil.copy(PORTICO, bin2)
    r = gwctl(g, "upgrade", "--binary", bin2)
    assert r.returncode == 0, r.stderr
    g.proc.wait(timeout=15)
    with open(os.path.join(tmp, "portico.pid")) as f:
        new_pid = int(f.read().strip())
    try:
        assert status() == 429
        # The tier's settings change: its buckets start full.
        tiers = dict(TIERS, slow={"rate": 1, "per_s": 3600, "burst": 4})
        write_config(tmp, services, routes, port=g.port, workers=2,
                     extra={"tiers": tiers})
        r = gwctl(g, "reload")
        assert r.returncode == 0, r.stderr
        assert status() == 200
    finally:
        stop_pid(new_pid)


def limits_json(g, key):
    p = gwctl(g, "--json", "limits", key)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_idle_lease_returns_on_timer(gw):
    """Tokens a worker leased and did not use go back to the shared bucket
    within 200 ms, with no further request: gwctl limits shows them back
    and another worker's RateLimit: r= counts them."""
    g = gw(workers=2)
    burst = TIERS["lease"]["burst"]
    key = [("X-Key", "idle")]
    with Client(g.port) as c:
        r = c.request("GET", "/leased", headers=key)
        assert forwarded(r), r
    # One worker leased a share (1/(2 x 2) of 200 = 50) and spent one.
    b = limits_json(g, "idle")["buckets"][0]
    assert b["tokens"] <= burst - 2, b
    time.sleep(0.5)
    b = limits_json(g, "idle")["buckets"][0]
    assert b["tokens"] == burst - 1, b
    # Whichever worker answers now counts them in RateLimit: r= (it
    # leases a quarter of 199 and reports what it left plus what it holds).
    with Client(g.port) as c:
        r = c.request("GET", "/leased", headers=key)
        assert forwarded(r), r
        rl = dict(p.split("=", 1) for p in
                  r.header("RateLimit").split(";")[1:])
        assert int(rl["r"]) == burst - 2, r.header("RateLimit")


def test_ipv6_clients_grouped_by_64(gateway, demo):
    """by = "ip": IPv6 clients (here forwarded by a trusted proxy on
    loopback) share one bucket per /64 by default; ipv6_prefix changes it."""
    users = demo("users")
    r64 = limited("v6", "/users", "ip", "slow")
    r128 = limited("v6full", "/orders", "ip", "slow")
    r128["rate_limit"]["ipv6_prefix"] = 128
    g = gateway({"users": {"instances": [users.addr]}},
                [r64, r128, route("open", "users", prefix="/")], workers=2,
                server={"trusted_proxies": ["127.0.0.0/8"]},
                extra={"tiers": TIERS})

    def get(path, client):
        return http(g.port, "GET", path,
                    headers=[("X-Forwarded-For", client)]).status

    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2",
                 "2001:db8:1:2:ffff::3"):
        assert get("/users/1", host) == 200
    # A fourth host in the same /64: its budget is spent.
    assert get("/users/1", "2001:db8:1:2:aaaa::4") == 429
    # Another /64 has its own.
    assert get("/users/1", "2001:db8:1:3::1") == 200
    p = gwctl(g, "limits", "2001:db8:1:2::/64")
    assert p.returncode == 0 and "slow" in p.stdout, p
    # With ipv6_prefix = 128 every address is its own client.
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2",
                 "2001:db8:1:2:ffff::3", "2001:db8:1:2:aaaa::4"):
        assert get("/orders/1", host) in (200, 404)
