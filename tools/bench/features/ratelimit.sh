# Rate limiting on (a limit far above the load, so nothing is refused) vs
# off, same route, same rounds. Issue target: on/off >= 0.90.
conf_portico_rl() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'rate_limit = { by = "ip"; tier = "bench"; };' \
	    'tiers: { bench = { rate = 1000000000; per_s = 1; burst = 1000000000; }; };'
}
front portico-rl portico conf_portico_rl
scenario ratelimit /small "$CONNS" "portico portico-rl" "rate limiting on vs off, $CONNS keep-alive connections"
pair portico-rl/portico
