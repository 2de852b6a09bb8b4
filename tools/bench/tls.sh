#!/usr/bin/env bash
# tools/bench/tls.sh (make bench runs it): portico vs nginx terminating TLS
# in front of the bench's nginx origin, both with the same ECDSA P-256
# certificate (made here by openssl), the same worker count and the same
# OpenSSL (both link the system's libssl), TLS 1.3 by default. Two
# scenarios, run in interleaved rounds; ratios are taken within a round,
# then the median over rounds:
#
#   tls-handshake  a new connection and a full handshake per request (the
#                  client offers no session, so nothing is resumed)
#   tls-keepalive  requests over CONNS keep-alive TLS connections
#
# Fronts: nginx as installed (its TLS 1.3 suites in OpenSSL's order,
# AES-256-GCM-SHA384 first), nginx-suites (the same nginx given portico's
# order, AES-128-GCM-SHA256 first), portico.
#
# The load comes from build/tlsload (tools/bench/tlsload.c): wrk keeps its
# SSL object across reconnects and so resumes sessions. tlsload reports its
# own CPU per request too: on two cores the client's share of the machine
# bounds what a server can show.
#
#   WORKERS=2 ROUNDS=5 DURATION=5 CONNS=64 HS_CONNS=32 HS_THREADS=1
#   KA_THREADS=1 TLS_VERSION=1.3 TLS_SCENARIOS="tls-handshake tls-keepalive"
#   PORTICO_BASELINE=/path/to/portico adds that binary as "portico-base"
#   FRONT_CPU=0.5 capacity mode (see tools/bench.sh): each front gets half
#   a core through a cgroup, the client two threads (HS_THREADS and
#   KA_THREADS default to 2), so the front is what runs out of CPU
#
# Output: build/bench/tls.txt and build/bench/tls.json (capacity mode:
# tls-capacity.txt and .json; RESULTS=NAME names them).
set -u
cd "$(dirname "$0")/../.." || exit 1
. tools/bench/lib.sh
. tools/bench/tlslib.sh

WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-32}
# Shared machine: one client thread, which a full handshake keeps busy
# (its ~385 us of CPU per handshake against a front's ~210 us: the client
# decides, and two threads only contend with the front for the same two
# cores, 1.08x against one thread's 1.07x, 2026-12-02). A front held to
# its budget (FRONT_CPU) is outrun only by two.
HS_THREADS=${HS_THREADS:-$([ -n "${FRONT_CPU:-}" ] && echo 2 || echo 1)}
KA_THREADS=${KA_THREADS:-$([ -n "${FRONT_CPU:-}" ] && echo 2 || echo 1)}
TLS_VERSION=${TLS_VERSION:-1.3}
TLS_SCENARIOS=${TLS_SCENARIOS:-"tls-handshake tls-keepalive"}
TLSLOAD=${TLSLOAD:-$(dirname "$PORTICO")/tlsload}
OUT=build/bench
FRONT_CPU=${FRONT_CPU:-}	# capacity mode (tools/bench.sh): tls-capacity.*
RESULTS=${RESULTS:-$([ -n "$FRONT_CPU" ] && echo tls-capacity || echo tls)}

[ -x "$TLSLOAD" ] || bench_die "tlsload not found at $TLSLOAD (make $TLSLOAD)"
[ -x "$NGINX" ] || bench_die "nginx not found at $NGINX"
[ -x "$PY" ] || bench_die "$PY not found"
command -v curl >/dev/null || bench_die "curl not found (tools/deps.sh installs it)"
command -v openssl >/dev/null || bench_die "openssl not found"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_setup
mkdir -p "$OUT"
RAW=$BENCH_TMP/tls-raw.jsonl
: >"$RAW"
HZ=$(getconf CLK_TCK)

CERT=$BENCH_TMP/cert/tls.crt
KEY=$BENCH_TMP/cert/tls.key
tls_cert "$BENCH_TMP/cert" || bench_die "openssl could not make the certificate"

ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 ||
	bench_die "origin nginx did not start: $(tail -5 "$BENCH_TMP/origin/err.log" 2>/dev/null)"

conf_nginx_tls() {	# DIR PORT
	nginx_tls_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS" "$CERT" "$KEY"
}
# nginx given portico's TLS 1.3 suite order: what of the difference is
# the order and what is the server
conf_nginx_suites() {	# DIR PORT
	nginx_tls_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS" "$CERT" "$KEY" "$TLS_SUITES13"
}
conf_portico_tls() {	# DIR PORT
	portico_tls_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" "$CERT" "$KEY" ||
		bench_die "could not make $1/portico.conf a TLS listener"
}

