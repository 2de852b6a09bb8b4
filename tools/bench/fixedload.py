#!/usr/bin/python3
"""fixedload.py PORT PATH REQUESTS CONNS [TIMEOUT_S] [HEADER]

Send exactly REQUESTS GET requests for PATH to 127.0.0.1:PORT over CONNS
keep-alive connections, one request in flight per connection, and read
every response (Content-Length or chunked). wrk cannot stop at a count; an
instruction count per request needs one. Exit 0 when every response was a
200, else 1. Prints "requests=N ok=N seconds=S" on stdout. HEADER, a line
"Name: value", goes with every request (a credential, say).
"""
import selectors
import socket
import sys
import time


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buf = b""
        self.busy = False


def response_length(buf):
    """Bytes of the first complete response in buf, or 0 if incomplete.
    Returns (length, status, close)."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0, 0, False
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    clen, chunked, close = 0, False, False
    for line in head[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-length":
            clen = int(value)
        elif name == "transfer-encoding" and value.lower() == "chunked":
            chunked = True
        elif name == "connection" and value.lower() == "close":
            close = True
    pos = end + 4
    if not chunked:
        if len(buf) < pos + clen:
            return 0, 0, False
        return pos + clen, status, close
    while True:  # chunked: walk the chunks; trailers are not expected here
        nl = buf.find(b"\r\n", pos)
        if nl < 0:
            return 0, 0, False
        size = int(buf[pos:nl].split(b";")[0], 16)
        pos = nl + 2
        if size == 0:
            if len(buf) < pos + 2:
                return 0, 0, False
            return pos + 2, status, close
        if len(buf) < pos + size + 2:
            return 0, 0, False
        pos += size + 2


def main(argv):
    if len(argv) < 5:
        sys.stderr.write(__doc__)
        return 2
    port, path, total, nconns = int(argv[1]), argv[2], int(argv[3]), int(argv[4])
    timeout = float(argv[5]) if len(argv) > 5 else 120.0
    extra = argv[6] + "\r\n" if len(argv) > 6 and argv[6] else ""
    req = ("GET %s HTTP/1.1\r\nHost: bench\r\n%s\r\n" % (path, extra)).encode()
    sel = selectors.DefaultSelector()
    sent = done = ok = 0
    start = time.monotonic()

    def issue(c):
        nonlocal sent
        c.sock.sendall(req)  # small; fits the socket buffer
        c.busy = True
        sent += 1

    conns = []
    for _ in range(min(nconns, total)):
        c = Conn(port)
        conns.append(c)
        sel.register(c.sock, selectors.EVENT_READ, c)
        issue(c)
    last = time.monotonic()
    while done < total:
        events = sel.select(1.0)
        if not events and time.monotonic() - last > timeout:
            sys.stderr.write("fixedload: no progress for %.0f s (%d/%d done)\n" % (timeout, done, total))
            break
        for key, _ in events:
            c = key.data
            try:
                data = c.sock.recv(262144)
            except BlockingIOError:
                continue
            if not data:
                sys.stderr.write("fixedload: connection closed by server\n")
                return 1
            c.buf += data
            n, status, close = response_length(c.buf)
            if not n:
                continue
            c.buf = c.buf[n:]
            c.busy = False
            done += 1
            last = time.monotonic()
            if status == 200:
                ok += 1
            if close:
                sel.unregister(c.sock)
                c.sock.close()
                c = Conn(port)
                sel.register(c.sock, selectors.EVENT_READ, c)
            if sent < total:
                issue(c)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    print("requests=%d ok=%d seconds=%.2f" % (done, ok, time.monotonic() - start))
    return 0 if ok == total else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
