# tools/bench/lib.sh: shared pieces of the benchmark scripts (sourced, not run).
# Loopback only. Every process started here is recorded in BENCH_PIDS and
# stopped by pid from bench_cleanup, which the caller traps on EXIT INT TERM.

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=/usr/bin/python3			# Debian's python, stdlib only
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
WRK=${WRK:-wrk}
PORTICO=${PORTICO:-$BENCH_ROOT/build/portico}
GWCTL=${GWCTL:-$(dirname "$PORTICO")/gwctl}
BENCH_PIDS=()
BENCH_TMP=""
BENCH_STATE=""
BENCH_CGROUPS=()

bench_log() { printf '%s\n' "$*" >&2; }
bench_die() { bench_log "bench: $*"; exit 1; }

# bench_stop PID [SECONDS]: TERM, wait (5 s by default), then KILL. Only
# pids we started.
bench_stop() {
	local pid=$1 secs=${2:-5} i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		# our own children are reaped by wait; others just vanish
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		bench_log "bench: pid $pid ignored TERM; killing"
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null || true
}

bench_cleanup() {
	local i
	trap - EXIT INT TERM
	for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
		bench_stop "${BENCH_PIDS[$i]}" "${BENCH_STOP_SECS:-5}"
	done
	BENCH_PIDS=()
	# a group goes once its last process has (bounded: 2 s each)
	for i in "${BENCH_CGROUPS[@]}"; do
		for _ in $(seq 20); do rmdir "$i" 2>/dev/null && break; sleep 0.1; done
	done
	BENCH_CGROUPS=()
	# the state path is ours alone (it carries our pid), never a shared one
	if [ -n "$BENCH_STATE" ] && [[ "$BENCH_STATE" == /dev/shm/portico-bench-* ]]; then
		rm -rf -- "$BENCH_STATE" "$BENCH_STATE"-*
	fi
	if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ] && [ -z "${BENCH_KEEP:-}" ]; then
		rm -rf -- "$BENCH_TMP"
	fi
}

bench_setup() {
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/portico-bench.XXXXXX")
	# nginx workers run as nobody and read the origin's /big from here
	chmod 755 "$BENCH_TMP"
	BENCH_STATE=/dev/shm/portico-bench-$$
	trap 'bench_cleanup' EXIT
	trap 'bench_log "bench: interrupted"; exit 130' INT TERM
}

bench_track() { BENCH_PIDS+=("$1"); }

# bench_untrack PID: after a bench_stop of one instance mid-run.
bench_untrack() {
	local p keep=()
	for p in "${BENCH_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	BENCH_PIDS=("${keep[@]}")
}