start_portico_base() {	# DIR
	(cd "$1" && exec "$PORTICO_BASELINE" -c "$1/portico.conf" -p "$1") >>"$1/stdout.log" 2>&1 &
	STARTED_PID=$!
	bench_track "$STARTED_PID"
}

declare -A KIND CONF PORT PID
FRONTS_ALL=(nginx nginx-suites portico)
KIND=([nginx]=nginx [nginx-suites]=nginx [portico]=portico)
CONF=([nginx]=conf_nginx_tls [nginx-suites]=conf_nginx_suites [portico]=conf_portico_tls)
PAIRS=(--pair portico/nginx-suites)
if [ -n "${PORTICO_BASELINE:-}" ]; then
	FRONTS_ALL+=(portico-base)
	KIND[portico-base]=portico_base
	CONF[portico-base]=conf_portico_tls
	PAIRS+=(--pair portico/portico-base)
fi

FRONTS=()
for f in "${FRONTS_ALL[@]}"; do
	if [ "${KIND[$f]}" = portico ] && [ ! -x "$PORTICO" ]; then
		bench_log "bench-tls: $PORTICO is missing (run make): benchmarking without '$f'"
		continue
	fi
	dir=$BENCH_TMP/$f
	port=$(bench_ports 1)
	"${CONF[$f]}" "$dir" "$port"
	"start_${KIND[$f]}" "$dir"
	pid=$STARTED_PID
	if ! tls_wait_https "$port" "$pid" 10; then
		bench_log "bench-tls: $f: GET /big over TLS did not give the 16 KiB body; benchmarking without it"
		tail -n 5 "$dir/err.log" "$dir/stdout.log" 2>/dev/null | sed 's/^/    /' >&2
		bench_stop "$pid"
		bench_untrack "$pid"
		continue
	fi
	if [ -n "${FRONT_CPU:-}" ] && ! bench_cpu_budget "$pid" "$f" "$FRONT_CPU"; then
		bench_die "FRONT_CPU=$FRONT_CPU: no writable cgroup cpu controller here"
	fi
	PORT[$f]=$port
	PID[$f]=$pid
	FRONTS+=("$f")
done
[ ${#FRONTS[@]} -gt 0 ] || bench_die "no TLS front started"

{
	echo "portico bench-tls $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "machine: $(nproc) cores, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*: //'), $(openssl version | cut -d' ' -f1-2)"
	echo "setup: workers=$WORKERS rounds=$ROUNDS duration=${DURATION}s TLS $TLS_VERSION, ECDSA P-256 certificate; client tlsload; origin nginx 1 worker; fronts: ${FRONTS[*]}"
	echo "ratios are per round, then the median over rounds; cpu us/req is the front's (all its processes)"
	[ -z "$FRONT_CPU" ] || bench_budget_banner "$FRONT_CPU"
	printf 'TLS 1.3 suite each front chose for a default OpenSSL client:'
	for f in "${FRONTS[@]}"; do
		printf ' %s %s' "$f" "$(openssl s_client -connect "127.0.0.1:${PORT[$f]}" -tls1_3 </dev/null 2>/dev/null |
			sed -n 's/.*Cipher is \(.*\)/\1/p' | head -n 1)"
	done
	echo
} | tee "$OUT/$RESULTS.txt"
"$PY" - "$OUT/$RESULTS.json" "$WORKERS" "$ROUNDS" "$DURATION" "$TLS_VERSION" "$(nproc)" "${FRONTS[@]}" <<'EOF'
import json, sys, time, platform
a = sys.argv
json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kernel": platform.release(),
           "cores": int(a[6]), "workers": int(a[2]), "rounds": int(a[3]), "duration_s": float(a[4]),
           "tls_version": a[5], "fronts": a[7:]}, open(a[1], "w"))
EOF

declare -A SC_DESC SC_ARGS
SC_DESC[tls-handshake]="new connection + full TLS $TLS_VERSION handshake per request, $HS_CONNS in flight"
SC_ARGS[tls-handshake]="-n -c $HS_CONNS -t $HS_THREADS"
SC_DESC[tls-keepalive]="~100-byte body over $CONNS keep-alive TLS $TLS_VERSION connections"
SC_ARGS[tls-keepalive]="-k -c $CONNS -t $KA_THREADS"

