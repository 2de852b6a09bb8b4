"""The README's `make run` walkthrough, end to end: tools/run-demo.sh
with etc/portico.conf (the four demo services, JWT on orders, an API key
on payments, the cached catalogue, /api/home aggregated, stripped
fields, TLS on :8443, the admin listener), each command the README shows
and the answer it promises. The workers must live through all of it (an
aggregate with the access log on once killed them on every request).

The demo listens on fixed ports (8080, 8443, 9901, 8001-8004, 8011): the
test is skipped when one of them is taken, and stops everything it
started by the script's pid. It runs etc/portico.conf with a store of its
own (the demo's store outlives runs)."""

import json
import os
import re
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (BUILD, DEMO, GWCTL, PORTICO, REPO, Client,
                      need_binary, stop_pid)

PORTS = (8080, 8443, 9901, 8001, 8002, 8003, 8004, 8011)


def port_taken(port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def get(path, port=8080, method="GET", headers=()):
    with Client(port) as c:
        return c.request(method=method, path=path, headers=list(headers))


CONF = {}


def gwctl(*args):
    r = subprocess.run([GWCTL, "-c", CONF["path"]] + list(args),
                       cwd=REPO, capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout


def token(*args):
    return gwctl("token", "--key", "etc/keys/rs256.pem", "--kid", "rs1",
                 *args).strip()


def workers(out):
    """The pids of the workers gwctl status lists."""
    return sorted(set(re.findall(r"^\s*\d+\s+(\d+)\s", out, re.M)))


@pytest.fixture
def demo_run(tmp):
    for b in (PORTICO, GWCTL, DEMO):
        need_binary(b)
    taken = [p for p in PORTS if port_taken(p)]
    if taken:
        pytest.skip("demo ports in use: %s" % taken)
    subprocess.run(["bash", "etc/gen-keys.sh"], cwd=REPO, check=True,
                   capture_output=True, timeout=60)
    # etc/portico.conf as it is, but with a store of its own: the demo's
    # /dev/shm/portico-demo keeps health, breakers and the cache across
    # runs, and what an earlier run left there is not this test's.
    with open(os.path.join(REPO, "etc", "portico.conf")) as f:
        text = f.read()
    shared = 'path = "/dev/shm/portico-demo";'
    assert shared in text
    CONF["path"] = os.path.join(tmp, "portico.conf")
    with open(CONF["path"], "w") as f:
        f.write(text.replace(shared, 'path = "%s";' %
                             os.path.join(tmp, "state")))
    out = open(os.path.join(tmp, "demo.out"), "w+")
    env = dict(os.environ, PORTICO_BUILD=BUILD, PORTICO_CONF=CONF["path"])
    p = subprocess.Popen(["bash", "tools/run-demo.sh"], cwd=REPO, env=env,
                         stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out.seek(0)
            if "all 2 workers ready" in out.read():
                break
            assert p.poll() is None, "run-demo.sh exited"
            time.sleep(0.1)
        else:
            pytest.fail("the demo did not start in 20 s")
        yield out
    finally:
        stop_pid(p, grace=10)
        out.close()


def test_readme_walkthrough(demo_run):
    before = workers(gwctl("status"))
    assert len(before) == 2, before

    r = get("/users/7")
    assert r.status == 200 and r.json()["id"] == "7", r
    gwctl("cache", "purge", "/products")
    r1, r2 = get("/products"), get("/products")
    assert r1.status == 200 and r1.header("x-cache") == "MISS", r1
    assert r2.header("x-cache") == "HIT" and r2.header("age") is not None
    assert r2.json()["generated_at"] == r1.json()["generated_at"]
    assert get("/v1/users/7").json()["id"] == "7"
    r = get("/nope")
    assert r.status == 404 and r.json()["error"], r
    r = get("/orders/1", method="DELETE")
    assert r.status == 405 and r.header("allow"), r
    r = get("/orders/1")
    assert r.status == 401 and "Bearer" in r.header("www-authenticate")

    tok = token("--sub", "alice", "--tier", "paid", "--scope",
                "orders:read")
    auth = [("Authorization", "Bearer " + tok)]
    r = get("/orders/1", headers=auth)
    assert r.status == 200, r
    order = r.json()
    assert order["customer"] == "alice", order
    assert "internal_cost" not in r.body.decode() and \
        '"debug"' not in r.body.decode(), r.body

    r = get("/api/home", headers=auth)
    assert r.status == 200, r
    home = r.json()
    assert list(home) == ["profile", "recommendations", "promotions",
                          "cart", "degraded"], home
    assert home["degraded"] == [] and r.header("x-gateway-degraded") is None

    assert get("/_control/fail?mode=slow&ms=500", port=8003,
               method="POST").status == 200
    try:
        t = time.monotonic()
        r = get("/api/home", headers=auth)
        took = time.monotonic() - t
    finally:
        assert get("/_control/recover", port=8003,
                   method="POST").status == 200
    assert r.status == 200, r
    assert set(r.header("x-gateway-degraded").replace(" ", "")
               .split(",")) == {"recommendations", "promotions"}, r
    assert took < 0.45, took        # the 200 ms deadline, not the 500 ms

    bob = token("--sub", "bob")
    r = get("/orders/1", headers=[("Authorization", "Bearer " + bob)])
    assert r.status == 403 and "insufficient_scope" in \
        r.header("www-authenticate"), r

    with open(os.path.join(REPO, "etc/keys/demo-api-key.txt")) as f:
        key = f.read().strip()
    r = get("/payments/1", headers=[("X-API-Key", key)])
    assert r.status == 200 and r.header("ratelimit") is not None, r
    codes = [get("/payments/1", headers=[("X-API-Key", key)]).status
             for _ in range(60)]
    assert codes[0] == 200 and 429 in codes, codes

    ctx = ssl.create_default_context(
        cafile=os.path.join(REPO, "etc/tls/server.crt"))
    with socket.create_connection(("127.0.0.1", 8443), timeout=10) as s, \
            ctx.wrap_socket(s, server_hostname="localhost") as t:
        t.sendall(b"GET /orders/1 HTTP/1.1\r\nHost: localhost\r\n"
                  b"Authorization: Bearer " + tok.encode() +
                  b"\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = t.recv(65536)
            if not b:
                break
            data += b
    assert data.startswith(b"HTTP/1.1 200 "), data[:200]
    assert b'"customer":"alice"' in data

    st = gwctl("stats")
    assert re.search(r"^home\s+-\s+[1-9]", st, re.M), st
    assert "aggregate: " in st, st
    j = json.loads(gwctl("--json", "stats"))
    assert j["total"]["aggregate"]["requests"] >= 2, j["total"]
    m = get("/metrics", port=9901)
    assert m.status == 200 and b"portico_requests_total{" in m.body
    assert "route 'legacy'" in gwctl("explain", "GET", "/v1/users/7")
    assert "/products" in gwctl("cache", "show", "/products")

    # Nothing died on the way: the same two workers, no crash logged.
    assert workers(gwctl("status")) == before
    demo_run.seek(0)
    log = demo_run.read()
    assert "killed by signal" not in log and "crash" not in log, log[-3000:]
