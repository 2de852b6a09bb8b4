"""Authentication at the edge: JWT and API keys end to end, the route
modes, 401 / 403 with WWW-Authenticate, identity headers only the gateway
sets, Authorization forwarding, limits by consumer, rotation by reload."""

import hashlib
import json
import os
import time

import pytest

from conftest import Client, assert_gateway_error, route, service
from jwtlib import claims, hs256, make_rsa, rs256, segments

SECRET = b"0123456789abcdef0123456789abcdef"
API_KEY = "pk_test_0123456789abcdef"


def write(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)
    return path


def keys_file(tmp, entries, name="api_keys.conf"):
    lines = []
    for key, consumer, tier, scopes in entries:
        h = hashlib.sha256(key.encode()).hexdigest()
        item = 'sha256 = "%s"; consumer = "%s";' % (h, consumer)
        if tier:
            item += ' tier = "%s";' % tier
        if scopes:
            item += " scopes = [%s];" % ", ".join('"%s"' % s for s in scopes)
        lines.append("{ %s }" % item)
    return write(os.path.join(tmp, name),
                 "keys = (\n  " + ",\n  ".join(lines) + "\n);\n")


def auth_section(tmp, jwt=True, api=True, **jwt_extra):
    a = {}
    if jwt:
        j = {"keys": [{"kid": "hs1", "alg": "HS256",
                       "secret_file": write(os.path.join(tmp, "hs.secret"),
                                            SECRET.decode() + "\n")}],
             "leeway_s": 0, "require": ["exp"]}
        j.update(jwt_extra)
        a["jwt"] = j
    if api:
        a["api_keys"] = {"file": keys_file(tmp, [
            (API_KEY, "acme", "paid", ["payments:read"])])}
    return a


@pytest.fixture
def gw(gateway, origin, tmp):
    o = origin()
    routes = [
        dict(route("orders", "up", prefix="/orders"), auth="jwt",
             scopes=["orders:read"]),
        dict(route("pay", "up", prefix="/payments"), auth="api_key"),
        dict(route("either", "up", prefix="/either"), auth="any"),
        dict(route("noforward", "up", prefix="/nofwd"), auth="jwt",
             auth_forward=False),
        route("open", "up", prefix="/"),
    ]
    g = gateway({"up": service(o.addr, retries=0)}, routes,
                extra={"auth": auth_section(tmp)},
                server={"access_log": {"path": os.path.join(tmp,
                                                            "access.log")}})
    g.origin = o
    return g


def bearer(tok):
    return [("Authorization", "Bearer " + tok)]


def get(g, path, headers=()):
    with Client(g.port) as c:
        return c.request(path=path, headers=list(headers))


def seen(g, path):
    reqs = g.origin.complete_requests(path)
    assert reqs, "origin never saw %s" % path
    return reqs[-1]


def test_valid_token_forwards_identity(gw):
    tok = hs256(SECRET, claims("alice", tier="paid",
                               scope="orders:read orders:write"), kid="hs1")
    r = get(gw, "/orders/1", bearer(tok))
    assert r.status == 200, r
    req = seen(gw, "/orders/1")
    assert req.header("x-user-id") == "alice"
    assert req.header("x-user-tier") == "paid"
    assert req.header("x-user-scopes") == "orders:read orders:write"
    assert req.header("authorization") == "Bearer " + tok


def test_missing_token_401(gw):
    r = get(gw, "/orders/2")
    j = assert_gateway_error(r, 401)
    assert j["error"] == "missing_credentials"
    assert r.header("www-authenticate") == 'Bearer realm="portico"'
    time.sleep(0.1)
    assert gw.origin.complete_requests("/orders/2") == []


@pytest.mark.parametrize("case,code", [
    ("expired", "token_expired"),
    ("bad_signature", "bad_signature"),
    ("alg_none", "unsupported_alg"),
    ("garbage", "malformed_token"),
    ("unknown_kid", "unknown_kid"),
])
def test_bad_token_401(gw, case, code):
    if case == "expired":
        tok = hs256(SECRET, claims("bob", ttl=-100), kid="hs1")
    elif case == "bad_signature":
        tok = hs256(b"x" * 32, claims("bob"), kid="hs1")
    elif case == "alg_none":
        tok = segments({"alg": "none", "kid": "hs1"}, claims("bob")) + "."
    elif case == "garbage":
        tok = "not.a.token!"
    else:
        tok = hs256(SECRET, claims("bob"), kid="nope")
    r = get(gw, "/orders/bad", bearer(tok))
    j = assert_gateway_error(r, 401)
    assert j["error"] == code, j
    assert r.header("www-authenticate") == \
        'Bearer realm="portico", error="invalid_token"'
    assert tok not in r.body.decode(errors="replace")


