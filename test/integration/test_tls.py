"""TLS termination: versions and ciphers, ALPN, SNI with exact and wildcard
names, RSA and ECDSA side by side, strict SNI, session resumption across
workers and reloads (shared ticket keys), certificate reload, expiry in
gwctl status, a plain request on the TLS port, X-Forwarded-Proto."""

import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from conftest import GWCTL, free_port, route, service


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
            "-addext", "subjectAltName=" + ",".join("DNS:" + s for s in sans))
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
    buf = b""
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
        d = ts.recv(65536)
        if not d:
            break
        body += d
    return head.decode("latin-1"), body


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
    tport = free_port()
    g = gateway({"up": service(o.addr)}, [route("all", "up", prefix="/")],
                limits={"header_timeout_ms": 300},
                server={"listen": [{"address": "127.0.0.1:%d" % tport,
                                    "tls": "default"}]},
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
    ts = connect(tport)
    assert get(ts)[0].startswith("HTTP/1.1 200")
    ts.close()
    assert g.alive()
