#!/usr/bin/env bash
# make bench: portico vs nginx vs haproxy as reverse proxies in front of one
# nginx origin, on loopback, in interleaved rounds so that machine drift hits
# every proxy alike; ratios are taken inside each round, then the median.
#
#   WORKERS=2 ROUNDS=5 DURATION=5 WRK_THREADS=1 CONNS=64
#   SCENARIOS="small big close c256 ratelimit ratelimit10k accesslog metrics resilience jwt gateway cache strip"
#
# Output: a table per scenario on stdout, also in build/bench/results.txt and
# build/bench/results.json (RESULTS=NAME: NAME.txt, NAME.json). BENCH_KEEP=1
# keeps the temp dir (configs, logs). FRONT_CPU=CORES: capacity mode, below.
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WRK_THREADS=${WRK_THREADS:-1}
CONNS=${CONNS:-64}
SCENARIOS=${SCENARIOS:-"small big close c256 ratelimit ratelimit10k accesslog metrics resilience jwt gateway cache strip"}
OUT=build/bench
# FRONT_CPU=0.5: each front (its master and workers) gets that many cores
# of CPU time through a cgroup of its own, so the front is what runs out of
# CPU and req/s measure its capacity; the load generator and the origin,
# which share the machine, keep the rest. Results then go to
# capacity.txt/json unless RESULTS names them.
FRONT_CPU=${FRONT_CPU:-}
RESULTS=${RESULTS:-$([ -n "$FRONT_CPU" ] && echo capacity || echo results)}

