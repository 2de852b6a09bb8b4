"""Fixtures for Portico's integration tests.

Every test starts the real build/portico with a config it writes, on free
loopback ports, in front of real demo services (build/demo) or the scripted
origin (origin.py), and talks to it with raw sockets or curl. Every process a
test starts is stopped by pid; every wait is bounded.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from origin import Headers, Origin  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("PORTICO_BUILD",
                                       os.path.join(REPO, "build")))
PORTICO = os.path.join(BUILD, "portico")
GWCTL = os.path.join(BUILD, "gwctl")
DEMO = os.path.join(BUILD, "demo")

CRASH_RE = re.compile(
    r"Sanitizer|runtime error:|"
    r"worker \d+ \(pid \d+\) (killed by signal (?!9 )|"
    r"exited with status [1-9])")

TIMEOUT = 5.0           # default socket timeout
START_TIMEOUT = 10.0    # portico / demo must accept within this


# ---------------------------------------------------------------- helpers

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout=START_TIMEOUT, proc=None):
    """Wait until 127.0.0.1:port accepts a connection. False on timeout or
    when proc exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
            s.close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return False
    # state field after the ")": Z = zombie, counts as gone
    return st.rsplit(")", 1)[1].split()[0] != "Z"


def children_of(pid):
    """Direct children of pid (all threads), via /proc, else pgrep."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    out += [int(x) for x in f.read().split()]
            except OSError:
                pass
        return sorted(set(p for p in out if pid_alive(p)))
    except OSError:
        pass
    try:
        r = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True,
                           text=True, timeout=5)
        return sorted(int(x) for x in r.stdout.split())
    except (OSError, subprocess.SubprocessError):
        return []


def need_binary(path, timeout=15.0):
    """Fail unless path is an executable; waits a little, since a parallel
    `make` may be relinking it right now."""
    deadline = time.monotonic() + timeout
    while not os.access(path, os.X_OK):
        if time.monotonic() > deadline:
            pytest.fail("%s not built" % path)
        time.sleep(0.2)
    return path


def _exe_is(pid, path):
    try:
        return os.path.realpath("/proc/%d/exe" % pid) == os.path.realpath(path)
    except OSError:
        return False


def stop_pid(proc_or_pid, grace=5.0):
    """SIGTERM, wait up to grace seconds, then SIGKILL. Accepts a Popen."""
    if isinstance(proc_or_pid, subprocess.Popen):
        p = proc_or_pid
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except OSError:
                pass
        return
    pid = proc_or_pid
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


# ------------------------------------------------------- libconfig writer

class Raw(str):
    """Text emitted into the config as is."""


def lc_value(v, ind=""):
    nxt = ind + "  "
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, dict):
        if not v:
            return "{ }"
        items = ["%s%s = %s;" % (nxt, k, lc_value(x, nxt))
                 for k, x in v.items()]
        return "{\n" + "\n".join(items) + "\n" + ind + "}"
    if isinstance(v, (list, tuple)):
        if not v:
            return "[ ]"
        if all(not isinstance(x, (dict, list, tuple)) for x in v):
            return "[" + ", ".join(lc_value(x, nxt) for x in v) + "]"
        items = [nxt + lc_value(x, nxt) for x in v]
        return "(\n" + ",\n".join(items) + "\n" + ind + ")"
    raise TypeError("cannot write %r" % (v,))


def write_config(tmp, services, routes, port=None, workers=1, limits=None,
                 server=None, extra=None, name="portico.conf"):
    """Write a config into tmp. Returns (path, port).

    services: {name: {instances: [...], ...}}; routes: [{...}] in the
    contract's shape; limits/server: settings merged over the defaults
    below; extra: {section: value} for other top-level settings."""
    port = port or free_port()
    lim = {"header_timeout_ms": 5000, "drain_timeout_ms": 5000}
    lim.update(limits or {})
    srv = {
        "workers": workers,
        "listen": [{"address": "127.0.0.1:%d" % port}],
        "control_socket": os.path.join(tmp, "portico.sock"),
        "pid_file": os.path.join(tmp, "portico.pid"),
        "state": {"path": os.path.join(tmp, "state"), "max_mb": 16},
        "limits": lim,
        "access_log": {"path": "off"},
        "admin": "off",         # a test that wants it names a free port
        "error_log": {"path": os.path.join(tmp, "error.log"),
                      "level": os.environ.get("PORTICO_LOG_LEVEL", "info")},
    }
    srv.update(server or {})
    text = "version = 1;\n\n"
    text += "server: " + lc_value(srv) + ";\n\n"
    text += "services: " + lc_value(services) + ";\n\n"
    for k, v in (extra or {}).items():
        text += "%s: %s;\n\n" % (k, lc_value(v))
    text += "routes = " + lc_value(list(routes)) + ";\n"
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path, port


def service(*instances, **kw):
    """A service entry: service("127.0.0.1:1", retries=0)."""
    d = {"instances": list(instances)}
    d.update(kw)
    return d


def route(name, service_name, **match):
    """A route entry: route("r", "svc", prefix="/", methods=["GET"])."""
    return {"name": name, "match": match, "service": service_name}


# ------------------------------------------------------------ processes

class Portico:
    """build/portico -c CONF -p TMP as a subprocess of the test."""

    def __init__(self, conf, tmp, port, workers=1):
        self.conf = conf
        self.tmp = tmp
        self.port = port
        self.workers = workers
        self.out_path = os.path.join(tmp, "portico.out")
        self.proc = None
        self._known_workers = set()
        self.preexec = None         # run in the child before exec

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait_workers=True):
        # append: a restarted gateway keeps the earlier output for crashes()
        if getattr(self, "_out", None) is not None:
            self._out.close()
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            [PORTICO, "-c", self.conf, "-p", self.tmp],
            stdin=subprocess.DEVNULL, stdout=self._out,
            stderr=subprocess.STDOUT, cwd=self.tmp, preexec_fn=self.preexec)
        if not wait_port(self.port, START_TIMEOUT, self.proc):
            out = self.output()
            self.stop()
            raise AssertionError(
                "portico did not accept on %d (rc=%s)\noutput:\n%s\n"
                "error log:\n%s" % (self.port, self.proc.returncode, out,
                                    self.error_log()))
        if wait_workers:
            self.wait_workers(self.workers)
        return self

    def worker_pids(self):
        pids = children_of(self.proc.pid)
        self._known_workers.update(pids)
        return pids

    def wait_workers(self, n, timeout=START_TIMEOUT, exclude=()):
        """Wait until n live workers exist, none of them in exclude."""
        deadline = time.monotonic() + timeout
        pids = []
        while time.monotonic() < deadline:
            pids = [p for p in self.worker_pids() if p not in exclude]
            if len(pids) >= n:
                return pids
            time.sleep(0.05)
        return pids

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def output(self):
        try:
            with open(self.out_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def error_log(self):
        try:
            with open(os.path.join(self.tmp, "error.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def crashes(self):
        """Lines showing a sanitizer report or a worker that died on its
        own (SIGKILL, which tests send on purpose, excluded)."""
        out = []
        for text in (self.output(), self.error_log()):
            for ln in text.splitlines():
                if CRASH_RE.search(ln):
                    out.append(ln.strip())
        return out

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def stop(self):
        if self.proc is None:
            return
        if self.alive():
            self.worker_pids()
        stop_pid(self.proc)
        # Workers should die with the master; if one survived (a bug to
        # report, but not to leak), stop it by pid.
        for p in self._known_workers:
            if pid_alive(p) and _exe_is(p, PORTICO):
                stop_pid(p, grace=2)
        try:
            self._out.close()
        except (OSError, AttributeError):
            pass


class Demo:
    def __init__(self, proc, port, service_name):
        self.proc = proc
        self.port = port
        self.addr = "127.0.0.1:%d" % port
        self.service = service_name

    @property
    def pid(self):
        return self.proc.pid


# ------------------------------------------------------------- log files

def read_lines(path, n, timeout=5.0):
    """The non-empty lines of PATH once it has at least N of them (or
    what it has after TIMEOUT seconds)."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                lines = [ln for ln in f.read().splitlines() if ln]
        except OSError:
            lines = []
        if len(lines) >= n:
            break
        time.sleep(0.05)
    return lines


