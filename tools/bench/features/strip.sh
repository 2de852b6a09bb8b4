# strip_fields on a 4 KiB JSON body (/json4k: 40 items, each with an
# "internal" member, and a top-level "debug") vs the same route without
# it, same rounds. The body is under strip_buffer_bytes, so it is
# stripped whole and gets its new Content-Length. Issue target:
# stripping / plain >= 0.85 of the requests per second.
conf_portico_strip() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'transform = { response = { strip_fields = ["debug", "items.internal"]; }; };'
}
front portico-strip portico conf_portico_strip
scenario strip /json4k "$CONNS" "portico portico-strip" \
    "strip_fields on a 4 KiB JSON body vs not, $CONNS keep-alive connections"
pair portico-strip/portico