# ---- fronts: name -> kind (nginx | haproxy | portico) and config function ----
# A config function is called as FN DIR PORT and writes DIR's config.
declare -A FRONT_KIND FRONT_CONF FRONT_PORT FRONT_PID FRONT_HDR FRONT_CHECK
FRONTS_ALL=()
front() {	# NAME KIND CONF_FN
	FRONT_KIND[$1]=$2
	FRONT_CONF[$1]=$3
	FRONTS_ALL+=("$1")
}
# A front that answers only with a credential: the start checks send this
# header line ("Name: value"); the scenario's wrk arguments send it too.
front_header() { FRONT_HDR[$1]=$2; }	# NAME HEADER
# A further start check, run as FN NAME PORT once the front proxies;
# non-zero (after saying why) drops the front.
front_check() { FRONT_CHECK[$1]=$2; }	# NAME FN
conf_nginx()   { nginx_front_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS"; }
conf_haproxy() { haproxy_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS"; }
conf_portico() { portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS"; }
front nginx   nginx   conf_nginx
front haproxy haproxy conf_haproxy
front portico portico conf_portico

# ---- scenarios: name -> path, connections, fronts, description, wrk args ----
declare -A SC_PATH SC_CONNS SC_FRONTS SC_DESC SC_ARGS SC_WARM
scenario() {	# NAME PATH CONNS "FRONTS" "DESC" [WRK ARGS...]
	local name=$1
	SC_PATH[$name]=$2
	SC_CONNS[$name]=$3
	SC_FRONTS[$name]=${4:-nginx haproxy portico}
	SC_DESC[$name]=$5
	shift 5
	SC_ARGS[$name]=""
	[ $# -eq 0 ] || SC_ARGS[$name]=$(printf '%q ' "$@")
}
scenario small /small "$CONNS" "" "~100-byte body, $CONNS keep-alive connections"
scenario big   /big   "$CONNS" "" "16 KiB body, $CONNS keep-alive connections"
scenario close /small "$CONNS" "" "new connection per request" -H "Connection: close"
scenario c256  /small 256      "" "~100-byte body, 256 keep-alive connections"

# Ratios printed under each table when both sides ran in that scenario.
PAIRS=("portico/haproxy")
pair() { PAIRS+=("$1"); }

# ---- feature scenarios (hooks) ------------------------------------------------
# A feature adds a front (a portico variant with its own config) and a
# scenario that runs it next to plain portico in the same rounds, plus a pair
# for the on/off ratio. Example, once rate limiting lands:
#
#   conf_portico_rl() {
#       portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
#           'rate_limit = { by = "ip"; tier = "bench"; };' \
#           'tiers: { bench = { rate = 1000000000; per_s = 1; burst = 1000000000; }; };'
#   }
#   front portico-rl portico conf_portico_rl
#   scenario ratelimit /small "$CONNS" "portico portico-rl nginx" "rate limiting on vs off"
#   pair portico-rl/portico
#
# Then SCENARIOS="small ratelimit" runs it; the default list can name it too.
# Files tools/bench/features/*.sh are sourced here, so features add
# themselves without editing this script.
for f in tools/bench/features/*.sh; do
	[ -e "$f" ] && . "$f"
done

# ---- checks -------------------------------------------------------------------
for s in $SCENARIOS; do
	[ -n "${SC_PATH[$s]:-}" ] || bench_die "unknown scenario '$s' (known: ${!SC_PATH[*]})"
done
command -v "$WRK" >/dev/null || bench_die "wrk not found (tools/deps.sh installs it)"
[ -x "$NGINX" ] || bench_die "nginx not found at $NGINX"
[ -x "$HAPROXY" ] || bench_die "haproxy not found at $HAPROXY"
[ -x "$PY" ] || bench_die "$PY not found"
command -v curl >/dev/null || bench_die "curl not found (tools/deps.sh installs it)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

bench_setup
mkdir -p "$OUT"
RAW=$BENCH_TMP/raw.jsonl
: >"$RAW"
HZ=$(getconf CLK_TCK)

# Which fronts the chosen scenarios need, in registration order.
declare -A NEED
for s in $SCENARIOS; do
	for f in ${SC_FRONTS[$s]}; do NEED[$f]=1; done
done

# ---- origin -------------------------------------------------------------------
ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
ORIGIN_PID=$STARTED_PID
bench_wait_http "$ORIGIN_PORT" /small "$ORIGIN_PID" 10 ||
	bench_die "origin nginx did not start: $(tail -5 "$BENCH_TMP/origin/err.log" 2>/dev/null)"

# ---- fronts -------------------------------------------------------------------
FRONTS=()
for f in "${FRONTS_ALL[@]}"; do
	[ -n "${NEED[$f]:-}" ] || continue
	kind=${FRONT_KIND[$f]}
	if [ "$kind" = portico ] && [ ! -x "$PORTICO" ]; then
		bench_log "bench: $PORTICO is missing (run make): benchmarking without '$f'"
		continue
	fi
	dir=$BENCH_TMP/$f
	port=$(bench_ports 1)
	"${FRONT_CONF[$f]}" "$dir" "$port"
	"start_$kind" "$dir"
	pid=$STARTED_PID
	hdr=${FRONT_HDR[$f]:-}
	if ! bench_wait_http "$port" /small "$pid" 10 "$hdr"; then
		bench_log "bench: $f failed to start or to proxy GET /small; benchmarking without it"
		bench_log "  config: $dir/, last log lines:"
		tail -n 5 "$dir/err.log" "$dir/stdout.log" 2>/dev/null | sed 's/^/    /' >&2
		bench_stop "$pid"
		bench_untrack "$pid"
		continue
	fi
	# a proxy that answers but mangles bodies must not be timed
	got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' ${hdr:+-H "$hdr"} "http://127.0.0.1:$port/big")
	if [ "$got" != "200 16384" ]; then
		bench_log "bench: $f: GET /big gave '$got', expected '200 16384'; benchmarking without it"
		bench_stop "$pid"
		bench_untrack "$pid"
		continue
	fi
	# a front's start check (FRONT_CHECK), or a feature's own check of
	# its front (check_NAME PORT), if it has one
	chk=check_${f//-/_}
	if { [ -n "${FRONT_CHECK[$f]:-}" ] && ! "${FRONT_CHECK[$f]}" "$f" "$port"; } ||
	    { declare -F "$chk" >/dev/null && ! "$chk" "$port"; }; then
		bench_log "bench: $f: failed its start check; benchmarking without it"
		bench_stop "$pid"
		bench_untrack "$pid"
		continue
	fi
	if [ -n "${FRONT_CPU:-}" ] && ! bench_cpu_budget "$pid" "$f" "$FRONT_CPU"; then
		bench_die "FRONT_CPU=$FRONT_CPU: no writable cgroup cpu controller here"
	fi
	FRONT_PORT[$f]=$port
	FRONT_PID[$f]=$pid
	FRONTS+=("$f")
done
[ ${#FRONTS[@]} -gt 0 ] || bench_die "no front proxy started"

# ---- header -------------------------------------------------------------------
{
	echo "portico bench $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), kernel $(uname -r)"
	echo "versions: $("$NGINX" -v 2>&1 | sed 's/.*: //'), haproxy $("$HAPROXY" -v | sed -n '1s/^HAProxy version \([^ ]*\).*/\1/p'), wrk $("$WRK" -v 2>&1 | sed -n '1s/^wrk \([^ ]*\).*/\1/p')"
	echo "setup: workers=$WORKERS rounds=$ROUNDS duration=${DURATION}s wrk -t$WRK_THREADS; origin nginx 1 worker; fronts: ${FRONTS[*]}"
	echo "ratios (req/s:nginx, cpu:nginx, pairs) are per round, then the median over rounds"
	[ -z "$FRONT_CPU" ] || bench_budget_banner "$FRONT_CPU"
} | tee "$OUT/$RESULTS.txt"
"$PY" - "$OUT/$RESULTS.json" "$WORKERS" "$ROUNDS" "$DURATION" "$WRK_THREADS" "$(nproc)" "${FRONTS[@]}" <<'EOF'
import json, sys, time, platform
a = sys.argv
json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "kernel": platform.release(),
           "cores": int(a[6]), "workers": int(a[2]), "rounds": int(a[3]), "duration_s": float(a[4]),
           "wrk_threads": int(a[5]), "fronts": a[7:]}, open(a[1], "w"))
EOF

# ---- runs -----------------------------------------------------------------------
# run_one SCENARIO FRONT ROUND: one wrk run; CPU is utime+stime of the
# front's processes (master + workers, all threads) across the run.
run_one() {
	local sc=$1 f=$2 round=$3 pid=${FRONT_PID[$2]} out t0 t1 parsed w0 w1 writes
	out=$BENCH_TMP/wrk-$sc-$f-$round.txt
	if ! kill -0 "$pid" 2>/dev/null; then
		bench_log "bench: $f (pid $pid) has died; skipping its runs"
		return 1
	fi
	w0=""
	[ "${FRONT_KIND[$f]}" = portico ] && w0=$(bench_store_writes "$BENCH_TMP/$f")
	t0=$(bench_cpu_ticks "$pid")
	timeout $((DURATION + 30)) "$WRK" -t"$WRK_THREADS" -c"${SC_CONNS[$sc]}" -d"${DURATION}s" \
		--latency "${SC_WRK[@]}" "http://127.0.0.1:${FRONT_PORT[$f]}${SC_PATH[$sc]}" >"$out" 2>&1
	t1=$(bench_cpu_ticks "$pid")
	[ "$round" = warm ] && return 0
	# store write transactions committed during the run (portico only)
	writes=null
	if [ -n "$w0" ]; then
		w1=$(bench_store_writes "$BENCH_TMP/$f")
		[ -n "$w1" ] && writes=$((w1 - w0))
	fi
	parsed=$("$PY" tools/bench/benchlib.py wrk "$out")
	set -- $parsed
	if [ "${4:-0}" = 0 ]; then
		bench_log "bench: $sc round $round $f: wrk measured nothing:"
		head -n 5 "$out" | sed 's/^/    /' >&2
		return 1
	fi
	printf '{"scenario":"%s","desc":"%s","proxy":"%s","round":%d,"rps":%s,"p50_us":%s,"p99_us":%s,"requests":%s,"errors":%s,"non2xx":%s,"cpu_ticks":%d,"hz":%d,"store_writes":%s}\n' \
		"$sc" "${SC_DESC[$sc]}" "$f" "$round" "$1" "$2" "$3" "$4" "$5" "$6" $((t1 - t0)) "$HZ" "$writes" \
		| sed 's/:nan/:NaN/g' >>"$RAW"
	printf '  %-8s round %d  %-14s %9.0f req/s  errors %d%s\n' "$sc" "$round" "$f" "$1" $(($5 + $6)) \
		"$(bench_budget_used $((t1 - t0)) "$HZ" "$DURATION" "$FRONT_CPU")" >&2
}

start=$SECONDS
for sc in $SCENARIOS; do
	eval "SC_WRK=(${SC_ARGS[$sc]})"	# quoted by printf %q in scenario()
	sc_fronts=()
	for f in ${SC_FRONTS[$sc]}; do
		[ -n "${FRONT_PID[$f]:-}" ] && sc_fronts+=("$f")
	done
	[ ${#sc_fronts[@]} -gt 0 ] || { bench_log "bench: $sc: no front available"; continue; }
	bench_log "bench: $sc: ${SC_DESC[$sc]} (${sc_fronts[*]})"
	# warm-up: fill every upstream pool (and cache) before the measured
	# rounds; SC_WARM[scenario] seconds, 1 by default
	for f in "${sc_fronts[@]}"; do
		DURATION=${SC_WARM[$sc]:-1} run_one "$sc" "$f" warm || true
	done
	n=${#sc_fronts[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		# rotate the starting front each round so no proxy always runs first
		for ((i = 0; i < n; i++)); do
			f=${sc_fronts[$(((r - 1 + i) % n))]}
			run_one "$sc" "$f" "$r" || true
		done
	done
done

pair_args=()
for p in "${PAIRS[@]}"; do pair_args+=(--pair "$p"); done
"$PY" tools/bench/benchlib.py report "$RAW" "$OUT/$RESULTS.txt" "$OUT/$RESULTS.json" "${pair_args[@]}"
cp "$RAW" "$OUT/$RESULTS-raw.jsonl"
echo "elapsed $((SECONDS - start))s; results in $OUT/$RESULTS.txt and $OUT/$RESULTS.json" | tee -a "$OUT/$RESULTS.txt"
