"""Access log: one JSON (or combined) line per request, the query string
logged with credentials redacted, a client that leaves early logged as 499,
lines reach the file within the flush interval, reopened after rotation."""

import json
import os
import signal
import socket
import struct
import subprocess
import time

from conftest import GWCTL, http, read_lines, route, service, wait_log
from origin import HANG, ok_handler




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
    assert first["path"] == "/api/b?token=REDACTED&x=1"
    assert first["status"] == 200
    assert first["route"] == "api"
    assert first["upstream"] == o.addr
    assert first["client_ip"] == "127.0.0.1"
    assert len(first["trace_id"]) == 32
    assert first["bytes_out"] > 0
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
    assert '"HEAD /x?k=v HTTP/1.1" 200 ' in lines[0]
    assert len(lines) == 2, lines
    assert '"GET /slow HTTP/1.1" 499 ' in lines[1]




def worker_requests(g):
    """{worker pid: requests served} from gwctl stats."""
    r = subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock"),
                        "--json", "stats"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    return {w["pid"]: w["requests"] for w in json.loads(r.stdout)["workers"]}


def test_sigusr1_reopens_every_workers_access_log(gateway, origin, tmp):
    """logrotate renames the file and sends SIGUSR1 to the master: every
    worker must write new lines to a new file at the original path."""
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [route("api", "up", prefix="/")], workers=2,
                server={"access_log": {"path": log, "format": "json"}})
    for i in range(8):
        assert http(g.port, path="/before/%d" % i).status == 200
    assert len(read_lines(log, 8)) == 8
    before = worker_requests(g)
    os.rename(log, log + ".1")
    g.signal(signal.SIGUSR1)
    # The master says so once it has signalled its workers.
    assert wait_log(g, "2 workers signalled"), g.error_log()
    for i in range(24):
        assert http(g.port, path="/after/%d" % i).status == 200
    lines = read_lines(log, 24)
    assert len(lines) == 24, lines
    assert all("/after/" in l for l in lines), lines
    # Both workers served some of them (the kernel spreads connections).
    after = worker_requests(g)
    assert len(after) == 2 and all(after[p] > before.get(p, 0)
                                   for p in after), (before, after)
    with open(log + ".1") as f:
        old = [l for l in f.read().splitlines() if l]
    assert len(old) == 8 and all("/before/" in l for l in old), old
    assert g.alive()


def test_gwctl_reopen_moves_access_log_to_new_file(gateway, origin, tmp):
    """Rotation by `gwctl reopen`: lines written before the rename stay in
    the moved file (none lost), new lines go to a new file at the path."""
    o = origin()
    log = os.path.join(tmp, "access.log")
    g = gateway({"up": service(o.addr, retries=0)},
                [route("api", "up", prefix="/")], workers=2,
                server={"access_log": {"path": log, "format": "json"}})
    for i in range(6):
        assert http(g.port, path="/before/%d" % i).status == 200
    # Not waited for: lines still buffered in a worker are flushed to the
    # old file when it reopens.
    os.rename(log, log + ".1")
    r = subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock"),
                        "reopen"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert "2 workers signalled" in r.stdout, r.stdout
    for i in range(10):
        assert http(g.port, path="/after/%d" % i).status == 200
    lines = read_lines(log, 10)
    assert len(lines) == 10 and all("/after/" in l for l in lines), lines
    old = read_lines(log + ".1", 6)
    assert len(old) == 6 and all("/before/" in l for l in old), old
