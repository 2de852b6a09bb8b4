# Metrics: portico with /metrics scraped once a second (the master sums
# every worker's counters into the page) vs not scraped, same route, same
# rounds. Issue target: no measurable cost (within noise). The scraper is
# one python process (standard library: no shell loop to leave a curl or
# sleep behind), started with its front and stopped by pid with it; it
# writes its count of scrapes and bytes to scrapes.txt in the front's dir.
conf_portico_scrape() { conf_portico "$1" "$2"; }
start_portico_scrape() {	# DIR
	local pid aport
	start_portico "$1"
	pid=$STARTED_PID
	aport=$(sed -n 's/^ *admin = "127\.0\.0\.1:\([0-9]*\)";.*/\1/p' "$1/portico.conf")
	[ -n "$aport" ] || bench_die "metrics: no admin port in $1/portico.conf"
	"$PY" - "$aport" "$1/scrapes.txt" >>"$1/stdout.log" 2>&1 <<'PYEOF' &
import sys, time, urllib.request
url = "http://127.0.0.1:%s/metrics" % sys.argv[1]
ok = failed = size = 0
while True:
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            size = len(r.read())
            ok += 1
    except Exception:
        failed += 1
    with open(sys.argv[2], "w") as f:
        f.write("scrapes %d failed %d bytes %d\n" % (ok, failed, size))
    time.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))
PYEOF
	bench_track $!
	STARTED_PID=$pid
}
front portico-scrape portico_scrape conf_portico_scrape
scenario metrics /small "$CONNS" "portico portico-scrape" "/metrics scraped every second vs not, $CONNS keep-alive connections"
pair portico-scrape/portico