def test_token_only_from_authorization_header(gw):
    tok = hs256(SECRET, claims("carol", scope="orders:read"), kid="hs1")
    for path, hdrs in [("/orders/q?access_token=" + tok, []),
                       ("/orders/c", [("Cookie", "token=" + tok)]),
                       ("/orders/x", [("X-Token", tok)])]:
        r = get(gw, path, hdrs)
        assert r.status == 401, (path, r)


def test_two_credentials_of_a_kind_refused(gw):
    tok = hs256(SECRET, claims("kim", scope="orders:read"), kid="hs1")
    r = get(gw, "/orders/two", bearer(tok) + bearer(tok))
    assert assert_gateway_error(r, 401)["error"] == "ambiguous_credentials"
    r = get(gw, "/payments/two", [("X-API-Key", API_KEY),
                                  ("X-API-Key", API_KEY)])
    assert assert_gateway_error(r, 401)["error"] == "ambiguous_credentials"


def test_scope_missing_403(gw):
    tok = hs256(SECRET, claims("dave", scope="orders:write"), kid="hs1")
    r = get(gw, "/orders/3", bearer(tok))
    j = assert_gateway_error(r, 403)
    assert j["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in r.header("www-authenticate")


def test_api_key_route(gw):
    r = get(gw, "/payments/1", [("X-API-Key", API_KEY)])
    assert r.status == 200, r
    req = seen(gw, "/payments/1")
    assert req.header("x-user-id") == "acme"
    assert req.header("x-user-tier") == "paid"
    assert req.header("x-user-scopes") == "payments:read"
    r = get(gw, "/payments/2", [("X-API-Key", API_KEY + "x")])
    j = assert_gateway_error(r, 401)
    assert j["error"] == "invalid_api_key"
    r = get(gw, "/payments/3")
    assert_gateway_error(r, 401)


def test_any_mode_takes_either(gw):
    tok = hs256(SECRET, claims("erin"), kid="hs1")
    assert get(gw, "/either/jwt", bearer(tok)).status == 200
    assert get(gw, "/either/key", [("X-API-Key", API_KEY)]).status == 200
    assert seen(gw, "/either/key").header("x-user-id") == "acme"
    assert get(gw, "/either/none").status == 401


def test_authorization_not_forwarded_when_configured(gw):
    tok = hs256(SECRET, claims("frank"), kid="hs1")
    assert get(gw, "/nofwd/1", bearer(tok)).status == 200
    req = seen(gw, "/nofwd/1")
    assert not req.has("authorization")
    assert req.header("x-user-id") == "frank"


@pytest.mark.parametrize("path", ["/open/spoof", "/orders/spoof",
                                  "/payments/spoof"])
def test_spoofed_identity_never_reaches_origin(gw, path):
    tok = hs256(SECRET, claims("gina", scope="orders:read"), kid="hs1")
    spoof = [("X-User-ID", "admin"), ("x-user-tier", "paid"),
             ("X-USER-SCOPES", "admin:all"), ("X_User_ID", "admin"),
             ("x_user_tier", "gold")]
    hdrs = spoof + (bearer(tok) if path.startswith("/orders") else []) + \
        ([("X-API-Key", API_KEY)] if path.startswith("/payments") else [])
    r = get(gw, path, hdrs)
    assert r.status == 200, r
    req = seen(gw, path)
    for k, v in req.headers:
        assert v not in ("admin", "gold", "admin:all"), (k, v)
    ids = req.header_all("x-user-id")
    assert len(ids) <= 1


def test_credentials_never_logged(gw, tmp):
    tok = hs256(SECRET, claims("hank", scope="orders:read"), kid="hs1")
    get(gw, "/orders/log", bearer(tok))
    get(gw, "/payments/log", [("X-API-Key", API_KEY)])
    get(gw, "/orders/bad", bearer(tok[:-3] + "AAA"))
    time.sleep(0.6)
    text = open(os.path.join(tmp, "access.log")).read() + gw.error_log()
    assert text.count("\n") >= 3
    for secret in (tok, tok.split(".")[2], API_KEY):
        assert secret not in text


def test_rs256_token(gateway, origin, tmp):
    priv, pub = make_rsa(tmp)
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [dict(route("r", "up", prefix="/"), auth="jwt")],
                extra={"auth": {"jwt": {"keys": [
                    {"kid": "rs1", "alg": "RS256", "public_key": pub}]}}})
    tok = rs256(priv, claims("ivy"), kid="rs1")
    r = get(g, "/rs", bearer(tok))
    assert r.status == 200, r
    assert o.complete_requests("/rs")[0].header("x-user-id") == "ivy"
    # an HS256 token made with the public key's bytes as its secret
    r = get(g, "/rs2", bearer(hs256(open(pub, "rb").read(), claims("ivy"),
                                    kid="rs1")))
    assert_gateway_error(r, 401)


