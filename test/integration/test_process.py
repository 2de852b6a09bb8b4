"""Process model: worker crash and respawn under load, graceful stop with a
request in flight, the pid file, config validation, gwctl."""

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import GWCTL, PORTICO, Client, ConnClosed, Portico, \
    free_port, http, need_binary, pid_alive, route, service, wait_port


def test_pid_file_written_and_removed(gateway, origin, tmp):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")])
    pid_file = os.path.join(tmp, "portico.pid")
    deadline = time.monotonic() + 5
    while not os.path.exists(pid_file) and time.monotonic() < deadline:
        time.sleep(0.05)
    with open(pid_file) as f:
        assert int(f.read().strip()) == g.pid
    g.signal(signal.SIGTERM)
    g.proc.wait(timeout=10)
    assert not os.path.exists(pid_file), "pid file left behind"


def test_workers_count(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=2)
    pids = g.wait_workers(2)
    assert len(pids) == 2, pids
    for p in pids:
        with open("/proc/%d/status" % p) as f:
            ppid = [ln for ln in f if ln.startswith("PPid:")][0].split()[1]
        assert int(ppid) == g.pid


def test_sigterm_stops_master_and_workers(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=2)
    workers = g.wait_workers(2)
    g.signal(signal.SIGTERM)
    g.proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while any(pid_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in workers), "workers outlived master"


def test_worker_kill9_respawned_while_serving(gateway, demo):
    d = demo("echo")
    g = gateway({"echo": service(d.addr, retries=1)},
                [route("all", "echo", prefix="/")], workers=2)
    before = g.wait_workers(2)
    assert len(before) == 2, before

    results = []
    stop = threading.Event()

    def loop():
        i = 0
        while not stop.is_set() and i < 2000:
            i += 1
            try:
                r = http(g.port, path="/loop/%d" % i, timeout=5)
                results.append((time.monotonic(), r.status))
            except Exception as e:  # noqa: BLE001 - counted as a failure
                results.append((time.monotonic(), repr(e)))
            time.sleep(0.01)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        time.sleep(0.5)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        new = g.wait_workers(2, timeout=10, exclude=(victim,))
        assert len(new) == 2, "no respawn: workers now %r" % g.worker_pids()
        assert victim not in new
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(timeout=10)
    assert g.alive(), "master died"
    ok = sum(1 for _, s in results if s == 200)
    bad = [(round(ts - killed_at, 2), s) for ts, s in results if s != 200]
    assert ok >= 20, (ok, bad)
    # only what was in flight on the killed worker may fail
    assert len(bad) <= 2, bad
    after = [s for ts, s in results if ts > killed_at + 0.5]
    assert after and all(s == 200 for s in after), bad
    assert "worker" in g.error_log().lower()


def test_graceful_stop_finishes_slow_request(gateway, demo, tmp):
    d = demo("echo")
    g = gateway({"echo": service(d.addr, retries=0, timeout_ms=10000)},
                [route("all", "echo", prefix="/")],
                limits={"drain_timeout_ms": 8000})
    workers = g.wait_workers(1)
    box = {}

    def slow():
        try:
            box["r"] = http(g.port, path="/slow?sleep_ms=1500", timeout=10)
        except Exception as e:  # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=slow, daemon=True)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    g.signal(signal.SIGQUIT)
    t.join(timeout=12)
    assert "e" not in box, box
    r = box["r"]
    assert r.status == 200, r
    assert time.monotonic() - t0 >= 1.4
    # the master exits once the drain is done (well before the timeout)
    g.proc.wait(timeout=10)
    assert g.proc.returncode == 0, g.output()
    for p in workers:
        assert not pid_alive(p)
    # and nothing listens any more
    assert not wait_port(g.port, timeout=0.5)


def test_graceful_stop_closes_idle_connection(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                limits={"drain_timeout_ms": 20000})
    with Client(g.port) as c:
        assert c.request(path="/idle").status == 200
        t0 = time.monotonic()
        g.signal(signal.SIGQUIT)
        # a stop (unlike a reload, where the next generation serves)
        # closes idle keep-alive connections at once, not at the drain
        # deadline, and the master exits
        assert c.is_closed(timeout=6)
        g.proc.wait(timeout=10)
        assert time.monotonic() - t0 < 10


