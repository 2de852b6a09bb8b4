"""gwctl against a running master: every command's table and --json, explain
(match, rewrite, 404, 405, 400, host, balancing),
reopen, stop, failures (unknown command, no master), and the control socket
refusing garbage without disturbing the master."""

import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import GWCTL, PORTICO, http, need_binary, pid_alive, route, \
    service, stop_pid

TIERS = {"anonymous": {"rate": 100, "per_s": 1, "burst": 100}}


def gw_hash(data):
    """The balancer's hash (shm/hash.h): 64-bit FNV-1a, then MurmurHash3's
    finaliser, cut to 32 bits."""
    m = 0xFFFFFFFFFFFFFFFF
    h = 14695981039346656037
    for b in data:
        h = ((h ^ b) * 1099511628211) & m
    h ^= h >> 33
    h = (h * 0xff51afd7ed558ccd) & m
    h ^= h >> 33
    h = (h * 0xc4ceb9fe1a85ec53) & m
    h ^= h >> 33
    return h & 0xFFFFFFFF


def gwctl(g, *args, timeout=15):
    """Run build/gwctl -c CONF ARGS...; returns CompletedProcess."""
    need_binary(GWCTL)
    return subprocess.run([GWCTL, "-c", g.conf, "-p", g.tmp] + list(args),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(g, *args):
    r = gwctl(g, *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def js(g, *args):
    r = gwctl(g, "--json", *args)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    j = json.loads(r.stdout)
    assert j["ok"] is True, j
    return j


def fails(r, text):
    """Non-zero exit with a one-line reason on stderr containing text."""
    assert r.returncode != 0, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert text in lines[0], r.stderr
    return lines[0]


@pytest.fixture
def gw(gateway, origin):
    o1, o2, o3 = origin(), origin(), origin()
    services = {
        "api": service(o1.addr, o2.addr, balance="hash:header:X-User"),
        "one": service(o3.addr),
        "rr": service(o1.addr, o2.addr),
        "byip": service(o1.addr, o2.addr, o3.addr, balance="hash:ip"),
    }
    api = route("api", "api", prefix="/api", methods=["GET", "POST"])
    api["rewrite"] = {"pattern": "^/api/(.*)$", "to": "/v2/$1"}
    api["rate_limit"] = {"by": "header:X-User", "tier": "anonymous"}
    api["transform"] = {
        "request": {"add_headers": ["X-Gateway: portico"],
                    "remove_headers": ["Cookie"]},
        "response": {"remove_headers": ["Server"]}}
    routes = [api,
              route("exact", "one", path="/x", host="a.example"),
              route("numbers", "rr", regex="^/r/[0-9]+$"),
              route("ip", "byip", prefix="/ip"),
              dict(route("cat", "one", prefix="/cat"),
                   cache={"ttl_s": 30})]
    g = gateway(services, routes, workers=2, extra={"tiers": TIERS})
    g.origins = (o1, o2, o3)
    return g


def test_help_lists_every_command(gw):
    out = ok(gw, "help")
    for c in ("status", "stats", "reload", "upgrade", "check", "routes",
              "explain", "breakers", "limits", "cache purge", "stop",
              "reopen"):
        assert c in out, c
    for c in ("stats", "routes", "explain", "breakers", "cache", "reopen",
              "stop", "limits"):
        r = gwctl(gw, c, "--help")
        assert r.returncode == 0 and ("gwctl " + c) in r.stdout, r


def test_stats_table_and_json(gw):
    assert http(gw.port, path="/x", host="a.example").status == 200
    assert http(gw.port, path="/nope").status == 404
    out = ok(gw, "stats")
    lines = out.splitlines()
    # the per-worker table follows the route and service tables
    at = [i for i, ln in enumerate(lines) if ln.startswith("WORKER ")]
    assert len(at) == 1, out
    head = lines[at[0]]
    assert head.split()[:5] == ["WORKER", "PID", "GEN", "CONNS",
                                "REQUESTS"], out
    for h in ("1XX", "2XX", "3XX", "4XX", "5XX", "UPSTREAM"):
        assert h in head, out
    assert sum(1 for ln in lines[at[0]:]
               if ln.split()[:1] in (["0"], ["1"])) == 2
    assert any(ln.startswith("total") for ln in lines), out
    assert lines[0].startswith("generation 1; rates over the last"), out
    assert any(ln.startswith("exact ") for ln in lines), out
    j = js(gw, "stats")
    assert len(j["workers"]) == 2
    for w in j["workers"]:
        for k in ("slot", "pid", "generation", "draining", "conns",
                  "conns_total", "requests", "upstream_conns", "status"):
            assert k in w, (k, w)
        assert set(w["status"]) == {"1xx", "2xx", "3xx", "4xx", "5xx",
                                    "other"}
    assert sorted(w["pid"] for w in j["workers"]) == \
        sorted(gw.worker_pids())
    t = j["total"]
    assert t["workers"] == 2
    assert t["requests"] >= 2 and t["status"]["2xx"] >= 1 and \
        t["status"]["4xx"] >= 1, t
    assert t["requests"] == sum(w["requests"] for w in j["workers"])


def test_routes_table_and_json(gw):
    out = ok(gw, "routes")
    assert "5 routes" in out
    for want in ("api", "prefix /api, methods GET,POST, host any",
                 "hash:header:X-User", "^/api/(.*)$ -> /v2/$1",
                 "rate_limit: by header:X-User, tier anonymous",
                 "transform: request add [X-Gateway: portico] remove "
                 "[Cookie]", "response add [] remove [Server]",
                 "exact", "path /x, methods any, host a.example",
                 "numbers", "regex ^/r/[0-9]+$", "round_robin",
                 gw.origins[0].addr):
        assert want in out, (want, out)
    j = js(gw, "routes")
    assert [r["name"] for r in j["routes"]] == ["api", "exact", "numbers",
                                                "ip", "cat"]
    api = j["routes"][0]
    assert api["match"] == {"kind": "prefix", "value": "/api",
                            "methods": ["GET", "POST"], "host": None}
    assert api["service"]["name"] == "api"
    assert api["service"]["balance"] == "hash:header:X-User"
    assert len(api["service"]["instances"]) == 2
    assert api["rewrite"] == {"pattern": "^/api/(.*)$", "to": "/v2/$1"}
    pol = {p["name"]: p for p in api["policies"]}
    assert pol["rate_limit"]["by"] == "header:X-User"
    assert pol["rate_limit"]["tier"] == "anonymous"
    assert pol["transform"]["request_add"] == ["X-Gateway: portico"]
    assert pol["transform"]["request_remove"] == ["Cookie"]
    assert pol["transform"]["response_remove"] == ["Server"]
    assert j["routes"][1]["policies"] == []
    assert j["routes"][1]["rewrite"] is None


def test_explain_match_rewrite_and_hash(gw):
    out = ok(gw, "explain", "GET", "/api/a/../b?q=1", "-H", "X-User: bob")
    for want in ("normalised     /api/b", "route 'api'",
                 "upstream path  /v2/b?q=1", "key bob",
                 "transform: request add [X-Gateway: portico]",
                 "nothing was sent upstream"):
        assert want in out, (want, out)
    j = js(gw, "explain", "GET", "/api/a/../b?q=1", "-H", "X-User: bob")
    assert j["status"] is None and j["sent"] is False
    assert j["normalized"] == "/api/b"
    assert j["upstream_path"] == "/v2/b?q=1"
    assert j["route"]["name"] == "api"
    assert [p["name"] for p in j["policies"]] == ["rate_limit", "transform"]
    pick = j["service"]["pick"]
    idx = gw_hash(b"bob") % 2
    assert pick["index"] == idx
    assert pick["instance"] == j["service"]["instances"][idx]
    # Same header, same pick; the worker's choice is the same function.
    j2 = js(gw, "explain", "POST", "/api/zz", "-H", "x-user:  bob ")
    assert j2["service"]["pick"]["index"] == idx
    time.sleep(0.2)
    for o in gw.origins:
        assert o.complete_requests() == [], "explain sent a request"


def test_explain_names_every_policy_as_live(gw):
    """Every contract policy is built: explain lists the cache without a
    "not built" mark, in the table and in --json."""
    out = ok(gw, "explain", "GET", "/cat/1")
    assert "cache" in out and "not built" not in out, out
    j = js(gw, "explain", "GET", "/cat/1")
    pols = {p["name"]: p for p in j["policies"]}
    assert "cache" in pols, j["policies"]
    assert all("built" not in p for p in j["policies"]), j["policies"]


def test_explain_balancing(gw):
    j = js(gw, "explain", "GET", "/r/7")
    assert j["route"]["name"] == "numbers"
    assert j["service"]["pick"]["index"] is None
    assert "next of 2 (round robin per worker)" in \
        j["service"]["pick"]["how"]
    j = js(gw, "explain", "GET", "/ip/x", "--ip", "10.1.2.3")
    assert j["service"]["pick"]["index"] == \
        gw_hash(socket.inet_aton("10.1.2.3")) % 3
    j = js(gw, "explain", "GET", "/ip/x")
    assert j["service"]["pick"]["index"] is None
    assert "--ip" in j["service"]["pick"]["how"]


def test_explain_host(gw):
    j = js(gw, "explain", "GET", "/x", "-H", "Host: A.Example:8080")
    assert j["route"]["name"] == "exact"
    assert j["service"]["pick"]["how"] == "the only instance"
    j = js(gw, "explain", "GET", "/x", "-H", "Host: b.example")
    assert j["status"] == 404 and j["route"] is None


def test_explain_404_405_400(gw):
    out = ok(gw, "explain", "GET", "/nope")
    assert "404" in out and "no route matches" in out
    j = js(gw, "explain", "GET", "/nope")
    assert j["status"] == 404 and j["normalized"] == "/nope"

    out = ok(gw, "explain", "DELETE", "/api/x")
    assert "405" in out and "Allow: GET, HEAD, POST" in out, out
    j = js(gw, "explain", "DELETE", "/api/x")
    assert j["status"] == 405 and j["allow"] == "GET, HEAD, POST"

    for bad in ("/../etc", "/a%2Fb", "nopath", "/a%zz"):
        j = js(gw, "explain", "GET", bad)
        assert j["status"] == 400, (bad, j)
        assert "normalisation" in j["reason"]
        assert j["route"] is None
    out = ok(gw, "explain", "GET", "/a%2Fb")
    assert "refused by normalisation: 400" in out


def test_explain_usage_errors(gw):
    fails(gwctl(gw, "explain", "GET"), "usage")
    fails(gwctl(gw, "explain", "GET", "/", "-H", "novalue"),
          "is not 'Name: value'")
    fails(gwctl(gw, "explain", "GET", "/", "-H"), "needs a value")


def test_breakers_lists_every_instance(gw):
    """Services without a breaker or health checks are listed too."""
    out = ok(gw, "breakers")
    assert out.splitlines()[0].split()[:3] == ["SERVICE", "INSTANCE",
                                                "BREAKER"], out
    j = js(gw, "breakers")
    names = [s["name"] for s in j["services"]]
    assert names, j
    for s in j["services"]:
        for i in s["instances"]:
            assert i["breaker"] in ("off", "closed"), i
            assert i["health"] in ("off", "up", "unknown"), i
    fails(gwctl(gw, "breakers", "extra"), "usage")


def test_reopen(gw):
    log = os.path.join(gw.tmp, "error.log")
    os.rename(log, log + ".1")
    out = ok(gw, "reopen")
    assert "2 workers signalled" in out, out
    j = js(gw, "reopen")
    assert j["workers_signalled"] == 2 and j["error_log"] == log
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not os.path.exists(log):
        time.sleep(0.05)
    with open(log) as f:
        assert "logs reopened (gwctl reopen)" in f.read()
    assert gw.alive()
    assert http(gw.port, path="/x", host="a.example").status == 200


def test_unknown_command_and_no_master(gw, tmp):
    fails(gwctl(gw, "frobnicate"), "unknown command 'frobnicate'")
    fails(gwctl(gw, "stats", "extra"), "unexpected argument 'extra'")
    fails(gwctl(gw, "routes", "extra"), "takes no arguments")
    r = subprocess.run([GWCTL, "-s", os.path.join(tmp, "none.sock"),
                        "stats"], capture_output=True, text=True,
                       timeout=15)
    fails(r, "is portico running?")


def _raw(path, data, timeout=5.0):
    """Send data on a fresh control connection; returns what came back
    until the master closed (or the timeout)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    out = b""
    try:
        s.sendall(data)
        while True:
            d = s.recv(65536)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return out


def _error_reply(out):
    """Decode a {"ok": false, "error": TEXT} reply (fixmap of two)."""
    assert len(out) >= 4, out
    n = struct.unpack(">I", out[:4])[0]
    body = out[4:4 + n]
    assert len(body) == n, out
    assert body[:1] == b"\x82" and b"\xa2ok\xc2" in body, body
    assert b"error" in body, body
    return body


def test_control_socket_refuses_garbage(gw):
    path = os.path.join(gw.tmp, "portico.sock")
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    # random bytes: their first four announce an absurd length
    _error_reply(_raw(path, bytes([0xFF, 0x13, 0x37, 0x42]) +
                      os.urandom(200)))
    # oversized and zero length prefixes
    body = _error_reply(_raw(path, struct.pack(">I", (1 << 20) + 1)))
    assert b"out of range" in body
    _error_reply(_raw(path, struct.pack(">I", 0xFFFFFFFF) + b"x" * 10))
    _error_reply(_raw(path, struct.pack(">I", 0)))
    # well framed, not a map: an array, an integer, a string
    for v in (b"\x93\x01\x02\x03", b"\x05", b"\xa3abc"):
        body = _error_reply(_raw(path, struct.pack(">I", len(v)) + v))
        assert b"not a map" in body, body
    # malformed msgpack and a map announcing 2^32-1 entries
    for v in (b"\xc1", b"\x82\xa1a", b"\xdf\xff\xff\xff\xff"):
        body = _error_reply(_raw(path, struct.pack(">I", len(v)) + v))
        assert b"malformed" in body, body
    # a map without a cmd: an error reply, the connection stays usable
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(struct.pack(">I", 3) + b"\x81\x01\x02")
    got = s.recv(65536)
    assert b"no 'cmd'" in got, got
    s.close()
    # a partial frame then a hang-up
    _raw(path, struct.pack(">I", 100) + b"\x81", timeout=0.5)
    assert gw.alive()
    j = js(gw, "stats")
    assert j["total"]["workers"] == 2
    assert http(gw.port, path="/x", host="a.example").status == 200


def test_stop_graceful(gw):
    out = ok(gw, "stop")
    assert "graceful stop started" in out
    gw.proc.wait(timeout=10)
    assert gw.proc.returncode == 0


def test_stop_now_json(gw):
    j = js(gw, "stop", "--now")
    assert j["stop"] == "fast" and j["pid"] == gw.pid
    gw.proc.wait(timeout=10)
    assert gw.proc.returncode == 0
    fails(gwctl(gw, "stats"), "is portico running?")


# ------------------------------------------------- control socket limits

def _frame(obj_bytes):
    return struct.pack(">I", len(obj_bytes)) + obj_bytes


STATUS_REQ = _frame(b"\x81\xa3cmd\xa6status")


def _recv_frame(s):
    """One reply frame, or None if the connection closed first."""
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        d = s.recv(65536)
        if not d:
            return None
        buf += d
    return buf[4:4 + struct.unpack(">I", buf[:4])[0]]


def _msgpack_int_after(body, key):
    """The integer value following the first KEY string in a reply."""
    k = bytes([0xa0 | len(key)]) + key.encode()
    i = body.index(k) + len(k)
    t = body[i]
    if t < 0x80:
        return t
    size = {0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8,
            0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8}[t]
    return int.from_bytes(body[i + 1:i + 1 + size], "big",
                          signed=t >= 0xd0)


def _status_pid(path, timeout=10.0):
    """Ask for status on a fresh connection: the answering master's pid,
    or an error string."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(STATUS_REQ)
        body = _recv_frame(s)
    except OSError as e:
        return "error: %r" % e
    finally:
        s.close()
    if body is None:
        return "error: closed without a reply"
    if b"\xa2ok\xc3" not in body:
        return "error: %r" % body[:200]
    return _msgpack_int_after(body, "pid")


def test_idle_control_connections_do_not_lock_gwctl_out(gw):
    """More silent connections than the master serves at once: gwctl still
    gets an answer at once, and the silent ones are closed in about a
    second (a partial message counts as silence too)."""
    path = os.path.join(gw.tmp, "portico.sock")
    held = []
    try:
        for _ in range(40):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            held.append(s)
        held[-1].sendall(struct.pack(">I", 100) + b"\x81")
        t0 = time.monotonic()
        r = gwctl(gw, "--json", "status", timeout=20)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["pid"] == gw.pid
        # The master closes every silent connection on its own; bounded
        # wait per socket, all within a few seconds in total.
        for s in held:
            s.settimeout(max(0.1, t0 + 10 - time.monotonic()))
            try:
                assert s.recv(4096) == b""
            except ConnectionResetError:
                pass
        # A client that keeps talking is not cut off.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        for _ in range(4):
            s.sendall(STATUS_REQ)
            assert _msgpack_int_after(_recv_frame(s), "pid") == gw.pid
            time.sleep(0.3)
        s.close()
    finally:
        for s in held:
            s.close()
    assert "control: too many connections" in gw.error_log()
    assert gw.alive()


def test_one_master_answers_during_upgrade(gateway, origin, tmp):
    """During a binary upgrade, gwctl is answered by the old master until
    the new one is ready, then only by the new one: never both in turn.
    Three upgrades in a row, with status asked over and over meanwhile."""
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=8)
    path = os.path.join(g.tmp, "portico.sock")
    bin2 = os.path.join(tmp, "portico-new")
    shutil.copy(PORTICO, bin2)
    old = g.pid
    masters = [old]
    try:
        for _ in range(3):
            result = {}

            def upgrade():
                result["r"] = subprocess.run(
                    [GWCTL, "-s", path, "upgrade", "--binary", bin2],
                    capture_output=True, text=True, timeout=40)

            t = threading.Thread(target=upgrade, daemon=True)
            answers = []
            t.start()
            deadline = time.monotonic() + 30
            after = 0
            while time.monotonic() < deadline and after < 20:
                answers.append(_status_pid(path))
                if not t.is_alive():
                    after += 1
            t.join(timeout=15)
            assert "r" in result and result["r"].returncode == 0, result
            with open(os.path.join(g.tmp, "portico.pid")) as f:
                new = int(f.read().strip())
            masters.append(new)
            assert new != old
            errors = [a for a in answers if not isinstance(a, int)]
            assert errors == [], errors[:5]
            assert set(answers) <= {old, new}, set(answers)
            # old ... old new ... new: the answer never goes back.
            trace = "".join("o" if a == old else "n" for a in answers)
            assert "no" not in trace, trace
            assert trace.endswith("n"), trace
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and pid_alive(old):
                time.sleep(0.05)
            old = new
    finally:
        for pid in masters[1:]:
            stop_pid(pid)
