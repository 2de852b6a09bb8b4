#!/usr/bin/env bash
# bench-rss.sh: memory per idle keep-alive client connection. One worker
# (nginx: worker_processes 1; portico: workers = 1; haproxy: nbthread 1)
# behind the bench origin; after a warm-up, the worker's RSS is read, then
# tools/bench/idleconns.py opens N connections, sends one request on each,
# reads the response and keeps them all open; the RSS is read again.
# Target: at most 1 KiB per connection above idle RSS.
#
#   N=10000 TARGETS="nginx haproxy portico portico-tls nginx-tls"
#
# portico-tls, nginx-tls: the same with every connection over TLS 1.3 (an
# ECDSA P-256 certificate; portico releases record buffers while idle, and
# so does nginx), N_TLS of them (default 2000: the handshakes take the
# time). Their RSS includes OpenSSL's own per-connection state (the SSL
# object and its session), so build/osslmem.so (tools/bench/osslmem.c) is
# preloaded into them: it counts the heap OpenSSL holds, and the worker's
# figure before and after gives OpenSSL's bytes per idle connection; the
# rest of the RSS per connection is the server's own.
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh
. tools/bench/tlslib.sh

N=${N:-10000}
TARGETS=${TARGETS:-"nginx haproxy portico portico-tls nginx-tls"}
N_TLS=${N_TLS:-2000}
OSSLMEM=${OSSLMEM:-$(dirname "$PORTICO")/osslmem.so}
OUT=build/bench