def test_limits_by_consumer_across_workers(gateway, origin, tmp):
    o = origin()
    g = gateway({"up": service(o.addr, retries=0)},
                [dict(route("r", "up", prefix="/"), auth="jwt",
                      rate_limit={"by": "consumer"})],
                workers=4,
                extra={"auth": auth_section(tmp, api=False),
                       "tiers": {"anonymous": {"rate": 1, "per_s": 3600,
                                               "burst": 5},
                                 "paid": {"rate": 1, "per_s": 3600,
                                          "burst": 12}}})
    free_tok = hs256(SECRET, claims("u-free"), kid="hs1")
    paid_tok = hs256(SECRET, claims("u-paid", tier="paid"), kid="hs1")
    counts = {}
    for name, tok in (("free", free_tok), ("paid", paid_tok)):
        ok = 0
        for i in range(30):
            with Client(g.port) as c:
                r = c.request(path="/l/%s/%d" % (name, i),
                              headers=bearer(tok))
            ok += r.status == 200
            if r.status == 200:
                assert r.header("ratelimit") is not None
        counts[name] = ok
    # the route's tier (anonymous) for a token without one; the token's
    # own tier otherwise: exact across four workers
    assert counts == {"free": 5, "paid": 12}, counts


def test_key_rotation_by_reload(gw, tmp):
    old = hs256(SECRET, claims("jo", scope="orders:read"), kid="hs1")
    assert get(gw, "/orders/rot", bearer(old)).status == 200
    new_secret = b"fedcba9876543210fedcba9876543210"
    write(os.path.join(tmp, "hs.secret"), new_secret.decode() + "\n")
    keys_file(tmp, [("pk_new_key_abcdef", "newco", None, None)])
    from conftest import GWCTL
    import subprocess
    r = subprocess.run([GWCTL, "-s", os.path.join(tmp, "portico.sock"),
                        "reload"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    deadline = time.monotonic() + 10
    new = hs256(new_secret, claims("jo", scope="orders:read"), kid="hs1")
    while time.monotonic() < deadline:
        if get(gw, "/orders/rot2", bearer(new)).status == 200:
            break
        time.sleep(0.1)
    assert get(gw, "/orders/rot3", bearer(new)).status == 200
    assert get(gw, "/orders/rot4", bearer(old)).status == 401
    assert get(gw, "/payments/k", [("X-API-Key", "pk_new_key_abcdef")]) \
        .status == 200
    assert get(gw, "/payments/k", [("X-API-Key", API_KEY)]).status == 401


def test_balancing_by_consumer(gateway, origin, tmp):
    os_ = [origin() for _ in range(3)]
    g = gateway({"up": service(*[o.addr for o in os_], retries=0,
                               balance="hash:consumer")},
                [dict(route("r", "up", prefix="/"), auth="jwt")],
                extra={"auth": auth_section(tmp, api=False)})
    for who in ("k1", "k2", "k3", "k4"):
        tok = hs256(SECRET, claims(who), kid="hs1")
        hit = set()
        for i in range(6):
            r = get(g, "/b/%s/%d" % (who, i), bearer(tok))
            assert r.status == 200
            hit.add(json.loads(r.body)["origin"])
        assert len(hit) == 1, (who, hit)


def test_token_issued_this_second_accepted(gw):
    """A token made in the second that just began (iat = now, leeway 0)
    is not 'issued in the future': the gateway reads the exact wall
    clock, not a coarse one that lags a tick behind the second's turn."""
    with Client(gw.port) as c:
        for i in range(4):
            # just after a second begins (bounded: at most ~1 s each)
            deadline = time.monotonic() + 1.5
            while time.time() % 1.0 > 0.0005 and \
                    time.monotonic() < deadline:
                pass
            tok = hs256(SECRET, claims("alice", scope="orders:read"),
                        kid="hs1")
            r = c.request(path="/orders/now%d" % i, headers=bearer(tok))
            assert r.status == 200, r
