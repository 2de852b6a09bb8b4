"""TLS termination: versions and ciphers, ALPN, SNI with exact and wildcard
names, RSA and ECDSA side by side, strict SNI, session resumption across
workers and reloads (shared ticket keys), certificate reload, expiry in
gwctl status, a plain request on the TLS port, X-Forwarded-Proto.
TLS to upstreams: the certificate checked against ca_file by name (sni)
or address, failures as 502 with the reason, verify off, pooled TLS
connections and resumed sessions."""

import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import (GWCTL, PORTICO, Client, access_lines,
                      assert_gateway_error, free_port, http, route, service,
                      stop_pid)
from origin import KEEP, response


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_cert(tmp, name, cn, sans, kind="rsa", days=365):
    key = os.path.join(tmp, name + ".key")
    crt = os.path.join(tmp, name + ".crt")
    if kind == "rsa":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                "rsa_keygen_bits:2048", "-out", key)
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-out", key)
    openssl("req", "-x509", "-key", key, "-out", crt, "-days", str(days),
            "-subj", "/CN=" + cn,
            "-addext", "subjectAltName=" + ",".join(
                s if s.startswith("IP:") else "DNS:" + s for s in sans))
    return crt, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    c = {
        "default": make_cert(d, "default", "localhost", ["localhost"]),
        "default_ec": make_cert(d, "default-ec", "localhost", ["localhost"],
                                kind="ec"),
        "partner": make_cert(d, "partner", "partner.example.com",
                             ["partner.example.com"]),
        "wild": make_cert(d, "wild", "*.wild.example.com",
                          ["*.wild.example.com"]),
        "soon": make_cert(d, "soon", "soon.example.com",
                          ["soon.example.com"], days=3),
        # upstream certificates: one naming the loopback address, one
        # naming only a host name
        "origin_ip": make_cert(d, "origin-ip", "origin", ["IP:127.0.0.1"],
                               kind="ec"),
        "origin_name": make_cert(d, "origin-name", "origin.internal",
                                 ["origin.internal"], kind="ec"),
    }
    c["dir"] = d
    return c


def tls_section(certs, extra=None):
    t = {
        "default": {"cert": [certs["default"][0], certs["default_ec"][0]],
                    "key": [certs["default"][1], certs["default_ec"][1]]},
        "partner": {"names": ["partner.example.com"],
                    "cert": certs["partner"][0], "key": certs["partner"][1]},
        "wild": {"names": ["*.wild.example.com"], "cert": certs["wild"][0],
                 "key": certs["wild"][1]},
    }
    t.update(extra or {})
    return t


@pytest.fixture
def gw(gateway, origin, certs, tmp):
    o = origin()
    pport, tport, sport = free_port(), free_port(), free_port()
    g = gateway({"up": service(o.addr, retries=0)},
                [route("all", "up", prefix="/")], workers=2,
                server={"listen": [
                    {"address": "127.0.0.1:%d" % pport},
                    {"address": "127.0.0.1:%d" % tport, "tls": "default"},
                    {"address": "127.0.0.1:%d" % sport, "tls": "default",
                     "strict_sni": True}]},
                extra={"tls": tls_section(certs)},
                start=False)
    g.port = pport
    g.start()
    g.tls_port, g.strict_port, g.origin = tport, sport, o
    return g


def client_ctx(**kw):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def connect(port, ctx=None, sni="localhost", session=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return (ctx or client_ctx()).wrap_socket(s, server_hostname=sni,
                                              session=session)


def get(ts, path="/", host="localhost"):
    ts.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))
               .encode())
    return get_response(ts)


def peer_cert_cn(ts):
    der = ts.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout",
                          "-subject"], input=der, capture_output=True,
                         check=True).stdout.decode()
    return out.strip().split("CN", 1)[1].lstrip(" =")


def test_https_request_proxied(gw):
    ts = connect(gw.tls_port)
    head, body = get(ts, "/secure")
    assert head.startswith("HTTP/1.1 200"), head
    assert ts.version() in ("TLSv1.2", "TLSv1.3")
    ts.close()
    req = gw.origin.complete_requests("/secure")[0]
    assert req.header("x-forwarded-proto") == "https"
    # the plain listener still says http
    s = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
    s.sendall(b"GET /plain HTTP/1.1\r\nHost: a\r\n\r\n")
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.close()
    assert gw.origin.complete_requests("/plain")[0] \
        .header("x-forwarded-proto") == "http"


