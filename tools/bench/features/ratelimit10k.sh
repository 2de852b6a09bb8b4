# Rate limiting by 10,000 API keys cycling (by = "header:X-Api-Key", a
# tier far above the load) vs the same route unlimited, both driven by
# the same wrk script; the report adds the store's write transactions
# per request. Issue target: limited / unlimited >= 0.90.
conf_portico_rl10k() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'rate_limit = { by = "header:X-Api-Key"; tier = "bench"; };' \
	    'tiers: { bench = { rate = 1000000000; per_s = 1; burst = 1000000000; }; };'
}
front portico-rl10k portico conf_portico_rl10k
scenario ratelimit10k /small "$CONNS" "portico portico-rl10k" \
    "10,000 keys cycling, limited vs unlimited, $CONNS keep-alive connections" \
    -s tools/bench/keys10k.lua
pair portico-rl10k/portico
