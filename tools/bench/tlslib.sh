# tools/bench/tlslib.sh: what the TLS benchmarks share (sourced after
# lib.sh, not run): the certificate, and nginx and portico as TLS fronts
# with the same versions and suites.

# portico's TLS 1.2 suites (worker/tls.h), for nginx too.
TLS_CIPHERS12="ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

# tls_cert DIR: an ECDSA P-256 certificate for localhost, DIR/tls.crt and
# DIR/tls.key.
tls_cert() {
	mkdir -p "$1"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1/tls.key" -out "$1/tls.crt" -days 2 -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost 2>/dev/null
}

# portico's TLS 1.3 suites, in its order (worker/tls.h)
TLS_SUITES13="TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

# nginx_tls_conf DIR PORT ORIGIN_PORT WORKERS CERT KEY [SUITES13]: nginx
# terminating TLS 1.2/1.3 in front of the origin. Otherwise nginx's
# defaults (session tickets on with its own keys, no session cache, the
# TLS 1.3 suites in OpenSSL's order, AES-256 first), as an install runs it;
# SUITES13 sets the TLS 1.3 suites' order (ssl_conf_command Ciphersuites).
nginx_tls_conf() {
	local dir=$1 port=$2 oport=$3 workers=$4 cert=$5 key=$6 suites=${7:-}
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
$(nginx_head "$dir" "$workers")
	upstream origin {
		server 127.0.0.1:$oport;
		keepalive 512;
		keepalive_requests 100000000;
	}
	server {
		listen 127.0.0.1:$port ssl reuseport backlog=4096;
		ssl_certificate $cert;
		ssl_certificate_key $key;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_ciphers $TLS_CIPHERS12;
		ssl_prefer_server_ciphers on;
		${suites:+ssl_conf_command Ciphersuites $suites;}
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header X-Forwarded-Proto https;
		}
	}
}
EOF
}

# portico_tls_conf DIR PORT ADMIN_PORT ORIGIN_PORT WORKERS CERT KEY:
# portico_conf with its listener on TLS (the "default" entry).
portico_tls_conf() {
	local dir=$1 port=$2
	portico_conf "$dir" "$port" "$3" "$4" "$5" "" \
		"tls: { default = { cert = \"$6\"; key = \"$7\"; }; };"
	sed -i "s|listen = ( { address = \"127.0.0.1:$port\"; } );|listen = ( { address = \"127.0.0.1:$port\"; tls = \"default\"; } );|" \
		"$dir/portico.conf"
	grep -q 'tls = "default"' "$dir/portico.conf"
}

# tls_wait_https PORT PID [SECONDS]: until GET /big over TLS gives the
# whole 16 KiB body, the process PID has died, or the time is up.
tls_wait_https() {
	local port=$1 pid=$2 secs=${3:-10} i got
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		got=$(curl -ks -o /dev/null -w '%{http_code} %{size_download}' "https://127.0.0.1:$port/big")
		[ "$got" = "200 16384" ] && return 0
		sleep 0.1
	done
	return 1
}