def test_alpn_http11(gw):
    ctx = client_ctx()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    ts = connect(gw.tls_port, ctx)
    assert ts.selected_alpn_protocol() == "http/1.1"
    ts.close()
    ctx = client_ctx()
    ctx.set_alpn_protocols(["h2"])
    ts = connect(gw.tls_port, ctx)          # no overlap: no ALPN, still ok
    assert ts.selected_alpn_protocol() is None
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()


def s_client(port, *args):
    """openssl s_client with its own security level lowered, so that what
    fails is the server's refusal, not the client's."""
    r = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-servername", "localhost",
                        "-cipher", "DEFAULT@SECLEVEL=0"] + list(args),
                       input=b"", capture_output=True, timeout=10)
    return r.returncode, (r.stdout + r.stderr).decode(errors="replace")


def test_old_versions_and_weak_ciphers_refused(gw):
    for v in ("-tls1", "-tls1_1"):
        rc, out = s_client(gw.tls_port, v)
        # the client offered it; the server refused it
        assert rc != 0 and "no protocols available" not in out, out
    rc, out = s_client(gw.tls_port, "-tls1_2")
    assert rc == 0 and "TLSv1.2" in out, out
    # TLS 1.2 with a static-RSA (no forward secrecy) CBC suite only
    ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("AES128-SHA")
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connect(gw.tls_port, ctx)
    ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    ts = connect(gw.tls_port, ctx)
    assert ts.cipher()[0] == "ECDHE-RSA-AES128-GCM-SHA256"
    ts.close()


def test_tls13_suites_in_the_servers_order(gw):
    """TLS 1.3: AES-128-GCM-SHA256 first, whatever the client's order (a
    default OpenSSL client lists AES-256-GCM-SHA384 first); a client
    offering only another TLS 1.3 suite still gets it."""
    rc, out = s_client(gw.tls_port, "-tls1_3")
    assert rc == 0 and "Cipher is TLS_AES_128_GCM_SHA256" in out, out
    rc, out = s_client(gw.tls_port, "-tls1_3", "-ciphersuites",
                       "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256")
    assert rc == 0 and "Cipher is TLS_AES_128_GCM_SHA256" in out, out
    for only in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
        rc, out = s_client(gw.tls_port, "-tls1_3", "-ciphersuites", only)
        assert rc == 0 and "Cipher is " + only in out, out


def test_one_ticket_per_tls13_handshake(gw):
    """One session ticket per full TLS 1.3 handshake (OpenSSL's default
    is two)."""
    r = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % gw.tls_port, "-servername",
                        "localhost", "-tls1_3", "-msg", "-ign_eof"],
                       input=b"GET / HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n", capture_output=True,
                       timeout=20)
    out = r.stdout.decode(errors="replace")
    assert "HTTP/1.1 200" in out, out
    assert out.count("NewSessionTicket") == 1, out


def test_finite_field_groups_refused(gw):
    """Key exchange on elliptic curves only: a client offering only a
    finite-field group (far more costly for the server) is refused; one
    offering X25519 or P-256 is served."""
    for groups in ("ffdhe2048", "ffdhe4096"):
        rc, out = s_client(gw.tls_port, "-tls1_3", "-groups", groups)
        assert rc != 0, out
    for groups in ("X25519", "P-256"):
        rc, out = s_client(gw.tls_port, "-tls1_3", "-groups", groups)
        assert rc == 0, out


def test_rsa_and_ecdsa_side_by_side(gw):
    ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    ts = connect(gw.tls_port, ctx)
    ec = ts.getpeercert(binary_form=True)
    ts.close()
    ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    ts = connect(gw.tls_port, ctx)
    rsa = ts.getpeercert(binary_form=True)
    ts.close()
    assert ec != rsa


@pytest.mark.parametrize("sni,cn", [
    ("partner.example.com", "partner.example.com"),
    ("PARTNER.example.com", "partner.example.com"),
    ("a.wild.example.com", "*.wild.example.com"),
    ("a.b.wild.example.com", "localhost"),     # one label only
    ("unknown.example.org", "localhost"),      # the default
])
def test_sni_picks_certificate(gw, sni, cn):
    ts = connect(gw.tls_port, sni=sni)
    assert peer_cert_cn(ts) == cn
    ts.close()


def test_strict_sni_refuses_unknown_name(gw):
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        connect(gw.strict_port, sni="unknown.example.org")
    ts = connect(gw.strict_port, sni="partner.example.com")
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()