# run_one SCENARIO FRONT ROUND
run_one() {
	local sc=$1 f=$2 round=$3 pid=${PID[$2]} out t0 t1 parsed ccpu hs res
	out=$BENCH_TMP/tlsload-$sc-$f-$round.txt
	if ! kill -0 "$pid" 2>/dev/null; then
		bench_log "bench-tls: $f (pid $pid) has died; skipping its runs"
		return 1
	fi
	t0=$(bench_cpu_ticks "$pid")
	# shellcheck disable=SC2086
	timeout $((${DURATION%.*} + 30)) "$TLSLOAD" ${SC_ARGS[$sc]} -d "$DURATION" \
		-V "$TLS_VERSION" -P /small "${PORT[$f]}" >"$out" 2>&1
	t1=$(bench_cpu_ticks "$pid")
	[ "$round" = warm ] && return 0
	parsed=$("$PY" tools/bench/benchlib.py wrk "$out")
	set -- $parsed
	if [ "${4:-0}" = 0 ]; then
		bench_log "bench-tls: $sc round $round $f: tlsload measured nothing:"
		head -n 8 "$out" | sed 's/^/    /' >&2
		return 1
	fi
	ccpu=$(sed -n 's/^Client CPU: \([0-9.]*\) us.*/\1/p' "$out")
	hs=$(sed -n 's/^Handshakes: \([0-9]*\) .*/\1/p' "$out")
	res=$(sed -n 's/^Handshakes: [0-9]* (resumed \([0-9]*\)).*/\1/p' "$out")
	printf '{"scenario":"%s","desc":"%s","proxy":"%s","round":%d,"rps":%s,"p50_us":%s,"p99_us":%s,"requests":%s,"errors":%s,"non2xx":%s,"cpu_ticks":%d,"hz":%d,"client_cpu_us":%s,"handshakes":%s,"resumed":%s}\n' \
		"$sc" "${SC_DESC[$sc]}" "$f" "$round" "$1" "$2" "$3" "$4" "$5" "$6" $((t1 - t0)) "$HZ" \
		"${ccpu:-null}" "${hs:-null}" "${res:-null}" | sed 's/:nan/:NaN/g' >>"$RAW"
	printf '  %-13s round %d  %-12s %9.0f req/s  errors %d  client %s us/req  resumed %s%s\n' \
		"$sc" "$round" "$f" "$1" $(($5 + $6)) "${ccpu:-?}" "${res:-?}" \
		"$(bench_budget_used $((t1 - t0)) "$HZ" "$DURATION" "$FRONT_CPU")" >&2
}

start=$SECONDS
for sc in $TLS_SCENARIOS; do
	[ -n "${SC_ARGS[$sc]:-}" ] || bench_die "unknown TLS scenario '$sc' (known: ${!SC_ARGS[*]})"
	bench_log "bench-tls: $sc: ${SC_DESC[$sc]} (${FRONTS[*]})"
	for f in "${FRONTS[@]}"; do
		DURATION=1 run_one "$sc" "$f" warm || true
	done
	n=${#FRONTS[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		# the starting front rotates so none always runs first
		for ((i = 0; i < n; i++)); do
			run_one "$sc" "${FRONTS[$(((r - 1 + i) % n))]}" "$r" || true
		done
	done
done

"$PY" tools/bench/benchlib.py report "$RAW" "$OUT/$RESULTS.txt" "$OUT/$RESULTS.json" "${PAIRS[@]}"
"$PY" - "$RAW" "$OUT/$RESULTS.txt" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lines = ["", "client (tlsload) CPU per request, median over rounds; handshakes resumed (must be 0 for tls-handshake):"]
for sc in dict.fromkeys(r["scenario"] for r in runs):
    for p in dict.fromkeys(r["proxy"] for r in runs if r["scenario"] == sc):
        rs = [r for r in runs if r["scenario"] == sc and r["proxy"] == p]
        cc = [r["client_cpu_us"] for r in rs if r.get("client_cpu_us") is not None]
        rps = [r["rps"] for r in rs]
        lines.append("  %-14s %-12s client %6.1f us/req   req/s per round %s   resumed %d" % (
            sc, p, statistics.median(cc) if cc else float("nan"),
            " ".join("%.0f" % x for x in rps), sum(r.get("resumed") or 0 for r in rs)))
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
open(sys.argv[2], "a").write(text)
EOF
cp "$RAW" "$OUT/$RESULTS-raw.jsonl"
echo "elapsed $((SECONDS - start))s; results in $OUT/$RESULTS.txt and $OUT/$RESULTS.json" | tee -a "$OUT/$RESULTS.txt"
