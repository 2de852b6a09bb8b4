# Response cache hits against plain proxying, and against NGINX proxy_cache
# hits, same origin, same workers, same rounds; every request the next of
# 10,000 distinct paths (tools/bench/paths10k.lua), all cached after the
# warm-up. Issue targets: portico-cache / portico >= 1.5, portico-cache /
# nginx-cache >= 1.2 (measured here before: nginx-cache / nginx 1.49).
conf_portico_cache() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS" \
	    'cache = { ttl_s = 3600; };'
}
# nginx_front_conf with a proxy_cache (its default file layout, a 10 MB
# key zone, 200s kept an hour) on tmpfs, as portico's store is; its
# workers run as nobody when the bench runs as root, and must write it.
conf_nginx_cache() {
	local dir=$1 port=$2 cdir=$BENCH_STATE-nginx-cache
	mkdir -p "$dir" "$cdir"
	[ "$(id -u)" = 0 ] && chown nobody "$cdir"
	cat >"$dir/nginx.conf" <<NGX
$(nginx_head "$dir" "$WORKERS")
	proxy_cache_path $cdir levels=1:2 keys_zone=bench:10m max_size=1g inactive=1h use_temp_path=off;
	upstream origin {
		server 127.0.0.1:$ORIGIN_PORT;
		keepalive 512;
		keepalive_requests 100000000;
	}
	server {
		listen 127.0.0.1:$port reuseport backlog=4096;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache bench;
			proxy_cache_valid 200 1h;
			add_header X-Cache \$upstream_cache_status;
		}
	}
}
NGX
}
# Run after each front starts: a front that does not answer a repeated
# request from its cache is not benchmarked as one.
cache_hits() {	# PORT
	curl -s -o /dev/null "http://127.0.0.1:$1/c/check" &&
	    curl -s -D - -o /dev/null "http://127.0.0.1:$1/c/check" |
	    grep -qi '^X-Cache: HIT'
}
check_portico_cache() { cache_hits "$1"; }
check_nginx_cache() { cache_hits "$1"; }
front portico-cache portico conf_portico_cache
front nginx-cache nginx conf_nginx_cache
scenario cache /c/1 "$CONNS" "portico portico-cache nginx nginx-cache" \
    "cache hits, 10,000 paths cycling, $CONNS keep-alive connections" \
    -s tools/bench/paths10k.lua
SC_WARM[cache]=3	# every path stored before the measured rounds
pair portico-cache/portico
pair portico-cache/nginx-cache
pair nginx-cache/nginx
