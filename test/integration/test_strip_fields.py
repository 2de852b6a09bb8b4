"""transform.response.strip_fields end to end, and the header transforms
(rename_headers, add_headers templates): nested and array bodies, a body
arriving one byte per read, Content-Length bodies (stripped whole and
given their new length, or streamed chunked past strip_buffer_bytes) and
chunked ones, HTTP/1.0 clients, bodies that are not JSON by type or by
content, invalid JSON, compressed bodies (passed, counted, warned once),
and the demo's orders without internal_cost and debug."""

import json
import os
import subprocess

import pytest

from conftest import GWCTL, Client, route, service
from origin import KEEP, chunked_response, response

DOC = {"id": 7, "debug": {"sql": "select"}, "internal_cost": 1.5,
       "items": [{"sku": "a", "cost": 2, "meta": {"debug": 1}},
                 [{"cost": 3, "qty": 1}]],
       "payment": {"card_number": "4111", "amount": 9},
       "note": "debug"}
WANT = {"id": 7,
        "items": [{"sku": "a", "meta": {"debug": 1}}, [{"qty": 1}]],
        "payment": {"amount": 9}, "note": "debug"}
FIELDS = ["debug", "internal_cost", "items.cost", "payment.card_number"]


def stats(g):
    out = subprocess.run([GWCTL, "-s", os.path.join(g.tmp, "portico.sock"),
                          "--json", "stats"], capture_output=True,
                         text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)["total"]["strip_fields"]


def one_byte_script(head, body):
    """The head, then the body one byte per send with pauses between, so
    the gateway reads it one byte at a time."""
    out = [head]
    for i in range(len(body)):
        out += [body[i:i + 1], 0.002]
    return out


def handler(o, req):
    body = json.dumps(DOC, indent=1).encode()
    ct = [("Content-Type", "application/json; charset=utf-8")]
    t = req.target
    if t == "/cl":
        return response(200, body, ct), KEEP
    if t == "/chunked":
        pieces = [body[i:i + 7] for i in range(0, len(body), 7)]
        return chunked_response(pieces, headers=ct), KEEP
    if t == "/bytes-cl":
        head = response(200, b"", ct, content_length=False)[:-2] + \
            b"Content-Length: %d\r\n\r\n" % len(body)
        return one_byte_script(head, body), KEEP
    if t == "/bytes-chunked":
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        script = [head]
        for i in range(len(body)):
            script += [b"1\r\n" + body[i:i + 1] + b"\r\n", 0.002]
        return script + [b"0\r\n\r\n"], KEEP
    if t == "/html":
        return response(200, '{"debug":1}', [("Content-Type",
                                              "text/html")]), KEEP
    if t == "/untyped-text":
        return response(200, "debug: 1"), KEEP
    if t == "/untyped-json":
        return response(200, '{"debug":1,"a":2}'), KEEP
    if t == "/problem":
        return response(404, '{"debug":1,"error":"x"}', [
            ("Content-Type", "application/problem+json")]), KEEP
    if t == "/invalid":
        return response(200, '{"a":1,"debug":2,"b":01}', ct), KEEP
    if t == "/invalid-chunked":
        return chunked_response(['{"a":1,"debug":2,', '"b":01}'],
                                headers=ct), KEEP
    if t == "/gzip":
        return response(200, b'\x1f\x8bdebug', ct + [
            ("Content-Encoding", "gzip")]), KEEP
    if t == "/empty":
        return response(204, b""), KEEP
    return response(200, json.dumps({"ae": req.header("accept-encoding"),
                                     "x-b": req.header("x-b"),
                                     "x-a": req.header("x-a")}), ct), KEEP


@pytest.fixture
def gw(gateway, origin):
    o = origin(handler=handler)
    r = route("strip", "up", prefix="/")
    r["transform"] = {
        "request": {"rename_headers": ["X-A: X-B"],
                    "add_headers": ["X-Q: {query.q}"]},
        "response": {"strip_fields": FIELDS,
                     "rename_headers": ["X-Origin: X-Served-From"],
                     "strip_buffer_bytes": 4096}}
    big = route("big", "up", prefix="/small-buffer")
    big["transform"] = {"response": {"strip_fields": FIELDS,
                                     "strip_buffer_bytes": 16}}
    big["rewrite"] = {"pattern": "^/small-buffer(/.*)$", "to": "$1"}
    g = gateway({"up": service(o.addr, retries=0)}, [big, r])
    g.origin = o
    return g


def get(g, path, version="HTTP/1.1", headers=()):
    with Client(g.port) as c:
        return c.request(path=path, version=version, headers=list(headers))


