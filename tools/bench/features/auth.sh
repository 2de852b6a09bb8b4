# Authentication (issue 10). One RS256 key pair (2048 bits) and one token
# (sub "bench", tier "bench") serve the whole run: every wrk connection sends
# the same token, as a real client reuses its token until it expires.
#
#   jwt      portico with auth = "jwt" vs the same route with auth none,
#            same rounds. Issue target: >= 0.90 of the req/s.
#   gateway  the full gateway route, same workers, same origin:
#            portico-gw  RS256 JWT, rate_limit by consumer (a tier far above
#                        the load), a request add_headers, JSON access log
#                        to a file;
#            haproxy-gw  jwt_verify of the bearer token against the public
#                        key (401 unless it verifies), the sub claim into a
#                        stick table tracking http_req_rate (429 far above
#                        the load), set-header X-User-ID from sub and the
#                        same added header, a JSON log line per request to
#                        a file (log stdout, stdout redirected to the file);
#            nginx-gw    no JWT (stock nginx cannot verify one): limit_req
#                        keyed by the Authorization header (far above the
#                        load), proxy_set_header X-User-ID (a constant) and
#                        the same added header, a JSON access log
#                        (escape=json) to a file, buffered as portico's is.
#            The plain fronts run in the same rounds, for each proxy's
#            gateway / plain ratio. Issue targets: portico-gw >= 1.8x
#            haproxy-gw, >= 1.2x nginx-gw (req/s).
#            With PORTICO_BASELINE set, portico-gw-base (that binary on
#            the same route) runs in the same rounds too, with the pair
#            portico-gw/portico-gw-base: a change measured against the
#            build before it.
# The token goes out with wrk -H, so it is made here, when the scenarios are
# chosen; only the public key is kept (its text, written into each front's
# directory by the config functions).

AUTH_PUB=""
AUTH_TOKEN=""
AUTH_RATE=1000000000	# requests a second: far above the load

auth_make_token() {
	local d rc=0
	d=$(mktemp -d "${TMPDIR:-/tmp}/portico-bench-key.XXXXXX") || return 1
	if openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
	    -out "$d/key.pem" 2>/dev/null &&
	    openssl pkey -in "$d/key.pem" -pubout -out "$d/pub.pem" 2>/dev/null; then
		AUTH_PUB=$(cat "$d/pub.pem")
		AUTH_TOKEN=$("$GWCTL" token --key "$d/key.pem" --kid bench \
		    --sub bench --tier bench --ttl 24h) || rc=1
	else
		rc=1
	fi
	rm -rf -- "$d"
	return $rc
}

case " $SCENARIOS " in
*" jwt "* | *" gateway "*)
	if ! [ -x "$GWCTL" ] || ! command -v openssl >/dev/null ||
	    ! auth_make_token; then
		bench_log "bench: no RS256 key and token for the auth scenarios" \
		    "(is $GWCTL built? openssl installed?): their fronts will fail the start check"
	fi
	;;
esac

# auth_pub DIR: the public key as a file in DIR; prints its path.
auth_pub() {
	mkdir -p "$1"
	printf '%s\n' "$AUTH_PUB" >"$1/jwt.pub.pem"
	printf '%s\n' "$1/jwt.pub.pem"
}

# auth_portico_top DIR: the top-level auth and tiers sections.
auth_portico_top() {
	cat <<EOF
auth: {
  jwt = {
    keys = ( { kid = "bench"; alg = "RS256"; public_key = "$(auth_pub "$1")"; } );
    require = ["exp"];
  };
};
tiers: { bench = { rate = $AUTH_RATE; per_s = 1; burst = $AUTH_RATE; }; };
EOF
}

# auth_check NAME PORT: a verifying front refuses a request without the
# token and one whose signature is broken (401), so what is timed really
# verifies.
auth_check() {
	local f=$1 port=$2 sig head c bad code what
	sig=${AUTH_TOKEN##*.}
	head=${AUTH_TOKEN%.*}
	c=${sig:10:1}
	[ "$c" = A ] && c=B || c=A
	bad="$head.${sig:0:10}$c${sig:11}"
	for what in "without a token" "with a broken signature"; do
		if [ "$what" = "without a token" ]; then
			code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/small")
		else
			code=$(curl -s -o /dev/null -w '%{http_code}' \
			    -H "Authorization: Bearer $bad" "http://127.0.0.1:$port/small")
		fi
		if [ "$code" != 401 ]; then
			bench_log "bench: $f: GET /small $what gave '$code', expected 401"
			return 1
		fi
	done
}

# ---- jwt: auth = "jwt" vs none -------------------------------------------------
conf_portico_jwt() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'auth = "jwt";' "$(auth_portico_top "$1")"
}
front portico-jwt portico conf_portico_jwt
front_header portico-jwt "Authorization: Bearer $AUTH_TOKEN"
front_check portico-jwt auth_check
scenario jwt /small "$CONNS" "portico portico-jwt" \
    "RS256 JWT (one token reused) vs auth none, $CONNS keep-alive connections" \
    -H "Authorization: Bearer $AUTH_TOKEN"
