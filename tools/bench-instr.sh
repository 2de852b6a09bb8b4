#!/usr/bin/env bash
# make bench-instr: user-space instructions per proxied request through ONE
# worker of portico, of nginx and (single-threaded) of haproxy: a figure
# that does not move with machine noise.
#
# Each proxy is measured twice with the same client (tools/bench/fixedload.py,
# CONNS keep-alive connections): once with CONNS requests (one per
# connection: start-up, connection set-up, pool warm-up) and once with
# CONNS + REQUESTS; the difference divided by REQUESTS is the steady-state
# cost of one request.
#
# Counter: `perf stat -e instructions:u -p WORKER` where the machine has the
# PMU event, else valgrind --tool=callgrind on the worker (nginx with
# master_process off; portico with workers = 1 under --trace-children=yes,
# reading the worker's callgrind.out.PID).
#
#   REQUESTS=20000 CONNS=16 TARGETS="nginx haproxy portico" METHOD=auto|perf|callgrind PATH_=/small
#   (TARGETS may name portico-base: the binary PORTICO_BASELINE; and
#   portico-gw / portico-gw-base: the same two binaries on the full gateway
#   route of `make bench`'s gateway scenario, tools/bench/features/auth.sh,
#   every request with the scenario's RS256 token;
#   portico-cache: the same requests answered from the response cache;
#   portico-strip: strip_fields on the route, for PATH_=/json4k)
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-16}
TARGETS=${TARGETS:-"nginx haproxy portico"}
METHOD=${METHOD:-auto}
URLPATH=${PATH_:-/small}
OUT=build/bench
BENCH_STOP_SECS=60		# callgrind writes its output at exit: give it time

if [ "$METHOD" = auto ]; then
	METHOD=callgrind
	n=$(perf stat -x, -e instructions:u -- true 2>&1 >/dev/null | awk -F, '/instructions/ {print $1; exit}')
	case "$n" in
	'' | *[!0-9]*) ;;
	*) METHOD=perf ;;
	esac
fi
if [ "$METHOD" = callgrind ] && ! command -v valgrind >/dev/null; then
	bench_die "perf cannot count instructions here and valgrind is missing (apt-get install valgrind)"
fi
[ -x "$PY" ] || bench_die "$PY not found"
ulimit -n 65536 2>/dev/null || true

bench_setup
mkdir -p "$OUT"

ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 ||
	bench_die "origin nginx did not start"

# The gateway route's config and token come from the bench's auth feature,
# sourced with the bench's registration calls made no-ops.
AUTH_HDR=""
case " $TARGETS " in
*" portico-gw"*)
	front() { :; }; front_header() { :; }; front_check() { :; }
	scenario() { :; }; pair() { :; }
	SCENARIOS=gateway WORKERS=1
	. tools/bench/features/auth.sh
	[ -n "$AUTH_TOKEN" ] || bench_die "no RS256 token for the gateway targets"
	AUTH_HDR="Authorization: Bearer $AUTH_TOKEN"
	;;
esac

VG=(valgrind --tool=callgrind --trace-children=yes --dump-instr=no --quiet)

# start_target NAME DIR PORT: write a one-worker config and start it (under
# callgrind when METHOD=callgrind); sets STARTED_PID.
start_target() {
	local name=$1 dir=$2 port=$3 wrap=()
	[ "$METHOD" = callgrind ] && wrap=("${VG[@]}" "--callgrind-out-file=$dir/callgrind.out.%p")
	case $name in
	nginx)
		if [ "$METHOD" = callgrind ]; then
			nginx_front_conf "$dir" "$port" "$ORIGIN_PORT" 1 "master_process off;"
		else
			nginx_front_conf "$dir" "$port" "$ORIGIN_PORT" 1
		fi
		"${wrap[@]}" "$NGINX" -p "$dir" -e "$dir/err.log" -c "$dir/nginx.conf" >>"$dir/stdout.log" 2>&1 &
		;;
	haproxy)
		haproxy_conf "$dir" "$port" "$ORIGIN_PORT" 1
		"${wrap[@]}" "$HAPROXY" -f "$dir/haproxy.cfg" -db >>"$dir/stdout.log" 2>&1 &
		;;
	portico | portico-base | portico-strip)
		# portico-base: a second binary (PORTICO_BASELINE), e.g. the
		# build before a change, measured the same way
		local bin=$PORTICO extra=""
		[ "$name" = portico-base ] && bin=$PORTICO_BASELINE
		[ "$name" = portico-strip ] && extra='transform = { response = { strip_fields = ["debug", "items.internal"]; }; };'
		portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1 "$extra"
		(cd "$dir" && exec "${wrap[@]}" "$bin" -c "$dir/portico.conf" -p "$dir") >>"$dir/stdout.log" 2>&1 &
		;;
	portico-gw | portico-gw-base)
		local bin=$PORTICO
		[ "$name" = portico-gw-base ] && bin=$PORTICO_BASELINE
		conf_portico_gw "$dir" "$port"
		(cd "$dir" && exec "${wrap[@]}" "$bin" -c "$dir/portico.conf" -p "$dir") >>"$dir/stdout.log" 2>&1 &
		;;
	portico-cache)
		# the same path answered from the response cache: the first
		# request (in the start-up phase) stores it, then all hit
		portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1 \
		    'cache = { ttl_s = 3600; };'
		(cd "$dir" && exec "${wrap[@]}" "$PORTICO" -c "$dir/portico.conf" -p "$dir") >>"$dir/stdout.log" 2>&1 &
		;;
	esac
	STARTED_PID=$!
	bench_track "$STARTED_PID"
}

