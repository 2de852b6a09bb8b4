"""Routing: exact, segment-aware prefix, regex, methods (405 + Allow), host,
404 JSON, path normalisation and its refusals."""

import pytest

from conftest import Client, assert_gateway_error, http, route, service


@pytest.fixture
def gw(gateway, origin):
    """One origin per service; each answers with its own name."""
    names = ["exact", "orders", "users", "legacy", "hosted", "fallback"]
    o = {n: origin(name=n) for n in names}
    services = {n: service(o[n].addr, retries=0) for n in names}
    routes = [
        route("exact", "exact", path="/exact"),
        route("orders", "orders", prefix="/orders", methods=["GET", "POST"]),
        route("users", "users", prefix="/users"),
        route("legacy", "legacy", regex="^/v1/(users|orders)/[0-9]+$"),
        route("hosted", "hosted", prefix="/h", host="api.example.com"),
        route("onlyhost", "hosted", prefix="/onlyhost",
              host="api.example.com"),
        route("fallback", "fallback", prefix="/h"),
        route("multi-get", "exact", prefix="/multi", methods=["GET"]),
        route("multi-post", "users", prefix="/multi", methods=["POST"]),
    ]
    g = gateway(services, routes)
    g.origins = o
    return g


def who(r):
    assert r.status == 200, r
    return r.json()["origin"]


def test_exact_path(gw):
    assert who(http(gw.port, path="/exact")) == "exact"
    assert_gateway_error(http(gw.port, path="/exact/1"), 404)
    assert_gateway_error(http(gw.port, path="/exactx"), 404)


def test_prefix_is_segment_aware(gw):
    for p in ["/orders", "/orders/", "/orders/7", "/orders/7/items"]:
        assert who(http(gw.port, path=p)) == "orders", p
    assert_gateway_error(http(gw.port, path="/ordersx"), 404)
    assert_gateway_error(http(gw.port, path="/order"), 404)


def test_query_is_forwarded(gw):
    assert who(http(gw.port, path="/orders/7?a=1&b=%2F")) == "orders"
    reqs = gw.origins["orders"].complete_requests()
    assert reqs[-1].target == "/orders/7?a=1&b=%2F"


def test_regex(gw):
    assert who(http(gw.port, path="/v1/users/12")) == "legacy"
    assert who(http(gw.port, path="/v1/orders/3")) == "legacy"
    assert_gateway_error(http(gw.port, path="/v1/users/abc"), 404)
    assert_gateway_error(http(gw.port, path="/v1/users/12/x"), 404)


def test_method_not_allowed_has_allow(gw):
    r = http(gw.port, "DELETE", "/orders/7")
    assert_gateway_error(r, 405)
    allow = [m.strip() for m in (r.header("allow") or "").split(",")]
    assert "GET" in allow and "POST" in allow, r
    assert "DELETE" not in allow
    assert who(http(gw.port, "POST", "/orders/7", body=b"{}")) == "orders"
    assert gw.origins["orders"].complete_requests()[-1].method == "POST"


def test_host_match(gw):
    assert who(http(gw.port, path="/h/1", host="api.example.com")) == "hosted"
    # case-insensitive, port stripped
    assert who(http(gw.port, path="/h/1",
                    host="API.Example.com:%d" % gw.port)) == "hosted"
    # another host falls through to the next route
    assert who(http(gw.port, path="/h/1", host="other.example")) == "fallback"
    assert_gateway_error(http(gw.port, path="/onlyhost",
                              host="other.example"), 404)


def test_404_json_body(gw):
    r = http(gw.port, path="/nothing/here")
    j = assert_gateway_error(r, 404)
    assert set(j) >= {"error", "status", "trace_id"}
    assert int(r.header("content-length")) == len(r.body)


def test_404_keeps_connection(gw):
    with Client(gw.port) as c:
        assert c.request(path="/nothing").status == 404
        assert who(c.request(path="/exact")) == "exact"


def test_dot_segments_resolved_before_routing(gw):
    assert who(http(gw.port, path="/orders/../users/1")) == "users"
    assert who(http(gw.port, path="/orders/./7")) == "orders"
    assert who(http(gw.port, path="//orders//7")) == "orders"
    # percent-encoded unreserved characters are decoded: %6F = 'o'
    assert who(http(gw.port, path="/%6Frders/7")) == "orders"
    # what was routed is what is forwarded
    assert gw.origins["users"].complete_requests()[-1].target == "/users/1"


@pytest.mark.parametrize("path", [
    "/orders%2F7",
    "/orders%2f7",
    "/users/%2e%2e%2Forders",
    "/orders%5C7",
])
def test_encoded_slash_refused(gw, path):
    assert_gateway_error(http(gw.port, path=path), 400)
    assert not any(o.complete_requests() for o in gw.origins.values())


@pytest.mark.parametrize("path", [
    "/..",
    "/../users/1",
    "/users/../../etc/passwd",
    "/%2e%2e/users/1",
])
def test_climbing_above_root_refused(gw, path):
    r = http(gw.port, path=path)
    assert_gateway_error(r, 400)
    assert not any(o.complete_requests() for o in gw.origins.values())


def test_head_gateway_error_has_no_body(gw):
    with Client(gw.port) as c:
        r = c.request("HEAD", "/nothing")
        assert r.status == 404, r
        # no body bytes may follow: the next response parses cleanly
        r2 = c.request("GET", "/exact")
        assert r2.status == 200 and r2.json()["origin"] == "exact", r2


def test_405_allow_is_union_of_matching_routes(gw):
    assert who(http(gw.port, "GET", "/multi/1")) == "exact"
    assert who(http(gw.port, "POST", "/multi/1", body=b"x")) == "users"
    r = http(gw.port, "DELETE", "/multi/1")
    assert_gateway_error(r, 405)
    allow = sorted(m.strip() for m in r.header("allow").split(","))
    assert "GET" in allow and "POST" in allow and "DELETE" not in allow, \
        allow


@pytest.mark.parametrize("path", [
    "/users/%zz",
    "/users/%",
    "/users/%4",
    "/users/%00",
    "/users/<x>",
    "users/1",
])
def test_malformed_path_refused(gw, path):
    assert_gateway_error(http(gw.port, path=path), 400)
    assert not any(o.complete_requests() for o in gw.origins.values())


def test_escapes_normalised_when_forwarded(gw):
    assert who(http(gw.port, path="/users/%c3%a9/%7Ebob")) == "users"
    assert gw.origins["users"].complete_requests()[-1].target == \
        "/users/%C3%A9/~bob"