def access_lines(path, n, timeout=5.0):
    """The JSON access-log lines of PATH, once there are N."""
    out = []
    for ln in read_lines(path, n, timeout):
        try:
            out.append(json.loads(ln))
        except ValueError:
            return []           # a line still being written
    return out


def wait_log(g, text, count=1, timeout=5.0):
    """Wait until G's error log holds TEXT at least COUNT times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if g.error_log().count(text) >= count:
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------- fixtures

@pytest.fixture
def tmp():
    # Short path: the control socket must fit in sun_path (108 bytes).
    d = tempfile.mkdtemp(prefix="ptc-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def origin():
    """origin(mode="ok", name=..., handler=..., tls=SSLContext) -> a
    started Origin."""
    made = []

    def make(mode="ok", name=None, handler=None, tls=None):
        o = Origin(mode=mode, name=name or "o%d" % (len(made) + 1),
                   handler=handler, tls=tls)
        made.append(o)
        return o.start()

    yield make
    for o in made:
        o.stop()


@pytest.fixture
def demo(tmp):
    """demo(service, **flags) -> Demo on a free port; flags become
    --flag-name value (True: bare --flag-name)."""
    made = []

    def make(service_name, **flags):
        need_binary(DEMO)
        port = free_port()
        argv = [DEMO, "--service", service_name,
                "--listen", "127.0.0.1:%d" % port]
        for k, v in flags.items():
            argv.append("--" + k.replace("_", "-"))
            if v is not True:
                argv.append(str(v))
        log = open(os.path.join(tmp, "demo-%s-%d.log" % (service_name, port)),
                   "wb")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT)
        log.close()
        d = Demo(p, port, service_name)
        made.append(d)
        if not wait_port(port, START_TIMEOUT, p):
            pytest.fail("demo %s did not start: %r" % (service_name, argv))
        return d

    yield make
    for d in made:
        stop_pid(d.proc)


@pytest.fixture
def gateway(tmp):
    """gateway(services, routes, workers=1, limits=None, server=None,
    extra=None, start=True) -> a started Portico."""
    made = []

    def make(services, routes, workers=1, limits=None, server=None,
             extra=None, start=True):
        need_binary(PORTICO)
        # the first gateway of a test lives in tmp itself; any further one
        # gets its own directory, so sockets, pid files and state differ
        d = tmp
        if made:
            d = os.path.join(tmp, "gw%d" % (len(made) + 1))
            os.makedirs(d, exist_ok=True)
        conf, port = write_config(d, services, routes, workers=workers,
                                  limits=limits, server=server, extra=extra)
        g = Portico(conf, d, port, workers=workers)
        made.append(g)
        if start:
            g.start()
        return g

    yield make
    problems = []
    for g in made:
        g.stop()
        problems += g.crashes()
    if problems:
        pytest.fail("portico crashed or reported a sanitizer error:\n" +
                    "\n".join(problems))


# ------------------------------------------------------ raw HTTP client

class Response(Headers):
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value)
        self.body = body
        self.raw_head = raw_head

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "<Response %d %r %r>" % (self.status, self.headers,
                                         self.body[:200])


class ConnClosed(Exception):
    pass


def build_request(method="GET", path="/", headers=None, body=None,
                  host="test.local", version="HTTP/1.1"):
    """Raw request bytes. headers: list of (name, value); Host first unless
    host is None; Content-Length added for a body unless a framing header
    is given."""
    hdrs = []
    if host is not None:
        hdrs.append(("Host", host))
    hdrs += list(headers or [])
    if isinstance(body, str):
        body = body.encode()
    names = set(k.lower() for k, _ in hdrs)
    if body is not None and "content-length" not in names and \
            "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    head = "%s %s %s\r\n" % (method, path, version)
    head += "".join("%s: %s\r\n" % (k, v) for k, v in hdrs)
    return head.encode("latin-1") + b"\r\n" + (body or b"")


class Client:
    """One raw client connection to the gateway."""

    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = bytearray()
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out = bytes(self.buf[:i + len(sep)])
                del self.buf[:i + len(sep)]
                return out
            if not self._fill():
                raise ConnClosed("closed before %r; have %r" % (sep,
                                                              self.buf[:200]))

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise ConnClosed("closed with %d of %d bytes" %
                                 (len(self.buf), n))
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self, method="GET"):
        """Read one response (a 1xx is returned on its own)."""
        head = self._until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line = lines[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), \
            "bad status line %r" % status_line
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for ln in lines[1:]:
            k, sep, v = ln.decode("latin-1").partition(":")
            assert sep, "bad header line %r" % ln
            headers.append((k, v.strip()))
        r = Response(version, status, reason, headers, b"", head)
        if status < 200 or status in (204, 304) or method == "HEAD":
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None:
            assert te.lower() == "chunked", "response TE %r" % te
            body = bytearray()
            while True:
                line = self._until(b"\r\n")
                size = int(line[:-2].split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n") != b"\r\n":
                        pass
                    break
                data = self._exact(size + 2)
                assert data[-2:] == b"\r\n", "chunk not followed by CRLF"
                body += data[:-2]
            r.body = bytes(body)
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            while self._fill():
                pass
            r.body, self.buf = bytes(self.buf), bytearray()
        return r

    def request(self, method="GET", path="/", headers=None, body=None,
                host="test.local", version="HTTP/1.1"):
        self.send(build_request(method, path, headers, body, host, version))
        return self.read_response(method)

    def is_closed(self, timeout=TIMEOUT):
        """True when the peer closes (FIN or RST) within timeout with no
        further bytes; False if it stays open or sends more."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if data:
            self.buf += data
            return False
        return True


def http(port, method="GET", path="/", headers=None, body=None,
         host="test.local", timeout=TIMEOUT):
    """One request on a fresh connection."""
    with Client(port, timeout) as c:
        return c.request(method, path, headers, body, host)


def assert_gateway_error(r, status):
    """A gateway-made error: JSON {"error":..,"status":N,"trace_id":..}."""
    assert r.status == status, r
    ct = (r.header("content-type") or "").lower()
    assert "json" in ct, "content-type %r for %r" % (ct, r)
    j = r.json()
    assert j.get("status") == status, j
    assert isinstance(j.get("error"), str) and j["error"], j
    assert isinstance(j.get("trace_id"), str) and j["trace_id"], j
    return j
