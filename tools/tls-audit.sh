#!/usr/bin/env bash
# make tls-audit: testssl.sh (Debian's testssl.sh package, installed here
# when missing) against a portico TLS listener on 127.0.0.1 serving the
# demo certificate (etc/tls/server.crt, made by etc/gen-keys.sh) with the
# demo's tls settings, in front of the bench's nginx origin. Fails when any
# finding is rated HIGH or CRITICAL; prints every finding from LOW up.
#
# The demo certificate is self-signed, so testssl is given it as a trusted
# CA (--add-ca) and asked for localhost (its name) at 127.0.0.1: what is
# judged is the server's TLS, not the demo's lack of a public CA. One
# finding is the certificate's own and cannot be the server's: a
# self-signed certificate names no CRL or OCSP responder (testssl's
# cert_revocation, rated HIGH); it is printed, marked as such, and does
# not fail the audit (a CA's certificate carries both).
#
#   AUDIT_KEEP=1 keeps the JSON in build/tls-audit/ (it is kept anyway)
# Output: build/tls-audit/testssl.json, build/tls-audit/findings.txt
set -u
cd "$(dirname "$0")/.." || exit 1
. tools/bench/lib.sh

OUT=build/tls-audit
TESTSSL=${TESTSSL:-testssl}

if ! command -v "$TESTSSL" >/dev/null; then
	echo "tls-audit: installing testssl.sh" >&2
	sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null ||
		bench_die "could not install testssl.sh"
fi
command -v "$TESTSSL" >/dev/null || bench_die "testssl not found"
[ -x "$PORTICO" ] || bench_die "$PORTICO is missing (run make)"
[ -x "$NGINX" ] || bench_die "nginx not found at $NGINX (tools/deps.sh installs it)"
bash etc/gen-keys.sh >/dev/null || bench_die "etc/gen-keys.sh failed"
CERT=$BENCH_ROOT/etc/tls/server.crt
KEY=$BENCH_ROOT/etc/tls/server.key
[ -f "$CERT" ] && [ -f "$KEY" ] || bench_die "no demo certificate in etc/tls"

bench_setup
mkdir -p "$OUT"
rm -f "$OUT/testssl.json" "$OUT/findings.txt"

ORIGIN_PORT=$(bench_ports 1)
origin_conf "$BENCH_TMP/origin" "$ORIGIN_PORT"
start_nginx "$BENCH_TMP/origin"
bench_wait_http "$ORIGIN_PORT" /small "$STARTED_PID" 10 || bench_die "origin nginx did not start"

# The demo's tls entry (etc/portico.conf): the demo certificate and
# min_version TLSv1.2; everything else is portico's own defaults.
dir=$BENCH_TMP/portico
port=$(bench_ports 1)
portico_conf "$dir" "$port" "$(bench_ports 1)" "$ORIGIN_PORT" 1 "" \
	"tls: { default = { cert = \"$CERT\"; key = \"$KEY\"; min_version = \"TLSv1.2\"; }; };"
sed -i "s|listen = ( { address = \"127.0.0.1:$port\"; } );|listen = ( { address = \"127.0.0.1:$port\"; tls = \"default\"; } );|" \
	"$dir/portico.conf"
grep -q 'tls = "default"' "$dir/portico.conf" || bench_die "could not make a TLS listener"
start_portico "$dir"
pid=$STARTED_PID
for ((i = 0; i < 100; i++)); do
	curl -sf -o /dev/null --cacert "$CERT" --resolve "localhost:$port:127.0.0.1" \
		"https://localhost:$port/" && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
curl -sf -o /dev/null --cacert "$CERT" --resolve "localhost:$port:127.0.0.1" "https://localhost:$port/" ||
	bench_die "portico did not answer over TLS: $(tail -n 5 "$dir/err.log" 2>/dev/null)"

echo "tls-audit: testssl $("$TESTSSL" --version 2>/dev/null | sed -n 's/.*testssl *\([0-9][^ ]*\).*/\1/p' | head -n 1) against localhost:$port (127.0.0.1), portico $("$PORTICO" -v 2>/dev/null | head -n 1)" >&2
# --ip: only the loopback address; --add-ca: trust the demo certificate;
# --warnings batch: no questions; --color 0: plain text in the log.
timeout 900 "$TESTSSL" --ip 127.0.0.1 --add-ca "$CERT" --warnings batch --color 0 \
	--quiet --jsonfile "$OUT/testssl.json" "localhost:$port" >"$OUT/testssl.log" 2>&1
rc=$?
[ -s "$OUT/testssl.json" ] || bench_die "testssl wrote no results (exit $rc); see $OUT/testssl.log"

"$PY" - "$OUT/testssl.json" "$OUT/findings.txt" <<'EOF'
import json, sys
rank = {"OK": 0, "INFO": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
# Findings about the self-signed demo certificate's content, not the server.
DEMO_CERT = {"cert_revocation": "the self-signed demo certificate names no CRL/OCSP URI"}
found = json.load(open(sys.argv[1]))
lines, bad, excused, counts = [], 0, 0, {}
for f in found:
    sev, fid = f.get("severity", ""), f.get("id", "")
    counts[sev] = counts.get(sev, 0) + 1
    note = ""
    if fid in DEMO_CERT:
        note = "  [not counted: %s]" % DEMO_CERT[fid]
        excused += rank.get(sev, 0) >= 3
    elif rank.get(sev, 0) >= 3 or sev == "FATAL":
        bad += 1
    if rank.get(sev, 0) >= 1 or sev in ("WARN", "FATAL"):
        lines.append("%-8s %-28s %s%s" % (sev, fid, f.get("finding", ""), note))
summary = ("tls-audit: %d findings: %s; %d rated HIGH or CRITICAL about the server"
           " (%d about the demo certificate)" % (
               len(found), ", ".join("%s %d" % (k, counts[k]) for k in sorted(counts)),
               bad, excused))
text = "\n".join(lines + [summary]) + "\n"
sys.stdout.write(text)
open(sys.argv[2], "w").write(text)
sys.exit(1 if bad else 0)
EOF