# ------------------------------------------------------ config validation

GOOD = """version = 1;
server: {
  workers = 1;
  listen = ( { address = "127.0.0.1:%(port)d"; } );
  error_log = { path = "-"; level = "info"; };
  access_log = { path = "off"; };
};
services: {
  users = { instances = ["127.0.0.1:8001"]; };
};
routes = (
  { name = "users"; match = { prefix = "/users"; }; service = "users"; }
);
"""

# (name, text with the broken line marked, line number of the error)
BAD = {
    "syntax": ("  workers = = 1;", "  workers = 1;", 3),
    "unknown_setting": ("  workerz = 1;", "  workers = 1;", 3),
    "wrong_type": ('  workers = "two";', "  workers = 1;", 3),
    "missing_service": (
        '  { name = "users"; match = { prefix = "/users"; }; '
        'service = "nope"; }',
        '  { name = "users"; match = { prefix = "/users"; }; '
        'service = "users"; }', 12),
    "bad_regex": (
        '  { name = "users"; match = { regex = "^/(users"; }; '
        'service = "users"; }',
        '  { name = "users"; match = { prefix = "/users"; }; '
        'service = "users"; }', 12),
    "bad_instance_address": (
        '  users = { instances = ["127.0.0.1:notaport"]; };',
        '  users = { instances = ["127.0.0.1:8001"]; };', 9),
    "bad_listen_address": (
        '  listen = ( { address = "999.1.1.1:80"; } );',
        '  listen = ( { address = "127.0.0.1:%(port)d"; } );', 4),
    "unknown_route_setting": (
        '  { name = "users"; match = { prefix = "/users"; }; '
        'service = "users"; colour = "blue"; }',
        '  { name = "users"; match = { prefix = "/users"; }; '
        'service = "users"; }', 12),
    "unknown_balance": (
        '  users = { instances = ["127.0.0.1:8001"]; balance = "random"; };',
        '  users = { instances = ["127.0.0.1:8001"]; };', 9),
}


def write_bad(tmp, name):
    bad_line, good_line, lineno = BAD[name]
    lines = (GOOD % {"port": free_port()}).split("\n")
    # the good line being replaced is where we think it is
    assert lines[lineno - 1].split("=")[0] == good_line.split("=")[0], \
        (name, lines[lineno - 1])
    lines[lineno - 1] = bad_line
    path = os.path.join(tmp, "bad.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path, lineno


def need(binary):
    return need_binary(binary)


def check_cmds(path):
    need(PORTICO)
    need(GWCTL)
    return [
        ("portico", [PORTICO, "-t", "-c", path]),
        ("gwctl", [GWCTL, "check", "-c", path]),
    ]


def test_good_config_accepted(tmp):
    path = os.path.join(tmp, "good.conf")
    with open(path, "w") as f:
        f.write(GOOD % {"port": free_port()})
    for tool, argv in check_cmds(path):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                           cwd=tmp)
        assert r.returncode == 0, (tool, r.stdout, r.stderr)


@pytest.mark.parametrize("tool", ["portico", "gwctl"])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_config_refused(tmp, name, tool):
    path, lineno = write_bad(tmp, name)
    argv = dict(check_cmds(path))[tool]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=10,
                       cwd=tmp)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "bad.conf:%d:" % lineno in r.stderr, r.stderr


