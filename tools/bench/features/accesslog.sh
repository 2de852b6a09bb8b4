# Access log on (JSON lines to a file) vs off, same rounds.
conf_portico_al() {
	portico_conf "$1" "$2" "$(bench_ports 1)" "$ORIGIN_PORT" "$WORKERS"
	sed -i "s|access_log = { path = \"off\"; };|access_log = { path = \"$1/access.log\"; format = \"json\"; };|" "$1/portico.conf"
}
front portico-log portico conf_portico_al
scenario accesslog /small "$CONNS" "portico portico-log" "access log on vs off, $CONNS keep-alive connections"
pair portico-log/portico
