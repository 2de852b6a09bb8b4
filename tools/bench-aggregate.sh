#!/usr/bin/env bash
# bench-aggregate.sh (in make bench): a page of four parts fetched three
# ways through portico, by the same client (tools/bench/pageload.c), in
# interleaved rounds:
#
#   agg  one request for the aggregate route: portico makes the four calls
#        in parallel and merges them
#   seq  the four parts one after another on one connection (what the
#        aggregate replaces)
#   par  the four parts at once over four connections
#
# The four "origins" are four services on the bench's nginx origin (one
# worker), each part its ~100-byte JSON. Pages per second and page
# latency p50/p99; ratios are taken within each round, then the median.
#
#   WORKERS=2 ROUNDS=5 DURATION=5 USERS=16
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
USERS=${USERS:-16}
OUT=build/bench
CC=${CC:-cc}

[ -x "$PORTICO" ] || bench_die "$PORTICO is missing (run make)"
[ -x "$PY" ] || bench_die "$PY not found"
bench_setup
mkdir -p "$OUT"
"$CC" -O2 -Wall -o "$BENCH_TMP/pageload" tools/bench/pageload.c ||
	bench_die "cannot build tools/bench/pageload.c"

ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 || bench_die "origin nginx did not start"

dir=$BENCH_TMP/portico
PORT=$(bench_ports 1)
mkdir -p "$dir"
svcs=""
calls=""
for i in 1 2 3 4; do
	svcs+="  o$i = { instances = [\"127.0.0.1:$ORIGIN_PORT\"]; keepalive = 512; };
"
	[ "$i" = 1 ] || calls+=", "
	calls+="{ name = \"part$i\"; service = \"o$i\"; path = \"/part$i\"; fallback = \"null\"; }"
done
cat >"$dir/portico.conf" <<EOF
version = 1;
server: {
  workers = $WORKERS;
  listen = ( { address = "127.0.0.1:$PORT"; } );
  admin = "off";
  control_socket = "$dir/portico.sock";
  pid_file = "$dir/portico.pid";
  state = { path = "$BENCH_STATE"; max_mb = 64; };
  limits = { idle_timeout_ms = 300000; };
  access_log = { path = "off"; };
  error_log = { path = "$dir/err.log"; level = "warn"; };
};
services: {
$svcs};
routes = (
  { name = "page"; match = { path = "/page"; };
    aggregate = { calls = ( $calls ); timeout_ms = 2000; }; },
  { name = "parts"; match = { prefix = "/"; }; service = "o1"; }
);
EOF
start_portico "$dir"
PPID_=$STARTED_PID
bench_wait_http "$PORT" /part1 "$PPID_" 10 || bench_die "portico did not start: $(tail -3 "$dir/err.log" 2>/dev/null)"
page=$(curl -s "http://127.0.0.1:$PORT/page")
case $page in
*'"degraded":[]}') ;;
*) bench_die "GET /page did not merge four parts: ${page:0:200}" ;;
esac

RAW=$BENCH_TMP/agg.jsonl
: >"$RAW"
run() {	# MODE ROUND
	local out
	if [ "$1" = agg ]; then
		out=$("$BENCH_TMP/pageload" "$PORT" agg "$DURATION" "$USERS" /page)
	else
		out=$("$BENCH_TMP/pageload" "$PORT" "$1" "$DURATION" "$USERS" \
		    /part1 /part2 /part3 /part4)
	fi || { bench_log "bench-aggregate: $1 round $2 failed"; return 1; }
	[ "$2" = warm ] && return 0
	echo "$out" | "$PY" -c 'import json, sys
d = dict(kv.split("=") for kv in sys.stdin.read().split())
print(json.dumps({"mode": sys.argv[1], "round": int(sys.argv[2]),
                  **{k: float(v) for k, v in d.items()}}))' "$1" "$2" >>"$RAW"
	printf '  page %-4s round %d  %8.0f pages/s  p99 %s us\n' "$1" "$2" \
	    "$(echo "$out" | sed 's/.*pages_per_s=\([^ ]*\).*/\1/')" \
	    "$(echo "$out" | sed 's/.*p99_us=\([^ ]*\).*/\1/')" >&2
}

bench_log "bench-aggregate: a page of 4 parts, $USERS clients, $ROUNDS rounds of ${DURATION}s"
modes=(agg seq par)
for m in "${modes[@]}"; do DURATION=1 run "$m" warm || true; done
for ((r = 1; r <= ROUNDS; r++)); do
	for ((k = 0; k < 3; k++)); do
		run "${modes[$(((r - 1 + k) % 3))]}" "$r" || true
	done
done

"$PY" - "$RAW" "$OUT/aggregate.txt" "$OUT/aggregate.json" "$USERS" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs):
    return statistics.median(xs) if xs else float("nan")
def ratio(a, b, key):
    ra = {r["round"]: r[key] for r in runs if r["mode"] == a}
    rb = {r["round"]: r[key] for r in runs if r["mode"] == b}
    return med([ra[k] / rb[k] for k in ra if k in rb and rb[k]])
desc = {"agg": "one aggregate request (portico fans out)",
        "seq": "four requests one after another",
        "par": "four requests at once, four connections"}
lines = ["", "== aggregate: a page of four ~100-byte JSON parts, %s clients (%d rounds)"
         % (sys.argv[4], len({r["round"] for r in runs})),
         "%-5s %-42s %10s %10s %10s" % ("mode", "", "pages/s", "p50", "p99")]
res = {}
for m in ("agg", "seq", "par"):
    rs = [r for r in runs if r["mode"] == m]
    if not rs:
        continue
    res[m] = {"pages_per_s": med([r["pages_per_s"] for r in rs]),
              "p50_us": med([r["p50_us"] for r in rs]),
              "p99_us": med([r["p99_us"] for r in rs]),
              "errors": sum(r["errors"] for r in rs)}
    lines.append("%-5s %-42s %10.0f %9.2fms %9.2fms" % (
        m, desc[m], res[m]["pages_per_s"], res[m]["p50_us"] / 1000,
        res[m]["p99_us"] / 1000))
for b in ("seq", "par"):
    if "agg" in res and b in res:
        res["agg_vs_" + b] = {"pages_per_s": ratio("agg", b, "pages_per_s"),
                              "p99": ratio("agg", b, "p99_us")}
        lines.append("agg/%s: pages/s %.2fx, p99 %.2fx" % (
            b, res["agg_vs_" + b]["pages_per_s"], res["agg_vs_" + b]["p99"]))
text = "\n".join(lines)
print(text)
open(sys.argv[2], "w").write(text + "\n")
json.dump({"runs": runs, "summary": res}, open(sys.argv[3], "w"), indent=1)
EOF
