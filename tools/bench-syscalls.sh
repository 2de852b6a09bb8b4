#!/usr/bin/env bash
# make bench-syscalls: system calls of one portico worker per proxied
# request (strace -c), over REQUESTS sequential keep-alive requests to an
# nginx origin: shows the single sendmsg per response each way and the
# saved EAGAIN read. PORTICO_BASELINE=/path/to/portico runs that binary
# too, for a before/after comparison.
#
#   REQUESTS=2000
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

REQUESTS=${REQUESTS:-2000}
command -v strace >/dev/null || bench_die "strace not found (apt-get install strace)"
bench_setup
ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 || bench_die "origin nginx did not start"

load() {	# PORT COUNT
	"$PY" - "$1" "$2" <<'PYEOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
for i in range(int(sys.argv[2])):
    s.sendall(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n")
    buf = b""
    while True:
        buf += s.recv(65536)
        h = buf.find(b"\r\n\r\n")
        if h < 0:
            continue
        cl = [l for l in buf[:h].split(b"\r\n") if l.lower().startswith(b"content-length:")]
        if cl and len(buf) - h - 4 >= int(cl[0].split(b":")[1]):
            break
PYEOF
}

measure() {	# NAME BINARY
	local dir=$BENCH_TMP/$1 port pid w sp
	port=$(bench_ports 1)
	PORTICO=$2 portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1
	PORTICO=$2 start_portico "$dir"
	pid=$STARTED_PID
	bench_wait_http "$port" /small "$pid" 10 || { bench_log "$1 did not start"; return 1; }
	w=$(bench_children "$pid" | head -n 1)
	load "$port" 100
	strace -c -f -p "$w" -o "$dir/strace.txt" &
	sp=$!
	sleep 0.5
	load "$port" "$REQUESTS"
	sleep 0.3
	kill -INT "$sp" 2>/dev/null
	wait "$sp" 2>/dev/null
	bench_stop "$pid"
	bench_untrack "$pid"
	awk -v n="$REQUESTS" -v name="$1" '
	    $NF ~ /^(sendmsg|read|epoll_wait|recvfrom|writev|write)$/ {
		printf "%-14s %-10s %6.2f per request\n", name, $NF, $4 / n }' \
	    "$dir/strace.txt" | tee -a build/bench/syscalls.txt
}

mkdir -p build/bench
: >build/bench/syscalls.txt
measure portico "$PORTICO"
[ -n "${PORTICO_BASELINE:-}" ] && measure portico-base "$PORTICO_BASELINE"
exit 0