# bench_ports N: N distinct free loopback ports (bound together, then closed).
bench_ports() {
	"$PY" - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# bench_wait_http PORT PATH PID [SECONDS] [HEADER]: until PORT answers 200
# on PATH (sent with the header line HEADER, "Name: value", when given), or
# the process PID has died, or the time is up.
bench_wait_http() {
	local port=$1 path=$2 pid=$3 secs=${4:-10} hdr=${5:-} i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		if "$PY" - "$port" "$path" "$hdr" 2>/dev/null <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
extra = sys.argv[3] + "\r\n" if sys.argv[3] else ""
s.sendall(("GET %s HTTP/1.1\r\nHost: bench\r\n%sConnection: close\r\n\r\n" % (sys.argv[2], extra)).encode())
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
sys.exit(0 if data.startswith(b"HTTP/1.1 200") else 1)
EOF
		then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

# bench_cpu_ticks PID: utime+stime (clock ticks) of PID and its children,
# summed over all their threads.
bench_cpu_ticks() {
	"$PY" - "$1" <<'EOF'
import os, sys
root = sys.argv[1]
total = 0
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            s = f.read()
    except OSError:
        continue
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15
    if d == root or fields[1] == root:
        total += int(fields[11]) + int(fields[12])
print(total)
EOF
}

# ---- configs -------------------------------------------------------------

# nginx_head DIR WORKERS [EXTRA_MAIN]: what the origin and the nginx front
# share: the main context, logs and temp paths in DIR, long keep-alive. The
# caller's http block continues after it.
nginx_head() {
	cat <<EOF
worker_processes $2;
daemon off;
pid $1/nginx.pid;
error_log $1/err.log warn;
worker_rlimit_nofile 20000;
${3:-}
events { worker_connections 20000; }
http {
	access_log off;
	client_body_temp_path $1/tmp_body;
	proxy_temp_path $1/tmp_proxy;
	fastcgi_temp_path $1/tmp_fcgi;
	uwsgi_temp_path $1/tmp_uwsgi;
	scgi_temp_path $1/tmp_scgi;
	keepalive_requests 100000000;
	keepalive_timeout 300s;
EOF
}

# origin_conf DIR PORT: nginx origin, 1 worker, ~100-byte JSON on /small (and
# any other path, so a default health check finds it), 16 KiB on /big, a
# 4 KiB JSON document on /json4k (the strip_fields scenario).
origin_conf() {
	local dir=$1 port=$2
	mkdir -p "$dir/html"
	"$PY" -c 'import sys; sys.stdout.write(("x" * 63 + "\n") * 256)' >"$dir/html/big"
	"$PY" -c 'import json, sys
items = [{"id": i, "name": "item number %d" % i, "price": 9.5, "currency": "EUR",
          "internal": {"cost": 3}}
         for i in range(40)]
sys.stdout.write(json.dumps({"debug": "x" * 250, "items": items}))' >"$dir/html/json4k"
	cat >"$dir/nginx.conf" <<EOF
$(nginx_head "$dir" 1)
	server {
		listen 127.0.0.1:$port reuseport backlog=4096;
		default_type application/json;
		location = /big { root $dir/html; default_type application/octet-stream; }
		location = /json4k { root $dir/html; default_type application/json; }
		location / {
			return 200 '{"id":12345,"name":"bench","status":"ok","items":[1,2,3,4,5],"note":"origin small body 100B"}\n';
		}
	}
}
EOF
}

# nginx_front_conf DIR PORT ORIGIN_PORT WORKERS [EXTRA_MAIN] [HTTP_EXTRA]
# [LOCATION_EXTRA]: HTTP_EXTRA goes in the http block (zones, log formats),
# LOCATION_EXTRA in the proxying location - the hooks feature scenarios use.
nginx_front_conf() {
	local dir=$1 port=$2 oport=$3 workers=$4 extra=${5:-}
	local http_extra=${6:-} loc_extra=${7:-}
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
$(nginx_head "$dir" "$workers" "$extra")
	$http_extra
	upstream origin {
		server 127.0.0.1:$oport;
		keepalive 512;
		keepalive_requests 100000000;
	}
	server {
		listen 127.0.0.1:$port reuseport backlog=4096;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			$loc_extra
		}
	}
}
EOF
}

# haproxy_conf DIR PORT ORIGIN_PORT THREADS [GLOBAL_EXTRA] [FRONTEND_EXTRA]
# GLOBAL_EXTRA goes in the global section (log targets), FRONTEND_EXTRA in
# the frontend (http-request rules, a stick table, log-format).
haproxy_conf() {
	local dir=$1 port=$2 oport=$3 threads=$4
	local global_extra=${5:-} fe_extra=${6:-}
	mkdir -p "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
	nbthread $threads
	$global_extra
	maxconn ${HAPROXY_MAXCONN:-4096}
	pidfile $dir/haproxy.pid
	${HAPROXY_ULIMIT:+ulimit-n $HAPROXY_ULIMIT}

defaults
	mode http
	option http-keep-alive
	http-reuse always
	timeout connect 5s
	timeout client 300s
	timeout server 300s
	timeout http-keep-alive 300s
	maxconn ${HAPROXY_MAXCONN:-4096}

frontend fe
	bind 127.0.0.1:$port
	$fe_extra
	default_backend be

backend be
	server origin 127.0.0.1:$oport maxconn 20000
EOF
}

# portico_conf DIR PORT ADMIN_PORT ORIGIN_PORT WORKERS [ROUTE_EXTRA] [TOP_EXTRA]
# ROUTE_EXTRA goes inside the "/" route (e.g. a rate_limit), TOP_EXTRA at
# the top level (e.g. tiers) - the hooks feature scenarios use.
portico_conf() {
	local dir=$1 port=$2 aport=$3 oport=$4 workers=$5
	local route_extra=${6:-} top_extra=${7:-}
	local state=$BENCH_STATE
	# variants (feature scenarios) get a store of their own
	[ "$(basename "$dir")" = portico ] || state=$BENCH_STATE-$(basename "$dir")
	mkdir -p "$dir"
	cat >"$dir/portico.conf" <<EOF
version = 1;
server: {
  workers = $workers;
  listen = ( { address = "127.0.0.1:$port"; } );
  admin = "127.0.0.1:$aport";
  control_socket = "$dir/portico.sock";
  pid_file = "$dir/portico.pid";
  state = { path = "$state"; max_mb = 64; };
  limits = { idle_timeout_ms = 300000; };
  access_log = { path = "off"; };
  error_log = { path = "$dir/err.log"; level = "warn"; };
};
services: {
  origin = {
    instances = ["127.0.0.1:$oport"];
    keepalive = 512;
  };
};
$top_extra
routes = (
  { name = "all";
    match = { prefix = "/"; };
    service = "origin";
    $route_extra
  }
);
EOF
}