# worker_pid NAME PID: the process that serves requests.
worker_pid() {
	case $1 in
	haproxy) echo "$2" ;;
	nginx) if [ "$METHOD" = callgrind ]; then echo "$2"; else bench_children "$2" | head -n 1; fi ;;
	portico*) bench_children "$2" | head -n 1 ;;
	esac
}

# measure NAME PHASE COUNT: sets MEASURED to the instructions the worker
# spent while serving COUNT requests (plus its start-up under callgrind).
# Runs in this shell (not in $(...)) so that what it starts stays tracked.
MEASURED=""
measure() {
	local name=$1 phase=$2 count=$3 dir=$BENCH_TMP/$1-$2 port pid wpid workers f total="" perfpid="" hdr
	MEASURED=""
	port=$(bench_ports 1)
	mkdir -p "$dir"
	start_target "$name" "$dir" "$port"
	pid=$STARTED_PID
	case $name in portico-gw*) hdr=$AUTH_HDR ;; *) hdr="" ;; esac
	if ! bench_wait_http "$port" "$URLPATH" "$pid" 90 "$hdr"; then
		bench_log "bench-instr: $name did not start or does not proxy $URLPATH; last log lines:"
		tail -n 5 "$dir/err.log" "$dir/stdout.log" 2>/dev/null | sed 's/^/    /' >&2
		bench_stop "$pid" 10
		bench_untrack "$pid"
		return 1
	fi
	wpid=$(worker_pid "$name" "$pid")
	workers=$(case $name in portico*) bench_children "$pid" ;; *) echo "$wpid" ;; esac)
	if [ -z "$wpid" ]; then
		bench_log "bench-instr: $name: no worker process found"
	elif [ "$METHOD" = perf ]; then
		perf stat -x, -e instructions:u -p "$wpid" -o "$dir/perf.txt" &
		perfpid=$!
		bench_track "$perfpid"
		sleep 0.5	# let perf attach before the first request
	fi
	if [ -n "$wpid" ] && ! "$PY" tools/bench/fixedload.py "$port" "$URLPATH" "$count" "$CONNS" 120 "$hdr" >"$dir/load.txt" 2>&1; then
		bench_log "bench-instr: $name: load failed: $(cat "$dir/load.txt")"
		wpid=""
	fi
	if [ -n "$perfpid" ]; then
		kill -INT "$perfpid" 2>/dev/null
		wait "$perfpid" 2>/dev/null
		bench_untrack "$perfpid"
		[ -n "$wpid" ] && total=$(awk -F, '/instructions/ {print $1; exit}' "$dir/perf.txt")
	fi
	bench_stop "$pid" 60
	bench_untrack "$pid"
	[ -n "$wpid" ] || return 1
	if [ "$METHOD" = callgrind ]; then
		total=0
		for w in $workers; do
			f=$dir/callgrind.out.$w
			if [ ! -s "$f" ]; then
				bench_log "bench-instr: $name: $f missing (worker killed?)"
				return 1
			fi
			total=$((total + $(awk '/^(totals|summary):/ {print $2; exit}' "$f")))
		done
	fi
	case "$total" in
	'' | *[!0-9]*) bench_log "bench-instr: $name: no instruction count"; return 1 ;;
	esac
	bench_log "  $name $phase: $count requests, $total instructions ($(cat "$dir/load.txt"))"
	MEASURED=$total
}

{
	echo "portico bench-instr $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, kernel $(uname -r)"
	echo "method: $METHOD (user-space instructions of the one worker); $REQUESTS requests of GET $URLPATH over $CONNS keep-alive connections,"
	echo "minus a baseline run of $CONNS requests (start-up and connection set-up)"
} | tee "$OUT/instr.txt"

declare -A PER
for t in $TARGETS; do
	if [ "$t" = portico ] && [ ! -x "$PORTICO" ]; then
		bench_log "bench-instr: $PORTICO is missing (run make): skipping portico"
		continue
	fi
	bench_log "bench-instr: $t"
	measure "$t" base "$CONNS" || continue
	base=$MEASURED
	measure "$t" load $((CONNS + REQUESTS)) || continue
	load=$MEASURED
	PER[$t]=$(((load - base) / REQUESTS))
done

{
	printf '\n%-10s %14s %10s\n' target "instr/request" "vs nginx"
	for t in $TARGETS; do
		[ -n "${PER[$t]:-}" ] || { printf '%-10s %14s %10s\n' "$t" "not measured" "-"; continue; }
		if [ -n "${PER[nginx]:-}" ] && [ "${PER[nginx]}" -gt 0 ]; then
			r=$(awk -v a="${PER[$t]}" -v b="${PER[nginx]}" 'BEGIN { printf "%.2fx", a / b }')
		else
			r=-
		fi
		printf '%-10s %14d %10s\n' "$t" "${PER[$t]}" "$r"
	done
	if [ -n "${PER[portico]:-}" ] && [ -n "${PER[haproxy]:-}" ]; then
		awk -v a="${PER[portico]}" -v b="${PER[haproxy]}" 'BEGIN { printf "portico/haproxy %.2fx\n", a / b }'
	fi
} | tee -a "$OUT/instr.txt"

json="{\"method\":\"$METHOD\",\"requests\":$REQUESTS,\"conns\":$CONNS,\"instr_per_request\":{"
sep=""
for t in "${!PER[@]}"; do json+="$sep\"$t\":${PER[$t]}"; sep=","; done
echo "$json}}" >"$OUT/instr.json"