def test_bad_regex_reports_offset(tmp):
    path, _ = write_bad(tmp, "bad_regex")
    r = subprocess.run([PORTICO, "-t", "-c", path], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 1
    assert "offset" in r.stderr.lower(), r.stderr


def test_missing_file_refused(tmp):
    r = subprocess.run([PORTICO, "-t", "-c", os.path.join(tmp, "no.conf")],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert "no.conf" in r.stderr


def test_bad_config_does_not_start(tmp):
    path, lineno = write_bad(tmp, "missing_service")
    p = subprocess.Popen([need(PORTICO), "-c", path, "-p", tmp],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=5)
    assert p.returncode == 1
    assert b"bad.conf:%d:" % lineno in err, err


def test_relative_paths_resolve_against_prefix(tmp, origin):
    o = origin()
    port = free_port()
    conf = os.path.join(tmp, "rel.conf")
    with open(conf, "w") as f:
        f.write("""version = 1;
server: {
  workers = 1;
  listen = ( { address = "127.0.0.1:%d"; } );
  admin = "off";
  control_socket = "run/portico.sock";
  pid_file = "run/portico.pid";
  state = { path = "state"; max_mb = 16; };
  access_log = { path = "off"; };
  error_log = { path = "logs/error.log"; level = "info"; };
};
services: { up = { instances = ["%s"]; }; };
routes = ( { name = "all"; match = { prefix = "/"; }; service = "up"; } );
""" % (port, o.addr))
    os.makedirs(os.path.join(tmp, "run"), exist_ok=True)
    os.makedirs(os.path.join(tmp, "logs"), exist_ok=True)
    g = Portico(conf, tmp, port)
    # started from another directory: paths must follow -p, not the cwd
    g.start()
    try:
        assert http(port, path="/rel").status == 200
        deadline = time.monotonic() + 5
        pid_file = os.path.join(tmp, "run", "portico.pid")
        while not os.path.exists(pid_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.path.exists(pid_file)
        assert os.path.exists(os.path.join(tmp, "logs", "error.log"))
    finally:
        g.stop()


# ----------------------------------------------------------------- gwctl

def gwctl(g, *args):
    """gwctl ARGS... against g's master (config names the socket)."""
    argv = [need(GWCTL)] + list(args) + ["-c", g.conf]
    return subprocess.run(argv, capture_output=True, text=True, timeout=10,
                          cwd=g.tmp)


def test_gwctl_status_lists_workers(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=2)
    workers = g.wait_workers(2)
    r = gwctl(g, "status")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert str(g.pid) in r.stdout, r.stdout
    for p in workers:
        assert str(p) in r.stdout, (p, r.stdout)
    rj = gwctl(g, "status", "--json")
    assert rj.returncode == 0, (rj.stdout, rj.stderr)
    j = json.loads(rj.stdout)
    assert str(g.pid) in json.dumps(j)


def test_gwctl_status_without_master_fails(tmp):
    path = os.path.join(tmp, "good.conf")
    with open(path, "w") as f:
        f.write(GOOD % {"port": free_port()})
    r = subprocess.run([need(GWCTL), "status", "-c", path], capture_output=True,
                       text=True, timeout=10, cwd=tmp)
    assert r.returncode != 0
    assert r.stderr.strip() or r.stdout.strip()


def test_reload_drain_answers_next_request_with_close(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                limits={"drain_timeout_ms": 3000})
    old = g.wait_workers(1)
    with Client(g.port) as c:
        assert c.request(path="/before").status == 200
        g.signal(signal.SIGHUP)           # reload: a new generation serves
        g.wait_workers(1, exclude=old)
        time.sleep(0.2)
        # the old worker drains: its idle keep-alive connection is not cut
        # at once (a client may be sending on it right now); the next
        # request on it is answered, with Connection: close
        r = c.request(path="/during")
        assert r.status == 200, r
        assert (r.header("connection") or "").lower() == "close", r
        assert c.is_closed()


def test_connection_queued_while_worker_dead_is_served(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=1)
    victim = g.wait_workers(1)[0]
    os.kill(victim, signal.SIGKILL)
    # connect at once: the listening socket stays open in the master, so
    # this connection waits in its queue for the respawned worker
    with Client(g.port, timeout=10) as c:
        r = c.request(path="/queued")
        assert r.status == 200, r
    new = g.wait_workers(1, exclude=(victim,))
    assert new and victim not in new


def test_gwctl_status_after_respawn(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=2)
    before = g.wait_workers(2)
    os.kill(before[1], signal.SIGKILL)
    after = g.wait_workers(2, exclude=(before[1],))
    assert len(after) == 2
    deadline = time.monotonic() + 5
    while True:
        r = gwctl(g, "status")
        if r.returncode == 0 and all(str(p) in r.stdout for p in after):
            break
        assert time.monotonic() < deadline, (after, r.stdout, r.stderr)
        time.sleep(0.2)
    assert str(before[1]) not in r.stdout.split(), r.stdout


def test_workers_zero_means_one_per_core(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=0, start=False)
    cores = {os.cpu_count(), len(os.sched_getaffinity(0))}
    g.workers = min(cores)
    g.start()
    g.wait_workers(max(cores), timeout=3)
    time.sleep(0.3)
    assert len(g.worker_pids()) in cores, (g.worker_pids(), cores)


def test_error_log_has_level_and_pid(gateway, origin):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and str(g.pid) not in g.error_log():
        time.sleep(0.05)
    lines = [ln for ln in g.error_log().splitlines() if str(g.pid) in ln]
    assert lines, g.error_log()
    assert any("info" in ln.lower() for ln in lines), lines


def test_graceful_stop_bounded_by_drain_timeout(gateway, demo):
    d = demo("echo")
    g = gateway({"echo": service(d.addr, retries=0, timeout_ms=20000)},
                [route("all", "echo", prefix="/")],
                limits={"drain_timeout_ms": 1000})
    c = Client(g.port, timeout=10)
    try:
        c.send(b"GET /slow?sleep_ms=8000 HTTP/1.1\r\nHost: a\r\n\r\n")
        time.sleep(0.3)
        t0 = time.monotonic()
        g.signal(signal.SIGQUIT)
        g.proc.wait(timeout=8)
        assert time.monotonic() - t0 < 5, "drain outlived drain_timeout_ms"
    finally:
        c.close()


def _cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])     # utime + stime


def test_out_of_descriptors_pauses_accepts(gateway, origin):
    """With its descriptors exhausted a worker pauses accepting (instead of
    spinning on a listening socket that stays readable), still answers the
    connections it has, and accepts again once descriptors are free."""
    import resource
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")], start=False)
    g.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    g.start()
    worker = g.worker_pids()[0]
    held = []
    try:
        for _ in range(80):
            s = socket.create_connection(("127.0.0.1", g.port), timeout=5)
            held.append(s)
        time.sleep(0.3)
        before = _cpu_ticks(worker)
        time.sleep(1.0)
        spent = _cpu_ticks(worker) - before
        # a worker spinning on accept burns the whole second (100 ticks)
        assert spent < 50, "worker spun for %d ticks" % spent
        assert "pausing accepts" in g.error_log()
        # an accepted connection still gets an answer: with no descriptor
        # left for an upstream socket, a clear 502, never a hang
        held[0].sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        head = held[0].recv(4096)
        assert head.startswith(b"HTTP/1.1 200 ") or (
            head.startswith(b"HTTP/1.1 502 ") and
            b"upstream_unavailable" in head), head
    finally:
        for s in held:
            s.close()
    # descriptors free again: new clients are served
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline:
        try:
            status = http(g.port, path="/b", timeout=2).status
            if status == 200:
                break
        except (OSError, ConnClosed):
            pass
        time.sleep(0.1)
    assert status == 200
    assert g.alive()


def test_descriptor_limit_errors_logged_once_per_interval(gateway, origin):
    """A worker at its descriptor limit retries accept every 100 ms; the
    error is logged once, then held and counted, and the count is written
    when descriptors are free again: not one line per retry."""
    import resource
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")], start=False)
    g.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    g.start()
    held = []
    try:
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", g.port),
                                                 timeout=5))
        # About 20 retries of accept while the clients hold on.
        time.sleep(2.0)
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    status = None
    while time.monotonic() < deadline and status != 200:
        try:
            status = http(g.port, path="/b", timeout=2).status
        except (OSError, ConnClosed):
            time.sleep(0.1)
    assert status == 200
    repeated = None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and repeated is None:
        lines = [l for l in g.error_log().splitlines()
                 if "pausing accepts" in l]
        repeated = next((l for l in lines if "(repeated " in l), None)
        time.sleep(0.1)
    assert repeated is not None, lines
    count = int(repeated.split("(repeated ")[1].split()[0])
    assert count >= 5, repeated
    # The first at once, then at most one per 5 s interval and the count.
    assert len(lines) <= 3, lines
    assert g.alive()