def resumed(port, ctx, session, n):
    """How many of n new connections resumed SESSION."""
    ok = 0
    for _ in range(n):
        ts = connect(port, ctx, session=session)
        get(ts)
        ok += ts.session_reused
        ts.close()
    return ok


def first_session(port, ctx=None):
    ts = connect(port, ctx)
    get(ts)                     # TLS 1.3 tickets arrive after the handshake
    s = ts.session
    ts.close()
    return s


def test_session_resumes_on_any_worker(gw):
    for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(maximum_version=maxv)
        s = first_session(gw.tls_port, ctx)
        assert s is not None
        ok = 0
        for _ in range(12):
            ts = connect(gw.tls_port, ctx, session=s)
            get(ts)
            ok += ts.session_reused
            ts.close()
        assert ok == 12, (maxv, ok)


def test_openssl_allocations_go_through_the_workers_cache(gw):
    """Each worker's OpenSSL allocates through its cache of freed blocks
    (worker/tlsmem.c), set up before anything else: after handshakes the
    cache holds blocks, and never more than its 1 MiB."""
    for _ in range(16):
        ts = connect(gw.tls_port)
        assert get(ts)[0].startswith("HTTP/1.1 200")
        ts.close()
    deadline = time.monotonic() + 10
    while True:
        r = gwctl(gw, "--json", "status")
        cached = [w["tls_alloc_cached"]
                  for w in json.loads(r.stdout)["workers"]]
        if any(cached) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert any(c > 0 for c in cached), r.stdout
    assert all(c <= 1024 * 1024 for c in cached), r.stdout


def gwctl(g, *args):
    return subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock")]
                          + list(args), capture_output=True, text=True,
                          timeout=30)


def wait_generation(g, gen, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = gwctl(g, "--json", "status")
        if r.returncode == 0 and json.loads(r.stdout)["generation"] >= gen:
            return True
        time.sleep(0.1)
    return False


def test_resumption_survives_reload_and_cert_reload(gw, certs):
    rctx = client_ctx()
    s = first_session(gw.tls_port, rctx)
    old = connect(gw.tls_port).getpeercert(binary_form=True)
    # renew the default RSA certificate in place, then reload
    crt, key = certs["default"]
    new_crt, new_key = make_cert(certs["dir"], "renewed", "localhost",
                                 ["localhost"])
    os.replace(new_crt, crt)
    os.replace(new_key, key)
    r = gwctl(gw, "reload")
    assert r.returncode == 0, r.stdout + r.stderr
    assert wait_generation(gw, 2)
    ctx = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256")
    ts = connect(gw.tls_port, ctx)
    assert ts.getpeercert(binary_form=True) != old
    ts.close()
    assert resumed(gw.tls_port, rctx, s, 6) == 6


def test_broken_certificate_refused_by_reload(gw, certs, tmp):
    bad = os.path.join(tmp, "bad.crt")
    with open(bad, "w") as f:
        f.write("-----BEGIN CERTIFICATE-----\nnot base64\n"
                "-----END CERTIFICATE-----\n")
    text = open(gw.conf).read().replace(certs["partner"][0], bad)
    with open(gw.conf, "w") as f:
        f.write(text)
    r = gwctl(gw, "reload")
    assert r.returncode != 0
    assert bad in r.stdout + r.stderr
    ts = connect(gw.tls_port, sni="partner.example.com")   # still served
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()


def test_status_shows_expiry_and_soon_expiring_warned(gateway, origin,
                                                      certs):
    o = origin()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                extra={"tls": tls_section(certs, {
                    "soon": {"names": ["soon.example.com"],
                             "cert": certs["soon"][0],
                             "key": certs["soon"][1]}})})
    r = gwctl(g, "--json", "status")
    assert r.returncode == 0, r.stderr
    days = {c["file"]: c["days_left"] for c in
            json.loads(r.stdout)["certificates"]}
    assert days[certs["soon"][0]] in (2, 3)
    assert days[certs["partner"][0]] >= 360
    assert "expires in" in g.error_log() and certs["soon"][0] in \
        g.error_log()
    r = gwctl(g, "status")
    assert "DAYS LEFT" in r.stdout