pair portico-jwt/portico

# ---- gateway: the full route in portico, haproxy and nginx -----------------------
conf_portico_gw() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'auth = "jwt";
    rate_limit = { by = "consumer"; tier = "bench"; };
    transform = { request = { add_headers = ["X-Gateway: portico"]; }; };' \
	    "$(auth_portico_top "$1")"
	sed -i "s|access_log = { path = \"off\"; };|access_log = { path = \"$1/access.log\"; format = \"json\"; };|" \
	    "$1/portico.conf"
}

# The log line carries what portico's JSON line does, bar its route, reason
# and trace id; strings through the json converter, as portico escapes them.
conf_haproxy_gw() {
	local pub fe
	pub=$(auth_pub "$1")
	fe=$(cat <<EOF
log global
	log-format "{\"time\":\"%t\",\"remote\":\"%ci\",\"method\":\"%HM\",\"path\":\"%[var(txn.path),json(utf8s)]\",\"status\":%ST,\"bytes\":%B,\"duration_ms\":%Ta,\"upstream\":\"%si:%sp\",\"user_agent\":\"%[var(txn.ua),json(utf8s)]\",\"referer\":\"%[var(txn.ref),json(utf8s)]\"}"
	stick-table type string len 64 size 100k expire 60s store http_req_rate(1s)
	http-request set-var(txn.bearer) http_auth_bearer
	http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify("RS256","$pub") -m int 1 }
	http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
	http-request track-sc0 var(txn.sub)
	http-request deny deny_status 429 if { sc_http_req_rate(0) gt $AUTH_RATE }
	http-request set-header X-User-ID %[var(txn.sub)]
	http-request set-header X-Gateway portico
	http-request set-var(txn.path) path
	http-request set-var(txn.ua) req.fhdr(user-agent)
	http-request set-var(txn.ref) req.fhdr(referer)
EOF
)
	haproxy_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS" \
	    "log stdout format raw local0" "$fe"
}

conf_nginx_gw() {
	local http loc
	http=$(cat <<'EOF'
limit_req_zone $http_authorization zone=gw:16m rate=10000000r/s;
	log_format gw escape=json '{"time":"$time_iso8601","remote":"$remote_addr","method":"$request_method","path":"$uri","status":$status,"bytes":$bytes_sent,"duration_s":$request_time,"upstream":"$upstream_addr","user_agent":"$http_user_agent","referer":"$http_referer"}';
EOF
)
	loc=$(cat <<EOF
limit_req zone=gw burst=1000 nodelay;
			proxy_set_header X-User-ID bench;
			proxy_set_header X-Gateway portico;
			access_log $1/access.log gw buffer=32k flush=200ms;
EOF
)
	nginx_front_conf "$1" "$2" "$ORIGIN_PORT" "$WORKERS" "" "$http" "$loc"
}
front portico-gw portico conf_portico_gw
front haproxy-gw haproxy conf_haproxy_gw
front nginx-gw nginx conf_nginx_gw
gw_fronts="portico-gw haproxy-gw nginx-gw"
if [ -n "${PORTICO_BASELINE:-}" ]; then
	start_portico_gw_base() {	# DIR
		(cd "$1" && exec "$PORTICO_BASELINE" -c "$1/portico.conf" -p "$1") \
			>>"$1/stdout.log" 2>&1 &
		STARTED_PID=$!
		bench_track "$STARTED_PID"
	}
	front portico-gw-base portico_gw_base conf_portico_gw
	front_check portico-gw-base auth_check
	gw_fronts="portico-gw portico-gw-base haproxy-gw nginx-gw"
	pair portico-gw/portico-gw-base
fi
for f in $gw_fronts; do
	front_header "$f" "Authorization: Bearer $AUTH_TOKEN"
done
front_check portico-gw auth_check
front_check haproxy-gw auth_check
scenario gateway /small "$CONNS" "$gw_fronts portico haproxy nginx" \
    "full gateway route (RS256 JWT, rate limit by consumer, header, JSON log), $CONNS keep-alive connections" \
    -H "Authorization: Bearer $AUTH_TOKEN"
pair portico-gw/haproxy-gw
pair portico-gw/nginx-gw
pair portico-gw/portico
pair haproxy-gw/haproxy
pair nginx-gw/nginx
