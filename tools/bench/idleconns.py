#!/usr/bin/python3
"""idleconns.py PORT PATH N [HOLD_S] [tls]

Open N keep-alive connections to 127.0.0.1:PORT, send one GET PATH on each
and read its whole response (Content-Length), then keep every connection
open and idle. Prints "ready N" on stdout once all N responses are in, then
holds the connections until SIGTERM/SIGINT or HOLD_S seconds (default 600).
Needs ulimit -n above N. With "tls" each connection is TLS (no
certificate check; the session stays open and idle like the others).
"""
import selectors
import signal
import socket
import ssl
import sys
import time

BATCH = 250  # stay well below the server's accept backlog


def read_responses(socks, req_done):
    sel = selectors.DefaultSelector()
    bufs = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    pending = len(socks)
    deadline = time.monotonic() + 60
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except ssl.SSLWantReadError:
                continue
            if not data:
                raise SystemExit("idleconns: server closed a connection")
            bufs[s] += data
            b = bufs[s]
            end = b.find(b"\r\n\r\n")
            if end < 0:
                continue
            clen = 0
            for line in b[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    clen = int(value)
            if len(b) >= end + 4 + clen:
                if not b.startswith(b"HTTP/1.1 200"):
                    raise SystemExit("idleconns: not a 200: %r" % b[:40])
                sel.unregister(s)
                del bufs[s]
                pending -= 1
                req_done[0] += 1
    sel.close()
    if pending:
        raise SystemExit("idleconns: %d responses missing after 60 s" % pending)


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    port, path, n = int(argv[1]), argv[2], int(argv[3])
    hold = float(argv[4]) if len(argv) > 4 else 600.0
    ctx = None
    if len(argv) > 5 and argv[5] == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    req = ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode()
    stop = [False]

    def on_signal(signum, frame):
        stop[0] = True
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    socks = []
    done = [0]
    while len(socks) < n and not stop[0]:
        batch = []
        for _ in range(min(BATCH, n - len(socks))):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            if ctx is not None:
                s = ctx.wrap_socket(s, server_hostname="localhost")
            s.sendall(req)
            s.setblocking(False)
            batch.append(s)
        read_responses(batch, done)
        socks.extend(batch)
    print("ready %d" % done[0], flush=True)
    end = time.monotonic() + hold
    while not stop[0] and time.monotonic() < end:
        time.sleep(0.2)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