[ -x "$PY" ] || bench_die "$PY not found"
# the client and the worker each hold N sockets
ulimit -n $((2 * N + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((N + 100)) ] || bench_die "ulimit -n is $(ulimit -n); need more than $((N + 100))"
# haproxy insists on 2 x maxconn + some descriptors: where the hard limit
# is too low for that, it gets fewer connections (its figure is per
# connection, so it stays comparable).
NH=$N
[ $((2 * (N + 100) + 100)) -le "$(ulimit -n)" ] || NH=$((($(ulimit -n) - 100) / 2 - 100))

bench_setup
mkdir -p "$OUT"
ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 || bench_die "origin nginx did not start"

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# ossl_bytes DIR PID: the heap OpenSSL holds in process PID (osslmem's
# file in DIR), or "" when not measured.
ossl_bytes() {
	[ -f "$1/osslmem.$2" ] || return 0
	"$PY" - "$1/osslmem.$2" <<'EOF'
import struct, sys
magic, live, *_ = struct.unpack("=8sqqqq", open(sys.argv[1], "rb").read(40))
if magic == b"osslmem1":
    print(live)
EOF
}

# The TLS targets' certificate, and osslmem where it was built.
tls_cert "$BENCH_TMP/cert" || bench_die "openssl could not make the certificate"
PRELOAD=""
if [ -f "$OSSLMEM" ]; then
	PRELOAD=$OSSLMEM
else
	bench_log "bench-rss: $OSSLMEM is missing (make $OSSLMEM): OpenSSL's share not measured"
fi

declare -A RES OSSL
for t in $TARGETS; do
	if [ "$t" = portico ] && [ ! -x "$PORTICO" ]; then
		bench_log "bench-rss: $PORTICO is missing (run make): skipping portico"
		continue
	fi
	dir=$BENCH_TMP/$t
	port=$(bench_ports 1)
	case $t in
	nginx) nginx_front_conf "$dir" "$port" "$ORIGIN_PORT" 1; start_nginx "$dir" ;;
	haproxy) HAPROXY_MAXCONN=$((NH + 100)) haproxy_conf "$dir" "$port" "$ORIGIN_PORT" 1; start_haproxy "$dir" ;;
	portico) portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1; start_portico "$dir" ;;
	portico-tls)
		portico_tls_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1 \
			"$BENCH_TMP/cert/tls.crt" "$BENCH_TMP/cert/tls.key" ||
			bench_die "could not make $dir/portico.conf a TLS listener"
		OSSLMEM_DIR=$dir LD_PRELOAD=$PRELOAD start_portico "$dir" ;;
	nginx-tls)
		nginx_tls_conf "$dir" "$port" "$ORIGIN_PORT" 1 \
			"$BENCH_TMP/cert/tls.crt" "$BENCH_TMP/cert/tls.key"
		OSSLMEM_DIR=$dir LD_PRELOAD=$PRELOAD start_nginx "$dir" ;;
	*) bench_log "bench-rss: unknown target $t"; continue ;;
	esac
	pid=$STARTED_PID
	tls=""
	case $t in *-tls) tls=tls ;; esac
	if [ -n "$tls" ]; then
		# bench_wait_http speaks plain HTTP
		if ! tls_wait_https "$port" "$pid" 10; then
			bench_log "bench-rss: $t did not start; last log lines:"
			tail -n 5 "$dir/err.log" "$dir/stdout.log" 2>/dev/null | sed 's/^/    /' >&2
			bench_stop "$pid"; bench_untrack "$pid"
			continue
		fi
	elif ! bench_wait_http "$port" /small "$pid" 10; then
		bench_log "bench-rss: $t did not start; last log lines:"
		tail -n 5 "$dir/err.log" "$dir/stdout.log" 2>/dev/null | sed 's/^/    /' >&2
		bench_stop "$pid"; bench_untrack "$pid"
		continue
	fi
	if [ "$t" = haproxy ]; then wpid=$pid; else wpid=$(bench_children "$pid" | head -n 1); fi
	[ -n "$wpid" ] || { bench_log "bench-rss: $t: no worker"; bench_stop "$pid"; bench_untrack "$pid"; continue; }
	# warm-up: upstream pool, buffers and code pages in before the idle reading
	if [ -n "$tls" ]; then
		for ((i = 0; i < 50; i++)); do curl -ks -o /dev/null "https://127.0.0.1:$port/small"; done
	else
		"$PY" tools/bench/fixedload.py "$port" /small 2000 16 >/dev/null 2>&1
	fi
	sleep 1
	idle=$(rss_kib "$wpid")
	o0=$(ossl_bytes "$dir" "$wpid")
	n=$N
	[ "$t" = haproxy ] && n=$NH
	[ -n "$tls" ] && n=$N_TLS
	"$PY" tools/bench/idleconns.py "$port" /small "$n" 300 $tls >"$dir/idle.txt" 2>&1 &
	cpid=$!
	bench_track "$cpid"
	ok=""
	for ((i = 0; i < 1200; i++)); do	# up to 120 s
		grep -q '^ready' "$dir/idle.txt" 2>/dev/null && { ok=1; break; }
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	if [ -n "$ok" ]; then
		sleep 1
		busy=$(rss_kib "$wpid")
		o1=$(ossl_bytes "$dir" "$wpid")
		RES[$t]="$idle $busy $n"
		[ -n "$o0" ] && [ -n "$o1" ] && OSSL[$t]=$((o1 - o0))
		bench_log "bench-rss: $t worker $wpid: idle ${idle} KiB, with $n connections ${busy} KiB${OSSL[$t]:+, OpenSSL heap +${OSSL[$t]} bytes}"
	else
		bench_log "bench-rss: $t: client failed: $(tail -n 3 "$dir/idle.txt")"
	fi
	bench_stop "$cpid"; bench_untrack "$cpid"
	bench_stop "$pid"; bench_untrack "$pid"
done

{
	echo "portico bench-rss $(date -u +%Y-%m-%dT%H:%M:%SZ), one worker, $N idle keep-alive client connections"
	printf '%-12s %10s %11s %6s %9s %13s %13s\n' target "idle KiB" "loaded KiB" conns "KiB/conn" \
		"OpenSSL KiB/c" "own KiB/conn"
	for t in $TARGETS; do
		[ -n "${RES[$t]:-}" ] || { printf '%-12s %10s\n' "$t" "not measured"; continue; }
		set -- ${RES[$t]}
		awk -v t="$t" -v a="$1" -v b="$2" -v n="$3" -v o="${OSSL[$t]:-}" 'BEGIN {
			per = (b - a) / n
			if (o == "") { os = "-"; own = "-" }
			else { os = sprintf("%.2f", o / 1024 / n); own = sprintf("%.2f", per - o / 1024 / n) }
			printf "%-12s %10d %11d %6d %9.2f %13s %13s\n", t, a, b, n, per, os, own }'
	done
	echo "OpenSSL KiB/c: heap OpenSSL holds per idle connection (osslmem: usable size + chunk header); own: the rest of the RSS"
	echo "target: portico at most 1 KiB/conn (plain); TLS: OpenSSL's session state plus under 4 KiB"
} | tee "$OUT/rss.txt"
