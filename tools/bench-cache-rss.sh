#!/usr/bin/env bash
# bench-cache-rss.sh: a worker's memory after serving N distinct cached
# objects. One portico worker with a cached route (ttl_s 3600) behind the
# bench origin; after a warm-up its RSS is read (idle), then
# tools/bench/cachefill.py asks for N distinct paths twice (misses that
# fill the cache, then hits) and the RSS is read again. The store is
# mapped shared: the pages of it the worker touched show as RssShmem, and
# are the store's, not the worker's.
# Target (issue 14): RSS after <= 2 x idle RSS + the store pages touched.
#
#   N=10000
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

N=${N:-10000}
OUT=build/bench

[ -x "$PY" ] || bench_die "$PY not found"
[ -x "$PORTICO" ] || bench_die "$PORTICO is missing (run make)"
bench_setup
mkdir -p "$OUT"
ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 || bench_die "origin nginx did not start"

field() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null; }

dir=$BENCH_TMP/portico-cache
port=$(bench_ports 1)
portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1 \
    'cache = { ttl_s = 3600; };'
start_portico "$dir"
pid=$STARTED_PID
bench_wait_http "$port" /small "$pid" 10 || bench_die "portico did not start: $(tail -3 "$dir/err.log")"
wpid=$(bench_children "$pid" | head -n 1)
[ -n "$wpid" ] || bench_die "no worker"
# warm-up: the pool, the buffers, the code pages, one cached object
"$PY" tools/bench/fixedload.py "$port" /small 2000 16 >/dev/null 2>&1
sleep 1
idle=$(field "$wpid" VmRSS); idle_anon=$(field "$wpid" RssAnon); idle_shm=$(field "$wpid" RssShmem)
fill=$("$PY" tools/bench/cachefill.py "$port" "$N") || bench_die "cachefill: $fill"
sleep 1
after=$(field "$wpid" VmRSS); anon=$(field "$wpid" RssAnon); shm=$(field "$wpid" RssShmem)
entries=$("$GWCTL" -s "$dir/portico.sock" --json stats 2>/dev/null | "$PY" -c \
    'import json, sys; c = json.load(sys.stdin)["cache"]; print(c["entries"], c["bytes"])' 2>/dev/null)
{
	echo "portico bench-cache-rss $(date -u +%Y-%m-%dT%H:%M:%SZ), one worker, $N distinct cached objects (~100 B bodies)"
	echo "fill: $fill; store: ${entries:-?} (entries, charged bytes)"
	printf '%-8s %10s %10s %10s\n' "" "VmRSS" "RssAnon" "RssShmem"
	printf '%-8s %10s %10s %10s  KiB\n' idle "$idle" "$idle_anon" "$idle_shm"
	printf '%-8s %10s %10s %10s  KiB\n' after "$after" "$anon" "$shm"
	awk -v i="$idle" -v a="$after" -v s0="$idle_shm" -v s1="$shm" 'BEGIN {
		lim = 2 * i + (s1 - s0)
		printf "target: after <= 2 x idle + store pages touched = %d KiB: %s (%.2fx of the limit)\n",
		    lim, a <= lim ? "met" : "MISSED", a / lim }'
} | tee "$OUT/cache-rss.txt"