def test_content_length_body_gets_its_new_length(gw):
    r = get(gw, "/cl")
    assert r.status == 200
    assert r.header("transfer-encoding") is None
    assert int(r.header("content-length")) == len(r.body)
    assert r.json() == WANT


def test_chunked_body_streams_chunked(gw):
    r = get(gw, "/chunked")
    assert r.header("transfer-encoding") == "chunked"
    assert r.json() == WANT


def test_past_the_buffer_bound_streams_chunked(gw):
    r = get(gw, "/small-buffer/cl")
    assert r.header("transfer-encoding") == "chunked"
    assert r.header("content-length") is None
    assert r.json() == WANT


def test_http10_client(gw):
    r = get(gw, "/small-buffer/cl", version="HTTP/1.0")
    assert r.header("transfer-encoding") is None
    assert r.json() == WANT                 # delimited by the close
    r = get(gw, "/cl", version="HTTP/1.0")
    assert int(r.header("content-length")) == len(r.body)
    assert r.json() == WANT


@pytest.mark.parametrize("path", ["/bytes-cl", "/bytes-chunked",
                                  "/small-buffer/bytes-cl"])
def test_one_byte_per_read(gw, path):
    r = get(gw, path)
    assert r.status == 200
    assert r.json() == WANT


def test_not_json_passes_unchanged_and_is_counted(gw):
    before = stats(gw)
    r = get(gw, "/html")
    assert r.body == b'{"debug":1}'
    assert get(gw, "/untyped-text").body == b"debug: 1"
    # no Content-Type: judged by its first byte
    assert get(gw, "/untyped-json").json() == {"a": 2}
    # any +json type, any status
    r = get(gw, "/problem")
    assert r.status == 404 and r.json() == {"error": "x"}
    assert get(gw, "/empty").status == 204
    after = stats(gw)
    assert after["not_json"] - before["not_json"] == 2
    assert after["bodies"] - before["bodies"] == 2


def test_invalid_json(gw):
    before = stats(gw)
    # whole (under the bound): exactly as it came
    r = get(gw, "/invalid")
    assert r.body == b'{"a":1,"debug":2,"b":01}'
    assert int(r.header("content-length")) == len(r.body)
    # streamed: as it came from where it went wrong
    r = get(gw, "/invalid-chunked")
    assert r.body == b'{"a":1,"b":01}'
    assert stats(gw)["invalid"] - before["invalid"] == 2


def test_compressed_passes_with_one_warning(gw):
    for _ in range(3):
        r = get(gw, "/gzip")
        assert r.body == b"\x1f\x8bdebug"
        assert r.header("content-encoding") == "gzip"
    assert stats(gw)["encoded"] == 3
    log = gw.error_log()
    assert log.count("passes without strip_fields") == 1, log


def test_request_asks_for_identity_and_header_transforms(gw):
    r = get(gw, "/echo?q=a%20b", headers=[("Accept-Encoding", "gzip"),
                                           ("X-A", "one")])
    j = r.json()
    assert j == {"ae": "identity", "x-b": "one", "x-a": None}
    req = gw.origin.complete_requests("/echo")[-1]
    assert req.header("x-q") == "a b"
    # response renamed: X-Origin arrives as X-Served-From
    r = get(gw, "/cl")
    assert r.header("x-origin") is None


def test_response_rename(gateway, origin):
    o = origin()
    r = route("r", "up", prefix="/")
    r["transform"] = {"response": {"rename_headers": ["X-Origin: X-From"],
                                   "add_headers": ["X-Path: {query.p}"]}}
    g = gateway({"up": service(o.addr)}, [r])
    # a decoded control byte is encoded again in the header value
    res = get(g, "/x?p=p%01q%0d%0aX-Evil:%201")
    assert res.header("x-origin") is None
    assert res.header("x-from") == o.name
    assert res.header("x-path") == "p%01q%0D%0AX-Evil: 1"
    assert res.header("x-evil") is None


def test_demo_orders_lose_internal_fields(gateway, demo):
    d = demo("orders")
    r = route("orders", "orders", prefix="/orders")
    r["transform"] = {"response": {"strip_fields": ["internal_cost",
                                                    "debug"]}}
    g = gateway({"orders": service(d.addr)}, [r])
    raw = get(g, "/orders/1")
    j = raw.json()
    assert "internal_cost" not in j and "debug" not in j
    assert j["id"] == "1" and j["items"] and "total" in j
    assert int(raw.header("content-length")) == len(raw.body)
    direct = json.loads(Client(d.port).request(path="/orders/1").body)
    assert "internal_cost" in direct and "debug" in direct
