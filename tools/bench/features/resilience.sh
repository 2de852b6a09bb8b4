# Circuit breakers and active health checks on (every instance healthy) vs
# off, same route, same rounds. Issue target: on/off >= 0.97 of the
# requests per second, and no store write per request (the report adds
# the store's write transactions per request; health checks every 100 ms
# write only when a result changes, so a healthy run writes none).
conf_portico_resil() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS"
	sed -i 's|    keepalive = 512;|    keepalive = 512;\
    breaker = { failures = 5; open_ms = 30000; half_open = 1; };\
    health = { path = "/health"; interval_ms = 100; timeout_ms = 1000; fall = 3; rise = 2; };|' \
		"$1/portico.conf"
	grep -q 'breaker = ' "$1/portico.conf" ||
		bench_die "resilience: could not add the breaker to $1/portico.conf"
}
front portico-resil portico conf_portico_resil
scenario resilience /small "$CONNS" "portico portico-resil" \
    "breakers and health checks on vs off, $CONNS keep-alive connections"
pair portico-resil/portico
