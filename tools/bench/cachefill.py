#!/usr/bin/python3
"""cachefill.py PORT N [PREFIX]

Ask 127.0.0.1:PORT for PREFIX1 .. PREFIXN (default /c/) twice over one
keep-alive connection: the first pass fills the cache (misses), the second
must be served from it. Prints "objects=N hits=H seconds=S"; exit 0 when
every response was a 200 and every second-pass one an X-Cache: HIT.
"""
import socket
import sys
import time


def read_response(sock, buf):
    """(status, headers dict, rest of buf) of one Content-Length response."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data
    end = buf.index(b"\r\n\r\n")
    lines = buf[:end].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    need = end + 4 + int(hdrs.get("content-length", "0"))
    while len(buf) < need:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-body")
        buf += data
    return status, hdrs, buf[need:]


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    port, n = int(argv[1]), int(argv[2])
    prefix = argv[3] if len(argv) > 3 else "/c/"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    ok = True
    hits = 0
    t0 = time.monotonic()
    for rnd in (1, 2):
        for i in range(1, n + 1):
            sock.sendall(("GET %s%d HTTP/1.1\r\nHost: bench\r\n\r\n" %
                          (prefix, i)).encode())
            status, hdrs, buf = read_response(sock, buf)
            if status != 200:
                ok = False
            if rnd == 2:
                if hdrs.get("x-cache") == "HIT":
                    hits += 1
                else:
                    ok = False
    print("objects=%d hits=%d seconds=%.1f" % (n, hits,
                                               time.monotonic() - t0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