def test_plain_http_on_tls_port_gets_400(gw):
    s = socket.create_connection(("127.0.0.1", gw.tls_port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    s.close()
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert b"plain_http_to_tls_port" in data


def test_handshake_bounded_by_header_timeout(gateway, origin, certs):
    o = origin()
    tport, aport = free_port(), free_port()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                limits={"header_timeout_ms": 300},
                server={"listen": [{"address": "127.0.0.1:%d" % tport,
                                    "tls": "default"}],
                        "admin": "127.0.0.1:%d" % aport},
                extra={"tls": tls_section(certs)}, start=False)
    g.port = tport
    g.start()
    s = socket.create_connection(("127.0.0.1", tport), timeout=5)
    t0 = time.monotonic()
    assert s.recv(10) == b""            # closed, no handshake ever sent
    assert time.monotonic() - t0 < 4
    s.close()
    # a garbage handshake is refused without harm to others
    s = socket.create_connection(("127.0.0.1", tport), timeout=5)
    s.sendall(b"\x16\x03\x01\x00\x05hello")
    try:
        s.recv(100)
    except OSError:
        pass
    s.close()
    # a client stalling mid-handshake (half a ClientHello) is cut by the
    # same timer
    hello = client_hello()
    s = socket.create_connection(("127.0.0.1", tport), timeout=5)
    s.sendall(hello[:len(hello) // 2])
    t0 = time.monotonic()
    try:
        assert s.recv(10) == b""
    except ConnectionResetError:
        pass
    assert time.monotonic() - t0 < 4
    s.close()
    ts = connect(tport)
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()
    assert g.alive()
    # the garbage and the stalled handshake were counted (the silent
    # connection, which never began one, was not)
    r = gwctl(g, "--json", "status")
    fails = sum(w["tls_handshake_failures"]
                for w in json.loads(r.stdout)["workers"])
    assert fails == 2, r.stdout
    m = http(aport, path="/metrics").body.decode()
    assert "\nportico_tls_handshake_failures_total 2\n" in m, m


def client_hello():
    """The bytes of a real ClientHello (Python's, to localhost)."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def bio_session(port):
    """A TLS 1.3 session driven by hand over memory BIOs, so a test can
    put any part of a record on the wire: (socket, SSLObject, out BIO)."""
    sock, obj, _, out = bio_session_io(port)
    return sock, obj, out


def bio_session_io(port):
    """bio_session, with the incoming BIO too (to read what comes back):
    (socket, SSLObject, in BIO, out BIO)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname="localhost")
    for _ in range(50):
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            inc.write(data)
    sock.sendall(out.read())
    return sock, obj, inc, out


def test_client_closing_mid_record(gw):
    for cut in ("head", "body"):
        sock, obj, out = bio_session(gw.tls_port)
        req = b"POST /mid HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"
        if cut == "body":
            obj.write(req)
            sock.sendall(out.read())
            req = b"x" * 3000
        obj.write(req)
        rec = out.read()
        sock.sendall(rec[:len(rec) // 2])   # half a record, then gone
        time.sleep(0.1)
        sock.close()
    time.sleep(0.3)
    assert gw.alive()
    assert gw.origin.complete_requests("/mid") == []
    ts = connect(gw.tls_port)
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()


def test_records_arriving_together_all_answered(gw):
    """Three requests, each in a TLS record of its own, reach the gateway
    in one segment. A TLS read returns one record, so two wait (inside
    OpenSSL, which reads ahead) while the first is answered; no new bytes
    come, so no new read event, and they must be answered all the
    same."""
    sock, obj, inc, out = bio_session_io(gw.tls_port)
    sock.settimeout(2)
    wire = b""
    for i in range(3):
        obj.write(b"GET /together/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
        wire += out.read()
    sock.sendall(wire)
    got = b""
    deadline = time.monotonic() + 5
    while got.count(b"HTTP/1.1 200") < 3 and time.monotonic() < deadline:
        try:
            got += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        inc.write(data)
    sock.close()
    assert got.count(b"HTTP/1.1 200") == 3, got
    assert [r.target for r in gw.origin.complete_requests("/together/")] \
        == ["/together/0", "/together/1", "/together/2"]


def test_large_bodies_over_tls_with_back_pressure(gateway, origin, certs):
    big = bytes(range(256)) * (8 * 4096)            # 8 MiB
    digest = hashlib.sha256(big).hexdigest()

    def handler(orig, req):
        if req.target == "/down":
            return response(200, big), KEEP
        return response(200, hashlib.sha256(req.body).hexdigest()
                        .encode()), KEEP

    o = origin(handler=handler)
    tport = free_port()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                limits={"body_bytes": 16 << 20},
                server={"listen": [{"address": "127.0.0.1:%d" % tport,
                                    "tls": "default"}]},
                extra={"tls": tls_section(certs)}, start=False)
    g.port = tport
    g.start()
    ts = connect(tport)
    ts.sendall(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d"
               b"\r\n\r\n" % len(big) + big)
    head, body = get_response(ts)
    assert head.startswith("HTTP/1.1 200") and body.decode() == digest
    # a download the client stops reading for a while, then reads
    ts.sendall(b"GET /down HTTP/1.1\r\nHost: a\r\n\r\n")
    first = ts.recv(1000)
    time.sleep(1.0)
    head, body = get_response(ts, first)
    assert head.startswith("HTTP/1.1 200"), head
    assert hashlib.sha256(body).hexdigest() == digest
    ts.close()


def get_response(ts, buf=b""):
    while b"\r\n\r\n" not in buf:
        d = ts.recv(65536)
        if not d:
            break
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    cl = [ln for ln in head.split(b"\r\n")
          if ln.lower().startswith(b"content-length:")]
    n = int(cl[0].split(b":")[1]) if cl else 0
    while len(body) < n:
        d = ts.recv(1 << 20)
        if not d:
            break
        body += d
    return head.decode("latin-1"), body


@pytest.mark.parametrize("version", ["--tlsv1.2 --tls-max 1.2",
                                     "--tlsv1.3"])
def test_curl_over_tls(gw, certs, tmp, version):
    # the default entry has an RSA and an ECDSA certificate: trust both
    bundle = os.path.join(tmp, "bundle.pem")
    with open(bundle, "w") as f:
        for c in (certs["default"][0], certs["default_ec"][0]):
            f.write(open(c).read())
    r = subprocess.run(["curl", "-sS", "--cacert", bundle,
                        "--resolve", "localhost:%d:127.0.0.1" % gw.tls_port,
                        "-w", "%{http_code}", "-o", "/dev/null"]
                       + version.split() +
                       ["https://localhost:%d/curl" % gw.tls_port],
                       capture_output=True, text=True, timeout=20)
    assert r.stdout == "200", r.stdout + r.stderr


def s_client_session(port, sess_in=None, sess_out=None, tls="-tls1_3"):
    """One request with openssl s_client, reading to the server's close;
    whether the session was resumed."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
            "-servername", "localhost", "-ign_eof", tls]
    if sess_in:
        args += ["-sess_in", sess_in]
    if sess_out:
        args += ["-sess_out", sess_out]
    r = subprocess.run(args, input=b"GET /s HTTP/1.1\r\nHost: a\r\n"
                       b"Connection: close\r\n\r\n", capture_output=True,
                       timeout=20)
    out = r.stdout.decode(errors="replace")
    assert "HTTP/1.1 200" in out, out
    return "\nReused," in out


def test_s_client_resumes_after_upgrade(gateway, origin, certs, tmp):
    o = origin()
    tport = free_port()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                workers=2,
                server={"listen": [{"address": "127.0.0.1:%d" % tport,
                                    "tls": "default"}]},
                extra={"tls": tls_section(certs)}, start=False)
    g.port = tport
    g.start()
    for tls in ("-tls1_2", "-tls1_3"):
        sess = os.path.join(tmp, "sess" + tls)
        assert not s_client_session(tport, sess_out=sess, tls=tls)
        assert all(s_client_session(tport, sess_in=sess, tls=tls)
                   for _ in range(4))
    bin2 = os.path.join(tmp, "portico-copy")
    shutil.copy(PORTICO, bin2)
    r = gwctl(g, "upgrade", "--binary", bin2)
    assert r.returncode == 0, r.stderr
    g.proc.wait(timeout=15)
    with open(os.path.join(tmp, "portico.pid")) as f:
        new_pid = int(f.read().strip())
    try:
        for tls in ("-tls1_2", "-tls1_3"):
            sess = os.path.join(tmp, "sess" + tls)
            assert s_client_session(tport, sess_in=sess, tls=tls), tls
    finally:
        stop_pid(new_pid)


# ------------------------------------------------------ TLS to upstreams

def origin_ctx(cert):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(cert[0], cert[1])
    return c




def up_gw(gateway, o, alog=None, **svc):
    server = {"access_log": {"path": alog}} if alog else None
    return gateway({"up": service(o.addr, **svc)},
                   [route("all", "up", prefix="/")], server=server)


def test_upstream_tls_checked_by_name(gateway, origin, certs):
    o = origin(tls=origin_ctx(certs["origin_name"]))
    g = up_gw(gateway, o, tls=True, ca_file=certs["origin_name"][0],
              sni="origin.internal")
    r = http(g.port, path="/over-tls")
    assert r.status == 200, r
    assert [q.target for q in o.complete_requests()] == ["/over-tls"]


def test_upstream_tls_checked_by_address(gateway, origin, certs, tmp):
    o = origin(tls=origin_ctx(certs["origin_ip"]))
    g = up_gw(gateway, o, tls=True, ca_file=certs["origin_ip"][0])
    assert http(g.port, path="/ip").status == 200
    # a certificate for a name only does not pass for the address
    o2 = origin(tls=origin_ctx(certs["origin_name"]))
    alog = os.path.join(tmp, "up-access.log")
    g2 = up_gw(gateway, o2, tls=True, ca_file=certs["origin_name"][0],
               retries=0, alog=alog)
    r = http(g2.port, path="/ip")
    assert_gateway_error(r, 502)
    assert o2.complete_requests() == []
    assert "TLS handshake failed" in g2.error_log() and \
        "mismatch" in g2.error_log(), g2.error_log()
    line = access_lines(alog, 1)[0]
    assert line["reason"] == "upstream_tls_failed", line


def test_upstream_tls_untrusted_refused_unless_verify_off(gateway, origin,
                                                         certs):
    o = origin(tls=origin_ctx(certs["origin_name"]))
    # trusts another CA
    g = up_gw(gateway, o, tls=True, ca_file=certs["origin_ip"][0],
              sni="origin.internal", retries=0)
    assert_gateway_error(http(g.port), 502)
    assert "certificate" in g.error_log(), g.error_log()
    assert o.complete_requests() == []
    g2 = up_gw(gateway, o, tls=True, verify=False)
    assert http(g2.port, path="/unchecked").status == 200


def test_upstream_tls_to_plain_origin_fails_cleanly(gateway, origin, certs):
    # a plain HTTP server answers the ClientHello with a 400
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    ls.settimeout(5)

    def answer():
        try:
            s, _ = ls.accept()
            s.settimeout(5)
            s.recv(4096)
            s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0"
                      b"\r\nConnection: close\r\n\r\n")
            s.close()
        except OSError:
            pass

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    g = gateway({"up": service("127.0.0.1:%d" % ls.getsockname()[1],
                               tls=True, verify=False, retries=0)},
                [route("all", "up", prefix="/")])
    assert_gateway_error(http(g.port), 502)
    t.join(5)
    ls.close()
    assert "TLS handshake failed" in g.error_log(), g.error_log()
    # one that says nothing is a connect timeout (it covers the handshake)
    o = origin()
    g2 = up_gw(gateway, o, tls=True, verify=False, retries=0,
               connect_timeout_ms=300)
    t0 = time.monotonic()
    assert_gateway_error(http(g2.port), 504)
    assert time.monotonic() - t0 < 3
    assert g.alive() and g2.alive()


def test_upstream_tls_pooled_and_resumed(gateway, origin, certs):
    o = origin(tls=origin_ctx(certs["origin_name"]))
    g = up_gw(gateway, o, tls=True, ca_file=certs["origin_name"][0],
              sni="origin.internal")
    with Client(g.port) as c:
        for i in range(4):
            assert c.request(path="/k%d" % i).status == 200
            time.sleep(0.05)    # a session ticket may come after a reply
    assert o.connections == 1       # one pooled TLS connection
    # without a pool, each request opens a connection that resumes
    o2 = origin(tls=origin_ctx(certs["origin_name"]))
    g2 = up_gw(gateway, o2, tls=True, ca_file=certs["origin_name"][0],
               sni="origin.internal", keepalive=0)
    for i in range(3):
        assert http(g2.port, path="/r%d" % i).status == 200
    assert o2.connections == 3
    assert o2.tls_resumed >= 2, (o2.connections, o2.tls_resumed)


def test_upstream_tls_settings_checked_at_load(gateway, origin, certs, tmp):
    o = origin()
    g = gateway({"up": service(o.addr, ca_file=certs["origin_ip"][0])},
                [route("all", "up", prefix="/")], start=False)
    r = subprocess.run([PORTICO, "-t", "-c", g.conf], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert "need 'tls = true'" in r.stderr and g.conf + ":" in r.stderr
    missing = os.path.join(tmp, "nope.pem")
    g2 = gateway({"up": service(o.addr, tls=True, ca_file=missing)},
                 [route("all", "up", prefix="/")], start=False)
    r = subprocess.run([PORTICO, "-t", "-c", g2.conf], capture_output=True,
                       text=True)
    assert r.returncode != 0
    assert missing in r.stderr, r.stderr