# Start helpers: each sets STARTED_PID and tracks it (no $(...): a
# subshell would lose the tracking).
STARTED_PID=""
start_nginx() {		# DIR
	"$NGINX" -p "$1" -e "$1/err.log" -c "$1/nginx.conf" >>"$1/stdout.log" 2>&1 &
	STARTED_PID=$!
	bench_track "$STARTED_PID"
}
start_haproxy() {	# DIR
	"$HAPROXY" -f "$1/haproxy.cfg" -db >>"$1/stdout.log" 2>&1 &
	STARTED_PID=$!
	bench_track "$STARTED_PID"
}
start_portico() {	# DIR
	(cd "$1" && exec "$PORTICO" -c "$1/portico.conf" -p "$1") >>"$1/stdout.log" 2>&1 &
	STARTED_PID=$!
	bench_track "$STARTED_PID"
}

# bench_store_writes DIR: write transactions the store of the portico in
# DIR has committed so far (gwctl limits reports them), or "" if unknown.
bench_store_writes() {
	[ -x "$GWCTL" ] || return 0
	"$GWCTL" -s "$1/portico.sock" --json limits - 2>/dev/null |
		"$PY" -c 'import json, sys
try:
    print(json.load(sys.stdin)["store"]["write_txns"])
except Exception:
    pass' 2>/dev/null
}

# bench_children PID: pids whose parent is PID (a master's workers).
bench_children() {
	"$PY" - "$1" <<'PYEOF'
import os, sys
for d in os.listdir("/proc"):
    if not d.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % d) as f:
            s = f.read()
    except OSError:
        continue
    if s[s.rindex(")") + 2:].split()[1] == sys.argv[1]:
        print(d)
PYEOF
}

# bench_cpu_budget PID NAME CORES: PID and its children (a master and its
# workers, and any worker forked later) may use CORES of CPU time between
# them (0.5: half a core), through a cgroup of their own (v1's cpu
# controller or v2's cpu.max). So the front, not the load generator that
# shares the machine, is what runs out of CPU, and requests per second
# measure the front. Fails (1) when this machine has no writable cgroup.
bench_cpu_budget() {
	local pid=$1 name=$2 cores=$3 root dir quota p
	quota=$("$PY" -c 'import sys; print(int(float(sys.argv[1]) * 100000))' "$cores") || return 1
	if [ -w /sys/fs/cgroup/cpu ] && [ -e /sys/fs/cgroup/cpu/cpu.cfs_quota_us ]; then
		root=/sys/fs/cgroup/cpu
	elif [ -w /sys/fs/cgroup ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
		root=/sys/fs/cgroup
	else
		return 1
	fi
	dir=$root/portico-bench-$$-$name
	mkdir -p "$dir" 2>/dev/null || return 1
	BENCH_CGROUPS+=("$dir")
	if [ "$root" = /sys/fs/cgroup/cpu ]; then
		echo 100000 >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
	else
		echo "$quota 100000" >"$dir/cpu.max" || return 1
	fi
	for p in "$pid" $(bench_children "$pid"); do
		echo "$p" >"$dir/cgroup.procs" 2>/dev/null || return 1
	done
}

# bench_budget_banner CORES: the header line of a capacity run.
bench_budget_banner() {
	echo "capacity mode: each front limited to $1 cores (a cgroup of its own); the load generator and origin share the rest, so req/s measure the front"
}

# bench_budget_used TICKS HZ SECONDS CORES: ", front used U of CORES cores"
# for a round's log line (empty without a budget), flagged when the front
# used under 90% of it: then something else ran out first and the round
# says little about the front.
bench_budget_used() {
	[ -n "$4" ] || return 0
	awk -v t="$1" -v hz="$2" -v d="$3" -v c="$4" 'BEGIN {
		u = t / hz / d
		printf ", front used %.2f of %s cores%s", u, c, u < 0.9 * c ? " (NOT front-bound)" : "" }'
}
